"""RatingClassifier: heads, decodings, cross-entropy with weights, level metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.metrics import decode_argmax, decode_expected, levels_for_scale
from recfit.models import (
    CrossEntropyLoss,
    DotBias,
    LevelModel,
    RatingClassifier,
    build_model,
    get_loss,
    levels_for_data,
)
from recfit.train import Learner

STARS = [1.0, 2.0, 3.0, 4.0, 5.0]


def _batch(n_users: int, n_items: int, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "user": torch.randint(0, n_users, (n,), generator=g),
        "item": torch.randint(0, n_items, (n,), generator=g),
    }


def test_output_shape_for_five_and_ten_levels() -> None:
    for levels in (levels_for_scale((1, 5)), levels_for_scale((0.5, 5), 0.5)):
        for head in ("softmax", "ordinal"):
            m = RatingClassifier(7, 9, levels=levels.tolist(), layers=(8,), head=head).eval()
            out = m(_batch(7, 9, 6))
            assert out.shape == (6, len(levels))
            p = m.to_proba(out)
            assert torch.allclose(p.sum(1), torch.ones(6), atol=1e-5)
            assert bool((p >= 0).all())


def test_levels_for_data() -> None:
    whole = Interactions.from_arrays([0, 1], [0, 1], [2.0, 4.0], rating_scale=(1, 5))
    half = Interactions.from_arrays([0, 1], [0, 1], [2.5, 4.0], rating_scale=(0.5, 5))
    assert levels_for_data(whole) == STARS
    assert levels_for_data(half) == levels_for_scale((0.5, 5), 0.5).tolist()


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(3, 10),
    gaps=st.lists(st.floats(-8, 8), min_size=8, max_size=8),
    theta0=st.floats(-5, 5),
    seed=st.integers(0, 1000),
)
def test_ordinal_cumulative_probabilities_are_monotone(
    k: int, gaps: list[float], theta0: float, seed: int
) -> None:
    m = RatingClassifier(5, 6, levels=list(range(1, k + 1)), layers=(4,), head="ordinal", seed=seed)
    with torch.no_grad():
        m.theta_gaps.copy_(torch.tensor(gaps[: k - 2]))
        m.theta0.fill_(theta0)
        m.out.weight.mul_(100.0)  # large scores: the extremes of the sigmoid
    m.eval().requires_grad_(False)
    x = m.features(_batch(5, 6, 32, seed))
    above = m.cumulative_proba(x)  # P(y > k)
    assert above.shape == (32, k - 1)
    assert bool((above[:, 1:] <= above[:, :-1]).all())
    assert bool((m.thresholds()[1:] > m.thresholds()[:-1]).all())
    p = m.to_proba(m.head(x))
    assert bool((p >= 0).all())
    cum = torch.cumsum(p, 1)[:, :-1]  # P(y <= k)
    np.testing.assert_allclose(cum.numpy(), (1 - above).numpy(), atol=1e-5)


def test_head_of_features_is_forward_and_checks_width() -> None:
    m = RatingClassifier(5, 6, levels=STARS, layers=(8,), n_factors=3).eval()
    b = _batch(5, 6, 10)
    x = m.features(b)
    assert x.shape == (10, m.feature_dim)
    torch.testing.assert_close(m.head(x), m(b))
    with pytest.raises(ConfigError, match="feature vectors"):
        m.head(x[:, :-1])


def test_decodings() -> None:
    m = RatingClassifier(5, 6, levels=STARS, layers=(8,), seed=3).eval().requires_grad_(False)
    out = m(_batch(5, 6, 20)) * 5
    p = m.to_proba(out).double().numpy()
    expected = m.to_rating(out).numpy()
    np.testing.assert_allclose(expected, decode_expected(p, STARS), rtol=1e-5)
    arg = build_model({**m.config(), "decode": "argmax"})
    arg.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(arg.eval().to_rating(out).numpy(), decode_argmax(p, STARS))


def test_learner_predict_is_the_expected_rating(tiny: Interactions) -> None:
    model = RatingClassifier(tiny.n_users, tiny.n_items, levels=STARS, layers=(8,), seed=0)
    learn = Learner(model, tiny, bs=32, progress=False).fit(1, 1e-2)
    proba = learn.predict_proba(tiny)
    assert proba.shape == (len(tiny), 5) and proba.dtype == np.float64
    np.testing.assert_allclose(learn.predict(tiny), decode_expected(proba, STARS), rtol=1e-5)
    assert learn.loss_func.name == "cross_entropy"
    assert {"accuracy", "macro_f1", "mse_expected", "mse_argmax"} <= set(learn.evaluate(tiny))


def test_cross_entropy_value_and_nearest_level() -> None:
    ce = CrossEntropyLoss(levels=STARS)
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 1.0]])
    rating = torch.tensor([3.0, 5.0])
    ref = torch.nn.functional.cross_entropy(logits, torch.tensor([2, 4]), reduction="none")
    torch.testing.assert_close(ce(logits, {"rating": rating}), ref)
    # float32 rounding and off-grid (weight-0) rows map to the nearest level, never crash
    assert ce.target(torch.tensor([0.9999, 2.4, 2.6, -40.0, 99.0])).tolist() == [0, 1, 2, 0, 4]


def test_cross_entropy_needs_levels() -> None:
    with pytest.raises(ConfigError, match="levels"):
        get_loss("cross_entropy")(torch.zeros(2, 5), {"rating": torch.ones(2)})
    with pytest.raises(ConfigError, match="rating levels"):
        Learner(DotBias(3, 3, 2), Interactions.from_arrays([0], [0], [1.0]), loss="cross_entropy")
    with pytest.raises(ConfigError, match="level metric"):
        Learner(DotBias(3, 3, 2), Interactions.from_arrays([0], [0], [1.0]), metrics=["accuracy"])


def _model(d: Interactions) -> RatingClassifier:
    return RatingClassifier(d.n_users, d.n_items, levels=STARS, layers=(8,), seed=2)


def test_weighted_cross_entropy_weight_zero_is_absent_and_two_is_a_copy(
    tiny: Interactions,
) -> None:
    model = _model(tiny)
    learn = Learner(model, tiny, bs=32, progress=False, seed=1).fit(1, 1e-2)
    rows = np.arange(40)
    base = tiny.take(rows)
    # weight 0 on appended rows (with off-grid ratings) changes nothing
    garbage = tiny.take(np.arange(40, 60))
    garbage = Interactions(
        user=garbage.user, item=garbage.item, rating=np.full(20, 77.0, np.float32),
        users=tiny.users, items=tiny.items,
    )  # fmt: skip
    both = Interactions(
        user=np.concatenate([base.user, garbage.user]),
        item=np.concatenate([base.item, garbage.item]),
        rating=np.concatenate([base.rating, garbage.rating]),
        weight=np.concatenate([np.ones(40), np.zeros(20)]).astype(np.float32),
        users=tiny.users,
        items=tiny.items,
    )
    a, b = learn.evaluate(base), learn.evaluate(both)
    assert a == b
    # weight 2 == the row twice
    w = np.ones(40, np.float32)
    w[:5] = 2.0
    doubled = base.take(np.concatenate([rows, np.arange(5)]))
    ev_w, ev_d = learn.evaluate(base.with_weights(w)), learn.evaluate(doubled)
    for k in ("loss", "accuracy", "mse_expected", "weighted_f1"):
        assert ev_w[k] == pytest.approx(ev_d[k], rel=1e-12), k


def test_training_ignores_weight_zero_rows(tiny: Interactions) -> None:
    w = np.ones(len(tiny), np.float32)
    w[::3] = 0.0
    mixed = tiny.with_weights(w)
    clean = tiny.take(np.flatnonzero(w > 0))
    a = Learner(_model(tiny), clean, bs=32, progress=False, seed=1).fit(2, 1e-2)
    b = Learner(_model(tiny), mixed, bs=32, progress=False, seed=1).fit(2, 1e-2)
    np.testing.assert_array_equal(a.predict_proba(tiny), b.predict_proba(tiny))


def test_protocol_and_config_errors() -> None:
    assert isinstance(RatingClassifier(2, 2), LevelModel)
    assert not isinstance(DotBias(2, 2, 2), LevelModel)
    with pytest.raises(ConfigError, match="head"):
        RatingClassifier(2, 2, head="tree")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="increasing"):
        RatingClassifier(2, 2, levels=[1.0, 1.0, 2.0])
    with pytest.raises(ConfigError, match="decode"):
        RatingClassifier(2, 2, decode="median")  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(k=st.integers(2, 10), seed=st.integers(0, 10_000), scale=st.floats(0.01, 30.0))
def test_one_ordinal_log_probability_for_both_ordinal_models(
    k: int, seed: int, scale: float
) -> None:
    """The classifier's ordinal head and OrdRec share ``ordinal_log_proba``: a proper
    distribution whose cumulative sums are the given ``P(y <= j)``, floored in the tails."""
    from recfit.models import OrdRec
    from recfit.models.classifier import ordinal_log_proba

    g = torch.Generator().manual_seed(seed)
    below = torch.sort(torch.sigmoid(torch.randn(16, k - 1, generator=g) * scale), 1).values
    logp = ordinal_log_proba(below)
    p = logp.exp()
    assert logp.shape == (16, k) and bool((logp >= np.log(1e-12) - 1e-4).all())
    np.testing.assert_allclose(torch.cumsum(p, 1)[:, :-1].numpy(), below.numpy(), atol=1e-5)
    levels = list(range(1, k + 1))
    m = RatingClassifier(5, 6, levels=levels, layers=(4,), head="ordinal", seed=seed).eval()
    x = m.features(_batch(5, 6, 8, seed))
    with torch.no_grad():
        torch.testing.assert_close(m.head(x), ordinal_log_proba(1 - m.cumulative_proba(x)),
                                   rtol=1e-4, atol=1e-4)  # fmt: skip
    o = OrdRec(5, 6, n_factors=2, levels=levels, seed=seed)
    b = _batch(5, 6, 8, seed)
    with torch.no_grad():
        s = (o.user_factors[b["user"]] * o.item_factors[b["item"]]).sum(1)
        s = s + o.user_bias[b["user"]] + o.item_bias[b["item"]]
        expected = ordinal_log_proba(torch.sigmoid(o.thresholds(b["user"]) - s.unsqueeze(1)))
        torch.testing.assert_close(o(b), expected)
