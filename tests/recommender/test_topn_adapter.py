"""The ``topn`` adapter: a Recommender over every top-N family answers recommendations
for known users (their stored positives scored by the model, training items excluded),
new users (fold-in from a few items), similar items (the model's own item-item
similarities) and survives a bundle round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfit.data import Interactions
from recfit.data.positives import positives_matrix, select_positives
from recfit.data.synthetic import synthetic
from recfit.errors import ConfigError
from recfit.models import family, family_of
from recfit.models.topn import TopNModel
from recfit.recommender import Recommender
from recfit.recommender.adapters import TopNAdapter

FAMILIES = ("popularity", "itemknn", "ease")
SETTINGS: dict[str, dict[str, Any]] = {
    "popularity": {},
    "itemknn": {"knn_k": 10, "shrinkage": 1.0},
    "ease": {"ease_lambda": 20.0},
}


@pytest.fixture(scope="module")
def data() -> Interactions:
    d = synthetic(800, 40, 60, n_factors=3, seed=5, with_timestamps=False)
    return select_positives(d, 3.5)


def _fitted(name: str, d: Interactions) -> TopNModel:
    fam = family(name)
    model = fam.build(SETTINGS[name], d)
    assert fam.closed_form is not None
    fam.closed_form(model, d)
    assert isinstance(model, TopNModel)
    return model.eval()


def _recommender(model: TopNModel, d: Interactions) -> Recommender:
    return Recommender(model, d.users, d.items, d, rating_scale=d.rating_scale)


def _best(scores: np.ndarray, exclude: np.ndarray, n: int) -> list[int]:
    s = scores.astype(np.float64).copy()
    s[exclude] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))
    return [int(i) for i in order[:n] if np.isfinite(s[i])]


def _same_ranking(got: Any, scores: np.ndarray, want: list[int], data: Interactions) -> None:
    """``got`` (scored ids, best first) is a best-first list of the items ``want`` ranks
    (equal scores may come in any order), with the model's scores."""
    idx = data.items.index([s.id for s in got]).astype(np.int64)
    np.testing.assert_allclose([s.score for s in got], scores[idx], rtol=1e-5)
    np.testing.assert_allclose(scores[idx], scores[want], rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_known_users_are_ranked_by_score_users_without_their_items(
    name: str, data: Interactions
) -> None:
    model = _fitted(name, data)
    rec = _recommender(model, data)
    assert isinstance(rec.adapter, TopNAdapter) and rec.output_kind == "score"
    x = positives_matrix(data)
    for u in (0, 7, 19):
        uid = data.users.id([u])[0]
        got = rec.recommend(uid, n=5)[0]
        scores = model.score_users(np.array([u]), x[[u]])[0]
        want = _best(scores, x[[u]].indices, 5)
        _same_ranking(got.items, scores, want, data)
        assert not set(data.items.index([s.id for s in got.items])) & set(x[[u]].indices)


@pytest.mark.parametrize("name", FAMILIES)
def test_new_users_fold_in_from_a_few_items(name: str, data: Interactions) -> None:
    model = _fitted(name, data)
    rec = _recommender(model, data)
    given = data.items.id([1, 4, 9])
    got = rec.recommend_for_ratings({i: 5.0 for i in given}, n=6)
    assert got.path == "fold_in"
    row = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 0], [1, 4, 9])), shape=(1, data.n_items))
    scores = model.score_history(row)[0]
    _same_ranking(got.items, scores, _best(scores, np.array([1, 4, 9]), 6), data)
    np.testing.assert_allclose(
        rec.fold_in({i: 5.0 for i in given}).numpy(), model.score_history(row)[0], rtol=1e-6
    )


def test_similar_items_come_from_the_item_item_weights(data: Interactions) -> None:
    for name in ("ease", "itemknn"):
        model = _fitted(name, data)
        rec = _recommender(model, data)
        item = data.items.id([3])[0]
        got = rec.similar_items(item, n=4).results[0]
        sim = model.item_similarity(np.array([3]))
        assert sim is not None
        _same_ranking(got.neighbours, sim[0], _best(sim[0], np.array([3]), 4), data)
    ease = _fitted("ease", data)
    b = ease.weights.numpy()
    np.testing.assert_array_equal(ease.item_similarity(np.array([3, 5])), b[:, [3, 5]].T)


def test_popularity_has_no_similarity_and_no_user_vectors(data: Interactions) -> None:
    rec = _recommender(_fitted("popularity", data), data)
    assert not rec.adapter.supports_similarity
    with pytest.raises(ConfigError, match="item representations"):
        rec.similar_items(data.items.id([0])[0])
    with pytest.raises(ConfigError, match="user representations"):
        rec.similar_users(data.users.id([0])[0])


@pytest.mark.parametrize("name", FAMILIES)
def test_bundle_round_trip_answers_the_same(name: str, data: Interactions, tmp_path: Path) -> None:
    rec = _recommender(_fitted(name, data), data)
    back = Recommender.load(rec.save(tmp_path / name))
    assert family_of(back.model).name == name
    users = data.users.id(np.arange(12))
    a, b = rec.recommend(users, n=5), back.recommend(users, n=5)
    assert [r.items for r in a] == [r.items for r in b]
    scores = back.adapter.score_all(back.adapter.user_rows(torch.arange(5)))
    assert tuple(scores.shape) == (5, data.n_items) and scores.dtype == torch.float32


def test_value_confidence_folds_in_the_values(data: Interactions) -> None:
    model = family("itemknn").build({"confidence": "value", "knn_k": 5}, data)
    fam = family("itemknn")
    assert fam.closed_form is not None
    fam.closed_form(model, data)
    assert isinstance(model, TopNModel)
    rec = _recommender(model, data)
    row = rec.fold_in({data.items.id([2])[0]: 4.0, data.items.id([6])[0]: 5.0}).numpy()
    x = sp.csr_matrix((np.array([4.0, 5.0], np.float32), ([0, 0], [2, 6])), shape=(1, data.n_items))
    np.testing.assert_allclose(row, model.score_history(x)[0], rtol=1e-6)
