"""EASE (Steck 2019): a linear item-item autoencoder with a closed form.

The item-item weights ``B`` minimise ``‖W^½(X − XB)‖² + ‖Λ^½ B‖²`` subject to
``diag(B) = 0`` (no item predicts itself); with ``P = (XᵀWX + Λ)⁻¹``

    B = I − P · diag(1 / diag(P)),     so   B_ij = −P_ij / P_jj,  B_jj = 0,

and a user's scores are their row of positives times ``B``. Plain EASE has ``W = I``
and ``Λ = λI``. recfit's defaults add three changes, each of which raised Recall@20 on
the inner validation cut of ml-1m and of ml-100k (never the test rows):

* ``ease_dropout = p``: each item's ridge also gets ``p/(1−p) · (XᵀWX)_ii`` (Steck 2020,
  the emphasised denoising autoencoder's full-rank closed form: more ridge on popular
  items); default 0.3;
* ``user_exponent = a``: user ``u``'s row weighs ``|u|^-a`` in the loss (``W``), so the
  few users with thousands of positives no longer dominate the co-occurrences;
  default 0.5;
* ``popularity_exponent = c``: column ``j`` of ``B`` is divided by ``(n_j + 1)^c``
  (``n_j`` the item's training positives), a mild correction of the popularity bias;
  default 0.15.

``ease_dropout=0, user_exponent=0, popularity_exponent=0`` is plain EASE.

**The fit** is one float32 Cholesky factorisation and inversion (LAPACK ``potrf`` +
``potri``, on every core the process may use, so that a seed gives the same weights); on ml-1m's positives float32
gives the same Recall@20 and NDCG@20 as float64 to four decimals, in a third of the
time. The Gram matrix comes from a compiled kernel.

**λ** (``ease_lambda``; ``None``: chosen) is chosen on an inner validation cut of the
training positives (10 % by ``seed``, :func:`~recfit.models.topn.inner_split`): a walk
on a factor-2 grid from ``4 × mean(diag(XᵀWX))``, by Recall@20 on the cut, one Gram
matrix reused for every λ (each λ adds to its diagonal and refactorises: a Cholesky
costs a small fraction of the eigen-decomposition that would serve every λ at once).
The chosen λ and every inner score are in
:attr:`~recfit.models.topn.TopNModel.fit_info`; the λ used is also saved with the
weights (``fitted_lambda``).

**Size.** ``B`` is dense ``n_items²`` float32 and the fit holds about three such
matrices: a fit whose ``12 · n_items²`` bytes exceed ``memory_limit_gb`` (default: the
memory available), or a model whose ``B`` alone would, is refused with a
:class:`~recfit.errors.ModelTooLargeError` saying what it would need, before anything
is allocated.

Example:
    >>> import scipy.sparse as sp
    >>> x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], np.float32))
    >>> m = EASE(3, 3, ease_lambda=1.0, ease_dropout=0, user_exponent=0, popularity_exponent=0)
    >>> m.fit_positives(x)
    >>> m.weights.diagonal().tolist(), m.score_history(x[:1]).argmax(1).tolist()
    ([0.0, 0.0, 0.0], [1])
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp
import torch
from torch import Tensor

from recfit._cpu import cpu_cores, limit_threads
from recfit.errors import ConfigError, ModelTooLargeError
from recfit.models.topn import (
    TOPN_READS,
    TopNModel,
    inner_split,
    register_topn_family,
    validate_scores,
)

__all__ = [
    "EASE",
    "EASE_READS",
    "available_memory",
    "check_dense_size",
    "cooccurrence",
    "ease_weights",
]

EASE_READS = TOPN_READS | {
    "ease_lambda",
    "ease_dropout",
    "user_exponent",
    "popularity_exponent",
    "memory_limit_gb",
}
"""Config fields the EASE family reads."""

DENSE_COPIES = 3
"""Dense ``n_items x n_items`` float32 matrices an EASE fit holds at its peak."""

INNER_FRACTION = 0.1
"""Share of the training positives in the inner validation cut that chooses λ."""


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` of ``/proc/meminfo``, else the
    free physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover - not Linux
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 1 << 34


def check_dense_size(
    n_items: int, limit_gb: float | None, *, copies: int = DENSE_COPIES, what: str = "EASE"
) -> int:
    """The bytes ``copies`` dense ``n_items x n_items`` float32 matrices take (a fit
    holds ``DENSE_COPIES``, a fitted model one); returns them.

    Raises:
        ModelTooLargeError: more than ``limit_gb`` gigabytes (``None``: the memory
            available now), naming both.
    """
    needed = copies * 4 * int(n_items) ** 2
    limit = available_memory() if limit_gb is None else int(float(limit_gb) * 1e9)
    if needed > limit:
        source = "the memory available" if limit_gb is None else "memory_limit_gb"
        raise ModelTooLargeError(
            f"expected a catalogue whose dense item-item matrices fit in {limit / 1e9:.3g} GB "
            f"({source}) for {what}, received {n_items} items needing "
            f"{needed / 1e9:.3g} GB ({copies} x n_items² float32); use itemknn or "
            "ials, or raise memory_limit_gb",
            needed=needed,
            limit=limit,
        )
    return needed


@functools.cache
def _kernels() -> Any:
    """The kernel module, each kernel compiled (or loaded from numba's cache) by one call
    on tiny arrays, so that a fit's timer sees no compilation."""
    from recfit.models import _kernels_topn as kern  # numba is heavy: loaded when used

    i64, f32 = np.int64, np.float32
    ptr, idx, val = np.array([0, 1], i64), np.zeros(1, i64), np.ones(1, f32)
    kern.cooccurrence(ptr, idx, val, ptr, idx, val, np.zeros((1, 1), f32))
    kern.ease_finish(np.ones((1, 1), f32))
    return kern


def load_kernels() -> float:
    """Compile or load EASE's kernels; the seconds it took (about 0 once loaded)."""
    t0 = time.perf_counter()
    _kernels()
    return time.perf_counter() - t0


def cooccurrence(X: sp.csr_matrix) -> np.ndarray:
    """The dense float32 Gram matrix ``XᵀX`` of a CSR matrix (compiled kernel)."""
    x = sp.csr_matrix(X, dtype=np.float32)
    c = x.tocsc()
    out = np.zeros((x.shape[1], x.shape[1]), np.float32)
    i64 = np.int64
    _kernels().cooccurrence(
        x.indptr.astype(i64), x.indices.astype(i64), x.data,
        c.indptr.astype(i64), c.indices.astype(i64), c.data, out,
    )  # fmt: skip
    return out


def ease_weights(gram: np.ndarray, ridge: np.ndarray | float, *, threads: int = 1) -> np.ndarray:
    """EASE's ``B`` (float32) from the Gram matrix and the per-item ridge (``λ`` plus the
    dropout term): ``P = (G + diag(ridge))⁻¹`` by Cholesky, ``B = −P diag(1/diag P)``,
    zero diagonal. ``gram`` is not changed.

    Raises:
        ConfigError: ``G + diag(ridge)`` is not positive definite (a ridge <= 0).
    """
    a = np.array(gram, dtype=np.float32, copy=True).T  # Fortran order: LAPACK works in place
    a[np.diag_indices_from(a)] += np.asarray(ridge, dtype=np.float32)
    with limit_threads(threads):  # LAPACK's BLAS (and every other pool) on `threads`
        c, info = sl.lapack.spotrf(a, lower=0, clean=0, overwrite_a=1)
        if info == 0:
            c, info = sl.lapack.spotri(c, lower=0, overwrite_c=1)
    if info != 0:
        raise ConfigError(
            f"expected a positive definite XᵀX + ridge for EASE, received LAPACK info {info} "
            "(use a larger ease_lambda)"
        )
    p = np.ascontiguousarray(c.T)  # a view: Fortran's upper triangle is this lower one
    _kernels().ease_finish(p)
    return p


class EASE(TopNModel):
    """EASE's item-item weights (see the module documentation).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        ease_lambda: the ridge ``λ`` (> 0); ``None``: chosen on the inner cut.
        ease_dropout: the emphasised-denoising dropout ``p`` in ``[0, 1)`` (0: plain EASE).
        memory_limit_gb: the most memory the dense fit may take (``None``: what is
            available when the fit starts).
        threads: BLAS threads of the solve (``None``: the cores this process may use; a
            fixed count, so that a seed gives the same weights however busy the machine).
        common: :class:`~recfit.models.topn.TopNModel`'s other arguments
            (``confidence``, ``seed``: of the inner validation cut, ``n_positives``).
    """

    weights: Tensor
    fitted_lambda: Tensor

    family_settings = (
        "ease_lambda", "ease_dropout", "user_exponent", "popularity_exponent",
        "memory_limit_gb", "threads",
    )  # fmt: skip

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        ease_lambda: float | None = None,
        ease_dropout: float = 0.3,
        user_exponent: float = 0.5,
        popularity_exponent: float = 0.15,
        memory_limit_gb: float | None = None,
        threads: int | None = None,
        **common: Any,
    ) -> None:
        if ease_lambda is not None and not float(ease_lambda) > 0:
            raise ConfigError(f"expected ease_lambda > 0 or None, received {ease_lambda!r}")
        if not 0 <= float(ease_dropout) < 1:
            raise ConfigError(f"expected ease_dropout in [0, 1), received {ease_dropout!r}")
        for name, v in (
            ("user_exponent", user_exponent),
            ("popularity_exponent", popularity_exponent),
        ):
            if not 0 <= float(v) <= 2:
                raise ConfigError(f"expected {name} in [0, 2], received {v!r}")
        if memory_limit_gb is not None and not float(memory_limit_gb) > 0:
            raise ConfigError(f"expected memory_limit_gb > 0, received {memory_limit_gb!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"expected threads an integer >= 1, received {threads!r}")
        self.ease_lambda = None if ease_lambda is None else float(ease_lambda)
        self.ease_dropout = float(ease_dropout)
        self.user_exponent = float(user_exponent)
        self.popularity_exponent = float(popularity_exponent)
        self.memory_limit_gb = None if memory_limit_gb is None else float(memory_limit_gb)
        self.threads = threads
        check_dense_size(int(n_items), self.memory_limit_gb, copies=1)  # its weights
        super().__init__(n_users, n_items, **common)

    def init_weights(self) -> None:
        self.register_buffer("weights", torch.zeros(self.n_items, self.n_items))
        self.register_buffer("fitted_lambda", torch.zeros(1))

    def ridge(self, gram: np.ndarray, lam: float) -> np.ndarray:
        """The per-item ridge: ``λ + p/(1−p) · diag(G)``."""
        p = self.ease_dropout
        return np.float32(lam) + np.float32(p / (1 - p)) * np.diagonal(gram).astype(np.float32)

    def gram(self, X: sp.csr_matrix) -> np.ndarray:
        """``Xᵀ W X`` with ``W`` the users' weights ``|u|^-user_exponent``."""
        if not self.user_exponent:
            return cooccurrence(X)
        n = np.diff(X.indptr).astype(np.float64)
        w = np.where(n > 0, n, 1.0) ** (-0.5 * self.user_exponent)
        return cooccurrence(sp.csr_matrix(sp.diags(w.astype(np.float32)) @ X))

    def solve(
        self, X: sp.csr_matrix, lam: float, *, threads: int, gram: np.ndarray | None = None
    ) -> np.ndarray:
        """``B`` for ``X`` at ridge ``lam`` (``gram``: ``self.gram(X)`` when already known),
        its columns divided by ``(count_j + 1)^popularity_exponent``."""
        g = self.gram(X) if gram is None else gram
        b = ease_weights(g, self.ridge(g, lam), threads=threads)
        if self.popularity_exponent:
            counts = np.asarray((X > 0).sum(axis=0), dtype=np.float32).ravel()
            b /= (counts + 1) ** np.float32(self.popularity_exponent)
        return b

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
        check_dense_size(self.n_items, self.memory_limit_gb)
        # every core the process may use, not the load-dependent count: LAPACK's sums
        # follow the thread count, and the same data and seed must give the same weights
        threads = self.threads or cpu_cores()
        compile_s = load_kernels()  # compiling is not fitting
        t0 = time.perf_counter()
        lam = self.ease_lambda
        if lam is None:
            lam = self.choose_lambda(X, seed=seed, threads=threads)
        b = self.solve(X, lam, threads=threads)
        self.weights = torch.from_numpy(b)
        self.fitted_lambda.fill_(lam)
        self.fit_info.update(
            ease_lambda=lam, ease_dropout=self.ease_dropout, threads=threads,
            compile_seconds=compile_s, fit_seconds=time.perf_counter() - t0,
        )  # fmt: skip

    def choose_lambda(self, X: sp.csr_matrix, *, seed: int, threads: int) -> float:
        """λ by Recall@20 on an inner cut of ``X`` (see the module documentation): a
        factor-2 walk from ``4 · mean(diag(XᵀX))`` towards the better neighbour until
        Recall@20 stops rising (at most ``8`` solves)."""
        x_fit, x_val = inner_split(X, INNER_FRACTION, seed=seed)
        gram = self.gram(x_fit)
        mean_count = float(np.diagonal(gram).mean()) if self.n_items else 1.0
        start = 2.0 ** round(math.log2(max(4.0 * mean_count, 1.0)))

        def evaluate(lam: float) -> dict[str, float]:
            b = self.solve(x_fit, lam, threads=threads, gram=gram)
            return validate_scores(lambda _u, rows: rows @ b, x_fit, x_val, seed=seed)

        return self.search(evaluate, start, most=8)

    def score_history(self, X_rows: sp.csr_matrix) -> np.ndarray:
        x = self.check_rows(X_rows, rows=X_rows.shape[0], where="score_history")
        return np.asarray(x @ self.weights.numpy(), dtype=np.float32)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """Column ``j`` of ``B`` for each item ``j``: how much every item predicts it."""
        b = self.weights.numpy()
        return np.ascontiguousarray(b[:, np.asarray(items, dtype=np.int64)].T)


register_topn_family(
    "ease", EASE, EASE_READS,
    "EASE (Steck 2019): closed-form item-item autoencoder, ridge chosen on an inner cut",
)  # fmt: skip
