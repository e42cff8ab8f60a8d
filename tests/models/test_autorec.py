"""The ``autorec`` family (I-AutoRec, item-based), added through the registry.

Conformance (fit, predict, save/load, unknown ids, weights, evaluate ≡ predict) comes from
the suites that iterate over the registry; these tests check what is its own: the stored
rating matrix (weights, pairs given twice), the fit beats the baseline, the prediction
is the decoder of the item's code, the codes follow the weights, settings and errors,
a run end to end with its bundle.
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
from recfit.errors import BundleError, ConfigError
from recfit.models import build_model, create_model, family
from recfit.models._budget import fit_until
from recfit.models.autorec import IAutoRec, fit_autorec, rating_matrix
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.train.batches import TensorData


def _predict(m: IAutoRec, d: Interactions) -> np.ndarray:
    with torch.no_grad():
        return m(TensorData.from_interactions(d).columns).numpy()


def test_rating_matrix_keeps_positive_weights_and_merges_pairs() -> None:
    d = Interactions.from_arrays(
        [1, 2, 1, 3, 1], [7, 7, 8, 8, 7], [4.0, 2.0, 5.0, 1.0, 1.0]
    ).with_weights(np.array([1.0, 1.0, 2.0, 0.0, 3.0]))
    indptr, user, value, weight = rating_matrix(d)
    # items 7, 8 by index; user 3's row has weight 0: gone; (1, 7) twice: weighted mean
    assert indptr.tolist() == [0, 2, 3]
    assert user.tolist() == [0, 1, 0]
    np.testing.assert_allclose(value, [(4.0 + 3.0) / 4, 2.0, 5.0])
    np.testing.assert_allclose(weight, [4.0, 1.0, 2.0])


def test_fit_beats_the_baseline_and_lowers_the_training_error(
    low_rank: Interactions, baseline_rmse: Callable[[Interactions, Interactions], float]
) -> None:
    d = low_rank
    cut = np.random.default_rng(1).random(len(d)) < 0.8
    train, valid = d.take(np.flatnonzero(cut)), d.take(np.flatnonzero(~cut))
    m = create_model("autorec", train, autorec_hidden=20, epochs=60, lr=2e-2, reg=1.0)
    fit_autorec(m, train)
    mse = m.fit_info["train_mse"]
    assert len(mse) == 60 and mse[-1] < mse[0]
    rmse = np.sqrt(np.mean((_predict(m, valid) - valid.rating) ** 2))
    assert rmse < baseline_rmse(train, valid) - 0.05


def test_prediction_is_the_decoder_of_the_items_code(low_rank: Interactions) -> None:
    d = low_rank
    m = create_model("autorec", d, autorec_hidden=6, epochs=2, rating_range=None)
    fit_autorec(m, d)
    x = np.zeros((d.n_items, d.n_users), np.float32)
    x[d.item, d.user] = d.rating
    with torch.no_grad():
        enc = m.encoder_weight.numpy().astype(np.float64)
        h = 1 / (1 + np.exp(-(x @ enc + m.encoder_bias.numpy())))
        want = (m.decoder_weight.numpy()[d.user] * h[d.item]).sum(1) + m.decoder_bias.numpy()[
            d.user
        ]
    np.testing.assert_allclose(_predict(m, d), want, rtol=1e-4, atol=1e-4)
    # clipped into the training rating range by default
    clipped = create_model("autorec", d, autorec_hidden=6, epochs=2)
    fit_autorec(clipped, d)
    p = _predict(clipped, d)
    assert clipped.rating_range == (1.0, 5.0) and p.min() >= 1.0 and p.max() <= 5.0


def test_codes_follow_the_weights_and_the_ratings(low_rank: Interactions) -> None:
    d = low_rank
    m = create_model("autorec", d, autorec_hidden=5, epochs=1, seed=0)
    fit_autorec(m, d)
    before = _predict(m, d)
    other = create_model("autorec", d, autorec_hidden=5, epochs=3, seed=1)
    fit_autorec(other, d)
    m.load_state_dict(other.state_dict())  # a cached code must not survive new weights
    np.testing.assert_array_equal(_predict(m, d), _predict(other, d))
    assert not np.array_equal(before, _predict(m, d))
    with torch.no_grad():
        m.encoder_weight.mul_(2.0)  # nor a change in place
    assert not np.array_equal(_predict(m, d), _predict(other, d))


def test_same_seed_same_model(low_rank: Interactions) -> None:
    d = low_rank

    def fit(seed: int) -> np.ndarray:
        m = create_model("autorec", d, autorec_hidden=8, epochs=3, seed=seed)
        fit_autorec(m, d)
        return _predict(m, d)

    one = fit(1)
    np.testing.assert_array_equal(one, fit(1))
    assert not np.array_equal(one, fit(2))


def test_bad_settings() -> None:
    for arg, value in (("hidden", 0), ("epochs", 0), ("lr", 0.0), ("reg", -1.0),
                       ("batch_items", 0), ("init_std", -0.1)):  # fmt: skip
        with pytest.raises(ConfigError, match=arg):
            IAutoRec(3, 3, **{arg: value})
    with pytest.raises(ConfigError, match="autorec_hidden"):
        validate_config({"model": "autorec", "autorec_hidden": 0})
    with pytest.raises(ConfigError, match="autorec_hidden"):
        validate_config({"model": "svdpp", "autorec_hidden": 100})  # a field svdpp does not read
    with pytest.raises(ConfigError, match="rated_indptr"):
        IAutoRec(3, 4).set_ratings([0, 1], [0], [1.0])


def test_config_fields_reach_the_model(low_rank: Interactions) -> None:
    fam = family("autorec")
    assert fam.trainers == ("closed_form",) and fam.adapter == "generic"
    cfg = RatingConfig(model="autorec", autorec_hidden=7, lr=0.02).resolve_model(False)
    assert cfg.applies("reg") and cfg.applies("epochs") and not cfg.applies("n_factors")
    m = fam.build(fam.settings(cfg), low_rank)
    assert isinstance(m, IAutoRec)
    assert (m.hidden, m.lr, m.reg, m.epochs) == (
        7,
        0.02,
        fam.defaults["reg"],
        fam.defaults["epochs"],
    )


def test_a_run_end_to_end_and_its_bundle(tmp_path: Path, low_rank: Interactions) -> None:
    d = low_rank
    cfg = validate_config({"model": "autorec", "split": "random:0.2", "seed": 0,
                           "autorec_hidden": 12, "epochs": 5})  # fmt: skip
    assert cfg.trainer == "closed_form"
    result = train_run(cfg, tmp_path / "run", data=d)
    model = result.learner.model
    assert isinstance(model, IAutoRec) and len(model.rated_value) > 0
    rec = Recommender.load(tmp_path / "run" / "bundle")
    assert rec.info()["model"] == "autorec"
    users, items = d.users.id(d.user[:20]), d.items.id(d.item[:20])
    got = rec.predict(users, items, on_unknown="baseline")
    np.testing.assert_allclose(np.asarray(got), _predict(model, d.take(np.arange(20))), atol=1e-6)
    again = build_model(model.config())  # the ratings the codes read travel with the weights
    again.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(_predict(again, d), _predict(model, d))  # type: ignore[arg-type]


def test_a_hostile_rating_matrix_is_refused_on_load(low_rank: Interactions) -> None:
    d = low_rank
    m = create_model("autorec", d, autorec_hidden=4, epochs=1)
    fit_autorec(m, d)
    for name, bad in (("rated_user", lambda t: t.fill_(d.n_users)),
                      ("rated_indptr", lambda t: t.flip(0))):  # fmt: skip
        state = {k: v.clone() for k, v in m.state_dict().items()}
        state[name] = bad(state[name])
        fresh = build_model(m.config())
        with pytest.raises(BundleError, match="rated_indptr"):
            fresh.load_state_dict(state)


def test_a_deadline_keeps_the_epochs_that_end_by_it(low_rank: Interactions) -> None:
    """auto's budget: a deadline already passed ends the fit after one epoch and the
    model says so; a far deadline changes nothing."""
    d = low_rank
    m = create_model("autorec", d, autorec_hidden=8, epochs=5, seed=0)
    with fit_until(time.perf_counter() - 1.0):
        fit_autorec(m, d)
    assert m.epochs == 1 and len(m.fit_info["train_mse"]) == 1
    assert m.fit_info["epochs_wanted"] == 5
    assert np.isfinite(_predict(m, d)).all()
    free = create_model("autorec", d, autorec_hidden=8, epochs=5, seed=0)
    fit_autorec(free, d)
    far = create_model("autorec", d, autorec_hidden=8, epochs=5, seed=0)
    with fit_until(time.perf_counter() + 1e6):
        fit_autorec(far, d)
    assert free.epochs == far.epochs == 5
    np.testing.assert_array_equal(_predict(free, d), _predict(far, d))
