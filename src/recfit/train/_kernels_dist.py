"""The numba kernels of the distributed row-wise step (:mod:`recfit.train.sparse_dist`).

Imported on first use. A user belongs to rank ``user % world``, and a rank trains only
the ratings of its own users:

* :func:`owned_epoch` reads one epoch's global batches (the permutation every rank
  draws) from one packed record per rating and keeps this rank's ratings, batch after
  batch, with each batch's total weight and each rank's count of its ratings;
* :func:`owned_part` runs the row-wise step of :mod:`recfit.train._kernels_numba` on
  this rank's ratings of a batch (as :func:`owned_epoch` cut them): the users' rows are
  updated in place (no other rank reads them), the items' summed gradients are written
  into the send buffer, each row ``[g (k + 1 float32 as bits), item]`` after a header
  row ``[pairs, ...]``;
* :func:`union_part` reads every rank's buffer after the exchange (rank order), sums
  each item's gradients in that order and applies the same update on every rank.

Ranks on one machine exchange through shared memory: :func:`arrive` and :func:`wait`
are the arrival counter they meet at. :func:`owned_part` and :func:`union_part` are run
by ``n`` threads at once like :func:`recfit.train._kernels_numba.step_part` (each with
its part ``c``, meeting at barriers). Everything is cached under the user's cache
folder (:func:`recfit.models._compiled.cached_njit`).
"""

# mypy: ignore-errors
from __future__ import annotations

import numpy as np

from recfit.models._compiled import cached_njit
from recfit.train._kernels_numba import (
    AHEAD,
    INNER,
    SPINS,
    _arrive,
    _load_acquire,
    _prefetch,
    _yield_cpu,
    barrier,
    group,
    group_side,
    item_rows,
    split,
    sum_update,
    user_rows,
)

__all__ = ["arrive", "owned_epoch", "owned_part", "union_part", "wait"]

_HELPER = {k: v for k, v in INNER.items() if k not in ("cache", "nogil")}
""":data:`recfit.train._kernels_numba.INNER` for :func:`cached_njit` (no reference
counting in the row loops)."""


@cached_njit()
def owned_part(c, sync, users, items, ratings, weights, w_tot, uf, ub, itf, ib, model, reg,  # type: ignore[no-untyped-def]
               mom_u, vel_u, rd_u, consts, before, after, out, dx, slots_u, slots_i, uniq, start,
               order, row_slot, counts, bounds, saved, grad, send_f, send_i, owners, scratch_a,
               scratch_b):  # fmt: skip
    """Part ``c`` of one rank's step on its ratings of a batch (those of its users, from
    :func:`owned_epoch`; see the module docs).

    ``out``/``dx`` are the ratings'. The users' rows are updated (``consts``,
    ``before``, ``after`` as in ``step_part``); the items' gradients go to ``send_f[1:]``
    (their rows in the last column of ``send_i``, their number in ``send_i[0, 0]``).
    With ``owners > 1`` the items are written grouped by their owner ``item % owners``,
    owner ``o``'s from row ``send_i[0, 1 + o]`` (:func:`by_owner`; ``scratch_*`` hold at
    least the ratings plus one). Returns the part's ``(Σ loss, Σ penalty)``."""
    parts = bounds.shape[1] - 1
    group_side(c, users, items, slots_u, slots_i, uniq, start, order, row_slot, counts, bounds)
    if not barrier(sync, parts):
        return 0.0, 0.0
    n_u, n_i = counts[0], counts[1]
    k1 = send_i.shape[1] - 1
    if c == 0:
        send_i[0, 0] = n_i
        if owners > 1:
            by_owner(n_i, owners, uniq[1], start[1], order[1], scratch_a, scratch_b,
                     row_slot[1], send_i[0, 1 : owners + 2])  # fmt: skip
            split(start[1], n_i, bounds[1])
    inv_tot = np.float32(1.0 / w_tot)
    loss, pen = user_rows(
        bounds[0, c], bounds[0, c + 1], n_u, uniq[0], start[0], order[0], items, ratings,
        weights, inv_tot, uf, ub, itf, ib, model, reg, out, dx, saved, grad, mom_u, vel_u,
        rd_u, consts, before, after, True,
    )  # fmt: skip
    if not barrier(sync, 2 * parts):
        return loss, pen
    lo, hi = bounds[1, c], bounds[1, c + 1]
    pen += item_rows(
        lo, hi, n_i, uniq[1], start[1], order[1], dx, weights, inv_tot, itf, ib, saved,
        row_slot[0], reg, send_f[1:], mom_u, vel_u, rd_u, consts, before, after, False,
    )  # fmt: skip
    for s in range(lo, hi):
        send_i[1 + s, k1] = uniq[1, s]
    return loss, pen


@cached_njit()
def union_part(c, sync, world, cap1, owners, owner, recv_f, recv_i, itf, ib, mom, vel, rd,  # type: ignore[no-untyped-def]
               consts, before, after, slots, rows, pos, uniq, start, order, row_slot, counts,
               bounds, gsum):  # fmt: skip
    """Part ``c`` of the items' update from every rank's buffer (``world`` blocks of
    ``cap1`` rows in ``recv_f``/``recv_i``, as :func:`owned_part` wrote them): group the
    pairs by item (rank order; with ``owners > 1`` only the segment of the items of
    ``owner``), sum each item's gradients in that order, update the row. ``rows``/``pos``
    receive each pair's item and buffer row."""
    parts = bounds.shape[1] - 1
    k1 = recv_i.shape[1] - 1
    if c == 0:
        t = 0
        for r in range(world):
            base = r * cap1
            lo, hi = 0, recv_i[base, 0]
            if owners > 1:  # this rank's items: a segment of each buffer
                lo, hi = recv_i[base, 1 + owner], recv_i[base, 2 + owner]
            for s in range(lo, hi):
                p = base + 1 + s
                rows[t] = recv_i[p, k1]
                pos[t] = p
                t += 1
        counts[1] = group(rows[:t], slots, uniq[1], start[1], order[1], row_slot[1])
        split(start[1], counts[1], bounds[1])
        for q in range(t):  # each pair's buffer row
            order[1, q] = pos[order[1, q]]
    if not barrier(sync, parts):
        return
    sum_update(bounds[1, c], bounds[1, c + 1], counts[1], uniq[1], start[1], order[1],
               recv_f[:, :k1], itf, ib, mom, vel, rd, consts, before, after, gsum)  # fmt: skip


@cached_njit(**_HELPER)
def by_owner(n, owners, uniq, start, order, new_uniq, new_start, new_order, seg):  # type: ignore[no-untyped-def]
    """Reorder the ``n`` slots grouped by :func:`group` (``uniq``, ``start``, ``order``)
    so that the rows of owner ``o`` (``row % owners``) come together, from slot
    ``seg[o]`` (``seg[owners] = n``), each group in its first order; ``new_*`` are
    scratch (``n + 1`` entries and the ratings). One counting sort: O(n + ratings +
    owners)."""
    for o in range(owners + 1):
        seg[o] = 0
    for s in range(n):
        seg[uniq[s] % owners + 1] += 1
    for o in range(owners):
        seg[o + 1] += seg[o]  # seg[o + 1]: the end of owner o's slots
    for s in range(n - 1, -1, -1):  # backwards from each end: each group keeps its order
        e = uniq[s] % owners + 1
        seg[e] -= 1
        new_uniq[seg[e]] = s  # the old slot, for now
    for o in range(owners):  # seg[o + 1] is now the start of owner o's slots
        seg[o] = seg[o + 1]
    seg[owners] = n
    t = 0
    for m in range(n):
        s = new_uniq[m]
        new_start[m] = t
        for q in range(start[s], start[s + 1]):
            new_order[t] = order[q]
            t += 1
        new_uniq[m] = uniq[s]
    new_start[n] = t
    for s in range(n):
        uniq[s] = new_uniq[s]
        start[s] = new_start[s]
    start[n] = new_start[n]
    for q in range(t):
        order[q] = new_order[q]


@cached_njit()
def arrive(sync):  # type: ignore[no-untyped-def]
    """Count this rank's arrival at the next step's exchange (``sync[0]``, atomic: every
    write before it is seen by a rank that sees the count)."""
    _arrive(sync, 0)


@cached_njit()
def wait(sync, target, tries):  # type: ignore[no-untyped-def]
    """Wait until ``sync[0]`` reaches ``target`` (1), another rank gave up (``sync[1]``
    set: -1) or ``tries`` checks passed (0); after a short spin each check yields the
    core."""
    for t in range(tries):
        if _load_acquire(sync, 0) >= target:
            return 1
        if _load_acquire(sync, 1) != 0:
            return -1
        if t > SPINS:
            _yield_cpu()
    return 0


@cached_njit()
def owned_epoch(perm, packed, packed_f, bounds, world, rank, own_u, own_i, own_r, own_w,  # type: ignore[no-untyped-def]
                own_start, per_rank, w_tot):  # fmt: skip
    """This rank's ratings of one epoch, batch after batch: the rows ``perm[bounds[b]:
    bounds[b + 1]]`` of batch ``b`` read from ``packed`` (``(n, 4)``: user, item, then
    rating and weight as float32 bits, also seen as ``packed_f``), one record per row;
    those of this rank's users go to ``own_*`` (batch ``b``'s from ``own_start[b]``),
    ``per_rank[b, r]`` counts rank ``r``'s and ``w_tot[b]`` sums the batch's weights."""
    m = 0
    for b in range(bounds.shape[0] - 1):
        own_start[b] = m
        w = 0.0
        for r in range(world):
            per_rank[b, r] = 0
        hi = bounds[b + 1]
        for j in range(bounds[b], hi):
            a = j + 4 * AHEAD
            if a < hi:
                _prefetch(packed, perm[a], 0)
            p = perm[j]
            u = packed[p, 0]
            r = u % world
            per_rank[b, r] += 1
            w += packed_f[p, 3]
            if r == rank:
                own_u[m] = u
                own_i[m] = packed[p, 1]
                own_r[m] = packed_f[p, 2]
                own_w[m] = packed_f[p, 3]
                m += 1
        w_tot[b] = w
    own_start[bounds.shape[0] - 1] = m
