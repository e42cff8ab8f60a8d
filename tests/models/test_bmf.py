"""The ``bmf`` family (Bayesian MF by Gibbs sampling), added through the registry.

Conformance (fit, predict, save/load, unknown ids, weights, evaluate ≡ predict) comes from
the suites that iterate over the registry; these tests check what is its own: the row
sampler draws from the exact Gaussian conditional, the hyperparameter draw, averaging and
thinning of the samples, the same numbers for a seed whatever the threads, settings and
errors, a run end to end with its bundle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from recfit.config import RatingConfig, validate_config
from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import build_model, create_model, family
from recfit.models._budget import fit_until
from recfit.models.bmf import BayesianMF, _hyper, _kernels, fit_bmf
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.train.batches import TensorData


def _predict(m: BayesianMF, d: Interactions) -> np.ndarray:
    with torch.no_grad():
        return m(TensorData.from_interactions(d).columns).numpy()


def test_row_sampler_draws_from_the_exact_conditional() -> None:
    """For each row: ``mean + L^-T ε`` with the precision ``Λ + τ Σ w o oᵀ``; with ε = 0
    the mean, and over the unit vectors ε the columns of a square root of its inverse."""
    kern = _kernels()
    rng = np.random.default_rng(3)
    k, d = 3, 4
    other = rng.normal(size=(6, d))
    ptr = np.array([0, 4, 4, 6], np.int64)  # row 1 has no ratings: its prior
    idx = np.array([0, 2, 3, 5, 1, 4], np.int64)
    r, w = rng.uniform(1, 5, 6), rng.uniform(0.5, 2, 6)
    a = rng.normal(size=(d, d))
    lam = a @ a.T + np.eye(d)
    prior_m = rng.normal(size=d)
    mu, tau = 3.2, 1.7
    out = np.zeros((3, d))
    kern.sample_rows(ptr, idx, r, w, other, mu, tau, lam, lam @ prior_m, np.zeros((3, d)), out)
    cols = []
    for e in np.eye(d):
        o2 = np.zeros((3, d))
        kern.sample_rows(ptr, idx, r, w, other, mu, tau, lam, lam @ prior_m, np.tile(e, (3, 1)), o2)
        cols.append(o2 - out)
    for row in range(3):
        prec, b = lam.copy(), lam @ prior_m
        for p in range(ptr[row], ptr[row + 1]):
            o = np.append(other[idx[p], :k], 1.0)
            prec += tau * w[p] * np.outer(o, o)
            b += tau * w[p] * (r[p] - mu - other[idx[p], k]) * o
        np.testing.assert_allclose(out[row], np.linalg.solve(prec, b), rtol=1e-9, atol=1e-9)
        root = np.stack([c[row] for c in cols], axis=1)
        np.testing.assert_allclose(root @ root.T, np.linalg.inv(prec), rtol=1e-8, atol=1e-10)
    # the sum of squared errors
    rows = rng.normal(size=(3, d))
    sse = kern.squared_error(ptr, idx, r, w, rows, other, mu)
    want = sum(
        w[p] * (r[p] - mu - rows[u, k] - other[idx[p], k] - rows[u, :k] @ other[idx[p], :k]) ** 2
        for u in range(3)
        for p in range(ptr[u], ptr[u + 1])
    )
    assert sse == pytest.approx(want, rel=1e-12)


def test_hyperparameter_draw_centres_on_the_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[2.0, -1.0, 0.5], scale=[1.0, 0.5, 2.0], size=(4000, 3))
    lams, means = [], []
    for _ in range(20):
        lam, lam_m = _hyper(x, rng)
        assert np.allclose(lam, lam.T) and np.all(np.linalg.eigvalsh(lam) > 0)
        lams.append(lam)
        means.append(np.linalg.solve(lam, lam_m))
    np.testing.assert_allclose(np.mean(means, 0), x.mean(0), atol=0.05)
    np.testing.assert_allclose(np.linalg.inv(np.mean(lams, 0)), np.cov(x.T), rtol=0.1, atol=0.02)


def test_fit_beats_the_baseline_and_averages_the_samples(
    low_rank: Interactions, baseline_rmse: Callable[[Interactions, Interactions], float]
) -> None:
    d = low_rank
    cut = np.random.default_rng(1).random(len(d)) < 0.8
    train, valid = d.take(np.flatnonzero(cut)), d.take(np.flatnonzero(~cut))
    m = create_model("bmf", train, n_factors=3, gibbs_burn_in=10, gibbs_samples=30, seed=0)
    fit_bmf(m, train)
    info = m.fit_info
    assert len(info["noise_precision"]) == 40 and info["columns"] == 90
    assert m.user_factors.shape == (d.n_users, 90) and info["dropped_share"] == 0.0
    assert info["train_mse"][-1] < info["train_mse"][0]
    rmse = np.sqrt(np.mean((_predict(m, valid) - valid.rating) ** 2))
    assert rmse < baseline_rmse(train, valid) - 0.05
    # compressed to max_columns: the average of 30 samples of k = 3 has rank <= 30 (the
    # items), so 32 columns hold it exactly, whether compressed once or several times
    for cap in (32, 12):
        small = create_model("bmf", train, n_factors=3, gibbs_burn_in=10, gibbs_samples=30,
                             seed=0, max_columns=cap)  # fmt: skip
        fit_bmf(small, train)
        assert small.user_factors.shape == (d.n_users, min(cap, 30))
        if cap == 32:
            assert small.fit_info["dropped_share"] < 1e-12
            np.testing.assert_allclose(_predict(small, d), _predict(m, d), atol=1e-4)
        else:  # rank 12 of 30: an approximation, and it says what it left out
            assert 0 < small.fit_info["dropped_share"] < 0.5
            diff = np.abs(_predict(small, valid) - _predict(m, valid)).max()
            assert 0 < diff < 0.5


def test_one_sample_is_that_samples_prediction(low_rank: Interactions) -> None:
    d = low_rank
    m = create_model("bmf", d, n_factors=2, burn_in=3, samples=1, seed=4, rating_range=None)
    fit_bmf(m, d)
    with torch.no_grad():
        pred = _predict(m, d).astype(np.float64)
    # the last sweep's training error is the error of that one sample's predictions
    assert m.fit_info["train_mse"][-1] == pytest.approx(np.mean((pred - d.rating) ** 2), rel=1e-5)


def test_same_seed_same_model_whatever_the_threads(low_rank: Interactions) -> None:
    import numba

    d = low_rank

    def fit(seed: int, threads: int) -> np.ndarray:
        before = numba.get_num_threads()
        m = create_model("bmf", d, n_factors=3, burn_in=2, samples=5, seed=seed)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("recfit.models.bmf.numba_threads", lambda: threads)
                numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
                fit_bmf(m, d)
        finally:
            numba.set_num_threads(before)
        return _predict(m, d)

    one = fit(1, 1)
    np.testing.assert_array_equal(one, fit(1, 2))
    assert not np.array_equal(one, fit(2, 1))


def test_bad_settings() -> None:
    for arg, value in (("n_factors", 0), ("samples", 0), ("burn_in", -1), ("init_std", -1.0)):
        with pytest.raises(ConfigError, match=arg):
            BayesianMF(3, 3, **{arg: value})
    with pytest.raises(ConfigError, match="max_columns"):
        BayesianMF(3, 3, n_factors=20, max_columns=10)
    with pytest.raises(ConfigError, match="gibbs_samples"):
        validate_config({"model": "bmf", "gibbs_samples": 0})
    with pytest.raises(ConfigError, match="gibbs_burn_in"):
        validate_config({"model": "svdpp", "gibbs_burn_in": 5})  # a field svdpp does not read


def test_config_fields_reach_the_model(low_rank: Interactions) -> None:
    fam = family("bmf")
    assert fam.trainers == ("closed_form",) and fam.adapter == "generic"
    cfg = RatingConfig(model="bmf", gibbs_samples=7, gibbs_burn_in=3).resolve_model(False)
    m = fam.build(fam.settings(cfg), low_rank)
    assert isinstance(m, BayesianMF)
    assert (m.samples, m.burn_in, m.n_factors) == (7, 3, fam.defaults["n_factors"])


def test_a_run_end_to_end_and_its_bundle(tmp_path: Path, low_rank: Interactions) -> None:
    d = low_rank
    cfg = validate_config({"model": "bmf", "split": "random:0.2", "seed": 0,
                           "gibbs_samples": 10, "gibbs_burn_in": 5, "n_factors": 3})  # fmt: skip
    assert cfg.trainer == "closed_form"
    result = train_run(cfg, tmp_path / "run", data=d)
    model = result.learner.model
    assert isinstance(model, BayesianMF)
    rec = Recommender.load(tmp_path / "run" / "bundle")
    assert rec.info()["model"] == "bmf"
    users, items = d.users.id(d.user[:20]), d.items.id(d.item[:20])
    got = rec.predict(users, items, on_unknown="baseline")
    np.testing.assert_allclose(np.asarray(got), _predict(model, d.take(np.arange(20))), atol=1e-6)
    again = build_model(model.config())
    again.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(_predict(again, d), _predict(model, d))  # type: ignore[arg-type]


def test_a_deadline_keeps_the_samples_that_end_by_it(low_rank: Interactions) -> None:
    """auto's budget: a deadline already passed keeps the burn-in and one sample, and the
    model says so; a far deadline changes nothing (the same numbers as without one)."""
    d = low_rank
    m = create_model("bmf", d, n_factors=2, gibbs_burn_in=3, gibbs_samples=20, seed=0)
    with fit_until(time.perf_counter() - 1.0):
        fit_bmf(m, d)
    assert m.samples == 1 and m.config()["samples"] == 1
    assert m.fit_info["samples_wanted"] == 20 and len(m.fit_info["train_mse"]) == 4
    assert np.isfinite(_predict(m, d)).all()
    free = create_model("bmf", d, n_factors=2, gibbs_burn_in=3, gibbs_samples=20, seed=0)
    fit_bmf(free, d)
    far = create_model("bmf", d, n_factors=2, gibbs_burn_in=3, gibbs_samples=20, seed=0)
    with fit_until(time.perf_counter() + 1e6):
        fit_bmf(far, d)
    assert free.samples == far.samples == 20
    np.testing.assert_array_equal(_predict(free, d), _predict(far, d))
