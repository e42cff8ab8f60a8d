"""Synthetic MovieLens-shaped data: shape, invariants, determinism, and learnable signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.data.io import read_parquet
from recfit.data.synthetic import GENRES, OCCUPATIONS, synthetic, write_parquet
from recfit.errors import ConfigError


def _pairs_distinct(d: Interactions) -> bool:
    key = d.user.astype(np.int64) * d.n_items + d.item
    return len(np.unique(key)) == len(d)


def test_default_is_ml100k_shaped() -> None:
    d = synthetic()
    assert (len(d), d.n_users, d.n_items) == (100_000, 943, 1682)
    s = d.summary()
    assert s["users_with_ratings"] == 943 and s["items_with_ratings"] == 1682
    assert _pairs_distinct(d)
    assert set(np.unique(d.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.2 < s["rating_mean"] < 3.9
    assert 0.8 < float(d.rating.std()) < 1.3
    assert d.nbytes / len(d) <= 16
    assert d.rating_scale == (1.0, 5.0)


def test_power_law_activity_and_popularity() -> None:
    d = synthetic(200_000, 2000, 3000, seed=3)
    per_user = np.sort(np.bincount(d.user, minlength=d.n_users))[::-1]
    per_item = np.sort(np.bincount(d.item, minlength=d.n_items))[::-1]
    # the top 10% of users / items hold far more than 10% of the ratings
    assert per_user[: len(per_user) // 10].sum() > 0.3 * len(d)
    assert per_item[: len(per_item) // 10].sum() > 0.35 * len(d)
    assert per_user[0] > 8 * np.median(per_user)
    # uniform activity when the exponent is 0
    flat = synthetic(200_000, 2000, 3000, seed=3, user_alpha=0.0, item_alpha=0.0)
    assert np.bincount(flat.user).max() < 3 * np.median(np.bincount(flat.user))


def test_rejection_path_for_large_shapes_keeps_pairs_distinct() -> None:
    # 5000 x 4000 = 20M cells: above the all-cells threshold, so pairs come from draws + dedupe
    d = synthetic(300_000, 5000, 4000, seed=5)
    assert len(d) == 300_000 and _pairs_distinct(d)
    assert len(np.unique(d.user)) == 5000 and len(np.unique(d.item)) == 4000


def test_dense_small_shapes() -> None:
    d = synthetic(600, 30, 20, seed=1)
    assert len(d) == 600 and _pairs_distinct(d)  # every cell
    d2 = synthetic(10, 30, 20, seed=1)  # fewer ratings than ids: no guarantee, still exact
    assert len(d2) == 10 and _pairs_distinct(d2)


def test_half_stars_and_other_scales() -> None:
    d = synthetic(5000, 100, 100, half_stars=True, rating_scale=(0.5, 5), seed=2)
    vals = np.unique(d.rating)
    assert vals.min() >= 0.5 and vals.max() <= 5
    assert np.all((vals * 2) == np.round(vals * 2))
    assert len(vals) >= 8
    d10 = synthetic(5000, 100, 100, rating_scale=(0, 10), seed=2)
    assert d10.rating.min() >= 0 and d10.rating.max() <= 10 and d10.rating.max() > 5


def test_timestamps_increase_per_user_and_are_plausible() -> None:
    d = synthetic(20_000, 300, 500, seed=4)
    ts = d.timestamp
    assert ts is not None
    assert ts.min() >= 789_652_009 and ts.max() <= 1_574_327_703
    same_user = d.user[1:] == d.user[:-1]
    assert np.all(ts[1:][same_user] >= ts[:-1][same_user])
    assert np.all(np.diff(d.user) >= 0)  # rows grouped by user
    # each user's item order is shuffled: not sorted by item index within users
    assert np.any(d.item[1:][same_user] < d.item[:-1][same_user])
    assert synthetic(1000, 50, 50, with_timestamps=False).timestamp is None


def test_deterministic_for_a_seed_and_features_do_not_change_ratings() -> None:
    a = synthetic(5000, 200, 300, seed=7)
    b = synthetic(5000, 200, 300, seed=7, with_features=True)
    c = synthetic(5000, 200, 300, seed=8)
    for x, y in ((a.user, b.user), (a.item, b.item), (a.rating, b.rating)):
        assert np.array_equal(x, y)
    assert a.timestamp is not None and b.timestamp is not None
    assert np.array_equal(a.timestamp, b.timestamp)
    assert not np.array_equal(a.item, c.item)
    assert a.user_features is None and b.user_features is not None


def test_feature_tables() -> None:
    d = synthetic(3000, 100, 150, with_features=True, seed=0)
    uf, itf = d.user_features, d.item_features
    assert uf is not None and itf is not None
    assert len(uf) == d.n_users and list(uf.columns) == ["age", "gender", "occupation"]
    assert uf["age"].between(7, 73).all()
    assert set(uf["gender"]) <= {"M", "F"} and set(uf["occupation"]) <= set(OCCUPATIONS)
    assert len(itf) == d.n_items and list(itf.columns) == ["title", "year", "genres"]
    assert itf["year"].between(1902, 2019).all()
    assert all(isinstance(g, tuple) and g and set(g) <= set(GENRES) for g in itf["genres"])
    assert itf["title"].iloc[0].endswith(f"({itf['year'].iloc[0]})")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_ratings": 0},
        {"n_ratings": 101, "n_users": 10, "n_items": 10},
        {"noise": -1.0},
        {"rating_scale": (5, 1)},
        {"user_alpha": -0.5},
        {"n_factors": 0},
    ],
)
def test_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="expected"):
        synthetic(**kwargs)  # type: ignore[arg-type]


def test_parquet_round_trip(tmp_path: Path) -> None:
    d = synthetic(20_000, 500, 400, seed=9)
    p = tmp_path / "s.parquet"
    write_parquet(d, p)
    e = read_parquet(p)
    assert e.name == d.name and e.rating_scale == d.rating_scale
    assert np.array_equal(e.users.id(e.user), d.users.id(d.user))
    assert np.array_equal(e.items.id(e.item), d.items.id(d.item))
    assert np.array_equal(e.rating, d.rating)
    assert e.timestamp is not None and d.timestamp is not None
    assert np.array_equal(e.timestamp, d.timestamp)


@settings(max_examples=25, deadline=None)
@given(
    n_users=st.integers(1, 60),
    n_items=st.integers(1, 60),
    frac=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_shape_gives_exact_count_of_distinct_pairs(
    n_users: int, n_items: int, frac: float, seed: int
) -> None:
    n = max(1, int(frac * n_users * n_items))
    d = synthetic(n, n_users, n_items, seed=seed)
    assert len(d) == n and _pairs_distinct(d)
    assert d.user.max() < n_users and d.item.max() < n_items
    assert d.rating.min() >= 1 and d.rating.max() <= 5


# ---------------------------------------------------------------------- it can be learned
def _fit_baseline(
    u: np.ndarray, i: np.ndarray, r: np.ndarray, n_u: int, n_i: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Regularised user/item biases by alternating closed-form updates."""
    mu = float(r.mean())
    bu = np.zeros(n_u)
    bi = np.zeros(n_i)
    for _ in range(15):
        bu = np.bincount(u, r - mu - bi[i], n_u) / (np.bincount(u, minlength=n_u) + 5.0)
        bi = np.bincount(i, r - mu - bu[u], n_i) / (np.bincount(i, minlength=n_i) + 5.0)
    return mu, bu, bi


def _fit_als(
    u: np.ndarray, i: np.ndarray, r: np.ndarray, n_u: int, n_i: int, k: int = 8, lam: float = 8.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    P = 0.1 * rng.standard_normal((n_u, k))
    Q = 0.1 * rng.standard_normal((n_i, k))
    for _ in range(8):
        for a, b, X, Y in ((u, i, P, Q), (i, u, Q, P)):
            for row in range(len(X)):
                m = a == row
                Yb = Y[b[m]]
                X[row] = np.linalg.solve(Yb.T @ Yb + lam * np.eye(k), Yb.T @ r[m])
    return P, Q


def test_a_model_learns_the_structure() -> None:
    d = synthetic(20_000, 300, 400, seed=11, noise=0.3)
    rng = np.random.default_rng(0)
    test = rng.random(len(d)) < 0.2
    u, i, r = d.user, d.item, d.rating.astype(np.float64)
    mu, bu, bi = _fit_baseline(u[~test], i[~test], r[~test], d.n_users, d.n_items)
    rmse_mean = float(np.sqrt(np.mean((r[test] - mu) ** 2)))
    base_pred = mu + bu[u] + bi[i]
    rmse_base = float(np.sqrt(np.mean((r[test] - base_pred[test]) ** 2)))
    resid = r - base_pred
    P, Q = _fit_als(u[~test], i[~test], resid[~test], d.n_users, d.n_items)
    pred = base_pred + (P[u] * Q[i]).sum(1)
    rmse_als = float(np.sqrt(np.mean((r[test] - pred[test]) ** 2)))
    assert rmse_base < 0.85 * rmse_mean, (rmse_mean, rmse_base)
    assert rmse_als < rmse_base - 0.03, (rmse_base, rmse_als)
    # shuffled ratings carry no structure: the baseline no longer beats the mean clearly
    r_shuf = rng.permutation(r)
    mu2, bu2, bi2 = _fit_baseline(u[~test], i[~test], r_shuf[~test], d.n_users, d.n_items)
    rmse_shuf = float(np.sqrt(np.mean((r_shuf[test] - (mu2 + bu2[u] + bi2[i])[test]) ** 2)))
    assert rmse_shuf > 0.97 * float(np.sqrt(np.mean((r_shuf[test] - mu2) ** 2)))
