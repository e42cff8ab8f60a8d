"""Imbalance strategies: weights, samplers, SMOTE, and the no-leakage guarantee."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_class_weight

from recfit.data import Interactions, random_split
from recfit.errors import ConfigError, DataError
from recfit.metrics.decoding import levels_for_scale
from recfit.train.imbalance import (
    Resampled,
    class_weights,
    random_sample,
    resample,
    row_vectors,
    smote,
)


def skewed(n: int = 400, seed: int = 0, weight: np.ndarray | None = None) -> Interactions:
    """Ratings 1..5 with frequencies roughly 5/10/25/35/25 %, one row per (user, item)."""
    rng = np.random.default_rng(seed)
    r = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.05, 0.1, 0.25, 0.35, 0.25]).astype(float)
    pairs = rng.choice(60 * 60, size=n, replace=False)
    return Interactions.from_arrays(pairs // 60, pairs % 60, r, weight=weight, rating_scale=(1, 5))


def rows_of(d: Interactions) -> list[tuple[int, int, float, float]]:
    users, items = d.users.id(d.user), d.items.id(d.item)
    return list(
        zip(users.tolist(), items.tolist(), d.rating.tolist(), d.weights().tolist(), strict=True)
    )


def segment_distance(s: np.ndarray, pool: np.ndarray) -> float:
    """Distance from ``s`` to the nearest segment between two vectors of ``pool``."""
    a = pool[:, None, :]
    b = pool[None, :, :]
    d = b - a
    dd = (d**2).sum(-1)
    lam = np.clip(np.divide(((s - a) * d).sum(-1), dd, out=np.zeros_like(dd), where=dd > 0), 0, 1)
    return float(np.sqrt(((a + lam[..., None] * d - s) ** 2).sum(-1)).min())


# ----------------------------------------------------------------- class weights
def test_class_weights_inverse_equals_sklearn_balanced() -> None:
    d = skewed()
    cw = class_weights(d.rating)
    classes = np.unique(d.rating)
    ref = compute_class_weight("balanced", classes=classes, y=d.rating)
    expected = ref[np.searchsorted(classes, d.rating)]
    assert cw == pytest.approx(expected, rel=1e-6)
    assert cw.dtype == np.float32
    assert float(cw.astype(np.float64).mean()) == pytest.approx(1.0, rel=1e-6)
    # every level carries the same total weight
    totals = {c: cw[d.rating == c].sum() for c in classes}
    assert max(totals.values()) == pytest.approx(min(totals.values()), rel=1e-5)


def test_class_weights_modes_and_existing_weights() -> None:
    y = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    assert class_weights(y).tolist() == [1.5, 1.5, 0.75, 0.75, 0.75, 0.75]
    s = class_weights(y, "sqrt_inverse")
    assert s[0] / s[2] == pytest.approx(np.sqrt(2))
    assert s.mean() == pytest.approx(1.0)
    # user-given, normalised
    g = class_weights(y, {1.0: 3.0, 2.0: 1.0})
    assert g[0] / g[2] == pytest.approx(3.0)
    assert g.mean() == pytest.approx(1.0)
    assert class_weights(y, {1: 3.0, 2: 1.0}, normalize=False).tolist() == [3, 3, 1, 1, 1, 1]
    # frequencies are weighted; a weight-0 row counts nothing
    w = np.array([2.0, 2.0, 1.0, 1.0, 1.0, 0.0])
    cw = class_weights(y, weight=w)
    assert (w * cw)[:2].sum() == pytest.approx((w * cw)[2:].sum())
    assert (w * cw).sum() / w.sum() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="none for \\['2'\\]"):
        class_weights(y, {1.0: 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        class_weights(y, {1.0: -1.0, 2.0: 1.0})
    with pytest.raises(ConfigError, match="mode"):
        class_weights(y, "balanced")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="non-negative") as e:
        class_weights(y, weight=[1, 1, 1, -1, 1, 1])
    assert e.value.row == 3


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=60),
    st.sampled_from(["inverse", "sqrt_inverse"]),
)
def test_class_weights_weighted_mean_is_one(labels: list[int], mode: str) -> None:
    y = np.array(labels, dtype=float)
    w = np.arange(len(y)) % 3  # includes zeros
    if w.sum() == 0:
        w = np.ones(len(y))
    cw = class_weights(y, mode, weight=w)  # type: ignore[arg-type]
    assert (w * cw).sum() / w.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.isfinite(cw).all()


# ----------------------------------------------------------------- samplers
def test_undersample_balances_with_a_subset() -> None:
    d = skewed()
    out = random_sample(d, "under", seed=3)
    counts = Counter(out.rating.tolist())
    minority = min(Counter(d.rating.tolist()).values())
    assert set(counts.values()) == {minority}
    assert len(counts) == 5
    # a subset: no row twice, every row a training row
    got = rows_of(out)
    assert len(set(got)) == len(got)
    assert set(got) <= set(rows_of(d))
    # deterministic per seed, different across seeds
    assert rows_of(random_sample(d, "under", seed=3)) == got
    assert rows_of(random_sample(d, "under", seed=4)) != got
    assert out.meta["resample"]["strategy"] == "undersample"


def test_oversample_balances_with_repeats_of_train_rows() -> None:
    d = skewed()
    out = random_sample(d, "over", seed=1)
    counts = Counter(out.rating.tolist())
    majority = max(Counter(d.rating.tolist()).values())
    assert set(counts.values()) == {majority}
    got = Counter(rows_of(out))
    original = set(rows_of(d))
    assert set(got) == original  # every original row kept, nothing new
    assert rows_of(out)[: len(d)] == rows_of(d)
    # only minority levels are repeated
    repeated = {r[2] for r, c in got.items() if c > 1}
    assert 4.0 not in repeated and repeated <= {1.0, 2.0, 3.0, 5.0}


def test_dict_strategy_uses_rating_keys() -> None:
    d = skewed()
    out = random_sample(d, "under", seed=0, strategy={4.0: 30, 5.0: 20})
    c = Counter(out.rating.tolist())
    assert c[4.0] == 30 and c[5.0] == 20
    assert c[1.0] == (d.rating == 1.0).sum()
    with pytest.raises(ConfigError, match="keys among the ratings"):
        random_sample(d, "under", seed=0, strategy={4.5: 3})
    with pytest.raises(ConfigError, match="imbalanced-learn"):
        random_sample(d, "under", seed=0, strategy={4.0: 10_000})


def test_zero_weight_rows_are_never_resampled() -> None:
    n = 300
    w = np.ones(n, dtype=np.float32)
    w[::7] = 0.0
    d = skewed(n, weight=w)
    zero_rows = {r for r in rows_of(d) if r[3] == 0.0}
    assert zero_rows
    for kind in ("under", "over"):
        out = random_sample(d, kind, seed=0)  # type: ignore[arg-type]
        assert not (set(rows_of(out)) & zero_rows)
        assert (out.weights() > 0).all()
    # counts are taken over the rows of positive weight
    pos = Counter(d.rating[w > 0].tolist())
    assert set(Counter(random_sample(d, "over", seed=0).rating.tolist()).values()) == {
        max(pos.values())
    }


def test_samplers_reject_a_split_and_single_level() -> None:
    d = skewed()
    split = random_split(d, 0.2, seed=0)
    with pytest.raises(ConfigError, match=r"split\.train"):
        resample(split, "oversample")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"split\.train"):
        random_sample(split, "under", seed=0)  # type: ignore[arg-type]
    one = Interactions.from_arrays([1, 2], [1, 2], [3.0, 3.0])
    with pytest.raises(ConfigError, match="at least 2 rating levels"):
        random_sample(one, "over", seed=0)
    with pytest.raises(ConfigError, match="kind 'under' or 'over'"):
        random_sample(d, "sideways", seed=0)  # type: ignore[arg-type]


# ----------------------------------------------------------------- SMOTE
def test_smote_points_lie_between_same_level_train_vectors() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [8, 20, 40])
    x = rng.normal(size=(len(y), 3)) + y[:, None] * 4.0
    xs, ys = smote(x, y, seed=0, k_neighbors=3)
    counts = Counter(ys.tolist())
    assert counts == {0: 32, 1: 20}
    assert xs.shape == (52, 3)
    for s, lv in zip(xs, ys, strict=True):
        assert segment_distance(s, x[y == lv]) < 1e-9
    xs2, ys2 = smote(x, y, seed=0, k_neighbors=3)
    assert np.array_equal(xs, xs2) and np.array_equal(ys, ys2)
    assert not np.array_equal(xs, smote(x, y, seed=1, k_neighbors=3)[0])


def test_smote_ignores_zero_weight_vectors() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], [10, 30])
    x = rng.normal(size=(40, 2))
    # two weight-0 minority vectors far away: no synthetic point may come near them
    x = np.vstack([x, [[100.0, 100.0], [101.0, 101.0]]])
    y = np.concatenate([y, [0, 0]])
    w = np.concatenate([np.ones(40), [0.0, 0.0]])
    xs, ys = smote(x, y, seed=0, k_neighbors=3, weight=w)
    assert len(xs) == 20 and set(ys.tolist()) == {0}
    assert np.abs(xs).max() < 10


def test_smote_errors() -> None:
    x = np.arange(10, dtype=float).reshape(5, 2)
    with pytest.raises(ConfigError, match="more than k_neighbors"):
        smote(x, [0, 1, 1, 1, 1], seed=0, k_neighbors=2)
    with pytest.raises(DataError, match="one per vector"):
        smote(x, [0, 1], seed=0)
    with pytest.raises(ConfigError, match="k_neighbors >= 1"):
        smote(x, [0, 0, 1, 1, 1], seed=0, k_neighbors=0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="finite") as e:
        smote(bad, [0, 0, 1, 1, 1], seed=0)
    assert e.value.row == 3


def test_row_vectors() -> None:
    d = skewed(50)
    uv = np.arange(d.n_users * 2, dtype=float).reshape(-1, 2)
    iv = -np.arange(d.n_items, dtype=float).reshape(-1, 1)
    v = row_vectors(d, uv, iv)
    assert v.shape == (50, 3)
    assert v[:, :2].tolist() == uv[d.user].tolist()
    assert v[:, 2].tolist() == (-d.item.astype(float)).tolist()
    with pytest.raises(DataError, match="user table"):
        row_vectors(d, uv[:-1])


# ----------------------------------------------------------------- entry point
@pytest.mark.parametrize(
    "strategy", ["none", "class_weights", "undersample", "oversample", "smote"]
)
def test_resample_strategies(strategy: str) -> None:
    d = skewed()
    vec = np.random.default_rng(0).normal(size=(len(d), 4)) if strategy == "smote" else None
    r = resample(d, strategy, seed=5, vectors=vec, levels=levels_for_scale())  # type: ignore[arg-type]
    assert isinstance(r, Resampled)
    assert r.strategy == strategy
    assert r.levels.tolist() == [1, 2, 3, 4, 5]
    assert r.counts_before == {float(k): float((d.rating == k).sum()) for k in range(1, 6)}
    after = list(r.counts_after.values())
    if strategy == "none":
        assert r.train is d and r.counts_after == r.counts_before
    elif strategy == "class_weights":
        assert max(after) == pytest.approx(min(after), rel=1e-5)
        assert r.train.weights().mean() == pytest.approx(1.0, rel=1e-5)
    else:
        assert len(set(after)) == 1
    if strategy == "smote":
        assert r.synthetic_vectors is not None and r.synthetic_ratings is not None
        assert r.n_synthetic == len(r.synthetic_vectors) > 0
        assert r.train is d
    else:
        assert r.synthetic_vectors is None and r.n_synthetic == 0


def test_resample_class_weights_mapping_and_errors() -> None:
    d = skewed()
    r = resample(d, "class_weights", class_weight={1: 5.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0})
    w = r.train.weights()
    assert w[d.rating == 1][0] / w[d.rating == 2][0] == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="strategy one of"):
        resample(d, "adasyn")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="expected vectors"):
        resample(d, "smote")
    with pytest.raises(DataError, match="one per training row"):
        resample(d, "smote", vectors=np.zeros((3, 2)))
    with pytest.raises(DataError, match="on the grid"):
        resample(d, "oversample", levels=[1.0, 2.0, 3.0])


def test_half_star_levels() -> None:
    r = np.array([0.5, 1.5, 1.5, 4.5, 4.5, 4.5, 4.5, 5.0], dtype=float)
    d = Interactions.from_arrays(range(8), range(8), r)
    out = resample(d, "oversample", seed=0, levels=levels_for_scale((0.5, 5), 0.5))
    assert len(out.levels) == 10
    assert out.counts_after[4.5] == 4 and out.counts_after[0.5] == 4 and out.counts_after[3.0] == 0


@pytest.mark.parametrize("strategy", ["class_weights", "undersample", "oversample", "smote"])
def test_no_leakage_from_validation_or_test(strategy: str) -> None:
    """Resampling sees only training rows: outputs are train rows or train-derived vectors."""
    d = skewed(600, seed=2)
    split = random_split(d, 0.3, seed=0)
    train, test = split.train, split.test
    train_rows, test_rows = set(rows_of(train)), {r[:3] for r in rows_of(test)}
    rng = np.random.default_rng(0)
    # vectors: train users/items from one table; the test part is never vectorised
    uv, iv = rng.normal(size=(d.n_users, 3)), rng.normal(size=(d.n_items, 3))
    vec = row_vectors(train, uv, iv) if strategy == "smote" else None
    r = resample(train, strategy, seed=0, vectors=vec)  # type: ignore[arg-type]
    out_rows = rows_of(r.train)
    # every output row is a training row (weights may be rescaled by class weights)
    assert {x[:3] for x in out_rows} <= {x[:3] for x in train_rows}
    assert not ({x[:3] for x in out_rows} & test_rows)
    assert len(r.train) >= 1
    if strategy == "smote":
        assert r.synthetic_vectors is not None and r.synthetic_levels is not None
        test_vec = row_vectors(test, uv, iv)
        train_codes = np.searchsorted(r.levels, train.rating)
        for s, lv in zip(r.synthetic_vectors, r.synthetic_levels, strict=True):
            # built from two training vectors of its own level ...
            assert segment_distance(s, vec[train_codes == lv]) < 1e-9
        # ... and never equal to a test vector that is not also a training vector
        own = {tuple(v) for v in vec.round(12).tolist()}
        for s in r.synthetic_vectors:
            assert (
                tuple(s.round(12).tolist())
                not in {tuple(v) for v in test_vec.round(12).tolist()} - own
            )
