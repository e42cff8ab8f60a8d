"""The numba kernels behind :mod:`recfit.train.kernels` (imported on first use).

numba picks each function's cache folder when it is decorated, from ``config.CACHE_DIR``
first, so this module points it at :func:`kernels.numba_cache_dir` for its own import and
puts the setting back at the end: whoever imports it (``kernels._kernels``, a doctest
collector), the kernels are cached there and never beside the installed package.

Module-level functions so that numba's on-disk cache finds them again in the next process;
loading them from the cache takes a fraction of a second. Without a writable cache folder
they are compiled without a cache (``CACHE`` is false).

The row-wise step (:func:`step_part`) has no parallel loop: numba's typing and lowering
of ``prange`` took most of its compile time (about 8 s of the step's 8.4 s). It is a
plain function that ``n`` threads run at once, each on its own part
(:class:`recfit.train.kernels._Workers` starts them), meeting at :func:`barrier`; the
small helpers are inlined by LLVM (``forceinline``) rather than by
numba, and are compiled without Python wrappers (:data:`INNER`).
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from recfit.train.kernels import numba_cache_dir

__all__ = ["permutation_part", "step_part", "take_part"]

_CACHE_DIR = numba_cache_dir()
CACHE = _CACHE_DIR is not None
"""Whether the kernels are cached on disk (a writable cache folder)."""
_SAVED_CACHE_DIR = numba.config.CACHE_DIR
numba.config.CACHE_DIR = "" if _CACHE_DIR is None else str(_CACHE_DIR)  # restored at the end

INNER = {
    "cache": CACHE,
    "nogil": True,
    "no_cpython_wrapper": True,
    "no_cfunc_wrapper": True,
    "error_model": "numpy",
    "_nrt": False,
}
"""Options of the functions only compiled code calls: no wrappers for Python (a good part
of each function's compile time), no ``ZeroDivisionError`` checks, and no reference
counting (``_nrt``: they allocate nothing). With counting, each array a helper takes or each row
view it makes costs an atomic ``NRT_incref``/``NRT_decref`` call pair that survives LLVM's
inlining (numba prunes them only inside one function): per row and per rating, about a
third of the step's time on ml-1m batches."""

AHEAD = 6
"""Rows prefetched this many slots ahead (the loops are bound by memory latency)."""


def _noalias(dispatcher):
    """Compile ``dispatcher`` with every array argument marked ``noalias`` (none of its
    arrays shares memory with another), as numba does for the bodies of its parallel
    loops: LLVM then keeps rows in registers and vectorises without overlap checks."""
    compiler = dispatcher._compiler
    customize = compiler._customize_flags

    def flags_noalias(flags):
        flags = customize(flags)
        flags.noalias = True
        return flags

    compiler._customize_flags = flags_noalias
    return dispatcher


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


def _int64_op(name, doc, emit):
    """An intrinsic ``name(arr, i)`` on ``arr[i]`` (int64, 1-D): ``emit(builder, pointer)``."""

    def op(typingctx, arr, i):
        if not isinstance(arr, types.Array) or arr.dtype != types.int64 or arr.ndim != 1:
            return None

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(
                context, builder, aryty, ary, [args[1]], wraparound=False
            )
            return emit(builder, ptr)

        return types.int64(arr, i), codegen

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return intrinsic(op)


_arrive = _int64_op(
    "_arrive", "Atomically add one to ``arr[i]`` (sequentially consistent); the old value.",
    lambda builder, ptr: builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "seq_cst"),
)  # fmt: skip
_load_acquire = _int64_op(
    "_load_acquire", "Read ``arr[i]`` atomically, with acquire ordering.",
    lambda builder, ptr: builder.load_atomic(ptr, "acquire", 8),
)  # fmt: skip


@intrinsic
def _yield_cpu(typingctx):
    """``sched_yield()``: let another runnable task have this core."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        return builder.call(fn, [])

    return types.int32(), codegen


SPINS = 200
"""Checks of a barrier before each further check yields the core (the machine may be busy)."""


@njit(**INNER, forceinline=True)
def barrier(sync, target):
    """Arrive at a barrier of the threads running one kernel call (``sync[0]`` counts the
    arrivals) and wait until ``target`` threads have arrived (``True``) or one gave up
    (``sync[1]`` set: ``False``, the caller stops). Every write made before arriving is
    seen by every thread after it."""
    _arrive(sync, 0)
    spins = 0
    while _load_acquire(sync, 0) < target:
        if _load_acquire(sync, 1) != 0:
            return False
        spins += 1
        if spins > SPINS:
            _yield_cpu()
    return True


FAST = {"contract", "arcp", "afn"}
"""The step's fast-math flags: fused multiply-add, reciprocals and fast ``exp``/``sqrt``,
never reassociation (every sum keeps its order)."""


@njit(**INNER, forceinline=True)
def prefetch_row(arr, r):
    """Prefetch every cache line of row ``r`` of a 2-D float32 array."""
    for f in range(0, arr.shape[1], 16):
        _prefetch(arr, r, f)
    _prefetch(arr, r, arr.shape[1] - 1)


@njit(**INNER, forceinline=True)
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


@njit(**INNER)
def group(rows, slot, uniq, start, order, row_slot):  # type: ignore[no-untyped-def]
    # unique rows in order of first appearance; order[start[s]:start[s+1]] are the
    # batch positions of row uniq[s], in batch order (start[m] = n); row_slot[j] is
    # the slot of j
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


@njit(**INNER)
def split(start, n, bounds):
    """Cut the slots ``0..n`` (grouped by :func:`group`) into ``len(bounds) - 1``
    consecutive ranges ``bounds[c]:bounds[c + 1]`` of about equal work (a slot's ratings
    plus one for its row's update)."""
    parts = bounds.shape[0] - 1
    total = start[n] + n
    bounds[0] = 0
    for c in range(1, parts):
        target = total * c // parts
        lo, hi = bounds[c - 1], n
        while lo < hi:
            mid = (lo + hi) // 2
            if start[mid] + mid < target:
                lo = mid + 1
            else:
                hi = mid
        bounds[c] = lo
    bounds[parts] = n


@njit(**INNER, fastmath=FAST, forceinline=True)
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


@njit(**INNER, fastmath=FAST, forceinline=True)
def add_penalty(g, p, b, coef):  # type: ignore[no-untyped-def]
    """Add the L2 penalty's gradient ``coef · [p, b]`` to ``g``; return ``|p|² + b²``."""
    k = p.shape[0]
    sq = b * b
    for f in range(k):
        g[f] += coef * p[f]
        sq += p[f] * p[f]
    g[k] += coef * b
    return sq


@_noalias
@njit(**INNER, fastmath=FAST)
def user_rows(lo_s, hi_s, n_u, uu, su, ou, items, ratings, weights, inv_tot, uf, ub, itf, ib,  # type: ignore[no-untyped-def]
              model, reg, out, dx, saved, grad, mom, vel, rd, consts, before, after, update):  # fmt: skip
    """Users ``uu[lo_s:hi_s]``: the forward pass of their ratings ``ou[su[s]:su[s+1]]``
    (batch order), loss, ``dx``, each row's gradient with its penalty into ``grad[s]``,
    the old row into ``saved[s]``, and (``update``) the row's update. ``model`` is
    ``(mu, lo, span, squash)``. Returns the rows' ``(Σ loss, Σ penalty)``."""
    k = uf.shape[1]
    one = np.float32(1.0)
    mu32, lo32, span32 = np.float32(model[0]), np.float32(model[1]), np.float32(model[2])
    squash = model[3] != 0.0
    two_reg = np.float32(2.0 * reg)
    loss = 0.0
    pen = 0.0
    for s in range(lo_s, hi_s):
        a = s + AHEAD
        if a < n_u:
            if update:
                prefetch_state(uu[a], uf, ub, mom, vel, rd, consts[6])
            else:
                prefetch_row(uf, uu[a])
            for t in range(su[a], su[a + 1]):
                prefetch_row(itf, items[ou[t]])
                _prefetch(ib, items[ou[t]], 0)
        r = uu[s]
        g = grad[s]
        keep_row = saved[s]
        pu = uf[r]
        for f in range(k):
            keep_row[f] = pu[f]
            g[f] = 0.0
        bu = ub[r]
        keep_row[k] = bu
        w_row = np.float32(0.0)
        d_sum = np.float32(0.0)
        for t in range(su[s], su[s + 1]):
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
        pen += reg * w_row * add_penalty(g, pu, bu, two_reg * w_row)
        if update:
            update_row(pu, ub, r, g, mom, vel, rd, consts, before, after)
    return loss, pen


@_noalias
@njit(**INNER, fastmath=FAST)
def item_rows(lo_s, hi_s, n_i, ui, si, oi, dx, weights, inv_tot, itf, ib, saved, slot_u, reg,  # type: ignore[no-untyped-def]
              grad, mom, vel, rd, consts, before, after, update):  # fmt: skip
    """Items ``ui[lo_s:hi_s]``: each row's gradient from the users' old rows in ``saved``
    and the ratings ``oi[si[s]:si[s+1]]``, with its penalty, into ``grad[s]``, then
    (``update``) the row's update. Returns the rows' Σ penalty."""
    k = itf.shape[1]
    two_reg = np.float32(2.0 * reg)
    pen = 0.0
    for s in range(lo_s, hi_s):
        a = s + AHEAD
        if a < n_i:
            if update:
                prefetch_state(ui[a], itf, ib, mom, vel, rd, consts[6])
            else:
                prefetch_row(itf, ui[a])
            for t in range(si[a], si[a + 1]):
                prefetch_row(saved, slot_u[oi[t]])
        r = ui[s]
        g = grad[s]
        qi = itf[r]
        for f in range(k + 1):
            g[f] = 0.0
        w_row = np.float32(0.0)
        for t in range(si[s], si[s + 1]):
            j = oi[t]
            d = dx[j]
            pu = saved[slot_u[j]]
            for f in range(k):
                g[f] += d * pu[f]
            g[k] += d
            w_row += weights[j] * inv_tot
        pen += reg * w_row * add_penalty(g, qi, ib[r], two_reg * w_row)
        if update:
            update_row(qi, ib, r, g, mom, vel, rd, consts, before, after)
    return pen


@njit(**INNER, forceinline=True)
def group_side(c, rows_u, rows_i, slots_u, slots_i, uniq, start, order, row_slot, counts,  # type: ignore[no-untyped-def]
               bounds):  # fmt: skip
    """Part ``c``'s share of the grouping: with one part both sides, else users in part 0
    and items in part 1; each side's rows then cut into ``bounds.shape[1] - 1`` ranges."""
    parts = bounds.shape[1] - 1
    if c == 0:
        counts[0] = group(rows_u, slots_u, uniq[0], start[0], order[0], row_slot[0])
        split(start[0], counts[0], bounds[0])
    if c == 1 or parts == 1:
        counts[1] = group(rows_i, slots_i, uniq[1], start[1], order[1], row_slot[1])
        split(start[1], counts[1], bounds[1])


@njit(cache=CACHE, nogil=True)
def step_part(c, sync, users, items, ratings, weights, w_tot, uf, ub, itf, ib, model, reg,  # type: ignore[no-untyped-def]
              mom_u, vel_u, rd_u, mom_i, vel_i, rd_i, consts, before, after, out, dx, slots_u,
              slots_i, uniq, start, order, row_slot, counts, bounds, saved, grad):  # fmt: skip
    """Part ``c`` of one batch's step, run by one of ``bounds.shape[1] - 1`` threads at
    once (each with its ``c``, the same arrays, ``sync`` zeroed before): the forward
    pass, loss, gradient of every looked-up row and the rows' optimiser step.

    Group the batch by user and by item (:func:`group_side`); then this part's users
    (:func:`user_rows`: the forward pass, their gradient and update, the old rows kept
    in ``saved``); then its items (:func:`item_rows`), each phase after a
    :func:`barrier`. Returns the part's ``(Σ loss, Σ penalty)``.
    """
    parts = bounds.shape[1] - 1
    group_side(c, users, items, slots_u, slots_i, uniq, start, order, row_slot, counts, bounds)
    if not barrier(sync, parts):
        return 0.0, 0.0
    inv_tot = np.float32(1.0 / w_tot)
    n_u, n_i = counts[0], counts[1]
    loss, pen = user_rows(
        bounds[0, c], bounds[0, c + 1], n_u, uniq[0], start[0], order[0], items, ratings,
        weights, inv_tot, uf, ub, itf, ib, model, reg, out, dx, saved, grad, mom_u, vel_u,
        rd_u, consts, before, after, True,
    )  # fmt: skip
    if not barrier(sync, 2 * parts):
        return loss, pen
    pen += item_rows(
        bounds[1, c], bounds[1, c + 1], n_i, uniq[1], start[1], order[1], dx, weights,
        inv_tot, itf, ib, saved, row_slot[0], reg, grad[n_u:], mom_i, vel_i, rd_i, consts,
        before, after, True,
    )  # fmt: skip
    return loss, pen


@njit(**INNER, fastmath=FAST, forceinline=True)
def sum_update(lo_s, hi_s, n, uniq, start, order, rows_g, fac, bias, mom, vel, rdecay, consts,  # type: ignore[no-untyped-def]
               before, after, gsum):  # fmt: skip
    """For the unique rows ``lo_s:hi_s`` of ``n``: sum each one's gradients
    ``rows_g[order[...]]`` (in order of appearance) into ``gsum``, then update it
    (:func:`update_row`)."""
    kp = rows_g.shape[1]
    for s in range(lo_s, hi_s):
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


@njit(cache=CACHE, nogil=True)
def permutation_part(c, sync, parts, n, seed, counts, starts, out):  # type: ignore[no-untyped-def]
    """Part ``c`` of ``parts`` (run at once, as :func:`step_part`) of a uniformly random
    permutation of ``0..n-1`` into ``out`` (Rao-Sandelius).

    Every position draws one of ``n_buckets`` buckets (``counts`` is ``(n_chunks,
    n_buckets)``, ``starts`` ``n_buckets + 1``); the buckets are concatenated in order and
    each is shuffled by Fisher-Yates. Random numbers come from a hash of ``(seed,
    counter)``, and the chunks and buckets are fixed by ``n``, so the result depends on
    ``seed`` only, never on the threads.
    """
    n_chunks, n_buckets = counts.shape
    key = _mix(np.uint64(seed))
    key2 = _mix(key ^ np.uint64(0x5851F42D4C957F2D))
    size = (n + n_chunks - 1) // n_chunks
    lo_c, hi_c = n_chunks * c // parts, n_chunks * (c + 1) // parts
    for ch in range(lo_c, hi_c):
        for b in range(n_buckets):
            counts[ch, b] = 0
        for i in range(ch * size, min(n, (ch + 1) * size)):
            counts[ch, _below(_mix(key ^ np.uint64(i)), n_buckets)] += 1
    if not barrier(sync, parts):
        return
    if c == 0:
        pos = 0
        for b in range(n_buckets):
            starts[b] = pos
            for ch in range(n_chunks):
                cnt = counts[ch, b]
                counts[ch, b] = pos
                pos += cnt
        starts[n_buckets] = pos
    if not barrier(sync, 2 * parts):
        return
    for ch in range(lo_c, hi_c):
        for i in range(ch * size, min(n, (ch + 1) * size)):
            b = _below(_mix(key ^ np.uint64(i)), n_buckets)
            out[counts[ch, b]] = i
            counts[ch, b] += 1
    if not barrier(sync, 3 * parts):
        return
    for b in range(n_buckets * c // parts, n_buckets * (c + 1) // parts):
        lo = starts[b]
        for i in range(starts[b + 1] - 1, lo, -1):
            j = lo + _below(_mix(key2 ^ np.uint64(i)), i - lo + 1)
            t = out[i]
            out[i] = out[j]
            out[j] = t


@njit(cache=CACHE, nogil=True)
def take_part(c, sync, parts, src, perm, out):  # type: ignore[no-untyped-def]
    """Part ``c`` of ``parts`` of ``out[j] = src[perm[j]]``."""
    n = perm.shape[0]
    for j in range(n * c // parts, n * (c + 1) // parts):
        out[j] = src[perm[j]]


numba.config.CACHE_DIR = _SAVED_CACHE_DIR
