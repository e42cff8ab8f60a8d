"""Ranking metrics: hand-computed examples, a brute-force reference, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.errors import ConfigError, DataError
from recfit.index import ExactIndex, ItemSets
from recfit.metrics.ranking import (
    RANKING_METRICS,
    hit_rate_at_k,
    map_at_k,
    mrr,
    ndcg_at_k,
    per_query_metrics,
    precision_at_k,
    ranking_report,
    recall_at_k,
    top_k_accuracy,
)

# Two queries, hand-computed below.
#   q0: retrieved [1, 2, 3, 4], relevant {2, 4, 9}: hits at ranks 2 and 4
#   q1: retrieved [5, 6, 7, 8], relevant {5}:       hit at rank 1
RET = [[1, 2, 3, 4], [5, 6, 7, 8]]
REL = [[2, 4, 9], [5]]


def test_hand_computed_values() -> None:
    # Recall@4 = (2/3 + 1/1) / 2; @1 = (0 + 1) / 2
    assert recall_at_k(RET, REL, 4) == pytest.approx((2 / 3 + 1) / 2)
    assert recall_at_k(RET, REL, 1) == pytest.approx(0.5)
    # Precision@4 = (2/4 + 1/4) / 2
    assert precision_at_k(RET, REL, 4) == pytest.approx(0.375)
    # HitRate@1: only q1
    assert hit_rate_at_k(RET, REL, 1) == pytest.approx(0.5)
    assert hit_rate_at_k(RET, REL, 2) == pytest.approx(1.0)
    # NDCG@4: q0 DCG = 1/log2(3) + 1/log2(5), IDCG = 1 + 1/log2(3) + 1/log2(4); q1 = 1
    q0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5)
    assert ndcg_at_k(RET, REL, 4) == pytest.approx((q0 + 1) / 2)
    # MAP@4: q0 AP = (1/2 + 2/4) / min(4, 3); q1 AP = 1
    assert map_at_k(RET, REL, 4) == pytest.approx(((0.5 + 0.5) / 3 + 1) / 2)
    # MAP@2: q0 AP = (1/2) / min(2, 3)
    assert map_at_k(RET, REL, 2) == pytest.approx((0.25 + 1) / 2)
    # MRR: q0 first hit at rank 2, q1 at rank 1
    assert mrr(RET, REL) == pytest.approx((0.5 + 1) / 2)
    assert mrr(RET, REL, k=1) == pytest.approx(0.5)
    # Top-4 accuracy over the 4 (query, item) pairs: 2 + 1 hits
    assert top_k_accuracy(RET, REL, 4) == pytest.approx(3 / 4)
    assert top_k_accuracy(RET, REL, 1) == pytest.approx(1 / 4)


def test_recall_divides_by_all_relevant_items_not_min_k() -> None:
    # 3 relevant, top 2 both relevant: Recall@2 = 2/3 (the min(k, |R|) variant would say 1).
    assert recall_at_k([[1, 2, 3]], [[1, 2, 3]], 2) == pytest.approx(2 / 3)
    assert map_at_k([[1, 2, 3]], [[1, 2, 3]], 2) == pytest.approx(1.0)


def test_graded_ndcg_by_hand() -> None:
    # grades: a=1 (id 1), c=3 (id 3), d=2 (id 4); retrieved [1, 2, 3]
    rel = ItemSets.from_lists([[1, 3, 4]], values=[[1.0, 3.0, 2.0]])
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k([[1, 2, 3]], rel, 3) == pytest.approx(dcg / idcg)
    dcg_e = 1 + 7 / 2
    idcg_e = 7 + 3 / math.log2(3) + 1 / 2
    assert ndcg_at_k([[1, 2, 3]], rel, 3, gain="exponential") == pytest.approx(dcg_e / idcg_e)
    # Grades do not change the binary metrics.
    assert recall_at_k([[1, 2, 3]], rel, 3) == pytest.approx(2 / 3)
    # All grades 0: IDCG = 0 gives NDCG 0.
    zero = ItemSets.from_lists([[1]], values=[[0.0]])
    assert ndcg_at_k([[1, 2]], zero, 2) == 0.0


def test_queries_without_relevant_items_are_skipped_and_counted() -> None:
    rep = ranking_report([[1, 2], [3, 4], [5, 6]], [[2], [], [9]], ks=(2,), exclude_seen=False)
    assert rep["recall@2"] == pytest.approx(0.5)
    assert rep["n_queries"] == 2 and rep["n_skipped"] == 1
    assert math.isnan(recall_at_k([[1, 2]], [[]], 2))
    per = per_query_metrics([[1, 2], [3, 4]], [[2], []], 2)
    assert set(per) == set(RANKING_METRICS)
    assert per["recall"][0] == 1.0 and math.isnan(per["recall"][1])


def test_padding_is_a_miss_and_short_lists_are_rejected() -> None:
    # Only 2 real candidates: precision still divides by k.
    assert precision_at_k([[7, 8, -1, -1]], [[7, 8]], 4) == pytest.approx(0.5)
    assert recall_at_k([[7, 8, -1, -1]], [[7, 8]], 4) == pytest.approx(1.0)
    assert ndcg_at_k([[-1, 7]], [[7]], 2) == pytest.approx(1 / math.log2(3))
    with pytest.raises(ConfigError, match="at least k=5 columns, received 4"):
        recall_at_k([[7, 8, -1, -1]], [[7]], 5)


def test_duplicates_count_once() -> None:
    # A repeated retrieved item is a hit at its first rank only.
    assert precision_at_k([[3, 3, 3]], [[3]], 3) == pytest.approx(1 / 3)
    assert map_at_k([[3, 3, 4]], [[3, 4]], 3) == pytest.approx((1 + 2 / 3) / 2)
    # A repeated relevant item counts once (and its largest grade is kept).
    assert recall_at_k([[3, 1]], [[3, 3]], 2) == pytest.approx(1.0)
    rel = ItemSets.from_lists([[3, 3, 1]], values=[[1.0, 4.0, 2.0]])
    dcg = 2 + 4 / math.log2(3)  # retrieved [1, 3]
    assert ndcg_at_k([[1, 3]], rel, 2) == pytest.approx(dcg / (4 + 2 / math.log2(3)))


def test_weights_average_over_queries() -> None:
    # q0 recall 1, q1 recall 0: weights 3 and 1 give 0.75; weight 0 removes the query.
    ret, rel = [[1], [2]], [[1], [9]]
    assert recall_at_k(ret, rel, 1, weights=[3, 1]) == pytest.approx(0.75)
    assert recall_at_k(ret, rel, 1, weights=[1, 0]) == pytest.approx(1.0)
    rep = ranking_report(ret, rel, ks=(1,), weights=[1, 0], exclude_seen=True, n_bootstrap=0)
    assert rep["n_queries"] == 1
    # top-k accuracy weighs pairs by their query's weight.
    assert top_k_accuracy([[1], [2]], [[1, 5], [9]], 1, weights=[1, 2]) == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    ("ret", "rel", "kwargs", "error", "match"),
    [
        ([1, 2], [[1]], {}, DataError, "2-d integer"),
        ([[1.5, 2.0]], [[1]], {}, DataError, "2-d integer"),
        ([[1, -2]], [[1]], {}, DataError, "-1 for padding"),
        ([[1, 2]], [[1], [2]], {}, DataError, "one relevant set per query"),
        ([[1, 2]], [[-3]], {}, DataError, "relevant item ids >= 0"),
        ([[1, 2]], [[1]], {"weights": [-1.0]}, DataError, "weights >= 0"),
        ([[1, 2]], [[1]], {"weights": [1.0, 1.0]}, DataError, "1 query weights"),
    ],
)
def test_input_errors(ret: list, rel: list, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        recall_at_k(ret, rel, 1, **kwargs)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="k as an integer"):
        recall_at_k([[1]], [[1]], 0)
    with pytest.raises(ConfigError, match="gain"):
        ndcg_at_k([[1]], [[1]], 1, gain="cubic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exclude_seen"):
        ranking_report([[1]], [[1]], ks=(1,), exclude_seen="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_bootstrap"):
        ranking_report([[1]], [[1]], ks=(1,), exclude_seen=True, n_bootstrap=-1)
    with pytest.raises(ConfigError, match="ci in"):
        ranking_report([[1]], [[1]], ks=(1,), exclude_seen=True, ci=1.5)
    with pytest.raises(DataError, match="relevance grades >= 0"):
        ndcg_at_k([[1]], ItemSets.from_lists([[1]], values=[[-1.0]]), 1)


# --------------------------------------------------------------------------- report
def test_report_keys_values_and_intervals() -> None:
    rng = np.random.default_rng(0)
    n, n_items = 200, 50
    ret = np.stack([rng.permutation(n_items)[:20] for _ in range(n)])
    rel = [rng.choice(n_items, size=rng.integers(0, 6), replace=False) for _ in range(n)]
    rep = ranking_report(ret, rel, ks=(5, 20), exclude_seen=True, n_bootstrap=300, seed=1)
    for k in (5, 20):
        for key in (
            f"recall@{k}",
            f"precision@{k}",
            f"ndcg@{k}",
            f"map@{k}",
            f"mrr@{k}",
            f"hit_rate@{k}",
            f"top_{k}_accuracy",
        ):
            lo, hi = rep[f"{key}_ci"]
            assert 0.0 <= lo <= rep[key] <= hi <= 1.0, key
            assert hi > lo
    assert rep["recall@20"] == pytest.approx(recall_at_k(ret, rel, 20))
    assert rep["top_20_accuracy"] == pytest.approx(top_k_accuracy(ret, rel, 20))
    assert rep["exclude_seen"] is True
    n_empty = sum(len(r) == 0 for r in rel)
    assert rep["n_queries"] == n - n_empty and rep["n_skipped"] == n_empty
    assert rep["ks"] == [5, 20] and rep["n_bootstrap"] == 300 and rep["ci"] == 0.95
    # Same seed, same intervals; another seed, other intervals.
    again = ranking_report(ret, rel, ks=(5, 20), exclude_seen=True, n_bootstrap=300, seed=1)
    assert again["recall@20_ci"] == rep["recall@20_ci"]
    other = ranking_report(ret, rel, ks=(5, 20), exclude_seen=True, n_bootstrap=300, seed=2)
    assert other["recall@20_ci"] != rep["recall@20_ci"]
    # Without bootstrap: no interval keys.
    plain = ranking_report(ret, rel, ks=(5,), exclude_seen=False, n_bootstrap=0)
    assert "recall@5_ci" not in plain and plain["exclude_seen"] is False


def test_bootstrap_interval_matches_a_loop_reference() -> None:
    # The vectorised bootstrap equals resampling users one replicate at a time.
    rng = np.random.default_rng(4)
    n = 60
    ret = np.stack([rng.permutation(30)[:10] for _ in range(n)])
    rel = [rng.choice(30, size=rng.integers(1, 5), replace=False) for _ in range(n)]
    w = rng.uniform(0.5, 2.0, size=n)
    rep = ranking_report(ret, rel, ks=(10,), weights=w, exclude_seen=True, n_bootstrap=400, seed=3)
    per = per_query_metrics(ret, rel, 10)["recall"]
    draw = np.random.default_rng(3).integers(0, n, size=(400, n))
    stats = [(per[d] * w[d]).sum() / w[d].sum() for d in draw]
    lo, hi = np.quantile(stats, [0.025, 0.975])
    assert rep["recall@10_ci"] == pytest.approx((lo, hi))


def test_constant_metric_has_a_degenerate_interval() -> None:
    rep = ranking_report([[1, 2]] * 30, [[1]] * 30, ks=(2,), exclude_seen=True, n_bootstrap=50)
    assert rep["recall@2_ci"] == (1.0, 1.0)


def test_report_with_exact_index_and_exclusions() -> None:
    # Users like the items sharing their sign pattern; training items excluded.
    rng = np.random.default_rng(2)
    items = rng.normal(size=(40, 8)).astype(np.float32)
    users = rng.normal(size=(25, 8)).astype(np.float32)
    scores = users @ items.T
    order = np.argsort(-scores, axis=1, kind="stable")
    train = ItemSets.from_lists([o[:3] for o in order])  # the 3 best: seen in training
    test = ItemSets.from_lists([o[3:5] for o in order])  # the next 2: held out
    index = ExactIndex(chunk_size=7)
    index.update_candidates(items)
    _, ret = index(users, 10, exclude=train)
    rep = ranking_report(ret, test, ks=(2, 10), exclude_seen=True, n_bootstrap=0)
    assert rep["recall@2"] == 1.0 and rep["ndcg@2"] == pytest.approx(1.0)
    _, ret_all = index(users, 10)
    rep_all = ranking_report(ret_all, test, ks=(2, 10), exclude_seen=False, n_bootstrap=0)
    assert rep_all["recall@2"] == 0.0 and rep_all["recall@10"] == 1.0


# --------------------------------------------------------------------------- properties
def brute_force(ret: np.ndarray, rel: list[list[int]], k: int) -> dict[str, float]:
    """Loop reference of every metric (binary relevance, unweighted)."""
    vals: dict[str, list[float]] = {m: [] for m in RANKING_METRICS if m != "top_k_accuracy"}
    pair_hits = pair_total = 0
    for row, r in zip(ret, rel, strict=True):
        rset = set(r)
        if not rset:
            continue
        seen: set[int] = set()
        hits = []
        for x in row[:k]:
            hits.append(int(x >= 0 and x in rset and x not in seen))
            seen.add(int(x))
        n_hit = sum(hits)
        vals["recall"].append(n_hit / len(rset))
        vals["capped_recall"].append(n_hit / min(k, len(rset)))
        vals["precision"].append(n_hit / k)
        vals["hit_rate"].append(float(n_hit > 0))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(rset))))
        vals["ndcg"].append(dcg / idcg)
        ap, c = 0.0, 0
        for j, h in enumerate(hits):
            if h:
                c += 1
                ap += c / (j + 1)
        vals["map"].append(ap / min(k, len(rset)))
        vals["mrr"].append(next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0))
        pair_hits += n_hit
        pair_total += len(rset)
    out = {m: float(np.mean(v)) if v else math.nan for m, v in vals.items()}
    out["top_k_accuracy"] = pair_hits / pair_total if pair_total else math.nan
    return out


ranked_lists = st.integers(1, 8).flatmap(
    lambda width: st.tuples(
        st.lists(
            st.lists(st.integers(-1, 12), min_size=width, max_size=width), min_size=1, max_size=12
        ),
        st.integers(1, width),
    )
)


@settings(max_examples=150, deadline=None)
@given(data=ranked_lists, rel_seed=st.integers(0, 10_000))
def test_matches_brute_force_and_stays_in_unit_interval(
    data: tuple[list[list[int]], int], rel_seed: int
) -> None:
    rows, k = data
    ret = np.array(rows)
    rng = np.random.default_rng(rel_seed)
    rel = [rng.integers(0, 13, size=rng.integers(0, 5)).tolist() for _ in rows]
    want = brute_force(ret, rel, k)
    rep = ranking_report(ret, rel, ks=(k,), exclude_seen=False, n_bootstrap=0)
    for m in RANKING_METRICS:
        key = f"top_{k}_accuracy" if m == "top_k_accuracy" else f"{m}@{k}"
        if math.isnan(want[m]):
            assert math.isnan(rep[key])
        else:
            assert rep[key] == pytest.approx(want[m]), m
            assert 0.0 <= rep[key] <= 1.0


@settings(max_examples=80, deadline=None)
@given(
    rel=st.lists(st.sets(st.integers(0, 30), min_size=1, max_size=6), min_size=1, max_size=10),
    k=st.integers(1, 8),
)
def test_perfect_ranking_scores_one(rel: list[set[int]], k: int) -> None:
    width = 8
    ret = np.full((len(rel), width), -1)
    for q, r in enumerate(rel):
        items = sorted(r)
        others = [x for x in range(40, 40 + width)]
        row = (items + others)[:width]
        ret[q] = row
    lists = [sorted(r) for r in rel]
    assert ndcg_at_k(ret, lists, k) == pytest.approx(1.0)
    assert map_at_k(ret, lists, k) == pytest.approx(1.0)
    assert mrr(ret, lists, k) == pytest.approx(1.0)
    assert hit_rate_at_k(ret, lists, k) == 1.0
    want_recall = np.mean([min(k, len(r)) / len(r) for r in rel])
    assert recall_at_k(ret, lists, k) == pytest.approx(want_recall)
    if all(len(r) <= k for r in rel):
        assert recall_at_k(ret, lists, k) == pytest.approx(1.0)


@settings(max_examples=80, deadline=None)
@given(
    data=ranked_lists,
    rel_seed=st.integers(0, 10_000),
    weights=st.lists(st.integers(0, 3), min_size=12, max_size=12),
)
def test_integer_weights_equal_duplicated_queries(
    data: tuple[list[list[int]], int], rel_seed: int, weights: list[int]
) -> None:
    rows, k = data
    ret = np.array(rows)
    rng = np.random.default_rng(rel_seed)
    rel = [rng.integers(0, 13, size=rng.integers(0, 5)).tolist() for _ in rows]
    w = np.array(weights[: len(rows)])
    rep_w = ranking_report(ret, rel, ks=(k,), weights=w, exclude_seen=True, n_bootstrap=0)
    idx = np.repeat(np.arange(len(rows)), w)
    rep_d = ranking_report(
        ret[idx], [rel[i] for i in idx], ks=(k,), exclude_seen=True, n_bootstrap=0
    )
    for key in rep_w:
        if key.endswith(f"@{k}") or key.endswith("accuracy"):
            a, b = rep_w[key], rep_d[key]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), key
