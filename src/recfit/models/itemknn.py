"""Item-based nearest neighbours: cosine item-item similarity with shrinkage.

For items ``i`` and ``j`` with columns ``X_i``, ``X_j`` of the positives,

    S_ij = X_iᵀ X_j / (‖X_i‖ ‖X_j‖ + shrinkage)       (S_ii = 0)

and each item keeps only its ``knn_k`` most similar items (ties by index). A user's score
of item ``j`` is ``Σ_i x_ui S_ij`` over the items ``i`` of their history: each item they
chose votes for its neighbours. ``shrinkage`` damps similarities resting on few common
users (an item pair seen together by one user is not a cosine of 1).

The neighbours are stored sparse, as two ``[n_items, k]`` tensors (``neighbour_items``:
item indices, -1 where an item has fewer than ``k`` neighbours; ``neighbour_sims``: the
similarities), so a bundle holds ``8 · k · n_items`` bytes, not a dense matrix. The fit
computes ``S`` by blocks of items, so its memory stays near ``16 MB + 8 · k · n_items``
bytes whatever the catalogue.

Example:
    >>> import scipy.sparse as sp
    >>> x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1]], np.float32))
    >>> m = ItemKNN(3, 3, knn_k=1)
    >>> m.fit_positives(x)
    >>> m.neighbour_items.tolist(), m.score_history(x[2:]).astype(float).round(3).tolist()
    ([[1], [0], [1]], [[0.816, 0.577, 0.0]])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recfit.errors import ConfigError
from recfit.models.topn import TOPN_READS, TopNModel, register_topn_family

__all__ = ["ITEMKNN_READS", "ItemKNN"]

ITEMKNN_READS = TOPN_READS | {"knn_k", "shrinkage"}
"""Config fields the itemknn family reads."""

BLOCK_ELEMENTS = 1 << 22
"""Similarities computed at once by the fit (rows of items x the catalogue)."""


class ItemKNN(TopNModel):
    """Cosine item-item neighbours (see the module documentation).

    Args:
        *sizes: ``n_users`` and ``n_items`` of :class:`~recfit.models.topn.TopNModel`
            (or given by name).
        knn_k: neighbours kept per item (at most ``n_items - 1`` are stored).
        shrinkage: added to the cosine's denominator (>= 0).
        **common: :class:`~recfit.models.topn.TopNModel`'s other arguments
            (``confidence``, ``seed``: unused, nothing is random; ``n_positives``).
    """

    neighbour_items: Tensor
    neighbour_sims: Tensor

    family_settings = ("knn_k", "shrinkage")

    def __init__(
        self, *sizes: Any, knn_k: int = 100, shrinkage: float = 0.0, **common: Any
    ) -> None:
        if isinstance(knn_k, bool) or not isinstance(knn_k, int | np.integer) or knn_k < 1:
            raise ConfigError(f"expected knn_k an integer >= 1, received {knn_k!r}")
        if not float(shrinkage) >= 0:
            raise ConfigError(f"expected shrinkage >= 0, received {shrinkage!r}")
        self.knn_k, self.shrinkage = int(knn_k), float(shrinkage)
        super().__init__(*sizes, **common)

    def init_weights(self) -> None:
        k = min(self.knn_k, max(self.n_items - 1, 0))
        self.register_buffer(
            "neighbour_items", torch.full((self.n_items, k), -1, dtype=torch.int32)
        )
        self.register_buffer("neighbour_sims", torch.zeros(self.n_items, k))

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
        n, k = self.n_items, self.neighbour_items.shape[1]
        items = np.full((n, k), -1, dtype=np.int32)
        sims = np.zeros((n, k), dtype=np.float32)
        if k:
            xc = sp.csc_matrix(X)
            norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0), dtype=np.float32).ravel())
            per = max(1, BLOCK_ELEMENTS // max(1, n))
            for b0 in range(0, n, per):
                b1 = min(n, b0 + per)
                co = np.asarray((xc[:, b0:b1].T @ xc).todense(), dtype=np.float32)
                s = co / (norms[b0:b1, None] * norms[None, :] + np.float32(self.shrinkage) + 1e-12)
                s[np.arange(b1 - b0), np.arange(b0, b1)] = -np.inf  # no item is its own neighbour
                top = np.argpartition(-s, k - 1, axis=1)[:, :k]  # k < n
                val = np.take_along_axis(s, top, 1)
                order = np.lexsort((top, -val), axis=1)
                top, val = np.take_along_axis(top, order, 1), np.take_along_axis(val, order, 1)
                keep = val > 0  # a neighbour shares at least one user
                items[b0:b1] = np.where(keep, top, -1)
                sims[b0:b1] = np.where(keep, val, 0.0)
        self.neighbour_items.copy_(torch.from_numpy(items))
        self.neighbour_sims.copy_(torch.from_numpy(sims))

    def similarity_matrix(self) -> sp.csr_matrix:
        """The pruned ``S`` as a sparse ``[n_items, n_items]`` matrix (row ``i``: item
        ``i``'s neighbours)."""
        items = self.neighbour_items.numpy()
        keep = items >= 0
        rows = np.repeat(np.arange(self.n_items), keep.sum(1))
        return sp.csr_matrix(
            (self.neighbour_sims.numpy()[keep], (rows, items[keep])),
            shape=(self.n_items, self.n_items),
            dtype=np.float32,
        )

    def score_history(self, X_rows: sp.csr_matrix) -> np.ndarray:
        x = self.check_rows(X_rows, rows=X_rows.shape[0], where="score_history")
        return np.asarray((x @ self.similarity_matrix()).todense(), dtype=np.float32)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Row ``i`` of the pruned ``S`` for each item ``i`` (0 beyond its neighbours)."""
        s = self.similarity_matrix()[np.asarray(items, dtype=np.int64)]
        return np.asarray(s.todense(), dtype=np.float32)


register_topn_family(
    "itemknn", ItemKNN, ITEMKNN_READS,
    "item-based nearest neighbours: cosine with shrinkage, top-k per item",
)  # fmt: skip
