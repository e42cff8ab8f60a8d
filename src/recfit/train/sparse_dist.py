"""Row-wise optimisers across ranks: only the touched rows' gradients travel.

Under distributed training each rank reads its shard of every global batch
(:mod:`recfit.train.distributed`). On the row-wise path (:mod:`recfit.train.sparse`) a
step here is:

1. every rank computes the summed gradient of each row its shard looks up (the compiled
   :func:`recfit.train.kernels.row_grads` on CPU, else :meth:`RowOptimizer.row_grads`
   summed per row), from the weights every rank shares;
2. the ranks exchange these ``(row, gradient)`` pairs: an all-gather of the pair counts,
   then an all-gather of one packed buffer per rank (each row's ``n_factors + 1``
   float32 gradient columns and its index as int32 bits; padded to the largest rank's
   count, since gloo gathers equal sizes);
3. every rank applies the same optimiser step to the same concatenation (rank order; a
   row touched by several ranks gets its gradients summed in that order), so the weights
   and the optimiser state stay bit-identical on every rank without exchanging weights.

The gradient of the weighted loss is a sum over ratings and each row's penalty weight is
a sum over its ratings, so the summed gradients are those of the global batch: the run
follows the single-process trajectory up to float rounding (the order of the sums).
Bytes per step: ``world × max_rank(rows) × (n_factors + 2) × 4`` received by each rank.

Example:
    >>> ex = Exchanged()
    >>> ex.steps, ex.bytes_received
    (0, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from recfit.train.sparse import RowOptimizer

if TYPE_CHECKING:
    from recfit.train.distributed import DistContext

__all__ = ["Exchanged", "compiled_step", "exchange", "fused_step", "warm_up"]

Rows = list[tuple[Tensor, Tensor]]


@dataclass
class Exchanged:
    """What a rank's row exchanges have moved so far.

    Attributes:
        steps: exchanges (one per step).
        rows_sent: ``(row, gradient)`` pairs this rank sent.
        bytes_sent: bytes of this rank's buffers (padding included).
        bytes_received: bytes of every rank's buffers this rank received (its own included).
    """

    steps: int = 0
    rows_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


def _pack(rows: Rows, k1: int, width: int) -> Tensor:
    """One int32 buffer of ``width`` rows: each pair's ``k1`` gradient columns (float32
    bits), then its row index; zeros after the pairs."""
    dev = rows[0][1].device
    buf = torch.empty((width, k1 + 1), dtype=torch.int32, device=dev)
    at = 0
    for idx, g in rows:
        m = int(idx.shape[0])
        buf[at : at + m, :k1] = g.to(torch.float32).view(torch.int32)
        buf[at : at + m, k1] = idx.to(torch.int32)
        at += m
    buf[at:] = 0
    return buf


def exchange(ctx: DistContext, rows: Rows) -> Rows:
    """Every rank's ``[(users, g), (items, g)]`` concatenated in rank order (see the module
    docs); each rank passes its own, and every rank gets the same result."""
    (iu, gu), (ii, _) = rows
    k1 = int(gu.shape[1])
    dev = gu.device
    counts = torch.tensor([int(iu.shape[0]), int(ii.shape[0])], dtype=torch.int64, device=dev)
    all_counts = torch.empty((ctx.world, 2), dtype=torch.int64, device=dev)
    dist.all_gather(list(all_counts.unbind()), counts)
    per_rank = all_counts.sum(1).tolist()
    width = max(per_rank)
    send = _pack(rows, k1, width)
    recv = torch.empty((ctx.world, width, k1 + 1), dtype=torch.int32, device=dev)
    dist.all_gather(list(recv.unbind()), send)
    ex = ctx.exchanged
    ex.steps += 1
    ex.rows_sent += per_rank[ctx.rank]
    ex.bytes_sent += send.numel() * 4
    ex.bytes_received += recv.numel() * 4
    nu = all_counts[:, 0].tolist()
    users = torch.cat([recv[r, : nu[r]] for r in range(ctx.world)])
    items = torch.cat([recv[r, nu[r] : per_rank[r]] for r in range(ctx.world)])
    return [(p[:, k1].long(), p[:, :k1].contiguous().view(torch.float32)) for p in (users, items)]


def _summed(idx: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Repeated rows of ``idx`` summed (fewer pairs to send)."""
    uniq, inv = torch.unique(idx, return_inverse=True)
    out = torch.zeros((uniq.shape[0], g.shape[1]), dtype=g.dtype, device=g.device)
    out.index_add_(0, inv, g)
    return uniq, out


@torch.no_grad()
def fused_step(
    opt: RowOptimizer,
    ctx: DistContext,
    batch: dict[str, Tensor],
    saved: Any,
    d_output: Tensor,
    d_penalty: Tensor | None,
) -> None:
    """:meth:`RowOptimizer.fused_step` for one rank's shard: gradients summed over the
    ranks, then the same update on every rank (PyTorch operations, any device)."""
    local = [_summed(i, g) for i, g in opt.row_grads(batch, saved, d_output, d_penalty)]
    opt.apply_rows(exchange(ctx, local))


@torch.no_grad()
def compiled_step(
    opt: RowOptimizer,
    ctx: DistContext,
    batch: dict[str, Tensor],
    w_tot: float,
    reg: float,
    threads: int | None = None,
) -> tuple[Tensor, float, float]:
    """:meth:`RowOptimizer.compiled_step` for one rank's shard: the compiled gradient
    kernel, the exchange, the compiled update. Returns this shard's predictions and its
    part of the loss and penalty (``Σ`` over its rows ``/ w_tot``)."""
    rows, out, loss, pen = opt.compiled_grads(batch, w_tot, reg, threads)
    local = [(torch.from_numpy(i), torch.from_numpy(g)) for i, g in rows]
    every = exchange(ctx, local)  # copies the scratch views before they are reused
    opt.compiled_apply([(i.numpy(), g.numpy()) for i, g in every], threads)
    return out, loss, pen


def warm_up(opt: RowOptimizer, batch: dict[str, Tensor]) -> None:
    """Compile (or load) the gradient and update kernels on an empty batch (no change)."""
    empty = {k: batch[k][:0] for k in ("user", "item", "rating", "weight")}
    rows, _, _, _ = opt.compiled_grads(empty, 1.0, 0.0)
    step, log_decay = opt.step_count, opt.log_decay
    opt.compiled_apply([(np.array(i), np.array(g)) for i, g in rows])
    opt.step_count, opt.log_decay = step, log_decay
