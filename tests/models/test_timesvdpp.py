"""The ``timesvdpp`` family (Koren 2009's timeSVD++), added through the registry.

Conformance (fit, predict, save/load, unknown ids, weights, evaluate ≡ predict) comes from
the suites that iterate over the registry; these tests check what is its own: the time
terms read the batch's ``timestamp`` (and the user's last training day without one), the
compiled epoch and ``forward`` compute the same prediction, settings and errors, a run end
to end with its bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recfit.config import RatingConfig, validate_config
from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import build_model, create_model, family
from recfit.models.timesvdpp import DAY, TimeSVDpp, fit_timesvdpp
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.train import Learner
from recfit.train.batches import TensorData


def _timed(n_users: int = 25, n_items: int = 18, n: int = 400, seed: int = 0) -> Interactions:
    """Ratings over 200 days whose level drifts with time (item by item)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    day = rng.integers(0, 200, n)
    drift = np.where(i % 2 == 0, 1.0, -1.0) * (day / 200 - 0.5)
    r = np.clip(np.round(3 + drift * 2 + rng.normal(0, 0.5, n)), 1, 5)
    ts = 1_600_000_000 + day * DAY + rng.integers(0, DAY, n)
    return Interactions.from_arrays(u, i, r, timestamp=ts, rating_scale=(1, 5))


def _batch(d: Interactions, with_time: bool = True) -> dict[str, torch.Tensor]:
    return TensorData.from_interactions(d, timestamp=with_time).columns


def test_prediction_batches_carry_timestamps_training_batches_do_not(tiny: Interactions) -> None:
    td = TensorData.from_interactions(tiny)
    assert td.columns["timestamp"].dtype == torch.int64
    np.testing.assert_array_equal(td.columns["timestamp"].numpy(), tiny.timestamp)
    untimed = Interactions.from_arrays([1, 2], [3, 4], [4.0, 5.0])
    assert "timestamp" not in TensorData.from_interactions(untimed).columns
    batches = list(td.epoch(7, torch.Generator().manual_seed(0)))
    assert all(len(b["timestamp"]) == len(b["user"]) for b in batches)
    # a family that does not read time trains on the columns it always had
    learn = Learner(create_model("dot", tiny, n_factors=2), tiny, progress=False)
    assert "timestamp" not in learn._train_td.columns


def test_fit_lowers_training_error_and_time_terms_matter() -> None:
    d = _timed()
    m = create_model("timesvdpp", d, n_factors=4, epochs=15, seed=0)
    fit_timesvdpp(m, d)
    losses = m.fit_info["loss"]
    assert len(losses) == 15 and losses[-1] < losses[0]
    assert m.fit_info["compile_seconds"] >= 0 and m.fit_info["fit_seconds"] >= 0
    assert float(m.item_bin_bias.detach().abs().max()) > 0 and len(m.day_keys) > 0
    b = _batch(d)
    timed = m(b)
    late = {**b, "timestamp": b["timestamp"] + 150 * DAY}
    assert not torch.equal(m(late), timed)  # the item periods and drift follow the time


def test_without_timestamp_the_users_last_training_day() -> None:
    d = _timed()
    m = create_model("timesvdpp", d, n_factors=4, epochs=5, seed=0)
    fit_timesvdpp(m, d)
    b = _batch(d, with_time=False)
    last = m.user_last_day[b["user"]] * DAY + 3600
    torch.testing.assert_close(m(b), m({**b, "timestamp": last}), rtol=0, atol=0)
    days = np.floor_divide(d.timestamp, DAY)
    want = np.zeros(d.n_users, np.int64)
    np.maximum.at(want, d.user, days)
    np.testing.assert_array_equal(
        m.user_last_day.numpy()[np.unique(d.user)], want[np.unique(d.user)]
    )


def test_times_far_from_training_take_the_nearest_period() -> None:
    d = _timed()
    m = create_model("timesvdpp", d, n_factors=2, epochs=3, seed=0, lr_alpha=0.0)
    fit_timesvdpp(m, d)
    b = _batch(d, with_time=False)
    n = len(b["user"])
    with torch.no_grad():
        far = [m({**b, "timestamp": torch.full((n,), t)}) for t in (2**62, -(2**62))]
        late = m({**b, "timestamp": torch.full((n,), 1_600_000_000 + 10_000 * DAY)})
        early = m({**b, "timestamp": torch.full((n,), 1_600_000_000 - 10_000 * DAY)})
    # no user-day bias that far away, the last (first) item period; drift switched off
    torch.testing.assert_close(far[0], late, rtol=0, atol=0)
    torch.testing.assert_close(far[1], early, rtol=0, atol=0)


def test_kernel_and_forward_compute_the_same_prediction() -> None:
    """With a negligible learning rate the weights stay at their start: the last epoch's
    training error (the kernel's predictions) equals the error of ``forward``."""
    d = _timed()
    m = create_model(
        "timesvdpp", d, n_factors=3, epochs=2, lr=1e-12, lr_bias=1e-12, lr_alpha=0.0,
        init_std=0.3, rating_range=None, seed=2,
    )  # fmt: skip
    fit_timesvdpp(m, d)
    with torch.no_grad():
        pred = m(_batch(d)).double().numpy()
    mse = float(np.mean((pred - d.rating) ** 2))
    assert m.fit_info["loss"][-1] == pytest.approx(mse, rel=1e-5)
    # the same with trained biases (a time bias of a (user, day) pair met in training)
    m2 = create_model("timesvdpp", d, n_factors=3, epochs=3, rating_range=None, seed=2)
    fit_timesvdpp(m2, d)
    m2.user_alpha.data.fill_(0.01)
    key_hits = m2._day_bias(torch.from_numpy(d.user.astype(np.int64)), torch.from_numpy(
        np.floor_divide(d.timestamp, DAY)))  # fmt: skip
    assert bool((key_hits != 0).all())  # every training row finds its day's bias


def test_data_without_timestamps_is_one_day() -> None:
    d = _timed()
    untimed = Interactions.from_arrays(d.users.id(d.user), d.items.id(d.item), d.rating)
    m = create_model("timesvdpp", untimed, n_factors=3, epochs=6, seed=0)
    fit_timesvdpp(m, untimed)
    assert m.fit_info["timestamps"] is False and m.fit_info["loss"][-1] < m.fit_info["loss"][0]
    assert set(m.user_last_day.tolist()) == {0} and m.bin_days == 1
    b = _batch(untimed)
    assert "timestamp" not in b
    with torch.no_grad():  # without a timestamp: the one training day, day 0
        torch.testing.assert_close(m(b), m({**b, "timestamp": torch.zeros_like(b["user"])}))


def test_same_seed_same_model_other_seed_other() -> None:
    d = _timed()

    def fit(seed: int) -> np.ndarray:
        m = create_model("timesvdpp", d, n_factors=4, epochs=4, seed=seed)
        fit_timesvdpp(m, d)
        with torch.no_grad():
            return m(_batch(d)).numpy()

    np.testing.assert_array_equal(fit(1), fit(1))
    assert not np.array_equal(fit(1), fit(2))


def test_weights_zero_rows_do_not_exist() -> None:
    d = _timed()
    w = np.where(np.arange(len(d)) % 3 == 0, 0.0, 1.0).astype(np.float32)
    kept = d.take(np.flatnonzero(w > 0))
    a = create_model("timesvdpp", d.with_weights(w), n_factors=3, epochs=3, seed=0)
    b = create_model("timesvdpp", kept, n_factors=3, epochs=3, seed=0)
    fit_timesvdpp(a, d.with_weights(w))
    fit_timesvdpp(b, kept)
    with torch.no_grad():
        np.testing.assert_allclose(a(_batch(kept)).numpy(), b(_batch(kept)).numpy(), atol=1e-6)


def test_bad_settings_and_data() -> None:
    for arg, value in (("n_bins", 0), ("lr", -1.0), ("reg_time", -0.1), ("epochs", 1.5)):
        with pytest.raises(ConfigError, match=arg):
            TimeSVDpp(3, 3, **{arg: value})
    with pytest.raises(ConfigError, match="time_bins"):
        validate_config({"model": "timesvdpp", "time_bins": 0})
    with pytest.raises(ConfigError, match="time_bins"):
        validate_config({"model": "dot", "time_bins": 5})  # a field dot does not read
    big = create_model("timesvdpp", _timed(), n_factors=2, epochs=3, lr=50.0, lr_bias=50.0)
    with pytest.raises(ConfigError, match="lr"):
        fit_timesvdpp(big, _timed())


def test_config_fields_reach_the_model() -> None:
    fam = family("timesvdpp")
    assert fam.trainers == ("closed_form",) and fam.adapter == "generic"
    cfg = RatingConfig(model="timesvdpp", time_bins=7, time_reg=0.2, epochs=3).resolve_model(False)
    assert cfg.lr == fam.defaults["lr"] and cfg.reg == fam.defaults["reg"]
    m = fam.build(fam.settings(cfg), _timed())
    assert isinstance(m, TimeSVDpp)
    assert (m.n_bins, m.reg_time, m.epochs, m.lr) == (7, 0.2, 3, fam.defaults["lr"])


def test_a_run_end_to_end_and_its_bundle(tmp_path: Path) -> None:
    d = _timed(n=600)
    cfg = validate_config({"model": "timesvdpp", "split": "random:0.2", "seed": 0,
                           "epochs": 8, "n_factors": 4})  # fmt: skip
    assert cfg.trainer == "closed_form"
    result = train_run(cfg, tmp_path / "run", data=d)
    model = result.learner.model
    assert isinstance(model, TimeSVDpp)
    rec = Recommender.load(tmp_path / "run" / "bundle")
    assert rec.info()["model"] == "timesvdpp"
    users, items = d.users.id(d.user[:20]), d.items.id(d.item[:20])
    with torch.no_grad():  # the bundle answers without a timestamp: the last training day
        want = model({"user": torch.from_numpy(d.user[:20].astype(np.int64)),
                      "item": torch.from_numpy(d.item[:20].astype(np.int64))})  # fmt: skip
    got = rec.predict(users, items, on_unknown="baseline")
    known = model.train_user_count[d.user[:20]].numpy() > 0
    np.testing.assert_allclose(np.asarray(got)[known], want.numpy()[known], atol=1e-6)
    again = build_model(model.config())
    again.load_state_dict(model.state_dict())
    b = _batch(d)
    with torch.no_grad():
        torch.testing.assert_close(again(b), model(b), rtol=0, atol=0)
