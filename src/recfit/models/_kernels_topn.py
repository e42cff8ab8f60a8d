"""The numba kernels of the item-item top-N families (imported on first use).

* :func:`cooccurrence`: the dense item-item Gram matrix ``XᵀX`` of a sparse matrix of
  positives, one output row per item in parallel (each row summed in a fixed order, so
  the result is the same for any thread count).
* :func:`ease_finish`: EASE's weights from the inverse ``P`` in place:
  ``B_ij = -P_ij / P_jj``, zero diagonal, from the lower triangle LAPACK leaves.

Like the other kernel modules, it points numba's cache at
:func:`recfit._fs.numba_cache_dir` for its own import and puts the setting back at the
end.
"""

# mypy: ignore-errors
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from recfit._fs import numba_cache_dir

__all__ = ["cooccurrence", "ease_finish"]

_CACHE_DIR = numba_cache_dir()
CACHE = _CACHE_DIR is not None
_SAVED_CACHE_DIR = numba.config.CACHE_DIR
numba.config.CACHE_DIR = "" if _CACHE_DIR is None else str(_CACHE_DIR)  # restored at the end


@njit(parallel=True, cache=CACHE, nogil=True)
def cooccurrence(u_ptr, u_idx, u_val, i_ptr, i_idx, i_val, out):
    """``out[i, j] += Σ_u x_ui x_uj`` from the CSR rows (users, ``u_*``) and the CSC
    columns (items, ``i_*``) of the same matrix; ``out`` is ``[n_items, n_items]``."""
    n_items = out.shape[0]
    for i in prange(n_items):
        row = out[i]
        for a in range(i_ptr[i], i_ptr[i + 1]):
            u = i_idx[a]
            x = i_val[a]
            for b in range(u_ptr[u], u_ptr[u + 1]):
                row[u_idx[b]] += x * u_val[b]


@njit(parallel=True, cache=CACHE, nogil=True)
def ease_finish(p):
    """Turn ``p`` (the inverse's lower triangle and diagonal are valid) into
    ``B = -P diag(1/diag(P))`` with a zero diagonal, in place."""
    n = p.shape[0]
    d = np.empty(n, p.dtype)
    for i in range(n):
        d[i] = p[i, i]
    for i in prange(n):
        for j in range(i):
            v = p[i, j]  # lower triangle: P_ij = P_ji
            p[i, j] = -v / d[j]
            p[j, i] = -v / d[i]
        p[i, i] = 0.0


numba.config.CACHE_DIR = _SAVED_CACHE_DIR
