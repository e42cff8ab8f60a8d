"""The top-N families: what every one of them does (iterating the registry's ``topn``
families, so a family added by one module and one registry line is covered), and the
formulas of popularity, itemknn and EASE against direct NumPy references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.data.positives import positives_matrix
from recfit.errors import ConfigError, DataError, ModelTooLargeError
from recfit.models import DotBias, families, family
from recfit.models.ease import EASE, check_dense_size, cooccurrence, ease_weights
from recfit.models.itemknn import ItemKNN
from recfit.models.persist import read_model_file, write_model_file
from recfit.models.popularity import Popularity
from recfit.models.topn import TopNModel, fit_topn, inner_split, validate_scores

SMALL: dict[str, Any] = {
    "seed": 1, "knn_k": 5, "shrinkage": 1.0, "ease_lambda": 10.0, "n_factors": 4,
    "epochs": 2, "lr": 0.05, "reg": 0.01,
}  # fmt: skip
"""Small settings; each family takes those it reads."""

TOPN = [f.name for f in families("topn")]


def _fit(name: str, d: Interactions, **over: Any) -> TopNModel:
    fam = family(name)
    model = fam.build({**fam.settings(SMALL), **over}, d)
    assert isinstance(model, TopNModel) and fam.closed_form is not None
    fam.closed_form(model, d)
    return model.eval()


def _binary(rng: np.random.Generator, n_users: int, n_items: int, p: float) -> sp.csr_matrix:
    x = (rng.random((n_users, n_items)) < p).astype(np.float32)
    return sp.csr_matrix(x)


# ------------------------------------------------------------------ every family
def test_the_topn_families_are_registered() -> None:
    assert {"popularity", "itemknn", "ease"} <= set(TOPN)
    for name in TOPN:
        fam = family(name)
        assert fam.output == "score" and fam.adapter == "topn", name
        assert {"confidence", "seed"} <= fam.reads, name


@pytest.mark.parametrize("name", TOPN)
def test_fit_stores_the_positives_and_scores_every_item(name: str, tiny: Interactions) -> None:
    model = _fit(name, tiny)
    x = positives_matrix(tiny)
    stored = model.positives()
    assert (stored != x).nnz == 0 and stored.shape == x.shape
    users = np.array([0, 3, 7])
    s = model.score_users(users, x[users])
    assert s.shape == (3, tiny.n_items) and s.dtype == np.float32 and np.isfinite(s).all()
    h = model.score_history(x[users])
    assert h.shape == s.shape and h.dtype == np.float32 and np.isfinite(h).all()
    # forward scores (user, item) pairs from the stored rows
    batch = {
        "user": torch.from_numpy(tiny.user.astype(np.int64)),
        "item": torch.from_numpy(tiny.item.astype(np.int64)),
    }
    out = model(batch).numpy()
    want = model.score_users(np.arange(tiny.n_users), x)[tiny.user, tiny.item]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", TOPN)
def test_save_load_same_seed_same_weights(name: str, tiny: Interactions, tmp_path: Path) -> None:
    a, b = _fit(name, tiny), _fit(name, tiny)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    back = read_model_file(write_model_file(a, tmp_path / "m.safetensors"))
    assert isinstance(back, TopNModel) and back.config() == a.config()
    x = positives_matrix(tiny)
    users = np.arange(5)
    np.testing.assert_array_equal(back.score_users(users, x[users]), a.score_users(users, x[users]))


@pytest.mark.parametrize("name", TOPN)
def test_weight_zero_rows_change_nothing(name: str, tiny: Interactions) -> None:
    rng = np.random.default_rng(3)
    n_bad = 40
    u = np.concatenate([tiny.user, rng.integers(0, tiny.n_users, n_bad)]).astype(np.int32)
    i = np.concatenate([tiny.item, rng.integers(0, tiny.n_items, n_bad)]).astype(np.int32)
    r = np.concatenate([tiny.rating, rng.uniform(1, 5, n_bad)]).astype(np.float32)
    w = np.concatenate([np.ones(len(tiny)), np.zeros(n_bad)]).astype(np.float32)
    mixed = Interactions(user=u, item=i, rating=r, users=tiny.users, items=tiny.items, weight=w)
    a, b = _fit(name, tiny), _fit(name, mixed)
    for (k, v), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, q), k


@pytest.mark.parametrize("name", TOPN)
def test_users_and_items_without_positives_score_finite(name: str, tiny: Interactions) -> None:
    cold = (tiny.user == 0) | (tiny.item == 0)
    model = _fit(name, tiny.take(np.flatnonzero(~cold)))
    s = model.score_users(np.array([0, 1]), model.positives(np.array([0, 1])))
    assert np.isfinite(s).all()
    assert np.isfinite(model.score_history(sp.csr_matrix((1, tiny.n_items)))).all()


@pytest.mark.parametrize("name", TOPN)
def test_rows_of_another_shape_or_negative_values_are_data_errors(
    name: str, tiny: Interactions
) -> None:
    model = _fit(name, tiny)
    with pytest.raises(DataError, match="expected a matrix of shape"):
        model.fit_positives(sp.csr_matrix((tiny.n_users, tiny.n_items + 1)))
    bad = positives_matrix(tiny)
    bad.data[0] = -1.0
    with pytest.raises(DataError, match="non-negative"):
        model.fit_positives(bad)
    with pytest.raises(DataError, match="sparse"):
        model.fit_positives(np.zeros((tiny.n_users, tiny.n_items)))  # type: ignore[arg-type]


def test_fit_topn_refuses_a_rating_model(tiny: Interactions) -> None:
    with pytest.raises(ConfigError, match="top-N model"):
        fit_topn(DotBias(tiny.n_users, tiny.n_items, 2), tiny)


# ------------------------------------------------------------------ popularity
def test_popularity_counts_users_or_sums_values(tiny: Interactions) -> None:
    m = _fit("popularity", tiny)
    counts = np.bincount(tiny.item, minlength=tiny.n_items).astype(np.float32)
    np.testing.assert_array_equal(m.item_score.numpy(), counts)
    v = _fit("popularity", tiny, confidence="value")
    sums = np.bincount(tiny.item, weights=tiny.rating, minlength=tiny.n_items)
    np.testing.assert_allclose(v.item_score.numpy(), sums, rtol=1e-6)
    assert isinstance(m, Popularity) and m.item_similarity(np.array([0])) is None


# ------------------------------------------------------------------ itemknn
def _cosine(x: sp.csr_matrix, shrink: float) -> np.ndarray:
    d = x.toarray().astype(np.float64)
    co = d.T @ d
    n = np.sqrt(np.diag(co))
    s = co / (np.outer(n, n) + shrink + 1e-12)
    np.fill_diagonal(s, 0.0)
    return s


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(1, 12),
    shrink=st.sampled_from([0.0, 0.5, 5.0]),
)
def test_itemknn_keeps_the_k_most_similar_items(seed: int, k: int, shrink: float) -> None:
    rng = np.random.default_rng(seed)
    x = _binary(rng, 25, 9, 0.3)
    m = ItemKNN(25, 9, knn_k=k, shrinkage=shrink)
    m.fit_positives(x)
    ref = _cosine(x, shrink)
    kk = min(k, 8)
    assert m.neighbour_items.shape == (9, kk)
    items, sims = m.neighbour_items.numpy(), m.neighbour_sims.numpy()
    for i in range(9):
        pos = np.sort(ref[i][ref[i] > 0])[::-1][:kk]
        keep = items[i] >= 0
        np.testing.assert_allclose(sims[i][keep], pos, rtol=1e-5)  # best first
        np.testing.assert_allclose(ref[i][items[i][keep]], sims[i][keep], rtol=1e-5)
        assert i not in items[i] and (sims[i][~keep] == 0).all()
    dense = np.zeros((9, 9))
    for i in range(9):
        keep = items[i] >= 0
        dense[i, items[i][keep]] = sims[i][keep]
    np.testing.assert_allclose(m.score_history(x[:4]), x[:4].toarray() @ dense, rtol=1e-5)


# ------------------------------------------------------------------ EASE
def _ease_reference(
    x: sp.csr_matrix, lam: float, p: float = 0.0, a: float = 0.0, c: float = 0.0
) -> np.ndarray:
    d = x.toarray().astype(np.float64)
    n = d.sum(1)
    w = np.where(n > 0, n, 1.0) ** -a
    g = d.T @ (w[:, None] * d)
    inv = np.linalg.inv(g + np.diag(lam + p / (1 - p) * np.diag(g)))
    b = -inv / np.diag(inv)
    np.fill_diagonal(b, 0.0)
    return b / ((d > 0).sum(0) + 1.0) ** c


def test_ease_is_steck_closed_form_in_float32() -> None:
    x = _binary(np.random.default_rng(0), 200, 30, 0.2)
    m = EASE(200, 30, ease_lambda=5.0, ease_dropout=0, user_exponent=0, popularity_exponent=0)
    m.fit_positives(x)
    b = m.weights.numpy()
    assert b.dtype == np.float32 and (np.diag(b) == 0).all()
    np.testing.assert_allclose(b, _ease_reference(x, 5.0), atol=2e-5)
    np.testing.assert_allclose(m.score_history(x[:3]), x[:3].toarray() @ b, rtol=1e-5)
    np.testing.assert_allclose(cooccurrence(x), (x.T @ x).toarray())
    assert float(m.fitted_lambda) == 5.0 and "inner" not in m.fit_info
    # loading (or compiling) the kernels is reported apart from the fit
    assert m.fit_info["compile_seconds"] >= 0 and m.fit_info["fit_seconds"] > 0


def test_ease_defaults_are_the_weighted_denoising_variant() -> None:
    x = _binary(np.random.default_rng(1), 150, 25, 0.25)
    m = EASE(150, 25, ease_lambda=3.0)
    assert (m.ease_dropout, m.user_exponent, m.popularity_exponent) == (0.3, 0.5, 0.15)
    m.fit_positives(x)
    np.testing.assert_allclose(
        m.weights.numpy(), _ease_reference(x, 3.0, 0.3, 0.5, 0.15), atol=2e-5
    )


def test_ease_lambda_is_chosen_on_an_inner_cut_of_the_training_positives() -> None:
    x = _binary(np.random.default_rng(2), 300, 40, 0.15)
    m = EASE(300, 40, seed=4)
    m.fit_positives(x, seed=4)
    info = m.fit_info
    inner = {float(k): v["recall"] for k, v in info["inner"].items()}
    assert 3 <= len(inner) <= 8 and info["inner_metric"] == "recall@20"
    best = info["ease_lambda"]
    assert inner[best] == max(inner.values()) and float(m.fitted_lambda) == best
    again = EASE(300, 40, seed=4)
    again.fit_positives(x, seed=4)
    assert again.fit_info["inner"] == info["inner"]
    assert torch.equal(again.weights, m.weights)
    # the cut comes from the training rows only: the same λ scores come from the
    # inner split by hand
    fit, val = inner_split(x, 0.1, seed=4)
    b = m.solve(fit, best, threads=1)
    mine = validate_scores(lambda _u, rows: rows @ b, fit, val, seed=4)
    assert mine["recall"] == pytest.approx(inner[best])


def test_a_catalogue_too_large_for_dense_ease_is_a_typed_error() -> None:
    with pytest.raises(
        ModelTooLargeError, match=r"fit in 1 GB \(memory_limit_gb\).*needing 10 GB"
    ) as info:
        EASE(10, 50_000, memory_limit_gb=1.0)  # its B alone: refused before allocating
    assert info.value.needed == 4 * 50_000**2 and info.value.limit == 10**9
    assert "memory_limit_gb" in str(info.value) and isinstance(info.value, ConfigError)
    m = EASE(10, 600, memory_limit_gb=0.002, ease_lambda=1.0)  # B fits, the fit does not
    with pytest.raises(
        ModelTooLargeError, match=r"fit in 0\.002 GB.*600 items needing 0\.00432 GB"
    ) as fit:
        m.fit_positives(sp.csr_matrix((10, 600), dtype=np.float32))
    assert fit.value.needed == 3 * 4 * 600**2 and fit.value.limit == 2 * 10**6
    assert check_dense_size(100, None) == 120_000
    with pytest.raises(ModelTooLargeError, match="memory available"):
        check_dense_size(10**7, None)


def test_ease_refuses_bad_settings() -> None:
    for kw, what in (
        ({"ease_lambda": 0.0}, "ease_lambda"),
        ({"ease_dropout": 1.0}, "ease_dropout"),
        ({"user_exponent": -1.0}, "user_exponent"),
        ({"threads": 0}, "threads"),
    ):
        with pytest.raises(ConfigError, match=what):
            EASE(3, 3, **kw)
    with pytest.raises(ConfigError, match="positive definite"):
        ease_weights(np.zeros((3, 3), np.float32), -1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.sampled_from([0.1, 0.25, 0.5]))
def test_inner_split_is_a_disjoint_cut_of_the_positives(seed: int, frac: float) -> None:
    x = _binary(np.random.default_rng(seed), 20, 15, 0.3)
    fit, val = inner_split(x, frac, seed=seed)
    assert (fit + val != x).nnz == 0 and fit.multiply(val).nnz == 0
    assert val.nnz == round(x.nnz * frac)
    again = inner_split(x, frac, seed=seed)
    assert (again[1] != val).nnz == 0
