"""Capped recall beside recall, the list metrics (coverage, mean popularity) and their
registry entries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.errors import DataError, UnknownMetricError
from recfit.metrics import (
    capped_recall_at_k,
    catalogue_coverage_at_k,
    item_popularity,
    list_report,
    mean_popularity_at_k,
    metric_info,
    ranking_report,
    recall_at_k,
)


def test_two_recalls_are_named_apart() -> None:
    ret = [[1, 2, 3, 4], [9, 8, 7, 6]]
    rel = [[1, 2, 10, 11, 12], [9]]
    # user 0: 2 hits of 5 relevant at k=2; user 1: 1 hit of 1
    assert recall_at_k(ret, rel, k=2) == pytest.approx((2 / 5 + 1) / 2)
    assert capped_recall_at_k(ret, rel, k=2) == pytest.approx((2 / 2 + 1) / 2)
    rep = ranking_report(ret, rel, ks=(2,), exclude_seen=False, n_bootstrap=0)
    assert rep["recall@2"] == pytest.approx(0.7) and rep["capped_recall@2"] == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=4), min_size=1, max_size=6))
def test_capped_recall_equals_recall_when_few_relevant(rel: list[list[int]]) -> None:
    rng = np.random.default_rng(len(rel))
    ret = np.stack([rng.permutation(10) for _ in rel])
    k = 5
    a = ranking_report(ret, rel, ks=(k,), exclude_seen=False, n_bootstrap=0)
    assert a["capped_recall@5"] == pytest.approx(a["recall@5"])  # |R| <= 4 < k
    assert a["capped_recall@5"] >= a["recall@5"] - 1e-12


def test_item_popularity_counts_users_once() -> None:
    pop = item_popularity([0, 0, 1, 2, 2], [0, 0, 0, 1, 2], n_items=4)
    assert pop.tolist() == [1 / 3, 1 / 3, 2 / 3, 0.0]
    assert item_popularity([], [], n_items=2).tolist() == [0.0, 0.0]


def test_coverage_and_popularity_by_hand() -> None:
    ret = np.array([[0, 1, 2], [0, 3, -1], [4, 4, 0]])
    pop = np.array([0.9, 0.1, 0.2, 0.3, 0.5, 0.0])
    assert catalogue_coverage_at_k(ret, 6, k=1) == pytest.approx(2 / 6)
    assert catalogue_coverage_at_k(ret, 6, k=3) == pytest.approx(5 / 6)
    assert catalogue_coverage_at_k(ret, 6, k=3, weights=[1, 1, 0]) == pytest.approx(4 / 6)
    per = [(0.9 + 0.1) / 2, (0.9 + 0.3) / 2, 0.5]
    assert mean_popularity_at_k(ret, pop, k=2) == pytest.approx(np.mean(per))
    assert mean_popularity_at_k(ret, pop, k=2, weights=[2, 0, 1]) == pytest.approx(
        (2 * per[0] + per[2]) / 3
    )
    rep = list_report(ret, pop, ks=(1, 3), n_bootstrap=200, seed=1)
    assert rep["coverage@3"] == pytest.approx(5 / 6)
    lo, hi = rep["mean_popularity@3_ci"]
    assert lo <= rep["mean_popularity@3"] <= hi
    assert "coverage@3_ci" not in rep


def test_list_metrics_refuse_bad_input() -> None:
    with pytest.raises(DataError, match="catalogue size"):
        catalogue_coverage_at_k([[0, 7]], 5, k=2)
    with pytest.raises(DataError, match="popularity"):
        mean_popularity_at_k([[0]], [np.nan], k=1)


def test_registry_knows_every_new_metric() -> None:
    assert metric_info("capped_recall@20").direction == "max"
    assert metric_info("capped_recall@20").kind == "ranking"
    cov, pop = metric_info("coverage@50"), metric_info("mean_popularity@10")
    assert (cov.direction, cov.kind, cov.k) == ("max", "list", 50)
    assert (pop.direction, pop.kind, pop.k) == ("min", "list", 10)
    with pytest.raises(UnknownMetricError, match="coverage@K"):
        metric_info("coverage")
    rep = list_report([[0, 1]], [0.5, 0.5], ks=(2,), n_bootstrap=0)
    for key, value in rep.items():
        assert metric_info(key).kind == "list" and not math.isnan(value)
