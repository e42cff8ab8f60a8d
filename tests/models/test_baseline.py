"""The ``baseline`` family (Surprise's BaselineOnly), added through the registry alone.

Its conformance (fit, predict, save/load, unknown ids, weights, evaluate ≡ predict) and
its registry checks (build, adapter, bundle) come from the suites that iterate over the
registry; these tests check what is its own: the closed form, and a run end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recfit.config import validate_config
from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import build_model, family, fit_baseline
from recfit.models.baseline import BaselineOnly, fit_closed_form
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.train import Learner
from recfit.train.trainers import FitSpec, trainer_for


def _exact(d: Interactions, reg_u: float, reg_i: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The ridge minimiser by one dense solve of the normal equations."""
    w = d.weights().astype(np.float64)
    mu = float((w * d.rating).sum() / w.sum())
    x = np.zeros((len(d), d.n_users + d.n_items))
    x[np.arange(len(d)), d.user] = 1.0
    x[np.arange(len(d)), d.n_users + d.item] = 1.0
    ridge = np.concatenate([np.full(d.n_users, reg_u), np.full(d.n_items, reg_i)])
    lhs = x.T @ (w[:, None] * x) + np.diag(ridge)
    b = np.linalg.solve(lhs, x.T @ (w * (d.rating - mu)))
    return mu, b[: d.n_users], b[d.n_users :]


def test_closed_form_is_the_ridge_minimiser(tiny: Interactions) -> None:
    d = tiny.with_weights(np.random.default_rng(1).choice([0.0, 0.5, 1.0, 2.0], len(tiny)))
    model = family("baseline").build({}, d)
    assert isinstance(model, BaselineOnly) and model.n_factors == 0
    fit_closed_form(model, d)
    mu, bu, bi, _, _ = fit_baseline(d.user, d.item, d.rating, d.weights(), d.n_users, d.n_items)
    assert model.global_mean == pytest.approx(mu)
    np.testing.assert_allclose(model.user_bias.detach().numpy(), bu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.item_bias.detach().numpy(), bi, rtol=1e-6, atol=1e-7)
    # with enough alternating steps, the exact solution of the ridge problem
    many = BaselineOnly(d.n_users, d.n_items, reg_user=3.0, reg_item=2.0, n_iter=300)
    fit_closed_form(many, d)
    mu, bu, bi = _exact(d, 3.0, 2.0)
    assert many.global_mean == pytest.approx(mu)
    np.testing.assert_allclose(many.user_bias.detach().numpy(), bu, atol=1e-5)
    np.testing.assert_allclose(many.item_bias.detach().numpy(), bi, atol=1e-5)
    # the prediction is mu + b_u + b_i
    batch = {"user": torch.tensor([0, 3]), "item": torch.tensor([2, 1])}
    want = mu + bu[[0, 3]] + bi[[2, 1]]
    np.testing.assert_allclose(many(batch).detach().numpy(), want, atol=1e-5)


def test_trained_by_its_closed_form_through_the_trainer(tiny: Interactions) -> None:
    fam = family("baseline")
    assert fam.trainers == ("closed_form",) and fam.adapter == "dot" and not fam.reads
    learn = Learner(fam.build({}, tiny), tiny, tiny, progress=False)
    before = learn.evaluate(tiny)["mse"]
    trainer_for(fam.trainers[0]).fit(learn, FitSpec())
    assert len(learn.history) == 1 and learn.evaluate(tiny)["mse"] < before
    config = learn.model.config()
    assert config["name"] == "baseline" and build_model(config).config() == config


def test_bad_settings(tiny: Interactions) -> None:
    with pytest.raises(ConfigError, match="reg_user"):
        BaselineOnly(2, 2, reg_user=-1.0)
    with pytest.raises(ConfigError, match="n_iter"):
        BaselineOnly(2, 2, n_iter=0)


def test_a_run_of_the_family_end_to_end(tiny: Interactions, tmp_path: Path) -> None:
    cfg = validate_config({"model": "baseline", "split": "random:0.2", "seed": 0})
    assert cfg.trainer == "closed_form"  # the family's default trainer
    with pytest.raises(ConfigError, match="n_factors"):
        validate_config({"model": "baseline", "n_factors": 8})  # a field it does not read
    result = train_run(cfg, tmp_path / "run", data=tiny)
    split = result.split
    test = split.data.take(split.test_idx)
    train = split.data.take(split.train_idx)
    mean_mse = float(np.mean((test.rating - train.rating.mean()) ** 2))
    assert result.metrics["mse"] < mean_mse  # better than the mean rating alone
    rec = Recommender.load(tmp_path / "run" / "bundle")
    assert rec.info()["model"] == "baseline" and not rec.info()["supports_similarity"]
    user = tiny.users.id(np.array([0]))[0]
    assert len(rec.recommend(user, n=3)[0].ids) == 3
    items = tiny.items.id(np.array([0, 1]))
    new = rec.recommend_for_ratings(dict(zip(items, [5.0, 4.0], strict=True)), n=3)
    assert new.path == "fold_in" and len(new.ids) == 3
