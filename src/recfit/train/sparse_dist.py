"""Row-wise optimisers across ranks: only the touched rows' gradients travel.

Two schemes, both following the single-process trajectory up to float rounding (the
order of the sums): the gradient of the weighted loss is a sum over ratings and each
row's penalty weight is a sum over its ratings, so summed per-rank gradients are those
of the global batch, and every rank applies the optimiser step to the same sums.

**Compiled CPU kernel (users owned by ranks).** Every rank draws the same permutation
and reads, of every global batch, only the ratings of *its* users, those with ``user %
world == rank`` (:func:`owned_batches`, with the global batch's Σw). A user row is then
read and written by one rank only, so:

1. each rank runs the compiled row-wise step on its ratings (:mod:`recfit.train.
   _kernels_dist`): forward pass, loss, every row's gradient, and the update of its
   users' rows (their whole gradient is local: users never travel);
2. each rank writes its items' summed gradients as one packed int32 buffer: a header
   row (the pairs' count, then where each owner's items start), then each ``(item,
   gradient)`` pair as ``n_factors + 1`` float32 columns (as bits) and the item;
3. *ranks on one machine* (:attr:`DistContext.shared_memory`) write it into shared
   memory (:class:`Shared`) and meet; the items' tables, optimiser state and decay logs
   are shared too, and each rank updates its own items (``item % world == rank``),
   summing their gradients over the ranks in rank order; the ranks meet again before
   the next step reads the items. *Across machines* the buffers travel in one gloo
   all-gather (padded to the most ratings of one rank, at most the items, which every
   rank knows from the batch), and every rank applies the same update to every item,
   so the item tables stay bit-identical on every rank.

A rank's copies of other ranks' user rows go stale during an epoch; :func:`replicate`
copies every user row, its optimiser state and decay log from its owner (one
all-gather per tensor) where the Learner reads the weights: after each epoch's
:func:`flush` (before validation, at the end of a fit) and before a checkpoint is
captured. Bytes per step: each rank's ``(pairs + 1) × (n_factors + 2) × 4``, ``pairs``
the distinct items of its ratings in the batch; every rank reads every rank's
(:attr:`Exchanged.bytes_received`; the all-gather pads them).

**PyTorch operations (any device).** :func:`fused_step`: each rank reads its contiguous
shard of every batch, and the ``(row, gradient)`` pairs of both sides travel in one
all-gather (:func:`exchange`, buffers padded to :func:`capacity`); every rank applies the
same update to the concatenation.

Example:
    >>> ex = Exchanged()
    >>> ex.steps, ex.bytes_received
    (0, 0)
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from recfit.errors import RecfitError
from recfit.train import kernels
from recfit.train.batches import TensorData, n_batches, shuffled
from recfit.train.sparse import RowOptimizer

if TYPE_CHECKING:
    from recfit.train.distributed import DistContext

__all__ = [
    "SHARED_DIR",
    "WAIT_SECONDS",
    "Exchanged",
    "OwnedRows",
    "Shared",
    "capacity",
    "compiled_step",
    "exchange",
    "flush",
    "fused_step",
    "owned_batches",
    "replicate",
    "warm_up",
]

Rows = list[tuple[Tensor, Tensor]]


@dataclass
class Exchanged:
    """What a rank's row exchanges have moved so far.

    Attributes:
        steps: exchanges (one per step).
        rows_sent: ``(row, gradient)`` pairs this rank sent.
        bytes_sent: bytes of this rank's buffers (padding included).
        bytes_received: bytes of every rank's buffers this rank received (its own included).
        bytes_replicated: bytes this rank received from :func:`replicate` (not per step).
    """

    steps: int = 0
    rows_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    bytes_replicated: int = 0

    def count(self, pairs: int, sent: int, received: int) -> None:
        """Count one exchange of ``pairs`` pairs (bytes sent and received)."""
        self.steps += 1
        self.rows_sent += pairs
        self.bytes_sent += sent
        self.bytes_received += received


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
    ctx.exchanged.count(n_u + n_i, send.numel() * 4, recv.numel() * 4)
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


SHARED_DIR = "/dev/shm"
"""Where ranks on one machine map their shared exchange buffers (Linux tmpfs)."""
WAIT_SECONDS = 600.0
"""How long a rank waits for the others at an exchange through shared memory."""


def _shared_memory(ctx: DistContext, size: int) -> np.ndarray | None:
    """``size`` zeroed bytes that every rank of ``ctx`` maps (all of them call it at the
    same point), in a file of :data:`SHARED_DIR` removed as soon as every rank has it
    mapped; ``None`` (on every rank) when there is no such folder with room for it."""
    box: list[str | None] = [None]
    if ctx.rank == 0 and os.path.isdir(SHARED_DIR):
        st = os.statvfs(SHARED_DIR)
        if st.f_bavail * st.f_frsize > 2 * size:
            fd, box[0] = tempfile.mkstemp(prefix="recfit-dist-", dir=SHARED_DIR)
            os.ftruncate(fd, size)
            os.close(fd)
    dist.broadcast_object_list(box, src=0)
    name = box[0]
    if name is None:
        return None
    mem = np.memmap(name, dtype=np.uint8, mode="r+", shape=(size,))
    dist.barrier()  # every rank has it mapped: the name can go
    if ctx.rank == 0:
        os.unlink(name)
    return mem


class Shared:
    """The pair buffers of every rank on this machine in one shared-memory file, in two
    halves used at alternate steps, and an arrival counter: each rank's kernel writes
    its pairs into its part of this step's half, arrives, waits for every rank, then
    reads every part (no copy through sockets). A rank writes a half again only two
    steps later, after every rank has arrived at the step in between, so no rank still
    reads it.

    Every rank calls :meth:`open` at the same point; ``None`` when this machine has no
    shared-memory folder with room for it.
    """

    def __init__(self, mem: np.ndarray, world: int, rows: int, cols: int) -> None:
        self.mem = mem
        self.sync = mem[:64].view(np.int64)  # [arrivals, abort, ...]
        self.data = mem[64:].view(np.int32).reshape(2, world, rows, cols)
        self.world, self.rows, self.steps, self.turn = world, rows, 0, 0

    @classmethod
    def open(cls, ctx: DistContext, rows: int, cols: int) -> Shared | None:
        mem = _shared_memory(ctx, 64 + 2 * ctx.world * rows * cols * 4)
        return None if mem is None else cls(mem, ctx.world, rows, cols)

    def half(self) -> np.ndarray:
        """This step's half: ``(world, rows, cols)``."""
        half: np.ndarray = self.data[self.turn]
        return half

    def meet(self, rank: int) -> None:
        """Arrive at the next meeting point and wait for every rank."""
        kern = _compiled()
        kern.arrive(self.sync)
        self.steps += 1
        target = self.world * self.steps
        deadline = time.monotonic() + WAIT_SECONDS
        while (state := kern.wait(self.sync, target, 100_000)) == 0:
            if time.monotonic() > deadline:
                self.sync[1] = 1
                raise RecfitError(
                    f"expected every rank at exchange {self.steps} within {WAIT_SECONDS:.0f} "
                    f"s on rank {rank}, received {int(self.sync[0])} of {target} arrivals"
                )
        if state < 0:
            raise RecfitError(
                f"expected every rank at exchange {self.steps} on rank {rank}, received a "
                "stop from another rank (it failed)"
            )


class OwnedRows:
    """One rank's scratch for the compiled scheme (see the module docs), kept across
    steps on :attr:`DistContext.owned`: the kernels' buffers and the pair buffers
    (:class:`Shared` when every rank is on this machine, else a send buffer and a
    receive buffer for the all-gather), sized for what this rank can need: its own
    ratings of a batch, the most pairs one rank can send in it, and every rank's pairs."""

    def __init__(self, opt: RowOptimizer, ctx: DistContext) -> None:
        m = opt.model
        self.opt, self.ctx, self.rank, self.world = opt, ctx, ctx.rank, ctx.world
        self.k1 = m.n_factors + 1
        self.n_items = m.n_items
        self.buf = kernels.RowStepBuffers(m.n_users, m.n_items, m.n_factors)
        self.epoch_rows: tuple[TensorData, np.ndarray, tuple[np.ndarray, ...]] | None = None
        self.n = self.every = self.pairs = self.shared_rows = self.cap1 = 0
        self.shared: Shared | None = None
        self.items_shared = False
        self.ensure(1, 1, local=True)

    def ensure(self, n: int, pairs: int, total: int | None = None, *, local: bool = False) -> None:
        """Hold ``n`` of this rank's ratings, ``pairs`` pairs in each rank's buffer (the
        same on every rank, as ``total``) and the pairs of every rank (at most ``total``,
        the global batch's ratings). ``local``: no shared buffers, no communication."""
        every = self.world * pairs if total is None else min(self.world * pairs, total)
        if n > self.n or every > self.every:
            self.n, self.every = max(n, self.n), max(every, self.every)
            self.buf.ensure(max(self.n, self.every))  # every rank's pairs are grouped there
            self.out = np.empty(self.n, np.float32)
            size = max(self.n, self.every) + 1
            self.rows, self.pos = np.empty(size, np.int64), np.empty(size, np.int64)
        if pairs > self.pairs:  # an eighth more: fewer regrowths (the same on every rank)
            self.pairs = max(pairs, min(self.pairs + self.pairs // 8, self.n_items))
            self.send = np.zeros((self.pairs + 1, self.k1 + 1), np.int32)
            self.recv = np.zeros((self.world * (self.pairs + 1), self.k1 + 1), np.int32)
        if not local and self.ctx.shared_memory and self.pairs + 1 > self.shared_rows:
            self.shared_rows = self.pairs + 1
            self.shared = Shared.open(self.ctx, self.shared_rows, self.k1 + 1)
            if self.shared is not None and not self.items_shared:
                self._share_items()

    def _share_items(self) -> None:
        """Move the items' tables, optimiser state and decay logs into memory every rank
        maps (rank 0's values, the same on every rank): then each rank updates only its
        own items (``item % world == rank``), once for all."""
        opt, m = self.opt, self.opt.model
        names = list(opt.state_names)
        now = [m.item_factors.data, m.item_bias.data, *(getattr(opt, n)[1] for n in names)]
        sizes = [-(-t.numel() * t.element_size() // 64) * 64 for t in now]
        if self.world + 2 > self.k1 + 1:  # owners' segments must fit in a header row
            return
        mem = _shared_memory(self.ctx, sum(sizes))
        if mem is None:
            return
        views, off = [], 0
        for t, size in zip(now, sizes, strict=True):
            a = t.numpy()
            v = mem[off : off + a.nbytes].view(a.dtype).reshape(a.shape)
            if self.rank == 0:
                v[...] = a
            views.append(torch.from_numpy(v))
            off += size
        dist.barrier()  # rank 0 has written them
        m.item_factors.data, m.item_bias.data = views[0], views[1]
        for n, v in zip(names, views[2:], strict=True):
            getattr(opt, n)[1] = v
        self.items_shared = True

    def step(
        self,
        batch: dict[str, Tensor],
        w_tot: float,
        reg: float,
        threads: int | None,
        *,
        warm: bool = False,
    ) -> tuple[int, int, float, float]:
        """The kernel half of a step on this rank's ratings of a global batch (as
        :func:`owned_batches` gives them): its users updated, its items' pairs packed
        (into this step's shared half, else ``send``). Returns ``(ratings, pairs, Σ loss,
        Σ penalty)`` of this rank. ``warm``: the compile warm-up's empty batch (no shared
        buffers, no collective). A rank with no ratings in a real batch still takes part:
        it opens the shared buffers with the others and writes its empty header where
        they read it."""
        opt, buf = self.opt, self.buf
        cols = [batch[k].numpy() for k in ("user", "item", "rating", "weight")]
        n = cols[0].shape[0]
        total = batch.get("rows_total")  # the global batch (the same on every rank)
        pairs = self._pairs_cap(batch, n, warm)
        self.ensure(n, pairs, None if total is None else int(total), local=warm)
        self.cap1 = pairs + 1
        send = self.send if self.shared is None or warm else self.shared.half()[self.rank]
        consts, before = opt._next_consts()
        self.consts, self.decay = consts, (before, opt.log_decay)
        (uf, ub), (itf, ib) = opt._tables()
        (mom_u, vel_u), _ = opt._kernel_state()
        mu, lo, span, squash = opt._model_consts()
        kern = kernels._kernels()
        self.parts = kernels._parts(kern, threads, buf)
        sums = kernels._WORKERS.run(
            _compiled().owned_part, self.parts, buf.sync,
            (
                *cols, float(w_tot), uf, ub, itf, ib,
                (float(mu), float(lo), float(span), float(squash)), float(reg), mom_u, vel_u,
                opt.row_decay[0].numpy(), consts, *self.decay, self.out, buf.dx, buf.slots[0],
                buf.slots[1], buf.uniq, buf.start, buf.order, buf.row_slot, buf.counts,
                buf.bounds, buf.saved, buf.grad, send.view(np.float32), send,
                self.world if self.items_shared else 1, self.rows, self.pos,
            ),
        )  # fmt: skip
        loss = sum(x[0] for x in sums)
        pen = sum(x[1] for x in sums)
        return n, int(send[0, 0]), loss, pen

    def _pairs_cap(self, batch: dict[str, Tensor], n: int, warm: bool) -> int:
        """The most pairs a rank sends for ``batch`` (the same on every rank): the
        batch's ``pairs_cap``, else this rank's bound agreed on (all-reduced) with the
        others (only this rank's for ``warm``)."""
        cap = batch.get("pairs_cap")
        if cap is not None:
            return int(cap)
        mine = min(n, self.n_items)
        if warm:
            return mine
        most = torch.tensor([mine])
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        return int(most)

    def apply(self, recv: np.ndarray, cap1: int) -> None:
        """The items' update from every rank's ``cap1`` rows of ``recv`` (only this rank's
        items when the items' tables are shared)."""
        opt, buf = self.opt, self.buf
        _, (itf, ib) = opt._tables()
        _, (mom_i, vel_i) = opt._kernel_state()
        kernels._WORKERS.run(
            _compiled().union_part, self.parts, buf.sync,
            (
                self.world, cap1, *((self.world, self.rank) if self.items_shared else (1, 0)),
                recv.view(np.float32), recv, itf, ib, mom_i, vel_i,
                opt.row_decay[1].numpy(), self.consts, *self.decay, buf.slots[1],
                self.rows, self.pos, buf.uniq, buf.start, buf.order, buf.row_slot,
                buf.counts, buf.bounds, buf.grad,
            ),
        )  # fmt: skip


def owned_batches(
    opt: RowOptimizer,
    ctx: DistContext,
    data: TensorData,
    bs: int,
    generator: torch.Generator,
    drop_last: bool = False,
    *,
    skip: int = 0,
) -> Iterator[dict[str, Tensor]]:
    """This rank's ratings of every global batch of one epoch (its users', in batch
    order), as :meth:`TensorData.epoch` would cut the batches from ``generator`` (the
    same permutation on every rank; the first ``skip`` batches left out). Each batch
    also holds ``weight_total`` (the global batch's Σw), ``rows_total`` (its size) and
    ``pairs_cap`` (the most ratings of one rank in it, at most the items: what bounds
    a rank's pairs). The columns are read from one packed record per rating, made at
    the first epoch (:func:`~recfit.train._kernels_dist.owned_epoch`)."""
    own = _owned(opt, ctx)
    n = len(data)
    nb = n_batches(n, bs, drop_last)
    perm = shuffled(n, generator).numpy()
    if own.epoch_rows is None or own.epoch_rows[0] is not data:
        packed = np.empty((n, 4), np.int32)
        for c, k in enumerate(("user", "item")):
            packed[:, c] = data.columns[k].numpy()
        for c, k in ((2, "rating"), (3, "weight")):
            packed[:, c] = data.columns[k].numpy().astype(np.float32).view(np.int32)
        m = int(np.count_nonzero(packed[:, 0] % ctx.world == ctx.rank))  # this rank's
        made = tuple(np.empty(m, t) for t in (np.int64, np.int64, np.float32, np.float32))
        own.epoch_rows = (data, packed, made)
    _, packed, cols = own.epoch_rows
    bounds = np.minimum(np.arange(nb + 1, dtype=np.int64) * bs, n)
    if not drop_last:
        bounds[-1] = n
    starts = np.empty(nb + 1, np.int64)
    per_rank = np.empty((nb, ctx.world), np.int64)
    w_tot = np.empty(nb, np.float64)
    _compiled().owned_epoch(perm, packed, packed.view(np.float32), bounds, ctx.world,
                            ctx.rank, *cols, starts, per_rank, w_tot)  # fmt: skip
    tensors = [torch.from_numpy(c) for c in cols]
    cap = np.minimum(per_rank.max(axis=1), own.n_items)
    if skip < nb:  # this epoch's largest batches at once (every rank at the same point)
        rest = slice(skip, nb)
        own.ensure(int(np.diff(starts)[rest].max()), int(cap[rest].max()),
                   int(np.diff(bounds)[rest].max()))  # fmt: skip
    for b in range(skip, nb):
        lo, hi = int(starts[b]), int(starts[b + 1])
        batch = {k: t[lo:hi] for k, t in zip(("user", "item", "rating", "weight"), tensors,
                                              strict=True)}  # fmt: skip
        batch["weight_total"] = torch.tensor(w_tot[b], dtype=torch.float32)
        batch["rows_total"] = torch.tensor(int(bounds[b + 1] - bounds[b]))
        batch["pairs_cap"] = torch.tensor(int(cap[b]))
        yield batch


def _compiled() -> Any:
    from recfit.train import _kernels_dist  # numba, on first use

    return _kernels_dist


def _owned(opt: RowOptimizer, ctx: DistContext) -> OwnedRows:
    if ctx.owned is None or ctx.owned.opt is not opt:
        ctx.owned = OwnedRows(opt, ctx)
    owned: OwnedRows = ctx.owned
    return owned


@torch.no_grad()
def compiled_step(
    opt: RowOptimizer,
    ctx: DistContext,
    batch: dict[str, Tensor],
    w_tot: float,
    reg: float,
    threads: int | None = None,
) -> tuple[Tensor, float, float]:
    """:meth:`RowOptimizer.compiled_step` for one rank and its ratings of a global batch
    (:func:`owned_batches`; ``w_tot`` the global batch's Σw): the compiled step on them,
    the items' exchange, the items' update (see the module docs). Returns this rank's
    predictions (its ratings in batch order) and its part of the loss and penalty
    (``Σ`` over its ratings ``/ w_tot``)."""
    own = _owned(opt, ctx)
    try:
        n, _, loss, pen = own.step(batch, w_tot, reg, threads)
    except BaseException:
        if own.shared is not None:
            own.shared.sync[1] = 1  # the other ranks stop waiting
        raise
    row_b = (own.k1 + 1) * 4
    shared = own.shared
    if shared is not None:
        try:
            half = shared.half()
            shared.meet(ctx.rank)  # every rank's pairs are written
            sizes = [int(c) + 1 for c in half[:, 0, 0]]
            sent = sizes[ctx.rank] * row_b
            ctx.exchanged.count(sizes[ctx.rank] - 1, sent, sum(sizes) * row_b)
            own.apply(half.reshape(-1, own.k1 + 1), shared.rows)
            if own.items_shared:
                shared.meet(ctx.rank)  # every item is updated before the next step reads
            shared.turn ^= 1
        except BaseException:
            shared.sync[1] = 1  # the other ranks stop waiting
            raise
    else:  # every rank's buffer padded to the most pairs a rank can send
        cap1 = own.cap1
        send = torch.from_numpy(own.send[:cap1])
        recv = torch.from_numpy(own.recv[: ctx.world * cap1]).view(ctx.world, cap1, own.k1 + 1)
        dist.all_gather(list(recv.unbind()), send)
        ctx.exchanged.count(int(own.send[0, 0]), cap1 * row_b, ctx.world * cap1 * row_b)
        own.apply(own.recv[: ctx.world * cap1], cap1)
    ctx.replicas_stale = True
    return torch.from_numpy(own.out[:n].copy()), loss, pen


@torch.no_grad()
def flush(opt: RowOptimizer, ctx: DistContext) -> None:
    """:meth:`RowOptimizer.flush` under :func:`compiled_step`, then :func:`replicate`:
    with shared item tables each rank flushes its own items only (once for all).
    Every rank calls it at the same point."""
    own = ctx.owned
    if own is None or own.opt is not opt or not own.items_shared:
        opt.flush()
    elif opt.log_decay != 0.0:
        opt.flush(items=slice(ctx.rank, None, ctx.world))
        dist.barrier()  # every item is flushed before any rank reads it
    replicate(opt, ctx)


@torch.no_grad()
def replicate(opt: RowOptimizer, ctx: DistContext) -> None:
    """Copy every user's row, optimiser state and decay log from the rank that owns it
    (:func:`compiled_step`) to every other rank; nothing when no step ran since the last
    copy. Every rank calls it at the same point."""
    if not ctx.replicas_stale:
        return
    m = opt.model
    n, world = m.n_users, ctx.world
    size = -(-n // world)
    tables = [m.user_factors.data, m.user_bias.data]
    for t in [*tables, *(getattr(opt, name)[0] for name in opt.state_names)]:
        rows = t.view(n, -1)
        send = torch.zeros((size, rows.shape[1]), dtype=t.dtype)
        mine = rows[ctx.rank :: world]
        send[: mine.shape[0]] = mine
        parts = [torch.empty_like(send) for _ in range(world)]
        dist.all_gather(parts, send)
        for r, part in enumerate(parts):
            if r != ctx.rank:
                theirs = rows[r::world]
                theirs.copy_(part[: theirs.shape[0]])
        ctx.exchanged.bytes_replicated += world * send.numel() * send.element_size()
    ctx.replicas_stale = False


def warm_up(opt: RowOptimizer, ctx: DistContext, batch: dict[str, Tensor]) -> None:
    """Compile (or load) the kernels of :func:`compiled_step` on an empty batch (no
    change, no communication)."""
    own = _owned(opt, ctx)
    empty = {k: batch[k][:0] for k in ("user", "item", "rating", "weight")}
    step, log_decay = opt.step_count, opt.log_decay
    own.step(empty, 1.0, 0.0, None, warm=True)
    recv = np.zeros((ctx.world, own.k1 + 1), np.int32)  # no pairs from any rank
    own.apply(recv, 1)
    opt.step_count, opt.log_decay = step, log_decay
