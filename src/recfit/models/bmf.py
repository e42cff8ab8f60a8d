"""Bayesian MF by Gibbs sampling (Salakhutdinov & Mnih 2008), with biases.

The model is ``r = mu + b_u + b_i + p_u · q_i + noise`` with Gaussian noise of precision
``τ``; each user's ``[p_u, b_u]`` has the prior ``N(m_U, Λ_U^-1)`` and each item's
``[q_i, b_i]`` the prior ``N(m_I, Λ_I^-1)``, with Normal-Wishart hyperpriors on
``(m, Λ)`` (``m_0 = 0``, ``beta_0`` = :data:`BETA0`, ``W_0 = I``, ``nu_0 = k + 1``) and a
Gamma(1, 1) prior on ``τ``. ``mu`` is the weighted mean training rating. A rating of
weight ``w`` counts with precision ``w τ``.

Each Gibbs sweep draws the hyperparameters of the users given their rows, every user row
given the items (a compiled kernel on every thread:
:mod:`recfit.models._kernels_bmf`), the same for the items, then ``τ``. After
``burn_in`` sweeps, the next ``samples`` sweeps are averaged: a prediction is the mean of
the samples' predictions, exactly ``mu + b̄_u + b̄_i + P_cat[u] · Q_cat[i]`` with the
samples' factor tables side by side, each scaled by ``1 / sqrt(S)``. Beyond
``max_columns`` columns the tables are compressed to the best approximation of rank
``max_columns`` of the averaged ``P_cat Q_catᵀ`` (QR of each side, SVD of the small
product, each time the columns reach twice ``max_columns`` and at the end; one BLAS
thread, so the same numbers on every machine); the share of the average's squared
singular values left out is ``fit_info["dropped_share"]`` (0 when nothing is left out, as
when the average's rank is below ``max_columns``). Predictions are clipped into the
training rating range. The draws come from one generator seeded by ``seed`` (the same
seed gives the same model whatever the thread count). Compiling the kernels (or loading
them from the cache) is timed apart (``fit_info["compile_seconds"]``).

A deadline (:func:`recfit.models._budget.fit_until`, set by ``model="auto"`` within its
budget) ends the sampling after the sweep past which the pace says the next would not end
by it, keeping the burn-in and at least one sample; ``samples`` (and the bundle's config)
then says how many were averaged, ``fit_info["samples_wanted"]`` how many were asked for.

The family ``bmf`` trains by this fit (trainer ``closed_form``): ``n_factors``,
``gibbs_burn_in`` and ``gibbs_samples`` are its settings. Users and items with no training
row are answered by the baseline, as for every rating family.

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> rng = np.random.default_rng(0)
    >>> d = Interactions.from_arrays(rng.integers(0, 20, 300), rng.integers(0, 15, 300),
    ...     rng.integers(1, 6, 300).astype(float))
    >>> m = create_bmf(d, n_factors=3, burn_in=2, samples=4)
    >>> fit_bmf(m, d)
    >>> m.user_factors.shape[1], len(m.fit_info["noise_precision"])
    (12, 6)
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any, cast

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models._budget import steps_that_fit
from recfit.models._fitted import FittedFactors, check_settings, rating_range, training_rows
from recfit.models.base import Batch, RatingModel
from recfit.models.ials import numba_threads
from recfit.models.registry import Family, family, register_family, sized_build
from recfit.models.search import Param

__all__ = ["BETA0", "BayesianMF", "create_bmf", "fit_bmf"]

BETA0 = 2.0
"""``beta_0`` of the Normal-Wishart hyperpriors (Salakhutdinov & Mnih)."""


class BayesianMF(FittedFactors):
    """Bayesian MF with biases, trained by Gibbs sampling (see the module documentation).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        n_factors: ``k``, the width of one sample's factor vectors.
        burn_in: Gibbs sweeps before the averaged ones.
        samples: Gibbs sweeps whose predictions are averaged.
        max_columns: the most factor columns stored; the average of more is compressed to
            its best approximation of this rank.
        init_std: std of the initial factors.
        n_columns: the factor columns stored (the fit sets it).
        **common: :class:`~recfit.models._fitted.FittedFactors`'s ``seed`` (of every
            draw), ``global_mean`` (``mu``, the weighted mean training rating) and
            ``rating_range`` (predictions are clipped into it).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 32,
        *,
        burn_in: int = 20,
        samples: int = 100,
        max_columns: int = 512,
        init_std: float = 0.1,
        n_columns: int = 0,
        **common: Any,
    ) -> None:
        super().__init__(n_users, n_items, n_columns, **common)
        check_settings(integer=True, n_factors=n_factors, samples=samples, max_columns=max_columns)
        check_settings(integer=True, zero=True, burn_in=burn_in)
        check_settings(zero=True, init_std=init_std)
        if n_factors > max_columns:
            raise ConfigError(
                f"expected n_factors <= max_columns, received {n_factors!r} > {max_columns!r}"
            )
        self.n_factors, self.burn_in, self.samples = int(n_factors), int(burn_in), int(samples)
        self.max_columns, self.init_std = int(max_columns), float(init_std)

    def config(self) -> dict[str, Any]:
        return self._head() | dict(
            n_factors=self.n_factors, burn_in=self.burn_in, samples=self.samples,
            max_columns=self.max_columns, init_std=self.init_std,
            n_columns=int(self.user_factors.shape[1]),
        )  # fmt: skip

    def forward(self, batch: Batch) -> Tensor:
        return self.clip(self.base_terms(batch["user"].clamp_min(0), batch["item"].clamp_min(0)))


@cache
def _kernels() -> Any:
    """The kernel module, each kernel compiled (or loaded from the cache) by one call on
    tiny arrays."""
    from recfit.models import _kernels_bmf as kern

    f, i64 = np.float64, np.int64
    ptr, idx, one = np.array([0, 1], i64), np.zeros(1, i64), np.ones(1, f)
    x, lam = np.zeros((1, 2), f), np.eye(2)
    kern.sample_rows(ptr, idx, one, one, x, 0.0, 1.0, lam, np.zeros(2), x.copy(), x.copy())
    kern.squared_error(ptr, idx, one, one, x, x, 0.0)
    return kern


def _hyper(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A draw of ``(Λ, Λ m)`` of one side's prior given its rows ``x`` (Normal-Wishart
    posterior with ``m_0 = 0``, ``beta_0``, ``W_0 = I``, ``nu_0 = D``)."""
    n, d = x.shape
    mean = x.mean(0) if n else np.zeros(d)
    centred = x - mean
    scatter = centred.T @ centred
    beta = BETA0 + n
    m_star = n * mean / beta
    w_inv = np.eye(d) + scatter + (BETA0 * n / beta) * np.outer(mean, mean)
    w_star = np.linalg.inv(w_inv)
    w_star = (w_star + w_star.T) / 2
    nu = d + n
    # Bartlett: Λ = L A Aᵀ Lᵀ with L = chol(W*), A lower with chi and normal entries
    chol = np.linalg.cholesky(w_star)
    a = np.tril(rng.standard_normal((d, d)), -1)
    a[np.diag_indices(d)] = np.sqrt(rng.chisquare(nu - np.arange(d)))
    la = chol @ a
    lam = la @ la.T
    # m ~ N(m*, (beta Λ)^-1): m* + (chol(beta Λ))^-T z
    lc = np.linalg.cholesky(beta * lam)
    m = m_star + np.linalg.solve(lc.T, rng.standard_normal(d))
    return lam, lam @ m


def _compress(
    a: np.ndarray, b: np.ndarray, rank: int, dropped: list[float]
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``(a', b')`` of ``rank`` columns with ``a' b'ᵀ`` the best approximation of that
    rank of ``a bᵀ`` (QR of each side, SVD of the small product), on one BLAS thread;
    ``dropped`` becomes ``[Σ dropped s², Σ s²]``, the dropped part summed over the
    compressions and the last product's total."""
    with threadpool_limits(limits=1, user_api="blas"):
        qa, ra = np.linalg.qr(a)
        qb, rb = np.linalg.qr(b)
        u, sv, vt = np.linalg.svd(ra @ rb.T, full_matrices=False)
    rank = min(rank, len(sv))
    root = np.sqrt(sv[:rank])
    lost = dropped[0] + float((sv[rank:] ** 2).sum())
    total = float((sv**2).sum()) + dropped[0]
    return qa @ (u[:, :rank] * root), qb @ (vt[:rank].T * root), [lost, total]


@torch.no_grad()
def fit_bmf(model: RatingModel, train: Interactions) -> None:
    """Fit a :class:`BayesianMF` on ``train`` in place (see the module documentation)."""
    m = cast(BayesianMF, model)
    t0 = time.perf_counter()
    kern = _kernels()
    compile_s = time.perf_counter() - t0
    threads = numba_threads()
    t0 = time.perf_counter()
    _, u, i, r, w, u_ptr = training_rows(train)
    by_item = np.argsort(i, kind="stable")
    i_ptr = np.zeros(m.n_items + 1, np.int64)
    np.cumsum(np.bincount(i, minlength=m.n_items), out=i_ptr[1:])
    r64, w64 = r.astype(np.float64), w.astype(np.float64)
    users = (u_ptr, i, r64, w64)
    items = (i_ptr, u[by_item], r64[by_item], w64[by_item])
    known_u = np.diff(u_ptr) > 0
    known_i = np.diff(i_ptr) > 0
    k, d = m.n_factors, m.n_factors + 1
    rng = np.random.default_rng(m.seed)
    x = rng.standard_normal((m.n_users, d)) * m.init_std
    z = rng.standard_normal((m.n_items, d)) * m.init_std
    mu = float(np.average(r, weights=w)) if len(r) else 0.0
    total_w = float(w.sum()) or 1.0
    tau = 1.0
    width = 2 * m.max_columns + k  # the samples' columns side by side, compressed when full
    p_cat, q_cat = np.empty((m.n_users, width)), np.empty((m.n_items, width))
    fill, dropped = 0, [0.0]
    bu, bi = np.zeros(m.n_users), np.zeros(m.n_items)
    taus, train_mse = [], []
    wanted = n_sweeps = m.burn_in + m.samples
    sweep = 0
    while sweep < n_sweeps:
        for rows, other, (ptr, idx, rr, ww), known in (
            (x, z, users, known_u), (z, x, items, known_i)
        ):  # fmt: skip
            lam, lam_m = _hyper(rows[known], rng)
            eps = rng.standard_normal(rows.shape)
            kern.sample_rows(ptr, idx, rr, ww, other, mu, tau, lam, lam_m, eps, rows)
        sse = float(kern.squared_error(*users, x, z, mu))
        if not math.isfinite(sse):
            raise ConfigError(
                f"expected finite samples, received a training error of {sse!r} at sweep "
                f"{sweep} (lower n_factors or raise init_std: {m.n_factors!r}, {m.init_std!r})"
            )
        tau = float(rng.gamma(1.0 + total_w / 2, 1.0 / (1.0 + sse / 2)))
        taus.append(tau)
        train_mse.append(sse / total_w)
        sweep += 1
        # a deadline (auto's budget) keeps the samples that end by it, at least one
        n_sweeps = max(m.burn_in + 1, steps_that_fit(sweep, time.perf_counter() - t0,
                                                     time.perf_counter(), wanted))  # fmt: skip
        if sweep <= m.burn_in:
            continue
        bu += x[:, k]
        bi += z[:, k]
        p_cat[:, fill : fill + k] = x[:, :k]
        q_cat[:, fill : fill + k] = z[:, :k]
        fill += k
        if fill >= 2 * m.max_columns:
            a, b, dropped = _compress(p_cat[:, :fill], q_cat[:, :fill], m.max_columns, dropped)
            fill = a.shape[1]
            p_cat[:, :fill], q_cat[:, :fill] = a, b
    if fill > m.max_columns:
        a, b, dropped = _compress(p_cat[:, :fill], q_cat[:, :fill], m.max_columns, dropped)
        fill = a.shape[1]
        p_cat[:, :fill], q_cat[:, :fill] = a, b
    p_cat, q_cat = p_cat[:, :fill], q_cat[:, :fill]
    if n_sweeps < wanted:  # the model says how many samples it averages
        m.samples = n_sweeps - m.burn_in
    scale = 1.0 / math.sqrt(m.samples)
    m.global_mean = mu
    m.user_factors = nn.Parameter(torch.from_numpy((p_cat * scale).astype(np.float32)))
    m.item_factors = nn.Parameter(torch.from_numpy((q_cat * scale).astype(np.float32)))
    m.user_bias.copy_(torch.from_numpy((bu / m.samples).astype(np.float32)))
    m.item_bias.copy_(torch.from_numpy((bi / m.samples).astype(np.float32)))
    m.fit_info = {
        "compile_seconds": compile_s, "fit_seconds": time.perf_counter() - t0,
        "noise_precision": taus, "train_mse": train_mse, "columns": p_cat.shape[1],
        "dropped_share": dropped[0] / dropped[1] if len(dropped) > 1 and dropped[1] else 0.0,
        "threads": threads, "samples_wanted": wanted - m.burn_in,
    }  # fmt: skip


def _prepare(kwargs: dict[str, Any], train: Interactions) -> None:
    kwargs.setdefault("rating_range", rating_range(train))
    for field, arg in (("gibbs_samples", "samples"), ("gibbs_burn_in", "burn_in")):
        if field in kwargs:
            kwargs[arg] = kwargs.pop(field)


def create_bmf(train: Interactions, **settings: Any) -> BayesianMF:
    """A :class:`BayesianMF` sized for ``train`` (``settings``: constructor arguments or
    the config's ``gibbs_samples`` and ``gibbs_burn_in``)."""
    return cast(BayesianMF, family("bmf").build(settings, train))


register_family(Family(
    name="bmf", task="rating", model_class=BayesianMF, output="rating",
    reads=frozenset({"n_factors", "seed", "gibbs_samples", "gibbs_burn_in"}),
    trainers=("closed_form",), adapter="generic", closed_form=fit_bmf, anytime=True,
    warm_up=lambda trainer, device: _kernels(),  # CPU kernels on any device
    # how these were chosen: docs/families.md (inner cuts of the training rows)
    defaults={"n_factors": 32},
    build=sized_build(BayesianMF, prepare=_prepare),
    summary="Bayesian MF with biases by Gibbs sampling (Normal-Wishart hyperpriors), "
    "predictions averaged over the samples; compiled kernels",
    search={
        "n_factors": Param(4, 40, integer=True, log=True),
        "gibbs_samples": Param(30, 200, integer=True, log=True),
        "gibbs_burn_in": Param(5, 40, integer=True),
    },
))  # fmt: skip
