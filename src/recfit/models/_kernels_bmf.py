"""The numba kernels of Bayesian MF by Gibbs sampling (imported on first use).

Each row of one side (a user, or an item) holds ``x = [factors, bias]`` (``D = k + 1``
numbers); the other side's row ``z`` enters the rating as ``[z_factors, 1]`` and its
bias is moved to the target, so ``r - mu - b_other = x · [z_factors, 1] + noise``.

* :func:`sample_rows`: draw every row of one side from its Gaussian conditional given
  the other side, the noise precision and the side's prior ``N(m, Λ^-1)``: precision
  ``Λ + τ Σ w o oᵀ``, mean from ``Λ m + τ Σ w t o``, one draw ``mean + L^-T ε`` with
  ``L`` the precision's Cholesky factor and ``ε`` the given standard normals (drawn
  outside by a seeded generator, so the draws do not depend on the threads).
* :func:`squared_error`: ``Σ w (r - prediction)²`` over the training ratings.

Rows are independent given the other side, so they run on every thread
(``prange``); each row's sums run in a fixed order, so a seed gives the same samples
whatever the thread count. The kernels are cached under the user's cache folder
(:func:`recfit.models._compiled.cached_njit`).
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numpy as np
from numba import prange

from recfit.models._compiled import cached_njit

__all__ = ["sample_rows", "squared_error"]


@cached_njit(parallel=True)
def sample_rows(indptr, idx, ratings, weights, other, mu, tau, lam, lam_m, eps, out):
    """Draw ``out[r]`` for every row ``r`` (see the module documentation); ``other`` is
    the other side's ``[factors, bias]`` table, ``lam_m = Λ m``."""
    n_rows, d = out.shape
    k = d - 1
    for r in prange(n_rows):
        a = np.empty((d, d), np.float64)
        b = np.empty(d, np.float64)
        o = np.empty(d, np.float64)
        for s in range(d):
            b[s] = lam_m[s]
            for t in range(d):
                a[s, t] = lam[s, t]
        for p in range(indptr[r], indptr[r + 1]):
            j = idx[p]
            for s in range(k):
                o[s] = other[j, s]
            o[k] = 1.0
            tw = tau * weights[p]
            target = ratings[p] - mu - other[j, k]
            for s in range(d):
                b[s] += tw * target * o[s]
                os = tw * o[s]
                for t in range(s + 1):
                    a[s, t] += os * o[t]
        # Cholesky a = L Lᵀ in place (lower triangle)
        for s in range(d):
            v = a[s, s]
            for t in range(s):
                v -= a[s, t] * a[s, t]
            v = math.sqrt(max(v, 1e-12))
            a[s, s] = v
            for q in range(s + 1, d):
                x = a[q, s]
                for t in range(s):
                    x -= a[q, t] * a[s, t]
                a[q, s] = x / v
        # mean: solve L y = b, then Lᵀ mean = y + ε (one solve gives mean + L^-T ε)
        for s in range(d):
            x = b[s]
            for t in range(s):
                x -= a[s, t] * b[t]
            b[s] = x / a[s, s]
        for s in range(d):
            b[s] += eps[r, s]
        for s in range(d - 1, -1, -1):
            x = b[s]
            for t in range(s + 1, d):
                x -= a[t, s] * b[t]
            b[s] = x / a[s, s]
        for s in range(d):
            out[r, s] = b[s]


@cached_njit(parallel=True)
def squared_error(indptr, idx, ratings, weights, rows, other, mu):
    """``Σ w (r - mu - x_u · z_i)²`` with ``x``, ``z`` as ``[factors, bias]`` rows."""
    n_rows, d = rows.shape
    k = d - 1
    part = np.zeros(n_rows, np.float64)
    for r in prange(n_rows):
        acc = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            j = idx[p]
            x = mu + rows[r, k] + other[j, k]
            for s in range(k):
                x += rows[r, s] * other[j, s]
            e = ratings[p] - x
            acc += weights[p] * e * e
        part[r] = acc
    return part.sum()
