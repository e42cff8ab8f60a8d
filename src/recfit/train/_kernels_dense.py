"""The numba kernels behind :mod:`recfit.train.dense_epoch` (imported on first use).

One call of :func:`epoch` trains the steps of one epoch of a dot model with dense AdamW
(every row decays and moves by its moments at every step), the steps of the PyTorch path
in another order of operations. A row no batch reads between its update at step ``s``
and step ``τ`` follows the gradient-free AdamW update, whose moments are known in closed
form (``m_τ = m_s·Π β1``, ``sqrt(v_τ) = sqrt(v_s)·sqrt(β2)^(τ-s)``), so a row's weights
are brought up to date only when a batch reads it, every :data:`EVERY`-th step and at the
epoch's end (one multiply-add and one division per weight and step, on rows in cache),
and its moments only when a batch reads it and at the end.

Each side (users, items) is ``(p, m, x, last, a, sb)``: the weights ``p`` (rows, kp),
current through step ``last[row]``; ``m`` and ``x = sqrt(v)``, AdamW's moments as of the
row's last gradient; ``a = Π β1`` and ``sb = sqrt(β2)^steps`` over the steps since then
(so the moments now are ``m·a`` and ``(x·sb)²``).

numba picks the cache folder when a function is decorated: as in
:mod:`recfit.train._kernels_numba`, this module points it at the user's cache folder for
its own import and puts the setting back at the end.
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit

from recfit.train.kernels import numba_cache_dir

__all__ = ["EVERY", "GROUP", "catch_up", "epoch"]

_CACHE_DIR = numba_cache_dir()
CACHE = _CACHE_DIR is not None
_SAVED_CACHE_DIR = numba.config.CACHE_DIR
numba.config.CACHE_DIR = "" if _CACHE_DIR is None else str(_CACHE_DIR)  # restored at the end

_FM = {"contract", "nsz"}
"""Fused multiply-adds and sign-of-zero freedom; no reassociation (sums keep their order)
and no approximate division or square root. With numpy's error model a division does not
branch on zero, so the loops vectorise."""
GROUP = 8
"""Rows brought up to date together, step by step: a row's update at one step waits for
its update at the step before, so several rows interleaved keep the divider busy."""
EVERY = 32
"""Every this many steps, every row is brought up to date: whole groups of rows with the
same steps to do."""


@njit(cache=CACHE, nogil=True, fastmath=_FM, error_model="numpy")
def catch_up(p, m, x, last, a, sb, rows, n, t, keep, beta1, ss, ibc2, eps, sqb2):  # type: ignore[no-untyped-def]
    """Bring the weights of rows ``rows[:n]`` of one side through the gradient-free
    steps up to ``t``: ``p ← p·keep - ss·m_τ / (sqrt(v_τ)·ibc2 + eps)`` at each step.

    Two steps at a time where a row takes both (the same operations in the same order
    as one at a time, with half the loads, stores and loop overhead)."""
    kp = p.shape[1]
    e = np.float32(eps)
    for g0 in range(0, n, GROUP):
        g1 = min(n, g0 + GROUP)
        first = t
        for g in range(g0, g1):
            first = min(first, last[rows[g]])
        for tau in range(first + 1, t + 1, 2):
            both = tau < t
            for g in range(g0, g1):
                r = rows[g]
                if last[r] < tau and both:
                    a1 = a[r] * beta1[tau]
                    s1 = sb[r] * sqb2
                    a[r] = a1 * beta1[tau + 1]
                    sb[r] = s1 * sqb2
                    c1 = np.float32(ss[tau] * a1)
                    b1 = np.float32(s1 * ibc2[tau])
                    c2 = np.float32(ss[tau + 1] * a[r])
                    b2 = np.float32(sb[r] * ibc2[tau + 1])
                    k1 = keep[tau]
                    k2 = keep[tau + 1]
                    for j in range(kp):
                        mj = m[r, j]
                        xj = x[r, j]
                        q = p[r, j] * k1 - (mj * c1) / (xj * b1 + e)
                        p[r, j] = q * k2 - (mj * c2) / (xj * b2 + e)
                elif last[r] <= tau and (last[r] < tau or both):
                    s = tau if last[r] < tau else tau + 1  # the one step this row takes
                    a[r] *= beta1[s]
                    sb[r] *= sqb2
                    c = np.float32(ss[s] * a[r])
                    b = np.float32(sb[r] * ibc2[s])
                    k = keep[s]
                    for j in range(kp):
                        p[r, j] = p[r, j] * k - (m[r, j] * c) / (x[r, j] * b + e)
        for g in range(g0, g1):
            last[rows[g]] = max(t, last[rows[g]])


@njit(cache=CACHE, nogil=True, fastmath=_FM | {"reassoc"}, error_model="numpy")
def _dot(p, u, q, i, n):  # type: ignore[no-untyped-def]
    """``p[u, :n] · q[i, :n]``, summed in vector lanes (as PyTorch's sum does, in another
    order than one by one). Not inlined by numba: LLVM inlines it with its own flags."""
    z = np.float32(0.0)
    for f in range(n):
        z += p[u, f] * q[i, f]
    return z


@njit(cache=CACHE, nogil=True, fastmath=_FM, error_model="numpy", inline="always")
def _distinct(ids, lo, n, slot, uniq):  # type: ignore[no-untyped-def]
    """The distinct rows of ``ids[lo:lo+n]`` in order of first appearance (``slot[row]``:
    the row's position among them; ``-1`` for rows not in the batch)."""
    m = 0
    for j in range(n):
        r = ids[lo + j]
        if slot[r] < 0:
            slot[r] = m
            uniq[m] = r
            m += 1
    return m


@njit(cache=CACHE, nogil=True, fastmath=_FM, error_model="numpy")
def _adam_rows(p, m, x, last, a, sb, grads, uniq, n, slot, t, keep, c1, beta2, ss, ibc2, eps):  # type: ignore[no-untyped-def]
    """AdamW at step ``t`` of the rows ``uniq[:n]`` (current through ``t-1``) with their
    gradients ``grads[:n]``; their moments become those of step ``t``."""
    kp = p.shape[1]
    b2 = np.float32(beta2)
    c2 = np.float32(1.0 - beta2)
    for s in range(n):
        r = uniq[s]
        ar = np.float32(a[r])
        sr = np.float32(sb[r])
        for j in range(kp):
            gj = grads[s, j]
            mj = m[r, j] * ar
            xj = x[r, j] * sr
            mj = mj + c1 * (gj - mj)
            vj = xj * xj * b2 + c2 * gj * gj
            xj = math.sqrt(vj)
            m[r, j] = mj
            x[r, j] = xj
            p[r, j] = p[r, j] * keep - ss * mj / (xj * ibc2 + eps)
        a[r] = 1.0
        sb[r] = 1.0
        last[r] = t
        slot[r] = -1


@njit(cache=CACHE, nogil=True, fastmath=_FM, error_model="numpy")
def _bag_sum(acc, s, y, items, start, end, w):  # type: ignore[no-untyped-def]
    """``acc[s] += w·y[j]`` for ``j`` in ``items[start:end]``, in that order; four rows
    per pass (the same multiply-adds in the same order, ``acc[s]`` read and written once
    per four). Every column of ``y`` (its zero padding too)."""
    kp = y.shape[1]
    t = start
    while t + 4 <= end:
        j1, j2, j3, j4 = items[t], items[t + 1], items[t + 2], items[t + 3]
        for f in range(kp):
            acc[s, f] = (((acc[s, f] + w * y[j1, f]) + w * y[j2, f]) + w * y[j3, f]) + w * y[j4, f]
        t += 4
    while t < end:
        j = items[t]
        for f in range(kp):
            acc[s, f] += w * y[j, f]
        t += 1


@njit(cache=CACHE, nogil=True, fastmath=_FM, error_model="numpy")
def _bag_scatter(g, slot, items, start, end, d, s):  # type: ignore[no-untyped-def]
    """``g[slot[j]] += d[s]`` for ``j`` in ``items[start:end]`` (distinct rows), four
    rows per pass."""
    kp = g.shape[1]
    t = start
    while t + 4 <= end:
        r1, r2, r3, r4 = slot[items[t]], slot[items[t + 1]], slot[items[t + 2]], slot[items[t + 3]]
        for f in range(kp):
            v = d[s, f]
            g[r1, f] += v
            g[r2, f] += v
            g[r3, f] += v
            g[r4, f] += v
        t += 4
    while t < end:
        r = slot[items[t]]
        for f in range(kp):
            g[r, f] += d[s, f]
        t += 1


@njit(cache=CACHE, nogil=True, fastmath=_FM, error_model="numpy")
def epoch(  # type: ignore[no-untyped-def]
    users, items, ratings, weights, starts, svdpp, indptr, implicit, alpha,
    pu, mu_, xu, lu, au, bu, pi, mi_, xi, li, ai, bi, py, my, xy, ly, ay, by,
    n_factors, mu, lo, span, squash, reg,
    keep, beta1, ss, ibc2, eps, beta2, out_loss, out_pen,
    gu, gi, gy, slot_u, slot_i, slot_y, uniq_u, uniq_i, uniq_y, imp, d_user, eff, scale_u, rows,
):  # fmt: skip
    """The steps of one epoch (step ``b``: rows ``starts[b]:starts[b+1]``).

    Three sides as in the module docs (users, items, SVD++'s ``y`` table: no bias, its
    column ``n_factors`` stays zero), every row current through step ``-1``. The user
    vector is ``p_u + |N(u)|^-alpha · Σ_{j ∈ N(u)} y_j`` (``N(u)``:
    ``implicit[indptr[u]:indptr[u+1]]``) with ``svdpp``, else ``p_u`` (a DotBias:
    ``indptr``, ``implicit``, the ``y`` side and the scratch of the implicit term are
    not read), the model
    ``mu + b_u + b_i + q_i · (user vector)``, squashed into ``lo + span·sigmoid`` when
    ``squash``. Per step ``b``: ``keep = 1 - lr·wd``, ``beta1``, ``ss = lr / (1 - β1^t)``,
    ``ibc2 = 1 / sqrt(1 - β2^t)``. Writes each step's mean loss and penalty (``reg``
    times ``|p_u|² + |q_i|² + b_u² + b_i²``); returns the number of steps done (it stops
    after the first step whose loss is not finite). Rows no batch read at the last steps
    are left behind: :func:`catch_up` them to the last step done. ``imp``/``d_user`` (a
    row per distinct user), ``eff`` (a row per batch row) and ``scale_u`` (a value per
    distinct user: ``|N(u)|^-alpha``) are scratch; ``rows`` is ``0, 1, ...`` (one per row
    of the largest side).
    """
    k = n_factors
    kp = pu.shape[1]
    sqb2 = math.sqrt(beta2)
    nb = starts.shape[0] - 1
    neg = np.float32(-alpha)
    for b in range(nb):
        if b > 0 and b % EVERY == 0:
            t = b - 1
            catch_up(
                pu, mu_, xu, lu, au, bu, rows, pu.shape[0], t, keep, beta1, ss, ibc2, eps, sqb2
            )
            catch_up(
                pi, mi_, xi, li, ai, bi, rows, pi.shape[0], t, keep, beta1, ss, ibc2, eps, sqb2
            )
            if svdpp:
                catch_up(
                    py, my, xy, ly, ay, by, rows, py.shape[0], t, keep, beta1, ss, ibc2, eps, sqb2
                )
        lo_r = starts[b]
        n = starts[b + 1] - lo_r
        nu = _distinct(users, lo_r, n, slot_u, uniq_u)
        ni = _distinct(items, lo_r, n, slot_i, uniq_i)
        ny = 0
        if svdpp:
            for s in range(nu):
                u = uniq_u[s]
                for t in range(indptr[u], indptr[u + 1]):
                    j = implicit[t]
                    if slot_y[j] < 0:
                        slot_y[j] = ny
                        uniq_y[ny] = j
                        ny += 1
        catch_up(pu, mu_, xu, lu, au, bu, uniq_u, nu, b - 1, keep, beta1, ss, ibc2, eps, sqb2)
        catch_up(pi, mi_, xi, li, ai, bi, uniq_i, ni, b - 1, keep, beta1, ss, ibc2, eps, sqb2)
        gu[:nu] = 0.0
        gi[:ni] = 0.0
        if svdpp:
            catch_up(py, my, xy, ly, ay, by, uniq_y, ny, b - 1, keep, beta1, ss, ibc2, eps, sqb2)
            gy[:ny] = 0.0
            d_user[:nu] = 0.0
            for s in range(nu):  # each distinct user's implicit term
                u = uniq_u[s]
                w = np.float32(max(indptr[u + 1] - indptr[u], 1)) ** neg
                scale_u[s] = w
                imp[s] = 0.0
                _bag_sum(imp, s, py, implicit, indptr[u], indptr[u + 1], w)
        w_sum = np.float32(0.0)
        for j in range(n):
            w_sum += weights[lo_r + j]
        loss = 0.0
        pen = 0.0
        for j in range(n):
            u = users[lo_r + j]
            it = items[lo_r + j]
            su_ = slot_u[u]
            si_ = slot_i[it]
            if svdpp:
                for f in range(k):
                    eff[j, f] = pu[u, f] + imp[su_, f]
                z = _dot(eff, j, pi, it, k) + pu[u, k] + pi[it, k]
            else:
                z = _dot(pu, u, pi, it, k) + pu[u, k] + pi[it, k]
            if mu != 0.0:
                z = z + np.float32(mu)
            scale = weights[lo_r + j] / w_sum
            if squash:
                sg = np.float32(1.0) / (np.float32(1.0) + np.float32(math.exp(-z)))
                out = sg * np.float32(span) + np.float32(lo)
            else:
                out = z
            d = out - ratings[lo_r + j]
            loss += d * d * scale
            g = np.float32(2.0) * d * scale
            if squash:
                g = g * np.float32(span) * sg * (np.float32(1.0) - sg)
            two = np.float32(0.0)
            if reg > 0.0:
                two = np.float32(2.0 * reg) * scale
                sq = _dot(pu, u, pu, u, k + 1) + _dot(pi, it, pi, it, k + 1)
                pen += reg * scale * sq
            if svdpp:
                for f in range(k):
                    d_user[su_, f] += g * pi[it, f]
                    gu[su_, f] += g * pi[it, f] + two * pu[u, f]
                    gi[si_, f] += g * eff[j, f] + two * pi[it, f]
            else:  # the user vector is p_u (the sum's terms in the order that lets LLVM
                # fuse the same multiply-add as above, where g·q_i has a second use)
                for f in range(k):
                    gu[su_, f] += two * pu[u, f] + g * pi[it, f]
                    gi[si_, f] += g * pu[u, f] + two * pi[it, f]
            gu[su_, k] += g + two * pu[u, k]
            gi[si_, k] += g + two * pi[it, k]
        if svdpp:
            for s in range(nu):
                u = uniq_u[s]
                w = scale_u[s]
                for f in range(kp):  # d_user's columns from n_factors on are zero
                    d_user[s, f] *= w
                _bag_scatter(gy, slot_y, implicit, indptr[u], indptr[u + 1], d_user, s)
        out_loss[b] = loss
        out_pen[b] = pen
        c1 = np.float32(1.0 - beta1[b])
        st = np.float32(ss[b])
        ib = np.float32(ibc2[b])
        e = np.float32(eps)
        kb = keep[b]
        _adam_rows(pu, mu_, xu, lu, au, bu, gu, uniq_u, nu, slot_u, b, kb, c1, beta2, st, ib, e)
        _adam_rows(pi, mi_, xi, li, ai, bi, gi, uniq_i, ni, slot_i, b, kb, c1, beta2, st, ib, e)
        if svdpp:
            _adam_rows(py, my, xy, ly, ay, by, gy, uniq_y, ny, slot_y, b, kb, c1, beta2, st, ib, e)
        if not math.isfinite(loss + pen):
            return b + 1
    return nb


numba.config.CACHE_DIR = _SAVED_CACHE_DIR
