"""The numba kernels of SVD++'s fused step (imported on first use).

* :func:`forward`: a batch's output, penalty and what the gradient needs: each distinct
  batch user's implicit term ``|N(u)|^-alpha · Σ_{j ∈ N(u)} y_j`` once, the user vectors
  ``p_u`` plus that term, the sigmoid of each row.
* :func:`backward`: zero the five gradient tables, then add each row's gradient to its
  ``p_u``, ``q_i``, ``b_u``, ``b_i`` rows and, per distinct user, the summed user-vector
  gradient times ``|N(u)|^-alpha`` to every ``y_j`` of its list.

They do what :class:`recfit.models.SVDpp`'s PyTorch step does, in the same order: the
distinct users sorted, the rows and each user's list in order, one thread, so a seed
gives the same weights on every run. Like :mod:`recfit.models._kernels_implicit`, this
module points numba's cache at :func:`recfit._fs.numba_cache_dir` for its own import and
puts the setting back at the end.
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit

from recfit._fs import numba_cache_dir

__all__ = ["backward", "forward"]

_CACHE_DIR = numba_cache_dir()
CACHE = _CACHE_DIR is not None
_SAVED_CACHE_DIR = numba.config.CACHE_DIR
numba.config.CACHE_DIR = "" if _CACHE_DIR is None else str(_CACHE_DIR)  # restored at the end

_FAST = {"contract", "arcp", "afn", "nsz"}
"""No ``reassoc``: every sum runs in the written order (only the loops over factors
vectorise, each factor on its own)."""


@njit(cache=CACHE, nogil=True, fastmath=_FAST)
def forward(users, items, indptr, implicit, p, q, bu, bi, y, alpha, mean, lo, hi, squash):
    """``(out, pen, eff, s, uniq, inv, scale)`` of a batch: the outputs, the per-row
    penalties ``|p_u|² + |q_i|² + b_u² + b_i²``, the user vectors, the sigmoids (ones
    without ``squash``), the sorted distinct users, each row's position among them and
    each distinct user's ``|N(u)|^-alpha``."""
    n, k = users.shape[0], p.shape[1]
    uniq = np.sort(users)
    m = 0
    for r in range(n):  # the distinct users, in order (np.unique, without its lists)
        if m == 0 or uniq[r] != uniq[m - 1]:
            uniq[m] = uniq[r]
            m += 1
    uniq = uniq[:m]
    inv = np.searchsorted(uniq, users)
    imp = np.empty((m, k), np.float32)
    acc = np.empty(k, np.float32)
    scale = np.empty(m, np.float32)
    neg = np.float32(-alpha)
    for a in range(m):
        u = uniq[a]
        start, end = indptr[u], indptr[u + 1]
        w = np.float32(max(end - start, 1)) ** neg
        scale[a] = w
        acc[:] = 0.0
        for t in range(start, end):
            j = implicit[t]
            for c in range(k):
                acc[c] += w * y[j, c]
        imp[a] = acc
    out = np.empty(n, np.float32)
    pen = np.empty(n, np.float32)
    eff = np.empty((n, k), np.float32)
    s = np.ones(n, np.float32)
    span = np.float32(hi - lo)
    for r in range(n):
        u, i = users[r], items[r]
        pu, qi, iu, e = p[u], q[i], imp[inv[r]], eff[r]
        dot = np.float32(0.0)
        sq = np.float32(0.0)
        sq_q = np.float32(0.0)
        for c in range(k):
            e[c] = pu[c] + iu[c]
            dot += e[c] * qi[c]
            sq += pu[c] * pu[c]
            sq_q += qi[c] * qi[c]
        x = dot + bu[u] + bi[i]
        if mean != 0.0:
            x = x + np.float32(mean)
        pen[r] = sq + sq_q + bu[u] * bu[u] + bi[i] * bi[i]
        if squash:
            sr = np.float32(1.0) / (np.float32(1.0) + np.float32(math.exp(-x)))
            s[r] = sr
            out[r] = sr * span + np.float32(lo)
        else:
            out[r] = x
    return out, pen, eff, s, uniq, inv, scale


@njit(cache=CACHE, nogil=True, inline="always")
def _zero_rows(factors, bias, rows):
    """Zero ``rows`` of a factor table and its bias (``None``: all of them)."""
    if rows is None:
        factors[:] = 0.0
        bias[:] = 0.0
    else:
        for r in rows:
            factors[r] = 0.0
            bias[r] = 0.0


@njit(cache=CACHE, nogil=True, fastmath=_FAST)
def backward(
    users, items, indptr, implicit, p, q, bu, bi, d_out, d_pen, with_pen,
    eff, s, uniq, inv, scale, lo, hi, squash, gp, gq, gbu, gbi, gy,
    nonzero_users, nonzero_items,
):  # fmt: skip
    """Write the gradient tables ``gp, gq, gbu, gbi, gy`` (zeroed first) of a batch from
    d(objective)/d(output) ``d_out`` and, with ``with_pen``, d/d(penalty) ``d_pen``.

    ``nonzero_users`` / ``nonzero_items``: the only rows of ``gp, gbu`` / ``gq, gbi`` that
    may be non-zero (the previous batch's, when nothing else wrote the tables since), so
    only they are zeroed; ``None``: zero the whole tables. ``gy`` is always zeroed whole
    (a batch's lists touch more rows than the table has)."""
    _zero_rows(gp, gbu, nonzero_users)
    _zero_rows(gq, gbi, nonzero_items)
    gy[:] = 0.0
    n, k = users.shape[0], p.shape[1]
    d_user = np.zeros((uniq.shape[0], k), np.float32)
    span = np.float32(hi - lo)
    for r in range(n):
        u, i = users[r], items[r]
        dx = d_out[r]
        if squash:
            dx = dx * span * s[r] * (np.float32(1.0) - s[r])
        pu, qi, e, du = p[u], q[i], eff[r], d_user[inv[r]]
        gpu, gqi = gp[u], gq[i]
        two = np.float32(2.0) * d_pen[r] if with_pen else np.float32(0.0)
        for c in range(k):
            de = dx * qi[c]
            du[c] += de
            if with_pen:
                gpu[c] += de + two * pu[c]
                gqi[c] += dx * e[c] + two * qi[c]
            else:
                gpu[c] += de
                gqi[c] += dx * e[c]
        if with_pen:
            gbu[u] += dx + two * bu[u]
            gbi[i] += dx + two * bi[i]
        else:
            gbu[u] += dx
            gbi[i] += dx
    for a in range(uniq.shape[0]):
        u = uniq[a]
        w, du = scale[a], d_user[a]
        for t in range(indptr[u], indptr[u + 1]):
            gyj = gy[implicit[t]]
            for c in range(k):
                gyj[c] += du[c] * w


numba.config.CACHE_DIR = _SAVED_CACHE_DIR
