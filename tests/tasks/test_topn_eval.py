"""evaluate_topn: the same numbers as the model's lists scored by hand; fold-in users scored
from their given rows; training items excluded; user weights; errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recfit.data import Interactions
from recfit.data.split import random_split, strong_generalisation
from recfit.errors import ConfigError, DataError
from recfit.models.topn import TopNModel
from recfit.tasks.topn_eval import evaluate_topn, topn_lists


class Fake(TopNModel):
    """Known users: a fixed user x item score table; new users: X @ S (fold-in)."""

    def __init__(self, n_users: int, n_items: int, seed: int = 0, ties: bool = False) -> None:
        super().__init__(n_users, n_items)
        rng = np.random.default_rng(seed)
        table = rng.random((n_users, n_items)).astype(np.float32)
        self.table = np.round(table, 1) if ties else table  # ties: many equal scores
        self.sim = rng.random((n_items, n_items)).astype(np.float32)
        self.calls: list[str] = []

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
        pass

    def score_users(self, users: np.ndarray, X_rows: sp.csr_matrix) -> np.ndarray:
        assert X_rows.shape == (len(users), self.n_items)
        self.calls.append("users")
        return self.table[users].copy()

    def score_history(self, X_rows: sp.csr_matrix) -> np.ndarray:
        self.calls.append("history")
        return np.asarray(X_rows @ self.sim, dtype=np.float32)


def data(n_users: int = 60, n_items: int = 40, n: int = 900, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    pairs = np.unique(rng.integers(0, [n_users, n_items], size=(n, 2)), axis=0)
    return Interactions.from_arrays(pairs[:, 0], pairs[:, 1], np.ones(len(pairs)))


def by_hand(scores: np.ndarray, seen: list[set[int]], k: int) -> list[list[int]]:
    """Top-k by a plain sort: score descending, item ascending, seen items skipped."""
    out = []
    for row, s in zip(scores, seen, strict=True):
        order = sorted(range(len(row)), key=lambda i: (-float(row[i]), i))
        out.append([i for i in order if i not in s][:k])
    return out


def metrics_by_hand(lists: list[list[int]], rel: list[set[int]], k: int) -> dict[str, float]:
    vals: dict[str, list[float]] = {m: [] for m in ("recall", "capped_recall", "ndcg", "map",
                                                     "hit_rate", "precision")}  # fmt: skip
    for lst, r in zip(lists, rel, strict=True):
        hits = [int(i in r) for i in lst[:k]]
        n = sum(hits)
        vals["recall"].append(n / len(r))
        vals["capped_recall"].append(n / min(k, len(r)))
        vals["precision"].append(n / k)
        vals["hit_rate"].append(float(n > 0))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        vals["ndcg"].append(dcg / sum(1 / math.log2(j + 2) for j in range(min(k, len(r)))))
        c, ap = 0, 0.0
        for j, h in enumerate(hits):
            c += h
            ap += h * c / (j + 1)
        vals["map"].append(ap / min(k, len(r)))
    return {f"{m}@{k}": float(np.mean(v)) for m, v in vals.items()}


@pytest.mark.parametrize("ties", [False, True])
def test_metrics_equal_the_models_lists_scored_by_hand(ties: bool) -> None:
    d = data()
    split = random_split(d, 0.2, seed=1)
    train, test = split.train, split.test
    model = Fake(d.n_users, d.n_items, ties=ties)
    ks = (5, 10, 20)
    rep = evaluate_topn(model, train, test, ks=ks, n_bootstrap=0, batch_users=7)
    users = np.unique(test.user)
    seen = [set(train.item[train.user == u].tolist()) for u in users]
    rel = [set(test.item[test.user == u].tolist()) for u in users]
    lists = by_hand(model.table[users], seen, max(ks))
    assert topn_lists(model, train, users, max(ks)).tolist() == [
        lst + [-1] * (max(ks) - len(lst)) for lst in lists
    ]
    train_users = np.unique(train.user)
    pop = np.array([len(np.unique(train.user[train.item == i])) for i in range(d.n_items)])
    pop = pop / len(train_users)
    for k in ks:
        for key, want in metrics_by_hand(lists, rel, k).items():
            assert rep[key] == pytest.approx(want), key
        listed = {i for lst in lists for i in lst[:k]}
        assert rep[f"coverage@{k}"] == pytest.approx(len(listed) / d.n_items)
        per_user = [np.mean(pop[lst[:k]]) for lst in lists]
        assert rep[f"mean_popularity@{k}"] == pytest.approx(np.mean(per_user))
    assert rep["n_queries"] == len(users) and rep["exclude_seen"] is True
    assert rep["n_fold_in_users"] == 0 and set(model.calls) == {"users"}


def test_training_items_excluded_or_not() -> None:
    d = data(seed=2)
    split = random_split(d, 0.2, seed=0)
    model = Fake(d.n_users, d.n_items, seed=2)
    users = np.unique(split.test.user)
    lists = topn_lists(model, split.train, users, 30)
    for u, lst in zip(users, lists, strict=True):
        assert not set(lst.tolist()) & set(split.train.item[split.train.user == u].tolist())
    open_lists = topn_lists(model, split.train, users, 30, exclude_seen=False)
    assert np.array_equal(
        open_lists, np.argsort(-model.table[users], axis=1, kind="stable")[:, :30]
    )
    rep = evaluate_topn(model, split.train, split.test, ks=(10,), exclude_seen=False, n_bootstrap=0)
    assert rep["exclude_seen"] is False


def test_fold_in_users_are_scored_from_their_given_rows() -> None:
    d = data(n_users=80, seed=3)
    split = strong_generalisation(d, 0.25, 0.8, seed=0)
    held = split.fold_in_users
    model = Fake(d.n_users, d.n_items, seed=3)
    rep = evaluate_topn(
        model, split.train, split.test, ks=(10,), n_bootstrap=0, fold_in=split.fold_in
    )
    users = np.unique(split.test.user)
    assert set(users) <= set(held) and rep["n_fold_in_users"] == len(users)
    assert set(model.calls) == {"history"}
    given = split.fold_in
    x = sp.csr_matrix((np.ones(len(given)), (given.user, given.item)), shape=(d.n_users, d.n_items))
    scores = np.asarray(x[users] @ model.sim)
    seen = [set(given.item[given.user == u].tolist()) for u in users]
    rel = [set(split.test.item[split.test.user == u].tolist()) for u in users]
    lists = by_hand(scores, seen, 10)
    for key, want in metrics_by_hand(lists, rel, 10).items():
        assert rep[key] == pytest.approx(want, rel=1e-6), key
    # the same users named explicitly give the same report
    again = evaluate_topn(
        model, split.train, split.test, ks=(10,), n_bootstrap=0, fold_in=split.fold_in,
        fold_in_users=held,
    )  # fmt: skip
    assert again["recall@10"] == rep["recall@10"]


def test_user_weights_count_users() -> None:
    d = data(seed=4)
    split = random_split(d, 0.2, seed=0)
    model = Fake(d.n_users, d.n_items, seed=4)
    users = np.unique(split.test.user)
    w = np.zeros(d.n_users)
    w[users[:10]] = 1.0
    rep = evaluate_topn(model, split.train, split.test, ks=(10,), n_bootstrap=0, user_weights=w)
    sub = split.test.take(np.isin(split.test.user, users[:10]))
    want = evaluate_topn(model, split.train, sub, ks=(10,), n_bootstrap=0)
    for key in ("recall@10", "ndcg@10", "map@10", "mean_popularity@10", "coverage@10"):
        assert rep[key] == pytest.approx(want[key]), key
    w2 = np.ones(d.n_users)
    w2[users[0]] = 2.0  # a weight of 2 is the user counted twice
    rep2 = evaluate_topn(model, split.train, split.test, ks=(10,), n_bootstrap=0, user_weights=w2)
    base = evaluate_topn(model, split.train, split.test, ks=(10,), n_bootstrap=0)
    one = np.zeros(d.n_users)
    one[users[0]] = 1.0
    alone = evaluate_topn(model, split.train, split.test, ks=(10,), n_bootstrap=0, user_weights=one)
    n = len(users)
    for key in ("recall@10", "ndcg@10", "mean_popularity@10"):
        assert rep2[key] == pytest.approx((n * base[key] + alone[key]) / (n + 1)), key
    with pytest.raises(DataError, match="user_weights"):
        evaluate_topn(model, split.train, split.test, ks=(10,), user_weights=[1.0])


def test_bootstrap_intervals_hold_the_value() -> None:
    d = data(seed=5)
    split = random_split(d, 0.2, seed=0)
    model = Fake(d.n_users, d.n_items, seed=5)
    rep = evaluate_topn(model, split.train, split.test, ks=(10, 20), n_bootstrap=300, seed=3)
    for key in ("recall@10", "ndcg@20", "hit_rate@10", "map@20", "mean_popularity@20"):
        lo, hi = rep[f"{key}_ci"]
        assert lo <= rep[key] <= hi
    again = evaluate_topn(model, split.train, split.test, ks=(10, 20), n_bootstrap=300, seed=3)
    assert again["recall@10_ci"] == rep["recall@10_ci"]
    assert "recall@10_ci" not in evaluate_topn(model, split.train, split.test, n_bootstrap=0)


class NaNModel(Fake):
    def score_users(self, users: np.ndarray, X_rows: sp.csr_matrix) -> np.ndarray:
        out = super().score_users(users, X_rows)
        out[0, 0] = np.nan
        return out


class ShortModel(Fake):
    def score_users(self, users: np.ndarray, X_rows: sp.csr_matrix) -> np.ndarray:
        return super().score_users(users, X_rows)[:, :3]


@pytest.mark.parametrize(
    ("model", "error", "match"),
    [
        (NaNModel(60, 40), DataError, "NaN"),
        (ShortModel(60, 40), DataError, "scores"),
        (object(), ConfigError, "top-N model"),
    ],
)
def test_errors_are_typed(model: Any, error: type[Exception], match: str) -> None:
    d = data()
    split = random_split(d, 0.2, seed=0)
    with pytest.raises(error, match=match):
        evaluate_topn(model, split.train, split.test, ks=(10,), n_bootstrap=0)


def test_no_test_positive_is_an_error() -> None:
    d = data()
    split = random_split(d, 0.2, seed=0)
    empty = split.test.with_weights(np.zeros(len(split.test)))
    with pytest.raises(DataError, match="held-out positives"):
        evaluate_topn(Fake(60, 40), split.train, empty, n_bootstrap=0)
