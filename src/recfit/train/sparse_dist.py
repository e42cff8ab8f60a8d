"""Row-wise optimisers across ranks: only the touched rows' gradients travel.

Under distributed training each rank reads its shard of every global batch
(:mod:`recfit.train.distributed`). On the row-wise path (:mod:`recfit.train.sparse`) a
step here is:

1. every rank computes the summed gradient of each row its shard looks up (the compiled
   :func:`recfit.train.kernels.row_grads` on CPU, else :meth:`RowOptimizer.row_grads`
   summed per row), from the weights every rank shares;
2. the ranks exchange these ``(row, gradient)`` pairs in one all-gather of one packed
   int32 buffer per rank: a header row with its two counts, then each pair's
   ``n_factors + 1`` float32 gradient columns (as bits) and its row index, padded with
   zeros to the most pairs a shard can touch (:func:`capacity`: gloo gathers equal
   sizes, and the fixed size spares a second round trip for the counts);
3. every rank applies the same optimiser step to the same concatenation (rank order; a
   row touched by several ranks gets its gradients summed in that order), so the weights
   and the optimiser state stay bit-identical on every rank without exchanging weights.

The gradient of the weighted loss is a sum over ratings and each row's penalty weight is
a sum over its ratings, so the summed gradients are those of the global batch: the run
follows the single-process trajectory up to float rounding (the order of the sums).
Bytes per step: ``world × (capacity + 1) × (n_factors + 2) × 4`` received by each rank.

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

from recfit.errors import RecfitError
from recfit.train.sparse import RowOptimizer

if TYPE_CHECKING:
    from recfit.train.distributed import DistContext

__all__ = ["Exchanged", "capacity", "compiled_step", "exchange", "fused_step", "warm_up"]

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


def capacity(ctx: DistContext, batch: dict[str, Tensor], n_users: int, n_items: int) -> int:
    """The most ``(row, gradient)`` pairs any rank can send for ``batch`` (the same on every
    rank): each side's distinct rows in the largest shard of the global batch."""
    total = batch.get("rows_total")
    n = int(batch["user"].shape[0]) * ctx.world if total is None else int(total)
    per = -(-n // ctx.world)
    return min(per, n_users) + min(per, n_items)


def exchange(ctx: DistContext, rows: Rows, cap: int) -> Rows:
    """Every rank's ``[(users, g), (items, g)]`` concatenated in rank order (see the module
    docs); each rank passes its own and ``cap`` (:func:`capacity`, the same on every rank),
    and every rank gets the same result. One all-gather: each rank's buffer is a header
    row (its two counts) then ``cap`` rows, its pairs and zeros."""
    (iu, gu), (ii, gi) = rows
    k1 = int(gu.shape[1])
    n_u, n_i = int(iu.shape[0]), int(ii.shape[0])
    if n_u + n_i > cap:
        raise RecfitError(
            f"expected at most {cap} touched rows on rank {ctx.rank}, received {n_u + n_i}"
        )
    send = torch.zeros((cap + 1, k1 + 1), dtype=torch.int32, device=gu.device)
    send[0, 0], send[0, 1] = n_u, n_i
    send[1 : n_u + 1, :k1] = gu.to(torch.float32).view(torch.int32)
    send[1 : n_u + 1, k1] = iu.to(torch.int32)
    send[n_u + 1 : n_u + n_i + 1, :k1] = gi.to(torch.float32).view(torch.int32)
    send[n_u + 1 : n_u + n_i + 1, k1] = ii.to(torch.int32)
    recv = torch.empty((ctx.world, cap + 1, k1 + 1), dtype=torch.int32, device=gu.device)
    dist.all_gather(list(recv.unbind()), send)
    counts = recv[:, 0, :2].tolist()
    ex = ctx.exchanged
    ex.steps += 1
    ex.rows_sent += n_u + n_i
    ex.bytes_sent += send.numel() * 4
    ex.bytes_received += recv.numel() * 4
    users = torch.cat([recv[r, 1 : c[0] + 1] for r, c in enumerate(counts)])
    items = torch.cat([recv[r, c[0] + 1 : c[0] + c[1] + 1] for r, c in enumerate(counts)])
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
    m = opt.model
    opt.apply_rows(exchange(ctx, local, capacity(ctx, batch, m.n_users, m.n_items)))


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
    cap = capacity(ctx, batch, opt.model.n_users, opt.model.n_items)
    every = exchange(ctx, local, cap)  # copies the scratch views before they are reused
    opt.compiled_apply([(i.numpy(), g.numpy()) for i, g in every], threads)
    return out, loss, pen


def warm_up(opt: RowOptimizer, batch: dict[str, Tensor]) -> None:
    """Compile (or load) the gradient and update kernels on an empty batch (no change)."""
    empty = {k: batch[k][:0] for k in ("user", "item", "rating", "weight")}
    rows, _, _, _ = opt.compiled_grads(empty, 1.0, 0.0)
    step, log_decay = opt.step_count, opt.log_decay
    opt.compiled_apply([(np.array(i), np.array(g)) for i, g in rows])
    opt.step_count, opt.log_decay = step, log_decay
