"""Most popular items: every user gets the same ranking, by how many positives each item
has in training (the sum of the values with ``confidence="value"``).

The simplest top-N baseline, and the floor any personalised family must beat. It reads
no setting of its own and trains in one pass over the positives.

Example:
    >>> import scipy.sparse as sp
    >>> m = Popularity(3, 3)
    >>> m.fit_positives(sp.csr_matrix([[1.0, 0, 1], [0, 0, 1], [0, 1, 1]]))
    >>> m.score_history(sp.csr_matrix((1, 3))).tolist()
    [[1.0, 1.0, 3.0]]
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recfit.models.topn import TOPN_READS, TopNModel, register_topn_family

__all__ = ["Popularity"]


class Popularity(TopNModel):
    """Scores every item by its training popularity (see the module documentation; the
    arguments are :class:`~recfit.models.topn.TopNModel`'s)."""

    item_score: Tensor

    def init_weights(self) -> None:
        self.register_buffer("item_score", torch.zeros(self.n_items, dtype=torch.float32))

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
        counts = np.asarray(X.sum(axis=0), dtype=np.float32).ravel()
        self.item_score.copy_(torch.from_numpy(counts))

    def score_history(self, X_rows: sp.csr_matrix) -> np.ndarray:
        n = X_rows.shape[0]
        return np.broadcast_to(self.item_score.numpy(), (n, self.n_items)).copy()


register_topn_family(
    "popularity", Popularity, TOPN_READS,
    "the most popular training items for everyone (count of positives per item)",
)  # fmt: skip
