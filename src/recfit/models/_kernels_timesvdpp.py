"""The numba kernels of timeSVD++ (imported on first use).

* :func:`epoch`: one epoch of stochastic gradient steps over every training rating, user
  after user in the order given, each user's ratings in an order drawn from the user's own
  seed; the user's implicit term ``|N(u)|^-1/2 · Σ_{j ∈ N(u)} y_j`` is summed once per
  user and the ``y`` rows of the list take the user's summed gradient at the end of the
  user (the usual way to make SVD++'s epoch cost O(ratings · factors)).
* :func:`implicit_sum`: every user's implicit term (what a fitted model stores in its
  user vectors).

One thread, so a seed gives the same weights on every run. The kernels are cached under
the user's cache folder (:func:`recfit.models._compiled.cached_njit`).
"""

# mypy: ignore-errors
from __future__ import annotations

import numpy as np

from recfit.models._compiled import cached_njit

__all__ = ["epoch", "implicit_sum"]


_FAST = {"contract", "arcp", "afn", "nsz"}


@cached_njit()
def _xorshift(state):
    state ^= (state << np.uint64(13)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    state ^= state >> np.uint64(7)
    state ^= (state << np.uint64(17)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    return state


@cached_njit(fastmath=_FAST)
def implicit_sum(indptr, items, y, out):
    """``out[u] = |N(u)|^-1/2 · Σ_{j ∈ N(u)} y_j`` (zeros for an empty list)."""
    n_users, k = out.shape
    for u in range(n_users):
        for c in range(k):
            out[u, c] = 0.0
        lo, hi = indptr[u], indptr[u + 1]
        if hi == lo:
            continue
        norm = np.float32(1.0 / np.sqrt(hi - lo))
        for a in range(lo, hi):
            j = items[a]
            for c in range(k):
                out[u, c] += y[j, c]
        for c in range(k):
            out[u, c] *= norm


@cached_njit(fastmath=_FAST)
def epoch(
    order, seeds, indptr, items, ratings, weights, day_idx, dev, bins,
    imp_indptr, imp_items,
    bu, bi, bib, au, bud, p, q, y,
    mu, lr, reg, lr_b, reg_b, reg_t, lr_a, reg_a,
):  # fmt: skip
    """One epoch in place on the tables; returns ``Σ w·e²`` of the errors before each step.

    ``order``: the users in the order visited; ``seeds[u]``: the seed of user ``u``'s
    rating order. Per rating ``(u, i, r)`` of weight ``w`` at day ``d`` (its index into
    ``bud``), deviation ``dev`` and item bin ``b``, with ``e = r - prediction``:
    biases ``b_u, b_i`` move by ``lr_b (w e - reg_b x)``, ``b_{u,d}`` and ``b_{i,b}`` by
    ``lr_b (w e - reg_t x)``, ``alpha_u`` by ``lr_a (w e dev - reg_a alpha_u)``, the
    factors by ``lr (w e · other - reg x)``; each ``y_j`` of the user's list by ``lr
    (|N(u)|^-1/2 Σ w e q_i - n_u reg y_j)`` at the end of the user (``n_u`` its ratings).
    """
    k = p.shape[1]
    total = 0.0
    pz = np.empty(k, np.float32)
    acc = np.empty(k, np.float32)
    pos = np.empty(0, np.int64)
    for u in order:
        lo, hi = indptr[u], indptr[u + 1]
        n = hi - lo
        if n == 0:
            continue
        if pos.shape[0] < n:
            pos = np.empty(2 * n, np.int64)
        for a in range(n):
            pos[a] = lo + a
        state = np.uint64(seeds[u]) | np.uint64(1)
        for a in range(n - 1, 0, -1):  # Fisher-Yates with the user's own generator
            state = _xorshift(state)
            b = np.int64(state % np.uint64(a + 1))
            pos[a], pos[b] = pos[b], pos[a]
        ilo, ihi = imp_indptr[u], imp_indptr[u + 1]
        norm = np.float32(1.0 / np.sqrt(ihi - ilo)) if ihi > ilo else np.float32(0.0)
        for c in range(k):
            pz[c] = 0.0
            acc[c] = 0.0
        for a in range(ilo, ihi):
            j = imp_items[a]
            for c in range(k):
                pz[c] += y[j, c]
        for c in range(k):
            pz[c] = pz[c] * norm + p[u, c]
        for a in range(n):
            r = pos[a]
            i = items[r]
            d = day_idx[r]
            b = bins[r]
            dv = dev[r]
            dot = np.float32(0.0)
            for c in range(k):
                dot += q[i, c] * pz[c]
            pred = mu + bu[u] + au[u] * dv + bud[d] + bi[i] + bib[i, b] + dot
            e = ratings[r] - pred
            w = weights[r]
            total += w * e * e
            we = w * e
            bu[u] += lr_b * (we - reg_b * bu[u])
            bi[i] += lr_b * (we - reg_b * bi[i])
            bud[d] += lr_b * (we - reg_t * bud[d])
            bib[i, b] += lr_b * (we - reg_t * bib[i, b])
            au[u] += lr_a * (we * dv - reg_a * au[u])
            for c in range(k):
                qc = q[i, c]
                pc = p[u, c]
                q[i, c] += lr * (we * pz[c] - reg * qc)
                step = lr * (we * qc - reg * pc)
                p[u, c] = pc + step
                pz[c] += step
                acc[c] += we * qc
        decay = np.float32(max(0.0, 1.0 - lr * reg * n))
        for a in range(ilo, ihi):
            j = imp_items[a]
            for c in range(k):
                y[j, c] = y[j, c] * decay + lr * norm * acc[c]
    return total
