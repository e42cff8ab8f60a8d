"""The numba kernels of OrdRec's implicit term on the row-wise path (imported on first use).

* :func:`implicit_terms`: each distinct batch user's ``|N(u)|^-alpha · Σ_{j ∈ N(u)} y_j``.
* :func:`update_lists`: the row-wise AdamW step of the ``y`` rows the batch users' lists
  read: each distinct user's gradient times ``|N(u)|^-alpha`` summed into every ``y_j`` of
  its list (a scratch row per item, only the touched ones), then each touched row owes
  its decoupled weight decay and takes one AdamW update, in place.

They do what the PyTorch path does (``embedding_bag``; ``repeat_interleave``, the sum
over repeated rows and :class:`recfit.train.sparse.RowAdamW`'s lazy update) without its
intermediate tensors or its gather and scatter of the touched rows: the sums run in the
same order (the distinct users sorted, each list in order, one thread), so the weights
differ from the PyTorch step's by float rounding in AdamW's formula only. They are
cached under the user's cache folder (:func:`recfit.models._compiled.cached_njit`).
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numpy as np

from recfit.models._compiled import cached_njit

__all__ = ["implicit_terms", "update_lists"]

_FAST = {"contract", "arcp", "afn", "nsz"}
"""No ``reassoc``: every sum runs in the written order (the loops over factors vectorise,
each factor on its own)."""


@cached_njit(error_model="numpy", fastmath=_FAST)
def implicit_terms(uniq, indptr, implicit, y, alpha, out, scale):
    """Write ``out[a]``, the implicit term of user ``uniq[a]`` (each ``w·y_j`` added in
    list order, as ``embedding_bag`` with per-sample weights does), and ``scale[a] = w``."""
    k = y.shape[1]
    neg = np.float32(-alpha)
    for a in range(uniq.shape[0]):
        u = uniq[a]
        lo, hi = indptr[u], indptr[u + 1]
        w = np.float32(max(hi - lo, 1)) ** neg
        scale[a] = w
        for c in range(k):
            out[a, c] = 0.0
        t = lo
        while t + 1 < hi:  # two rows at a time (their loads overlap), the same order of sums
            j, i = implicit[t], implicit[t + 1]
            for c in range(k):
                out[a, c] = out[a, c] + w * y[j, c] + w * y[i, c]
            t += 2
        if t < hi:  # 2-D indexing: a row view per item would cost a refcount
            j = implicit[t]
            for c in range(k):
                out[a, c] += w * y[j, c]


@cached_njit(error_model="numpy", fastmath=_FAST)
def update_lists(
    uniq, scale, d_user, indptr, implicit, y, mom, vel, rdecay, c, before, after,
    acc, mark, touched,
):  # fmt: skip
    """One AdamW step of the ``y`` rows read by the lists of users ``uniq`` whose
    implicit terms have the gradients ``d_user``: each row's summed gradient (``acc``,
    zero outside a step; ``mark`` zero, ``touched`` any) then its update, the decay it
    owes since its last one first (``exp(before - rdecay[j])``; ``rdecay[j] = after``).

    ``c`` as :class:`recfit.train.sparse.RowAdamW` gives its kernel: keep (``1 - lr·wd``),
    beta1, beta2, lr / bias correction 1, 1 / sqrt(bias correction 2), eps. Returns the
    number of rows updated."""
    k = y.shape[1]
    g = np.empty(k, np.float32)
    n = 0
    for a in range(uniq.shape[0]):
        u = uniq[a]
        w = scale[a]
        for f in range(k):
            g[f] = d_user[a, f] * w
        for t in range(indptr[u], indptr[u + 1]):
            j = implicit[t]
            if mark[j] == 0:
                mark[j] = 1
                touched[n] = j
                n += 1
        for t in range(indptr[u], indptr[u + 1]):  # apart: the loads of rows overlap
            j = implicit[t]
            for f in range(k):
                acc[j, f] += g[f]
    one = np.float32(1.0)
    keep, b1, b2, step_size, inv_bc2, e = c[0], c[1], c[2], c[3], c[4], c[5]
    dense = n * 8 > y.shape[0]  # most rows touched: in table order (sequential memory)
    for s in range(y.shape[0] if dense else n):
        j = s if dense else touched[s]
        if mark[j] == 0:
            continue
        owed = keep
        if before != 0.0:
            owed = np.float32(math.exp(before - rdecay[j])) * keep
        if after != 0.0:
            rdecay[j] = after
        for f in range(k):
            gf = acc[j, f]
            mm = mom[j, f] + (one - b1) * (gf - mom[j, f])
            vv = b2 * vel[j, f] + (one - b2) * gf * gf
            mom[j, f] = mm
            vel[j, f] = vv
            y[j, f] = y[j, f] * owed - step_size * mm / (np.sqrt(vv) * inv_bc2 + e)
            acc[j, f] = 0.0
        mark[j] = 0
    return n
