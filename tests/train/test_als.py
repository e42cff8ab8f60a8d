"""ALS: exact block minimisation (numpy closed form), monotone objective, same model class."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import ConfigError, DataError
from recfit.models import BiasedMF, DotBias
from recfit.train import Learner
from recfit.train.als import als_objective, fit_als


def _data(seed: int = 0, n: int = 300, weights: bool = False) -> Interactions:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 15, n)
    i = rng.integers(0, 12, n)
    keys = np.unique(u * 100 + i)
    u, i = keys // 100, keys % 100
    pu, qi = rng.normal(size=(15, 3)), rng.normal(size=(12, 3))
    r = np.clip(3.5 + (pu[u] * qi[i]).sum(1) + rng.normal(0, 0.3, len(u)), 1, 5)
    w = rng.uniform(0.5, 2.0, len(u)) if weights else None
    return Interactions.from_arrays(u, i, r, weight=w)


def _numpy_half(
    own: np.ndarray,
    other: np.ndarray,
    n: int,
    fixed: np.ndarray,
    fixed_bias: np.ndarray,
    r: np.ndarray,
    w: np.ndarray,
    mu: float,
    reg: float,
    exponent: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    k = fixed.shape[1]
    out, out_b = np.zeros((n, k)), np.zeros(n)
    for row in range(n):
        sel = own == row
        z = np.hstack([fixed[other[sel]], np.ones((sel.sum(), 1))])
        y = r[sel] - mu - fixed_bias[other[sel]]
        ws = w[sel]
        a = z.T @ (ws[:, None] * z) + (reg * ws.sum() ** exponent + 1e-6) * np.eye(k + 1)
        x = np.linalg.solve(a, z.T @ (ws * y))
        out[row], out_b[row] = x[:k], x[k]
    return out, out_b


@pytest.mark.parametrize("weights", [False, True])
def test_one_sweep_matches_numpy_closed_form(weights: bool) -> None:
    d = _data(weights=weights)
    m = BiasedMF(d.n_users, d.n_items, n_factors=3, init_std=0.5, seed=2)
    q0 = m.item_factors.detach().double().numpy().copy()
    bi0 = m.item_bias.detach().double().numpy().copy()
    fit_als(m, d, epochs=1, reg=0.1)
    w = d.weights().astype(np.float64)
    r = d.rating.astype(np.float64)
    mu = float((w * r).sum() / w.sum())
    assert m.global_mean == pytest.approx(mu)
    p, bu = _numpy_half(d.user, d.item, d.n_users, q0, bi0, r, w, mu, 0.1)
    q, bi = _numpy_half(d.item, d.user, d.n_items, p, bu, r, w, mu, 0.1)
    np.testing.assert_allclose(m.user_factors.detach().numpy(), p, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.user_bias.detach().numpy(), bu, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.item_factors.detach().numpy(), q, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.item_bias.detach().numpy(), bi, rtol=1e-3, atol=1e-4)


def test_reg_exponent_matches_closed_form_and_keeps_the_objective_monotone() -> None:
    """A row's ridge reg · n ** exponent: the numpy solve agrees and J never increases."""
    d = _data(seed=5, weights=True)
    m = BiasedMF(d.n_users, d.n_items, n_factors=3, init_std=0.5, seed=2)
    q0 = m.item_factors.detach().double().numpy().copy()
    bi0 = m.item_bias.detach().double().numpy().copy()
    res = fit_als(m, d, epochs=1, reg=0.2, reg_exponent=0.75)
    w, r = d.weights().astype(np.float64), d.rating.astype(np.float64)
    mu = float((w * r).sum() / w.sum())
    p, bu = _numpy_half(d.user, d.item, d.n_users, q0, bi0, r, w, mu, 0.2, 0.75)
    q, _ = _numpy_half(d.item, d.user, d.n_items, p, bu, r, w, mu, 0.2, 0.75)
    np.testing.assert_allclose(m.item_factors.detach().numpy(), q, rtol=1e-3, atol=1e-4)
    res = fit_als(m, d, epochs=5, reg=0.2, reg_exponent=0.75)
    objs = [h["objective"] for h in res.history]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(objs))
    # the objective's penalty: reg · Σ_rows n ** 0.75 · |row|², over Σw
    pen = 0.0
    for idx, fac, bias in (
        (d.user, m.user_factors, m.user_bias),
        (d.item, m.item_factors, m.item_bias),
    ):
        n = np.bincount(idx, weights=w, minlength=fac.shape[0])
        rows = ((fac.detach().double() ** 2).sum(1) + bias.detach().double() ** 2).numpy()
        pen += float((n**0.75 * rows).sum())
    obj, mse = als_objective(m, d, 0.2, 0.75)
    assert obj == pytest.approx(mse + 0.2 * pen / w.sum(), rel=1e-6)
    with pytest.raises(ConfigError, match="reg_exponent"):
        fit_als(m, d, epochs=1, reg=0.2, reg_exponent=1.5)


def test_objective_never_increases_and_equals_learner_loss() -> None:
    d = _data(seed=1, n=400)
    m = DotBias(d.n_users, d.n_items, n_factors=4, y_range=None, seed=0)
    res = fit_als(m, d, epochs=6, reg=0.05, valid=d)
    objs = [h["objective"] for h in res.history]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(objs))
    assert objs[-1] < objs[0]
    assert res.history[-1]["mse"] == pytest.approx(res.history[-1]["train_mse"], rel=1e-6)
    # the same objective as the Learner's loss with reg (Surprise's per-row penalty)
    learn = Learner(m, d, reg=0.05, wd=0.0, progress=False)
    assert learn.evaluate(d)["loss"] == pytest.approx(objs[-1], rel=1e-4)
    assert type(m) is DotBias  # same class: predict / save / Recommender unchanged


def test_als_fits_a_low_rank_problem_better_than_the_mean() -> None:
    d = _data(seed=3, n=600)
    m = BiasedMF(d.n_users, d.n_items, n_factors=3, seed=0)
    res = fit_als(m, d, epochs=10, reg=0.01)
    assert res.history[-1]["train_mse"] < 0.3 * float(np.var(d.rating))
    obj, mse = als_objective(m, d, 0.0)
    assert obj == pytest.approx(mse)


def test_weight_zero_rows_change_nothing() -> None:
    d = _data(seed=4)
    w = np.ones(len(d), dtype=np.float32)
    w[::5] = 0.0
    with_zero = Interactions.from_arrays(d.user, d.item, d.rating, weight=w)
    kept = d.take(np.flatnonzero(w > 0))
    runs = []
    for data in (with_zero, kept):
        m = BiasedMF(d.n_users, d.n_items, n_factors=3, seed=0)
        fit_als(m, data, epochs=2, reg=0.1)
        runs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    torch.testing.assert_close(runs[0], runs[1])


def test_rejects_sigmoid_models_bad_reg_and_bad_indices() -> None:
    d = _data()
    with pytest.raises(ConfigError, match="y_range"):
        fit_als(DotBias(d.n_users, d.n_items, 3, y_range=(0.0, 5.5)), d)
    with pytest.raises(ConfigError, match="reg"):
        fit_als(BiasedMF(d.n_users, d.n_items, 3), d, reg=0.0)
    with pytest.raises(DataError, match="user indices"):
        fit_als(BiasedMF(2, d.n_items, 3), d)


def test_train_run_dispatches_to_als_and_keeps_the_model_class() -> None:
    from recfit.config import RatingConfig, validate_config
    from recfit.errors import ConfigError as CfgError
    from recfit.runs import train_run

    d = _data(seed=5, n=600)
    cfg = RatingConfig(trainer="als", model="dot", n_factors=3, epochs=3, reg=0.1, seed=0)
    res = train_run(cfg, data=d, progress=False)
    model = res.learner.model
    assert type(model) is DotBias and model.y_range is None  # linear output for ALS
    assert len(res.learner.history) == 3
    assert res.metrics["mse"] == pytest.approx(res.learner.history[-1]["mse"])
    sgd = train_run(cfg.replace(trainer="sgd"), data=d, progress=False)
    assert type(sgd.learner.model) is DotBias and sgd.learner.model.y_range == (0.0, 5.5)
    with pytest.raises(CfgError, match="als"):
        validate_config({"trainer": "als", "model": "nn"})
    with pytest.raises(CfgError, match="reg > 0"):
        validate_config({"trainer": "als", "reg": 0.0})
