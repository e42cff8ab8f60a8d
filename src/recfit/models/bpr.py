"""BPR: Bayesian personalised ranking (Rendle et al. 2009) on a factor model.

The score of item ``i`` for user ``u`` is ``x_u · y_i + b_i``. Each epoch visits every
positive ``(u, i)`` once in a random order, draws a negative ``j`` uniformly among the
items ``u`` has no positive for, and takes one stochastic gradient step up

    log σ(s_ui − s_uj) − reg/2 · (|x_u|² + |y_i|² + |y_j|² + b_i² + b_j²)

with learning rate ``lr`` (plain SGD, as in the paper and implicit). The epochs run in a
compiled kernel on one thread with its own seeded generator, so the same seed gives the
same weights; compiling it (or loading it from the user's cache folder) is timed apart
(``fit_info["compile_seconds"]``).

Fold-in: a new user's vector is trained by the same steps on their positives with the
items fixed, from a seeded start (:meth:`BPR.fold_in`).

Example:
    >>> import scipy.sparse as sp
    >>> x = sp.random(40, 30, density=0.2, format="csr", random_state=0)
    >>> m = BPR(40, 30, n_factors=4, epochs=3)
    >>> m.fit_positives(x)
    >>> m.score_history(x[:2]).shape, len(m.fit_info["loss"])
    ((2, 30), 3)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from recfit.models.ials import FactorTopN, check_positive, load_kernels
from recfit.models.topn import TOPN_READS, register_topn_family

__all__ = ["BPR"]

REG = 0.01
"""The default L2 penalty per step."""
MAX_TRIES = 16
"""Draws of a negative before the last one is kept (a user with nearly every item)."""
MASK_BYTES = 64 << 20
"""Up to this size, whether a user has an item is read from a users x items bit matrix
(one load) instead of a binary search of the user's row (several cache misses)."""


class BPR(FactorTopN):
    """BPR by stochastic gradient steps with uniform negative sampling (see the module
    documentation).

    Args:
        *sizes: ``n_users``, ``n_items`` and ``n_factors`` of
            :class:`~recfit.models.ials.FactorTopN` (or given by name).
        lr: the learning rate of the SGD steps.
        reg: the L2 penalty per step on the rows it touches (``None``: :data:`REG`).
        epochs: passes over the positives.
        fold_in_epochs: passes over a new user's positives in :meth:`fold_in`.
        **factors: :class:`~recfit.models.ials.FactorTopN`'s ``init_std`` and
            :class:`~recfit.models.topn.TopNModel`'s ``confidence`` (BPR reads only which
            pairs are positive), ``seed`` (of the initial vectors, the order and the
            negatives) and ``n_positives``.
    """

    family_settings = ("n_factors", "lr", "reg", "epochs", "fold_in_epochs", "init_std")

    def __init__(
        self,
        *sizes: int,
        lr: float = 0.05,
        reg: float | None = None,
        epochs: int = 100,
        fold_in_epochs: int = 50,
        **factors: Any,
    ) -> None:
        super().__init__(*sizes, **factors)
        reg = REG if reg is None else reg
        for name, v in (("lr", lr), ("reg", reg)):
            check_positive(name, v, zero=name == "reg")
        for name, n in (("epochs", epochs), ("fold_in_epochs", fold_in_epochs)):
            check_positive(name, n, integer=True, zero=True)
        self.lr, self.reg = float(lr), float(reg)
        self.epochs, self.fold_in_epochs = int(epochs), int(fold_in_epochs)

    def _epochs(
        self,
        X: sp.csr_matrix,
        u: np.ndarray,
        v: np.ndarray,
        bias: np.ndarray,
        epochs: int,
        seed: int,
        fixed_items: bool,
    ) -> list[float]:
        """Run ``epochs`` of the BPR kernel on ``X``'s positives; returns each one's loss."""
        kern = load_kernels()[0]
        indptr = X.indptr.astype(np.int64)
        indices = X.indices.astype(np.int64)
        row_of = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(indptr))
        n_bytes = (self.n_items + 7) // 8
        mask = np.zeros((0, 0), np.uint8)
        if X.shape[0] * n_bytes <= MASK_BYTES:
            mask = np.zeros((X.shape[0], n_bytes), np.uint8)
            kern.bit_mask(indptr, indices, self.n_items, mask)
        rng = np.random.default_rng(seed)
        losses = []
        for _ in range(epochs):
            perm = rng.permutation(len(indices))
            kseed = int(rng.integers(2**31 - 1))
            loss = kern.bpr_epoch(
                row_of[perm], indices[perm], indptr, indices, mask, u, v, bias, self.lr,
                self.reg, kseed, MAX_TRIES, fixed_items,
            )  # fmt: skip
            losses.append(float(loss))
        return losses

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
        compile_s = load_kernels()[1]  # compiling is not fitting
        t0 = time.perf_counter()
        u, v = self._init_factors(seed, self.init_std)
        bias = np.zeros(self.n_items, np.float32)
        losses = self._epochs(X, u, v, bias, self.epochs, seed, fixed_items=False)
        self.fit_info.update(
            compile_seconds=compile_s, fit_seconds=time.perf_counter() - t0, loss=losses,
            threads=1, epochs=self.epochs,
        )  # fmt: skip
        self._store(u, v, bias)

    def fold_in(self, X_rows: sp.csr_matrix) -> np.ndarray:
        """New users' vectors: ``fold_in_epochs`` of the same steps on their positives with
        the items fixed, from a start drawn with the model's seed."""
        n, k = X_rows.shape[0], self.n_factors
        rng = np.random.default_rng(self.seed)
        u: np.ndarray = (rng.standard_normal((n, k)) * self.init_std / np.sqrt(k)).astype(
            np.float32
        )
        v = self.item_factors.numpy().copy()
        bias = self.item_bias.numpy().copy()
        self._epochs(X_rows, u, v, bias, self.fold_in_epochs, self.seed, fixed_items=True)
        return u


BPR_READS = TOPN_READS | {"n_factors", "lr", "reg", "epochs"}

register_topn_family(
    "bpr", BPR, BPR_READS,
    "BPR (Rendle et al. 2009): pairwise ranking loss on a factor model, SGD with "
    "uniform negative sampling",
    defaults={"n_factors": 64, "lr": 0.05, "epochs": 100},
)  # fmt: skip
