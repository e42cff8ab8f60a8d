"""The blend family: a ridge blend of members' predictions, saved and loaded with no pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from recfit.data import Interactions
from recfit.errors import BundleError, ConfigError
from recfit.models import create_model, family, read_model_file, write_model_file
from recfit.models.blend import Blend, fit_closed_form, member_settings, predict_rows, ridge_blend
from recfit.models.persist import MODEL_FORMAT_VERSION
from recfit.train import Learner


def test_ridge_recovers_known_weights_and_ignores_weight_zero_rows() -> None:
    rng = np.random.default_rng(0)
    p = rng.normal(3.0, 1.0, size=(500, 3))
    r = 0.2 + p @ np.array([0.5, 0.3, 0.1])
    w = np.ones(500)
    r_bad = r.copy()
    r_bad[:50] += 100.0  # rows that do not exist
    w[:50] = 0.0
    c, b = ridge_blend(p, r_bad, w, ridge=0.0)
    np.testing.assert_allclose(c, [0.5, 0.3, 0.1], atol=1e-9)
    assert b == pytest.approx(0.2, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 60),
    k=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    ridge=st.floats(0.0, 1.0),
)
def test_ridge_is_never_worse_than_the_mean(n: int, k: int, seed: int, ridge: float) -> None:
    """With an unpenalised intercept, the fit on its own rows is at least as good as the
    weighted mean rating (the fit with every weight 0), and the weights are finite."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, k))
    r = rng.normal(size=n)
    w = rng.choice([0.5, 1.0, 2.0], size=n)
    c, b = ridge_blend(p, r, w, ridge=ridge)
    assert np.isfinite(c).all() and np.isfinite(b)
    mean = (w * r).sum() / w.sum()
    fitted = ((w * (p @ c + b - r) ** 2).sum()) / w.sum()
    assert fitted <= ((w * (mean - r) ** 2).sum()) / w.sum() + 1e-9


def test_blend_predicts_the_weighted_sum_clipped(tiny: Interactions) -> None:
    m = create_model("blend", tiny, blend_members=("baseline", "mf"), seed=0)
    assert isinstance(m, Blend)
    fit_closed_form(m, tiny)
    p = predict_rows(m, tiny)
    w, b = m.blend_weights.numpy(), float(m.blend_intercept)
    expected = np.clip(p @ w + b, 1.0, 5.0)
    got = Learner(m, tiny, progress=False).predict(tiny)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert m.summary()["members"] == ["baseline", "mf"]


def test_round_trip_keeps_members_weights_and_predictions(
    tiny: Interactions, tmp_path: Path
) -> None:
    m = create_model(
        "blend", tiny, blend_members=("svdpp", '{"model": "dot", "n_factors": 4}'), seed=2
    )
    m.set_weights([0.7, 0.4], -0.3)
    path = write_model_file(m, tmp_path / "m.safetensors")
    m2 = read_model_file(path)
    assert isinstance(m2, Blend) and m2.config() == m.config()
    assert m2.config()["members"][1]["n_factors"] == 4
    torch.testing.assert_close(m2.blend_weights, m.blend_weights)
    a = Learner(m, tiny, progress=False).predict(tiny)
    np.testing.assert_array_equal(Learner(m2, tiny, progress=False).predict(tiny), a)


def test_member_specs_are_names_or_json_objects() -> None:
    assert member_settings("svdpp") == {"model": "svdpp"}
    assert member_settings(' {"model": "dot", "lr": 0.01}') == {"model": "dot", "lr": 0.01}
    with pytest.raises(ConfigError, match="JSON object for a blend member"):
        member_settings('{"model": ')
    with pytest.raises(ConfigError, match="family name under 'model'"):
        member_settings('{"n_factors": 3}')


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ((), "1 to 16 blend members"),
        (("blend",), "other than 'blend'"),
        (("nope",), "expected a model name among"),
    ],
)
def test_bad_members_are_config_errors(
    tiny: Interactions, members: tuple[str, ...], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        create_model("blend", tiny, blend_members=members)


def test_a_member_of_another_size_is_refused(tiny: Interactions) -> None:
    dot = create_model("dot", tiny, n_factors=2)
    with pytest.raises(ConfigError, match="sized"):
        Blend(tiny.n_users + 1, tiny.n_items, [dot])


def test_a_hostile_file_cannot_nest_blends(tiny: Interactions, tmp_path: Path) -> None:
    """A model file whose config puts a blend inside a blend is refused (loading stays
    bounded), as a typed error."""
    m = create_model("blend", tiny, blend_members=("baseline",))
    cfg = m.config()
    cfg["members"] = [dict(cfg)]
    path = tmp_path / "evil.safetensors"
    meta = {"recfit.format_version": str(MODEL_FORMAT_VERSION), "recfit.config": json.dumps(cfg)}
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path), metadata=meta)
    with pytest.raises((ConfigError, BundleError), match="other than 'blend'"):
        read_model_file(path)


def test_family_entry() -> None:
    fam = family("blend")
    assert fam.trainers == ("closed_form",) and fam.adapter == "blend"  # answers via members
    assert fam.reads == frozenset({"blend_members", "seed"})


def test_a_blend_answers_lists_and_says_why_it_has_no_similar_items(tiny: Interactions) -> None:
    """Similar items come from a member with item vectors: a blend with none says so
    (tests/recommender/test_blend_queries.py: a blend with one answers through it)."""
    from recfit.recommender import Recommender

    m = create_model("blend", tiny, blend_members=("baseline",), seed=0)
    fit_closed_form(m, tiny)
    rec = Recommender(m, tiny.users, tiny.items, tiny, rating_scale=tiny.rating_scale)
    user, item = tiny.users.ids[0], tiny.items.ids[0]
    assert len(rec.recommend(user, n=3)[0].ids) == 3
    with pytest.raises(ConfigError, match="a member that has item vectors"):
        rec.similar_items(item)


def test_members_are_clipped_before_the_weights_like_the_predictions_they_were_fitted_on() -> None:
    """The weights are fitted on members' predictions as users see them (clipped into the
    rating scale), so the blend combines clipped member predictions too."""
    d = Interactions.from_arrays([1, 1, 2, 2], [7, 8, 7, 9], [5.0, 3.0, 4.0, 2.0])
    m = create_model("blend", d, blend_members=("baseline", "mf"), seed=0)
    fit_closed_form(m, d)
    lo, hi = m.clip  # type: ignore[misc]
    with torch.no_grad():
        m.member_models()[0].global_mean = hi + 3.0  # type: ignore[assignment]  # far above
    batch = {"user": torch.tensor([0, 1]), "item": torch.tensor([0, 1])}
    with torch.no_grad():
        cols = m.member_outputs(batch)
        assert float(cols.max()) <= hi and float(cols.min()) >= lo
        w, b = m.blend_weights.double(), float(m.blend_intercept)
        torch.testing.assert_close(m(batch), (cols @ w + b).clamp(lo, hi).float())
