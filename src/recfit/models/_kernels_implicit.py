"""The numba kernels of the implicit-feedback factor models (imported on first use).

* :func:`gramian`: ``YᵀY`` of a factor table, summed in fixed chunks of rows in float64,
  so the result is the same for any thread count.
* :func:`ials_half`: one half-sweep of iALS: every row of a CSR matrix gets a few
  conjugate-gradient steps on its weighted ridge problem, warm-started from its current
  factors (Takács et al.; the unobserved weight through the Gramian, Rendle et al. 2021).
* :func:`ials_observed_loss`: the observed part of the iALS objective.
* :func:`bpr_epoch`: one epoch of BPR by stochastic gradient steps with uniform negative
  sampling (one thread: the same seed gives the same weights).

Like the row-wise kernels of :mod:`recfit.train`, this module points numba's cache at
:func:`recfit._fs.numba_cache_dir` for its own import and puts the setting back at the
end, so the kernels are cached under the user's cache folder, never beside the package.
They sit beside the models (not in ``train``) because the top-N families fit themselves
(``fit_positives``) and fold new users in with them.
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from recfit._fs import numba_cache_dir

__all__ = ["bpr_epoch", "gramian", "ials_half", "ials_observed_loss"]

_CACHE_DIR = numba_cache_dir()
CACHE = _CACHE_DIR is not None
_SAVED_CACHE_DIR = numba.config.CACHE_DIR
numba.config.CACHE_DIR = "" if _CACHE_DIR is None else str(_CACHE_DIR)  # restored at the end

GRAM_CHUNK = 2048
"""Rows per partial Gramian (fixed, so the sum's order never depends on the threads)."""

_FAST = {"contract", "arcp", "afn", "reassoc", "nsz"}


@njit(parallel=True, cache=CACHE, nogil=True, fastmath=_FAST)
def gramian(y, out):
    """``out = yᵀ y``: float32 products over blocks of 64 rows, added in float64 by
    fixed chunks of rows in order (the same result for any thread count)."""
    n, k = y.shape
    n_chunks = max(1, (n + GRAM_CHUNK - 1) // GRAM_CHUNK)
    part = np.zeros((n_chunks, k, k), np.float64)
    for c in prange(n_chunks):
        p = part[c]
        acc = np.empty((k, k), np.float32)
        for b0 in range(c * GRAM_CHUNK, min(n, (c + 1) * GRAM_CHUNK), 64):
            acc[:] = 0.0
            for i in range(b0, min(n, b0 + 64, (c + 1) * GRAM_CHUNK)):
                yi = y[i]
                for a in range(k):
                    ya = yi[a]
                    row = acc[a]
                    for b in range(k):
                        row[b] += ya * yi[b]
            for a in range(k):
                for b in range(k):
                    p[a, b] += acc[a, b]
    for a in range(k):
        for b in range(k):
            s = 0.0
            for c in range(n_chunks):
                s += part[c, a, b]
            out[a, b] = s


@njit(cache=CACHE, nogil=True, inline="always", fastmath=_FAST)
def _ridge_gram(gram, lam, v, out, sign):
    """``out = sign · (gram + lam·I) v``."""
    k = v.shape[0]
    for a in range(k):
        s = lam * v[a]
        g = gram[a]
        for b in range(k):
            s += g[b] * v[b]
        out[a] = sign * s


@njit(cache=CACHE, nogil=True, inline="always", fastmath=_FAST)
def _apply(gram, lam, indptr, indices, conf, y, u, v, out):
    """``out = (gram + lam·I + Σ_j (c_j)·y_j y_jᵀ) v`` over row ``u``'s entries."""
    k = v.shape[0]
    _ridge_gram(gram, lam, v, out, np.float32(1.0))
    for t in range(indptr[u], indptr[u + 1]):
        yi = y[indices[t]]
        d = np.float32(0.0)
        for a in range(k):
            d += yi[a] * v[a]
        d *= conf[t]
        for a in range(k):
            out[a] += d * yi[a]


@njit(cache=CACHE, nogil=True, fastmath=_FAST)
def _solve_row(gram, lam, indptr, indices, conf, y, u, x, r, p, ap, cg_steps):
    """A few conjugate-gradient steps on ``(gram + lam·I + Σ c y yᵀ) x = Σ c y`` from
    ``x`` (updated in place); returns the number of steps taken."""
    k = x.shape[0]
    # r = b - A x in one pass over the row: b_j = c_j (target 1)
    _ridge_gram(gram, lam, x, r, np.float32(-1.0))
    for t in range(indptr[u], indptr[u + 1]):
        yi = y[indices[t]]
        d = np.float32(0.0)
        for a in range(k):
            d += yi[a] * x[a]
        coef = conf[t] * (np.float32(1.0) - d)
        for a in range(k):
            r[a] += coef * yi[a]
    rs = np.float32(0.0)
    for a in range(k):
        p[a] = r[a]
        rs += r[a] * r[a]
    steps = 0
    for _ in range(cg_steps):
        if rs < 1e-20:
            break
        _apply(gram, lam, indptr, indices, conf, y, u, p, ap)
        pap = np.float32(0.0)
        for a in range(k):
            pap += p[a] * ap[a]
        if not pap > 0.0:
            break
        step = rs / pap
        rn = np.float32(0.0)
        for a in range(k):
            x[a] += step * p[a]
            r[a] -= step * ap[a]
            rn += r[a] * r[a]
        beta = rn / rs
        for a in range(k):
            p[a] = r[a] + beta * p[a]
        rs = rn
        steps += 1
    return steps


@njit(cache=CACHE, nogil=True, inline="always")
def _aligned(n):
    """A float32 scratch array of ``n`` starting on a 64-byte boundary: vectorised sums
    then split the same way whatever the allocator returns (the same numbers for any
    thread count and run)."""
    buf = np.empty(n + 16, np.float32)
    off = ((64 - (buf.ctypes.data & 63)) & 63) >> 2
    return buf[off : off + n]


@njit(parallel=True, cache=CACHE, nogil=True)
def ials_half(indptr, indices, conf, y, gram, x, reg, alpha0, nu, n_other, cg_steps):
    """Update every row ``x[u]`` of the CSR matrix ``(indptr, indices, conf)``.

    Row ``u`` minimises ``Σ_j conf_j (x·y_j − 1)² + alpha0 · Σ_all (x·y)² + λ_u |x|²``
    with ``λ_u = reg · (n_u + alpha0 · n_other) ** nu`` (``n_u`` its entries), i.e.
    ``(alpha0·gram + λ_u I + Σ_j conf_j y_j y_jᵀ) x = Σ_j conf_j y_j`` where ``gram``
    is ``yᵀy`` (the unobserved weight covers every item, observed ones included).
    """
    n, k = x.shape
    kp = (k + 15) // 16 * 16  # rows of the scratch arrays start on 64-byte boundaries
    g = _aligned(k * k).reshape((k, k))
    for a in range(k):
        for b in range(k):
            g[a, b] = np.float32(gram[a, b] * alpha0)
    for u in prange(n):
        cnt = indptr[u + 1] - indptr[u]
        lam = np.float32(reg * (cnt + alpha0 * n_other) ** nu)
        buf = _aligned(3 * kp)
        r, p, ap = buf[:k], buf[kp : kp + k], buf[2 * kp : 2 * kp + k]
        _solve_row(g, lam, indptr, indices, conf, y, u, x[u], r, p, ap, cg_steps)


@njit(parallel=True, cache=CACHE, nogil=True, fastmath=_FAST)
def ials_observed_loss(indptr, indices, conf, y, x):
    """``Σ_rows Σ_j conf_j (x·y_j − 1)²``: the observed entries' part of the objective
    (the unobserved weight's part comes from the Gramians)."""
    n, k = x.shape
    total = 0.0
    for u in prange(n):
        xu = x[u]
        s = 0.0
        for t in range(indptr[u], indptr[u + 1]):
            yi = y[indices[t]]
            d = np.float32(0.0)
            for a in range(k):
                d += yi[a] * xu[a]
            s += conf[t] * (d - 1.0) * (d - 1.0)
        total += s
    return total


@njit(cache=CACHE, nogil=True, inline="always")
def _has(indices, lo, hi, j):
    """Whether the sorted ``indices[lo:hi]`` holds ``j`` (binary search)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v == j:
            return True
        if v < j:
            lo = mid + 1
        else:
            hi = mid
    return False


@njit(cache=CACHE, nogil=True, fastmath=_FAST)
def bpr_epoch(users, items, indptr, indices, mask, uf, itf, ib, lr, reg, seed, max_tries,  # type: ignore[no-untyped-def]
              fixed_items):  # fmt: skip
    """One epoch of BPR by stochastic gradient steps over the positives ``(users[t],
    items[t])`` in that order.

    Each positive ``(u, i)`` draws a negative ``j`` uniformly among the items ``u`` has
    no positive for (up to ``max_tries`` draws, the last kept; whether ``u`` has ``j`` is
    a bit of ``mask``, a packed users x items bit matrix, or, when ``mask`` has no rows, a
    binary search of the CSR row ``indptr``/``indices``) and takes one step up
    ``log σ(x_ui − x_uj) − reg·(|p_u|² + |q_i|² + |q_j|² + b_i² + b_j²)/2`` with
    ``x = p_u·q + b`` (Rendle et al. 2009). One thread, one generator seeded by
    ``seed``: the same seed gives the same weights. ``fixed_items``: only the users'
    vectors move (fold-in). Returns the mean ``−log σ``.
    """
    np.random.seed(seed)  # noqa: NPY002 - numba's own generator inside the kernel
    k = uf.shape[1]
    n_items = itf.shape[0]
    use_mask = mask.shape[0] > 0
    total = 0.0
    for t in range(users.shape[0]):
        u = users[t]
        i = items[t]
        j = 0
        for _ in range(max_tries):
            j = np.random.randint(0, n_items)  # noqa: NPY002
            if use_mask:
                if (mask[u, j >> 3] >> (j & 7)) & 1 == 0:
                    break
            elif not _has(indices, indptr[u], indptr[u + 1], j):
                break
        pu = uf[u]
        qi = itf[i]
        qj = itf[j]
        x = ib[i] - ib[j]
        for a in range(k):
            x += pu[a] * (qi[a] - qj[a])
        d = np.float32(1.0) / (np.float32(1.0) + np.exp(x))  # σ(−x)
        total += -math.log(max(1.0 - d, 1e-30))
        step = lr * d
        shrink = np.float32(1.0) - lr * reg
        if fixed_items:
            for a in range(k):
                pu[a] = shrink * pu[a] + step * (qi[a] - qj[a])
            continue
        for a in range(k):
            p, a_i, a_j = pu[a], qi[a], qj[a]
            pu[a] = shrink * p + step * (a_i - a_j)
            qi[a] = shrink * a_i + step * p
            qj[a] = shrink * a_j - step * p
        ib[i] = shrink * ib[i] + step
        ib[j] = shrink * ib[j] - step
    return total / max(users.shape[0], 1)


@njit(cache=CACHE, nogil=True)
def bit_mask(indptr, indices, n_cols, out):
    """``out[r, c >> 3]`` has bit ``c & 7`` set for every entry ``(r, c)`` of the CSR
    matrix (``out`` zeroed, ``(rows, (n_cols + 7) // 8)`` uint8)."""
    for r in range(indptr.shape[0] - 1):
        for t in range(indptr[r], indptr[r + 1]):
            c = indices[t]
            out[r, c >> 3] |= np.uint8(1 << (c & 7))


numba.config.CACHE_DIR = _SAVED_CACHE_DIR
