"""iALS: implicit alternating least squares (Hu, Koren, Volinsky 2008) as revisited by
Rendle et al. 2021 ("Revisiting the Performance of iALS on Item Recommendation
Benchmarks"), solved by conjugate gradient (Takács et al. 2011).

With ``X`` the positives, ``x_u`` and ``y_i`` the user and item vectors and
``ŷ = x_u·y_i``, the fit minimises

    Σ_(u,i)∈X c_ui (ŷ − 1)²  +  α0 Σ_u Σ_i ŷ²
        + λ Σ_u (|I_u| + α0·n_items)^ν |x_u|²  +  λ Σ_i (|U_i| + α0·n_users)^ν |y_i|²

with the observed confidence ``c_ui = 1 + alpha·value`` (``value`` 1 for binary
positives), the unobserved weight ``α0`` (``unobserved_weight``) on *every* pair, and the
ridge scaled by each row's frequency (``reg_exponent`` ν, 1 as in the paper). The
unobserved term costs one Gramian per half-sweep (``YᵀY``); each row then takes
``cg_steps`` conjugate-gradient steps on its normal equations, warm-started from its
current vector, in a compiled kernel parallel over rows (the CPU threads are PyTorch's
setting, which :func:`recfit.train.execution.threads` sets for a fit). Compiling the
kernels (or loading them from the user's cache folder) is timed apart:
``fit_info["compile_seconds"]`` against ``fit_info["fit_seconds"]``.

Fold-in: a new user's vector is the exact solution of the same row problem with the items
fixed (:meth:`IALS.score_history`).

Example:
    >>> import scipy.sparse as sp
    >>> x = sp.random(40, 30, density=0.2, format="csr", random_state=0)
    >>> m = IALS(40, 30, n_factors=4, epochs=3)
    >>> m.fit_positives(x)
    >>> m.score_history(x[:2]).shape, m.user_factors.shape
    ((2, 30), torch.Size([40, 4]))
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recfit._cpu import free_cores
from recfit.errors import ConfigError, TrainingDivergedError
from recfit.models.topn import (
    TOPN_READS,
    TopNModel,
    inner_split,
    register_topn_family,
    validate_scores,
)

__all__ = ["IALS", "FactorTopN", "check_positive", "ials_objective", "load_kernels"]

REG_START = 0.01
"""Where the walk that chooses ``reg`` on the inner cut starts (the best of ml-1m's cut)."""
INNER_FRACTION = 0.1
"""Share of the training positives in the inner validation cut that chooses ``reg``."""
INNER_EPOCHS = 2
"""Sweeps of each candidate's fit on the inner cut, from the fit's initial vectors (on the
inner cuts of ml-100k, ml-1m and a synthetic set, fits of 2 sweeps pick the ridge of the
factor-2 grid that fits of 15 pick). The final fit goes on from the chosen candidate's
vectors for the remaining ``epochs - INNER_EPOCHS`` sweeps on all the positives."""
INNER_USERS = 1000
"""Users of the inner cut whose Recall@20 scores a candidate ridge (drawn by ``seed``)."""
CHUNK_ROWS = 32
"""Rows a thread takes at a time in a half-sweep (dynamic scheduling: a thread slowed by
another process on the machine does not hold the sweep back)."""


@cache
def _numba_kernels() -> Any:
    """The kernel module, each kernel compiled (or loaded from the cache) for the types a
    fit passes, by one call on tiny arrays."""
    from recfit.models import _kernels_implicit as kern

    f32, i64 = np.float32, np.int64
    ptr, idx, val = np.array([0, 1], i64), np.zeros(1, i64), np.ones(1, f32)
    x, y = np.zeros((1, 2), f32), np.zeros((1, 2), f32)
    gram = np.zeros((2, 2), np.float64)
    kern.gramian(y, gram)
    kern.ials_half(ptr, idx, val, y, gram, x, 0.1, 0.1, 1.0, 1, 1)
    mask = np.zeros((1, 1), np.uint8)
    kern.bit_mask(ptr, idx, 1, mask)
    for m in (mask, mask[:0]):
        for fixed in (False, True):
            kern.bpr_epoch(idx, idx, ptr, idx, m, x, y, np.zeros(1, f32), 0.0, 0.0, 0, 1, fixed)
    return kern


def load_kernels() -> tuple[Any, float, int]:
    """The compiled kernels of the factor families, the seconds it took to get them
    (compiling them, or loading them from the cache; about 0 once loaded in this
    process) and the CPU threads they run on: the cores not busy with other processes
    (:func:`recfit._cpu.free_cores`), at most PyTorch's setting (which
    :func:`recfit.train.execution.threads` sets for a fit) and numba's.

    Starting numba's thread pool may reset PyTorch's count; it is put back.
    """
    t0 = time.perf_counter()
    mod = _numba_kernels()
    seconds = time.perf_counter() - t0
    return mod, seconds, numba_threads()


def numba_threads() -> int:
    """Set numba's thread count for a compiled fit: the cores not busy with other
    processes (:func:`recfit._cpu.free_cores`), at most PyTorch's setting and numba's;
    returns it. Starting numba's thread pool may reset PyTorch's count; it is put back."""
    n = before = torch.get_num_threads()
    import numba

    config: Any = numba.config  # numba's config module has no stubs
    n = max(1, min(n, free_cores(), int(config.NUMBA_NUM_THREADS)))
    numba.set_num_threads(n)
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
    return n


def check_positive(name: str, v: Any, *, integer: bool = False, zero: bool = False) -> None:
    """Refuse a setting that is not a finite number > 0 (``>= 0`` with ``zero``; an
    integer with ``integer``) with a :class:`~recfit.errors.ConfigError` naming it."""
    ok = isinstance(v, int | np.integer) and not isinstance(v, bool) if integer else True
    try:
        f = float(v)
    except (TypeError, ValueError):
        ok = False
        f = math.nan
    if not ok or not math.isfinite(f) or f < 0 or (f == 0 and not zero):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"expected {name} {kind} {'>=' if zero else '>'} 0, received {v!r}")


class FactorTopN(TopNModel):
    """A top-N model scoring ``x_u · y_i + b_i`` from user and item vectors (buffers
    ``user_factors``, ``item_factors``, ``item_bias``), the base of ``ials`` and ``bpr``.

    Known users are scored from their stored vectors; :meth:`item_similarity` is the
    cosine of the item vectors. A family supplies ``fit_weights`` and ``fold_in``.

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        n_factors: width of the user and item vectors.
        init_std: the initial vectors are ``N(0, init_std²/n_factors)``.
        **common: :class:`~recfit.models.topn.TopNModel`'s other arguments.
    """

    user_factors: Tensor
    item_factors: Tensor
    item_bias: Tensor

    def __init__(
        self, n_users: int, n_items: int, n_factors: int = 64, init_std: float = 0.1, **common: Any
    ) -> None:
        super().__init__(n_users, n_items, **common)
        check_positive("n_factors", n_factors, integer=True)
        check_positive("init_std", init_std, zero=True)
        self.n_factors, self.init_std = int(n_factors), float(init_std)
        k = self.n_factors
        self.register_buffer("user_factors", torch.zeros(self.n_users, k, dtype=torch.float32))
        self.register_buffer("item_factors", torch.zeros(self.n_items, k, dtype=torch.float32))
        self.register_buffer("item_bias", torch.zeros(self.n_items, dtype=torch.float32))

    def _init_factors(self, seed: int, std: float) -> tuple[np.ndarray, np.ndarray]:
        """Fresh random vectors ``N(0, std²/k)`` from ``seed`` (float32, C order)."""
        rng = np.random.default_rng(seed)
        scale = std / math.sqrt(self.n_factors)
        u = (rng.standard_normal((self.n_users, self.n_factors)) * scale).astype(np.float32)
        v = (rng.standard_normal((self.n_items, self.n_factors)) * scale).astype(np.float32)
        return u, v

    def _store(self, u: np.ndarray, v: np.ndarray, bias: np.ndarray | None = None) -> None:
        for name, a in (("user_factors", u), ("item_factors", v), ("item_bias", bias)):
            if a is not None and not np.isfinite(a).all():
                raise TrainingDivergedError(
                    f"expected finite {name} after the fit of {type(self).__name__}, "
                    f"received NaN or infinite values (lower the learning rate or raise reg)",
                    epoch=int(self.fit_info.get("epochs", 0)), step=0, what=name,
                )  # fmt: skip
        self.user_factors.copy_(torch.from_numpy(u))
        self.item_factors.copy_(torch.from_numpy(v))
        if bias is not None:
            self.item_bias.copy_(torch.from_numpy(bias))

    def score_users(self, users: np.ndarray, X_rows: sp.csr_matrix) -> np.ndarray:
        self.check_rows(X_rows, rows=len(users), where="score_users")
        u = self.user_factors.numpy()[np.asarray(users, dtype=np.int64)]
        return self._scores(u)

    def score_history(self, X_rows: sp.csr_matrix) -> np.ndarray:
        x = self.check_rows(X_rows, rows=X_rows.shape[0], where="score_history")
        return self._scores(self.fold_in(x))

    def _scores(self, u: np.ndarray) -> np.ndarray:
        out: np.ndarray = u @ self.item_factors.numpy().T
        out += self.item_bias.numpy()
        return out.astype(np.float32, copy=False)

    def fold_in(self, X_rows: sp.csr_matrix) -> np.ndarray:  # pragma: no cover - abstract
        """The vectors of users known only by their rows of positives."""
        raise NotImplementedError

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        v = self.item_factors.numpy()
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        q = v[np.asarray(items, dtype=np.int64)] / norms[np.asarray(items, dtype=np.int64), None]
        out: np.ndarray = (q @ (v / norms[:, None]).T).astype(np.float32)
        return out


class IALS(FactorTopN):
    """iALS with the unobserved weight on every pair and frequency-scaled ridge (see the
    module documentation).

    Args:
        *sizes: ``n_users``, ``n_items`` and ``n_factors`` of :class:`FactorTopN`
            (or given by name).
        reg: the ridge ``λ`` (scaled per row by ``(n_row + α0·n_other)^reg_exponent``);
            ``None``: chosen on an inner cut of the training positives
            (:meth:`choose_reg`; the value used is saved as ``fitted_reg``).
        alpha: confidence of a positive: ``1 + alpha·value``.
        unobserved_weight: ``α0``, the weight of every (user, item) pair's ``ŷ²``.
        epochs: sweeps (users, then items).
        cg_steps: conjugate-gradient steps per row and half-sweep.
        reg_exponent: ``ν``, the exponent of the frequency scaling (0: a plain ridge).
        **factors: :class:`FactorTopN`'s ``init_std`` and
            :class:`~recfit.models.topn.TopNModel`'s ``confidence`` (how ``X`` is built
            from the data), ``seed`` (of the initial vectors and of the inner cut) and
            ``n_positives``.
    """

    fitted_reg: Tensor

    family_settings = (
        "n_factors", "reg", "alpha", "unobserved_weight", "epochs", "cg_steps", "reg_exponent",
        "init_std",
    )  # fmt: skip

    def __init__(
        self,
        *sizes: int,
        reg: float | None = None,
        alpha: float = 1.0,
        unobserved_weight: float = 0.3,
        epochs: int = 15,
        cg_steps: int = 3,
        reg_exponent: float = 1.0,
        **factors: Any,
    ) -> None:
        super().__init__(*sizes, **factors)
        if reg is not None:
            check_positive("reg", reg, zero=True)
        check_positive("alpha", alpha, zero=True)
        check_positive("unobserved_weight", unobserved_weight, zero=True)
        check_positive("epochs", epochs, integer=True, zero=True)
        check_positive("cg_steps", cg_steps, integer=True)
        check_positive("reg_exponent", reg_exponent, zero=True)
        self.reg = None if reg is None else float(reg)
        self.alpha = float(alpha)
        self.register_buffer(
            "fitted_reg",
            torch.tensor(REG_START if reg is None else float(reg), dtype=torch.float64),
        )
        self.unobserved_weight, self.reg_exponent = float(unobserved_weight), float(reg_exponent)
        self.epochs, self.cg_steps = int(epochs), int(cg_steps)

    def confidences(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """``X`` with each positive's value ``v`` replaced by ``1 + alpha·v``."""
        c = X.copy()
        c.data = (1.0 + self.alpha * c.data).astype(np.float32)
        return c

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
        kern, compile_s, threads = load_kernels()
        t0 = time.perf_counter()
        u, v = self._init_factors(seed, self.init_std)
        reg, epochs = self.reg, self.epochs
        if reg is None:
            reg, u, v, done = self.choose_reg(X, u, v, seed=seed)
            epochs -= done  # the chosen candidate's sweeps count
            self.fit_info["inner_epochs"] = done
        sweeps = self._sweeps(kern, self._halves(X), reg, epochs, u, v)
        self.fitted_reg.fill_(reg)
        self.fit_info.update(
            reg=reg, compile_seconds=compile_s, fit_seconds=time.perf_counter() - t0,
            sweep_seconds=sweeps, threads=threads, epochs=self.epochs,
        )  # fmt: skip
        self._store(u, v)

    def _halves(self, X: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The confidences of ``X`` by user rows, then by item rows, as the kernel reads
        them: ``(indptr, indices, confidences)`` each."""
        cu = self.confidences(X)
        ci = cu.T.tocsr()
        ci.sort_indices()
        return [(c.indptr.astype(np.int64), c.indices.astype(np.int64), c.data) for c in (cu, ci)]

    def _sweeps(
        self,
        kern: Any,
        halves: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        reg: float,
        epochs: int,
        u: np.ndarray,
        v: np.ndarray,
    ) -> list[float]:
        """``epochs`` sweeps on the positives ``halves`` (:meth:`_halves`) from the vectors
        ``u`` and ``v`` (updated in place); returns each sweep's seconds."""
        sides = [(*halves[0], u, v), (*halves[1], v, u)]
        gram = np.empty((self.n_factors, self.n_factors), np.float64)
        sweeps = []
        old_chunk = kern.numba.set_parallel_chunksize(CHUNK_ROWS)  # rows taken as they free up
        try:
            for _ in range(epochs):
                ts = time.perf_counter()
                for indptr, indices, conf, rows, other in sides:
                    kern.gramian(other, gram)
                    kern.ials_half(
                        indptr, indices, conf, other, gram, rows, reg, self.unobserved_weight,
                        self.reg_exponent, other.shape[0], self.cg_steps,
                    )  # fmt: skip
                sweeps.append(time.perf_counter() - ts)
        finally:
            kern.numba.set_parallel_chunksize(old_chunk)
        return sweeps

    def choose_reg(
        self, X: sp.csr_matrix, u0: np.ndarray, v0: np.ndarray, *, seed: int
    ) -> tuple[float, np.ndarray, np.ndarray, int]:
        """``reg`` by Recall@20 on an inner cut of ``X`` (:data:`INNER_FRACTION` of the
        positives by ``seed``; :data:`INNER_USERS` of its users scored):
        :meth:`~recfit.models.topn.TopNModel.search`'s factor-2 walk from
        :data:`REG_START`, at most 5 fits of :data:`INNER_EPOCHS` sweeps from the initial
        vectors ``u0``, ``v0`` (``epochs - 1`` sweeps when ``epochs`` is under 3; no walk,
        and :data:`REG_START`, under 2). The scores are in ``fit_info["inner"]``.

        Returns:
            The ridge, the chosen candidate's user and item vectors (where the final fit
            goes on) and the sweeps they had.
        """
        done = min(INNER_EPOCHS, self.epochs - 1)
        if done < 1:
            return REG_START, u0, v0, 0
        kern = load_kernels()[0]
        x_fit, x_val = inner_split(X, INNER_FRACTION, seed=seed)
        halves = self._halves(x_fit)
        best: dict[str, Any] = {"recall": -math.inf}

        def evaluate(reg: float) -> dict[str, float]:
            u, v = u0.copy(), v0.copy()
            self._sweeps(kern, halves, reg, done, u, v)
            sc = validate_scores(
                lambda us, _rows: u[us] @ v.T, x_fit, x_val, seed=seed, max_users=INNER_USERS
            )
            if sc["recall"] > best["recall"]:  # the walk ends on the best score it met
                best.update(recall=sc["recall"], reg=reg, u=u, v=v)
            return sc

        reg = self.search(evaluate, REG_START, most=5)
        if best.get("reg") != reg:  # no candidate scored (no validation users)
            return reg, u0, v0, 0
        return reg, best["u"], best["v"], done

    def fold_in(self, X_rows: sp.csr_matrix) -> np.ndarray:
        """Each row's vector by the exact solve of its ridge problem with the items fixed:
        ``(α0·YᵀY + λ_u I + Σ_i c_i y_i y_iᵀ) x = Σ_i c_i y_i``."""
        c = self.confidences(X_rows)
        reg = float(self.fitted_reg)
        v = self.item_factors.numpy().astype(np.float64)
        base = self.unobserved_weight * (v.T @ v)
        k = self.n_factors
        out = np.zeros((c.shape[0], k), np.float32)
        for r in range(c.shape[0]):
            lo, hi = c.indptr[r], c.indptr[r + 1]
            idx, w = c.indices[lo:hi], c.data[lo:hi].astype(np.float64)
            lam = reg * (hi - lo + self.unobserved_weight * self.n_items) ** self.reg_exponent
            y = v[idx]
            a = base + (y.T * w) @ y + (lam + 1e-12) * np.eye(k)
            out[r] = np.linalg.solve(a, y.T @ w)
        return out


def ials_objective(model: IALS, X: sp.csr_matrix) -> float:
    """The objective an :class:`IALS` fit minimises, at the model's vectors, over ``X``
    (the positives it was fitted on).

    Example:
        >>> m = IALS(3, 2, n_factors=2, epochs=0)
        >>> round(ials_objective(m, sp.csr_matrix(np.eye(3, 2, dtype=np.float32))), 3)
        4.0
    """
    c = model.confidences(model.check_rows(X, rows=model.n_users, where="ials_objective"))
    u = model.user_factors.numpy().astype(np.float64)
    v = model.item_factors.numpy().astype(np.float64)
    coo = c.tocoo()
    pred = np.einsum("ij,ij->i", u[coo.row], v[coo.col])
    observed = float(np.sum(coo.data * (pred - 1.0) ** 2))
    a0, nu = model.unobserved_weight, model.reg_exponent
    unobserved = a0 * float(np.sum((u.T @ u) * (v.T @ v)))
    n_u = np.diff(c.indptr)
    n_i = np.bincount(c.indices, minlength=model.n_items)
    reg = float(model.fitted_reg)
    lam_u = reg * (n_u + a0 * model.n_items) ** nu
    lam_i = reg * (n_i + a0 * model.n_users) ** nu
    ridge = float(lam_u @ (u * u).sum(1) + lam_i @ (v * v).sum(1))
    return observed + unobserved + ridge


IALS_READS = TOPN_READS | {"n_factors", "reg", "alpha", "unobserved_weight", "epochs"}

register_topn_family(
    "ials", IALS, IALS_READS,
    "iALS (Hu et al. 2008; Rendle et al. 2021): weighted least squares on the "
    "positives with an unobserved weight on every pair, by conjugate gradient",
    defaults={"n_factors": 64, "alpha": 1.0, "unobserved_weight": 0.3, "epochs": 15},
)  # fmt: skip
