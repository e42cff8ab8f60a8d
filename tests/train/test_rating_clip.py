"""A linear rating model whose own output leaves the rating scale predicts inside it
through every path that shows a prediction; the loss stays on the unclipped output."""

from __future__ import annotations

import numpy as np
import torch

from recfit.data import Interactions
from recfit.data.synthetic import synthetic
from recfit.metrics import get_metric
from recfit.models import BiasedMF
from recfit.models.base import clip_ratings
from recfit.recommender import Recommender
from recfit.train.learner import Learner


def _wide_model(d: Interactions) -> BiasedMF:
    """A BiasedMF whose item biases spread its raw output over about [-1, 8]."""
    m = BiasedMF(d.n_users, d.n_items, n_factors=2, global_mean=3.5, seed=0)
    with torch.no_grad():
        m.item_bias.copy_(torch.linspace(-4.5, 4.5, d.n_items).reshape(m.item_bias.shape))
    m.record_training(d.user, d.item, d.rating, d.weights())
    return m


def _raw(m: BiasedMF, d: Interactions) -> np.ndarray:
    batch = {
        "user": torch.from_numpy(d.user.astype(np.int64)),
        "item": torch.from_numpy(d.item.astype(np.int64)),
    }
    with torch.no_grad():
        return m(batch).numpy()


def test_learner_predict_and_evaluate_stay_on_the_scale() -> None:
    d = synthetic(600, 30, 40, n_factors=2, seed=1, with_timestamps=False)
    assert d.rating_scale == (1, 5)
    m = _wide_model(d)
    raw = _raw(m, d)
    assert raw.min() < 0.5 and raw.max() > 5.5  # the model itself leaves the scale
    learn = Learner(m, d, progress=False)
    pred = learn.predict(d)
    assert pred.dtype == np.float32 and pred.min() >= 1.0 and pred.max() <= 5.0
    np.testing.assert_allclose(pred, np.clip(raw, 1, 5), rtol=1e-6)
    ev = learn.evaluate(d)
    for name in ("mse", "rmse", "mae"):
        assert ev[name] == get_metric(name)(pred, d.rating, d.weight)
    # the loss is the objective on the model's own output, not on the clipped one
    assert abs(ev["loss"] - float(np.mean((raw - d.rating) ** 2))) < 1e-4
    assert ev["loss"] > ev["mse"]


def test_undeclared_scale_is_the_training_range() -> None:
    d0 = synthetic(600, 30, 40, n_factors=2, seed=1, with_timestamps=False)
    d = Interactions.from_arrays(d0.users.id(d0.user), d0.items.id(d0.item), d0.rating)
    assert d.rating_scale is None
    lo, hi = float(d.rating.min()), float(d.rating.max())
    assert d.prediction_scale() == (lo, hi)
    pred = Learner(_wide_model(d), d, progress=False).predict(d)
    assert pred.min() == lo and pred.max() == hi


def test_recommender_predicts_on_the_scale_and_ranks_on_the_raw_output() -> None:
    d = synthetic(600, 30, 40, n_factors=2, seed=1, with_timestamps=False)
    m = _wide_model(d)
    rec = Recommender(m, d.users, d.items, d, rating_scale=d.prediction_scale())
    users, items = d.users.id(d.user), d.items.id(d.item)
    p = rec.predict(users, items)
    assert p.min() >= 1.0 and p.max() <= 5.0
    np.testing.assert_allclose(p, np.clip(_raw(m, d), 1, 5), rtol=1e-6)
    # top-n: ranked on the unclipped output (item bias grows with the index), shown clipped
    user = users[0]
    u = int(d.users.index([user])[0])
    seen = set(d.item[d.user == u].tolist())
    with torch.no_grad():
        full = m({"user": torch.full((d.n_items,), u), "item": torch.arange(d.n_items)}).numpy()
    order = [int(i) for i in np.argsort(-full, kind="stable") if int(i) not in seen][:5]
    got = rec.recommend(user, n=5).recommendations[0].items
    assert [int(d.items.index([x.id])[0]) for x in got] == order
    assert full[order[0]] > 5.0 and all(1.0 <= x.score <= 5.0 for x in got)


def test_clip_ratings_leaves_scores_and_unknown_scales() -> None:
    x = np.array([-1.0, 9.0], dtype=np.float32)
    assert clip_ratings(x, (1.0, 5.0), "score") is x
    assert clip_ratings(x, None) is x
    assert clip_ratings(x, (1.0, 5.0)).tolist() == [1.0, 5.0]


def test_one_valued_feedback_has_no_prediction_scale() -> None:
    """Implicit feedback (every rating 1) gives scores, not ratings: no scale to clip into
    (a bundle's rating scale must have lo < hi), and weight-0 rows do not widen it."""
    ones = Interactions.from_arrays([0, 1, 2], [0, 1, 0], [1.0, 1.0, 1.0])
    assert ones.prediction_scale() is None
    d = Interactions.from_arrays([0, 1, 2], [0, 1, 0], [2.0, 4.0, 50.0]).with_weights(
        np.array([1.0, 1.0, 0.0], dtype=np.float32)
    )
    assert d.prediction_scale() == (2.0, 4.0)
