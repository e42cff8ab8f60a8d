"""The numba kernels behind :mod:`recfit.train.kernels` (imported on first use).

numba picks each function's cache folder when it is decorated, from ``config.CACHE_DIR``
first, so this module points it at :func:`kernels.numba_cache_dir` for its own import and
puts the setting back at the end: whoever imports it (``kernels._kernels``, a doctest
collector), the kernels are cached there and never beside the installed package.

Module-level functions so that numba's on-disk cache finds them again in the next process;
compiling them takes several seconds, loading them from the cache a fraction of a second.
Without a writable cache folder they are compiled without a cache (``CACHE`` is false).
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from recfit.train.kernels import numba_cache_dir

__all__ = ["apply", "step"]

_CACHE_DIR = numba_cache_dir()
CACHE = _CACHE_DIR is not None
"""Whether the kernels are cached on disk (a writable cache folder)."""
_SAVED_CACHE_DIR = numba.config.CACHE_DIR
numba.config.CACHE_DIR = "" if _CACHE_DIR is None else str(_CACHE_DIR)  # restored at the end

AHEAD = 6
"""Rows prefetched this many slots ahead (the loops are bound by memory latency)."""


@intrinsic
def _prefetch(typingctx, arr, i, j):
    """Ask the CPU to start loading the cache line of ``arr[i]`` (1-D) or ``arr[i, j]``."""
    if not isinstance(arr, types.Array) or arr.ndim not in (1, 2):
        return None
    sig = types.void(arr, i, j)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[1], signature.args[1], types.intp)]
        if aryty.ndim == 2:
            idx.append(context.cast(builder, args[2], signature.args[2], types.intp))
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read (0), high temporal locality (3), data cache (1)
        builder.call(
            fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                 ir.Constant(i32, 1)],
        )  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=CACHE, nogil=True, inline="always")
def prefetch_row(arr, r):
    """Prefetch every cache line of row ``r`` of a 2-D float32 array."""
    for f in range(0, arr.shape[1], 16):
        _prefetch(arr, r, f)
    _prefetch(arr, r, arr.shape[1] - 1)


@njit(cache=CACHE, nogil=True, inline="always")
def prefetch_state(r, fac, bias, mom, vel, rdecay, rule):
    """Prefetch what updating row ``r`` reads: factors, bias, optimiser state, decay log."""
    prefetch_row(fac, r)
    _prefetch(bias, r, 0)
    _prefetch(rdecay, r, 0)
    if rule == 0.0:
        prefetch_row(mom, r)
        prefetch_row(vel, r)
    else:
        _prefetch(vel, r, 0)


@njit(cache=CACHE, nogil=True)
def group(rows, slot, uniq, start, order, row_slot):  # type: ignore[no-untyped-def]
    # unique rows in order of first appearance; order[start[s]:start[s+1]] are the
    # batch positions of row uniq[s], in batch order; row_slot[j] is the slot of j
    n = rows.shape[0]
    m = 0
    for j in range(n):
        r = rows[j]
        if slot[r] < 0:
            slot[r] = m
            uniq[m] = r
            start[m + 1] = 0
            m += 1
        row_slot[j] = slot[r]
        start[slot[r] + 1] += 1
    start[0] = 0
    for s in range(m):
        start[s + 1] += start[s]
    for j in range(n):
        s = row_slot[j]
        order[start[s]] = j
        start[s] += 1
    for s in range(m - 1, 0, -1):
        start[s] = start[s - 1]
    start[0] = 0
    for s in range(m):
        slot[uniq[s]] = -1
    return m


@njit(parallel=True, cache=CACHE, nogil=True)
def group_both(users, items, slots_u, slots_i, uniq, start, order, row_slot, counts):  # type: ignore[no-untyped-def]
    for side in prange(2):
        if side == 0:
            counts[0] = group(users, slots_u, uniq[0], start[0], order[0], row_slot[0])
        else:
            counts[1] = group(items, slots_i, uniq[1], start[1], order[1], row_slot[1])


@njit(cache=CACHE, nogil=True, inline="always")
def update_row(p, b, r, g, mom, vel, rdecay, c, before, after):  # type: ignore[no-untyped-def]
    """One row's update: factors ``p[:k]``, bias ``b[r]``, gradient ``g[:k+1]``.

    ``c[6]`` selects the rule: 0 is AdamW (moments ``mom[r]``, ``vel[r]``, constants
    keep, beta1, beta2, lr / bias correction 1, 1 / sqrt(bias correction 2), eps), 1 is
    row-wise Adagrad (accumulators ``vel[r, 0]`` of the factors' mean squared gradient
    and ``vel[r, 1]`` of the bias's squared gradient; constants keep, -, -, lr, -, eps).
    Both apply the decoupled decay the row is owed.
    """
    keep = c[0]
    owed = keep
    if before != 0.0:
        owed = np.float32(math.exp(before - rdecay[r])) * keep
    if after != 0.0:
        rdecay[r] = after
    k = p.shape[0]
    if c[6] == 0.0:
        one = np.float32(1.0)
        b1, b2, step_size, inv_bc2, e = c[1], c[2], c[3], c[4], c[5]
        mr = mom[r]
        vr = vel[r]
        for f in range(k + 1):
            gf = g[f]
            mm = mr[f] + (one - b1) * (gf - mr[f])
            vv = b2 * vr[f] + (one - b2) * gf * gf
            mr[f] = mm
            vr[f] = vv
            upd = step_size * mm / (np.sqrt(vv) * inv_bc2 + e)
            if f < k:
                p[f] = p[f] * owed - upd
            else:
                b[r] = b[r] * owed - upd
    else:
        sq = np.float32(0.0)
        for f in range(k):
            sq += g[f] * g[f]
        acc = vel[r, 0] + sq / np.float32(max(k, 1))
        vel[r, 0] = acc
        rate = c[3] / (np.sqrt(acc) + c[5])
        for f in range(k):
            p[f] = p[f] * owed - rate * g[f]
        acc_b = vel[r, 1] + g[k] * g[k]
        vel[r, 1] = acc_b
        b[r] = b[r] * owed - c[3] / (np.sqrt(acc_b) + c[5]) * g[k]


@njit(cache=CACHE, nogil=True, inline="always")
def add_penalty(g, p, b, coef):  # type: ignore[no-untyped-def]
    """Add the L2 penalty's gradient ``coef · [p, b]`` to ``g``; return ``|p|² + b²``."""
    k = p.shape[0]
    sq = b * b
    for f in range(k):
        g[f] += coef * p[f]
        sq += p[f] * p[f]
    g[k] += coef * b
    return sq


@njit(cache=CACHE, nogil=True, inline="always")
def user_grad(r, lo_t, hi_t, ou, items, ratings, weights, inv_tot, uf, ub, itf, ib, mu32,  # type: ignore[no-untyped-def]
              lo32, span32, squash, reg, two_reg, out, dx, keep_row, g):  # fmt: skip
    """Forward pass of user ``r``'s ratings ``ou[lo_t:hi_t]`` (batch order), their loss,
    ``dx`` and the row's gradient with its penalty into ``g``; the row is copied to
    ``keep_row``. Returns the row's ``(Σ loss, Σ penalty)``."""
    k = uf.shape[1]
    one = np.float32(1.0)
    pu = uf[r]
    for f in range(k):
        keep_row[f] = pu[f]
        g[f] = 0.0
    bu = ub[r]
    keep_row[k] = bu
    w_row = np.float32(0.0)
    d_sum = np.float32(0.0)
    loss = 0.0
    for t in range(lo_t, hi_t):
        j = ou[t]
        qi = itf[items[j]]
        x = mu32 + bu + ib[items[j]]
        for f in range(k):
            x += pu[f] * qi[f]
        if squash:
            sg = one / (one + np.exp(-x))
            o = lo32 + span32 * sg
            dsig = span32 * sg * (one - sg)
        else:
            o = x
            dsig = one
        out[j] = o
        scale = weights[j] * inv_tot
        e = o - ratings[j]
        loss += e * e * scale
        d = np.float32(2.0) * e * scale * dsig
        dx[j] = d
        w_row += scale
        d_sum += d
        for f in range(k):
            g[f] += d * qi[f]
    g[k] = d_sum
    return loss, reg * w_row * add_penalty(g, pu, bu, two_reg * w_row)


@njit(cache=CACHE, nogil=True, inline="always")
def item_grad(qi, bi, lo_t, hi_t, oi, dx, weights, inv_tot, saved, slot_u, reg, two_reg, g):  # type: ignore[no-untyped-def]
    """Item row ``qi`` (bias ``bi``): its gradient from the users' rows kept in ``saved``
    and the ratings ``oi[lo_t:hi_t]``, with its penalty, into ``g``; returns the penalty."""
    k = qi.shape[0]
    for f in range(k + 1):
        g[f] = 0.0
    w_row = np.float32(0.0)
    for t in range(lo_t, hi_t):
        j = oi[t]
        d = dx[j]
        pu = saved[slot_u[j]]
        for f in range(k):
            g[f] += d * pu[f]
        g[k] += d
        w_row += weights[j] * inv_tot
    return reg * w_row * add_penalty(g, qi, bi, two_reg * w_row)


@njit(parallel=True, cache=CACHE, nogil=True, fastmath={"contract", "arcp", "afn"})
def step(users, items, ratings, weights, w_tot, uf, ub, itf, ib, mu, lo, span, squash,  # type: ignore[no-untyped-def]
         reg, mom_u, vel_u, rd_u, mom_i, vel_i, rd_i, consts, before, after,
         out, dx, slots_u, slots_i, uniq, start, order, row_slot, counts, saved, grad, update):  # fmt: skip
    """One batch's forward pass, loss, gradient of every looked-up row and (``update``)
    the rows' optimiser step. Without ``update`` (distributed training sums the ranks'
    gradients first) the optimiser state is not read and the tables are not changed:
    users' gradients are in ``grad[:counts[0]]`` for the rows ``uniq[0, :counts[0]]``,
    then the items'."""
    group_both(users, items, slots_u, slots_i, uniq, start, order, row_slot, counts)
    mu32 = np.float32(mu)
    lo32 = np.float32(lo)
    span32 = np.float32(span)
    inv_tot = np.float32(1.0 / w_tot)
    two_reg = np.float32(2.0 * reg)
    loss = 0.0
    pen = 0.0
    # users: forward of their ratings, their gradient, their update; the old rows
    # are kept in ``saved`` for the items' gradient
    uu, su, ou = uniq[0], start[0], order[0]
    n_u = counts[0]
    for s in prange(n_u):
        a = s + AHEAD
        if a < n_u:
            if update:
                prefetch_state(uu[a], uf, ub, mom_u, vel_u, rd_u, consts[6])
            else:
                prefetch_row(uf, uu[a])
            for t in range(su[a], su[a + 1]):
                prefetch_row(itf, items[ou[t]])
                _prefetch(ib, items[ou[t]], 0)
        r = uu[s]
        g = grad[s]
        ls, ps = user_grad(r, su[s], su[s + 1], ou, items, ratings, weights, inv_tot, uf, ub,
                           itf, ib, mu32, lo32, span32, squash, reg, two_reg, out, dx,
                           saved[s], g)  # fmt: skip
        loss += ls
        pen += ps
        if update:
            update_row(uf[r], ub, r, g, mom_u, vel_u, rd_u, consts, before, after)
    # items: gradient from the users' old rows, then the update
    ui, si, oi, slot_u = uniq[1], start[1], order[1], row_slot[0]
    n_i = counts[1]
    for s in prange(n_i):
        a = s + AHEAD
        if a < n_i:
            if update:
                prefetch_state(ui[a], itf, ib, mom_i, vel_i, rd_i, consts[6])
            else:
                prefetch_row(itf, ui[a])
            for t in range(si[a], si[a + 1]):
                prefetch_row(saved, slot_u[oi[t]])
        r = ui[s]
        g = grad[counts[0] + s]
        pen += item_grad(itf[r], ib[r], si[s], si[s + 1], oi, dx, weights, inv_tot, saved,
                         slot_u, reg, two_reg, g)  # fmt: skip
        if update:
            update_row(itf[r], ib, r, g, mom_i, vel_i, rd_i, consts, before, after)
    return loss, pen


@njit(cache=CACHE, nogil=True, inline="always")
def sum_update(n, uniq, start, order, rows_g, fac, bias, mom, vel, rdecay, consts, before,  # type: ignore[no-untyped-def]
               after, gsum):  # fmt: skip
    """For each of the ``n`` unique rows: sum its gradients ``rows_g[order[...]]`` (in
    order of appearance) into ``gsum``, then update it (:func:`update_row`)."""
    kp = rows_g.shape[1]
    for s in prange(n):
        a = s + AHEAD
        if a < n:
            prefetch_state(uniq[a], fac, bias, mom, vel, rdecay, consts[6])
        g = gsum[s]
        for f in range(kp):
            g[f] = 0.0
        for t in range(start[s], start[s + 1]):
            gr = rows_g[order[t]]
            for f in range(kp):
                g[f] += gr[f]
        r = uniq[s]
        update_row(fac[r], bias, r, g, mom, vel, rdecay, consts, before, after)


@njit(parallel=True, cache=CACHE, nogil=True, fastmath={"contract", "arcp", "afn"})
def apply(rows_u, g_u, rows_i, g_i, uf, ub, itf, ib, mom_u, vel_u, rd_u, mom_i, vel_i, rd_i,  # type: ignore[no-untyped-def]
          consts, before, after, slots_u, slots_i, uniq, start, order, row_slot, counts, gsum):  # fmt: skip
    """Update the rows ``rows_u`` of the users' tables from their gradients ``g_u`` (one
    row each, ``k + 1`` columns; a repeated row's gradients are summed in order) and the
    items' ``rows_i`` from ``g_i``: the second half of :func:`step`."""
    group_both(rows_u, rows_i, slots_u, slots_i, uniq, start, order, row_slot, counts)
    n_u = counts[0]
    sum_update(n_u, uniq[0], start[0], order[0], g_u, uf, ub, mom_u, vel_u, rd_u, consts,
               before, after, gsum[:n_u])  # fmt: skip
    sum_update(counts[1], uniq[1], start[1], order[1], g_i, itf, ib, mom_i, vel_i, rd_i, consts,
               before, after, gsum[n_u:])  # fmt: skip


@njit(cache=CACHE, nogil=True, inline="always")
def _mix(x):
    """splitmix64's finaliser: a counter-based random 64-bit value."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    return x ^ (x >> np.uint64(31))


@njit(cache=CACHE, nogil=True, inline="always")
def _below(x, n):
    """An integer in ``[0, n)`` from the random 64-bit ``x`` (multiply-shift)."""
    return np.int64(((x >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(parallel=True, cache=CACHE, nogil=True)
def permutation(n, seed, n_buckets, n_chunks, out):
    """A uniformly random permutation of ``0..n-1`` into ``out`` (Rao-Sandelius).

    Every position draws one of ``n_buckets`` buckets; the buckets are concatenated in
    order and each is shuffled by Fisher-Yates. Random numbers come from a hash of
    ``(seed, counter)``, so the result depends on ``seed`` only, never on the threads.
    """
    key = _mix(np.uint64(seed))
    key2 = _mix(key ^ np.uint64(0x5851F42D4C957F2D))
    counts = np.zeros((n_chunks, n_buckets), np.int64)
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            counts[c, _below(_mix(key ^ np.uint64(i)), n_buckets)] += 1
    starts = np.empty(n_buckets + 1, np.int64)
    pos = 0
    for b in range(n_buckets):
        starts[b] = pos
        for c in range(n_chunks):
            cnt = counts[c, b]
            counts[c, b] = pos
            pos += cnt
    starts[n_buckets] = pos
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            b = _below(_mix(key ^ np.uint64(i)), n_buckets)
            out[counts[c, b]] = i
            counts[c, b] += 1
    for b in prange(n_buckets):
        lo = starts[b]
        for i in range(starts[b + 1] - 1, lo, -1):
            j = lo + _below(_mix(key2 ^ np.uint64(i)), i - lo + 1)
            t = out[i]
            out[i] = out[j]
            out[j] = t


@njit(parallel=True, cache=CACHE, nogil=True)
def take(src, perm, out):
    """``out[j] = src[perm[j]]`` on every thread."""
    for j in prange(perm.shape[0]):
        out[j] = src[perm[j]]


numba.config.CACHE_DIR = _SAVED_CACHE_DIR
