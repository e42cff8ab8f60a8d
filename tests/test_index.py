"""Exact and approximate top-k retrieval: correctness against brute force, ties, exclusions."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.errors import ConfigError, DataError
from recfit.index import ApproximateIndex, ExactIndex, Exclusions, ItemSets


def reference_topk(
    queries: np.ndarray,
    cands: np.ndarray,
    k: int,
    exclude: list[np.ndarray] | None = None,
    ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: full score matrix, sort by (score desc, position asc), pad."""
    scores = queries.astype(np.float64) @ cands.astype(np.float64).T
    nq, n = scores.shape
    ids = np.arange(n) if ids is None else ids
    out_s = np.full((nq, k), -np.inf)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    for q in range(nq):
        banned = set() if exclude is None else {int(x) for x in exclude[q]}
        keep = [p for p in range(n) if int(ids[p]) not in banned]
        keep.sort(key=lambda p, q=q: (-scores[q, p], p))
        top = keep[:k]
        out_s[q, : len(top)] = scores[q, top]
        out_i[q, : len(top)] = ids[top]
    return out_s, out_i


def int_embeddings(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Small integers: float32 scores are exact and ties are frequent."""
    return rng.integers(-2, 3, size=(n, d)).astype(np.float32)


# --------------------------------------------------------------------------- ItemSets
def test_itemsets_from_pairs_groups_by_query_and_keeps_order() -> None:
    s = Exclusions.from_pairs([2, 0, 2, 0], [5, 1, 3, 9], n_queries=4, values=[1, 2, 3, 4])
    assert s.indptr.tolist() == [0, 2, 2, 4, 4]
    assert s.indices.tolist() == [1, 9, 5, 3]
    assert s.values is not None and s.values.tolist() == [2.0, 4.0, 1.0, 3.0]
    assert s.n_queries == 4
    assert s.lengths().tolist() == [2, 0, 2, 0]


def test_itemsets_rows_and_lists_round_trip() -> None:
    lists = [[3, 1], [], [7], [2, 2, 4]]
    s = ItemSets.from_lists(lists, values=[[1, 2], [], [3], [4, 5, 6]])
    assert [x.tolist() for x in s.to_lists()] == lists
    sub = s.rows([3, 0, 3])
    assert [x.tolist() for x in sub.to_lists()] == [[2, 2, 4], [3, 1], [2, 2, 4]]
    assert sub.values is not None and sub.values.tolist() == [4, 5, 6, 1, 2, 4, 5, 6]
    with pytest.raises(DataError, match="expected rows in"):
        s.rows([4])


def test_itemsets_from_interactions(tiny: Interactions) -> None:
    s = ItemSets.from_interactions(tiny, with_ratings=True)
    assert s.n_queries == tiny.n_users
    assert len(s.indices) == len(tiny)
    for u in (0, 7, tiny.n_users - 1):
        rows = np.flatnonzero(tiny.user == u)
        got = s.indices[s.indptr[u] : s.indptr[u + 1]]
        assert got.tolist() == tiny.item[rows].tolist()
        assert s.values is not None
        assert s.values[s.indptr[u] : s.indptr[u + 1]].tolist() == tiny.rating[rows].tolist()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"query_idx": [0, 1], "item_idx": [1], "n_queries": 2}, "expected as many items"),
        ({"query_idx": [0, 3], "item_idx": [1, 2], "n_queries": 2}, "query indices in"),
        ({"query_idx": [0.5], "item_idx": [1], "n_queries": 2}, "integer query"),
        ({"query_idx": [0], "item_idx": [1], "n_queries": 2, "values": [1, 2]}, "1 values"),
    ],
)
def test_itemsets_from_pairs_rejects_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        ItemSets.from_pairs(**kwargs)


def test_itemsets_rejects_inconsistent_csr() -> None:
    with pytest.raises(DataError, match="integer item ids"):
        ItemSets.from_lists([[1.5], [2]])
    with pytest.raises(DataError, match="indptr non-decreasing"):
        ItemSets(np.array([0, 3]), np.array([1, 2]))
    with pytest.raises(DataError, match="indptr"):
        ItemSets(np.array([[0, 1]]), np.array([1]))


# --------------------------------------------------------------------------- exact index
def test_exact_matches_brute_force_with_ties_and_exclusions() -> None:
    rng = np.random.default_rng(0)
    cands = int_embeddings(rng, 200, 4)
    queries = int_embeddings(rng, 37, 4)
    excl = [rng.choice(200, size=rng.integers(0, 30), replace=False) for _ in range(37)]
    want_s, want_i = reference_topk(queries, cands, 25, excl)
    for chunk, qchunk in ((7, 5), (64, 8), (1000, 1000), (1, 37)):
        index = ExactIndex(chunk_size=chunk, query_chunk_size=qchunk)
        index.update_candidates(cands)
        scores, ids = index(queries, 25, exclude=excl)
        assert scores.dtype == np.float32 and ids.dtype == np.int64
        np.testing.assert_array_equal(ids, want_i)
        np.testing.assert_array_equal(scores, want_s.astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    nq=st.integers(1, 9),
    d=st.integers(1, 4),
    k=st.integers(1, 50),
    chunk=st.integers(1, 17),
    qchunk=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    with_excl=st.booleans(),
)
def test_exact_equals_reference_property(
    n: int, nq: int, d: int, k: int, chunk: int, qchunk: int, seed: int, with_excl: bool
) -> None:
    rng = np.random.default_rng(seed)
    cands = int_embeddings(rng, n, d)
    queries = int_embeddings(rng, nq, d)
    excl = None
    if with_excl:
        excl = [rng.integers(0, n + 3, size=rng.integers(0, n + 2)) for _ in range(nq)]
    index = ExactIndex(chunk_size=chunk, query_chunk_size=qchunk)
    index.update_candidates(cands)
    scores, ids = index(queries, k, exclude=excl)
    want_s, want_i = reference_topk(queries, cands, k, excl)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(scores, want_s.astype(np.float32))
    # Excluded ids never appear; padding is exactly where scores are -inf.
    if excl is not None:
        for q in range(nq):
            assert not set(ids[q][ids[q] >= 0].tolist()) & set(excl[q].tolist())
    np.testing.assert_array_equal(ids == -1, np.isneginf(scores))


def test_ties_cut_at_k_prefer_lower_positions() -> None:
    # Every candidate scores the same: the first k positions win, in order, both when k is
    # below the chunk size (topk path) and across chunks.
    cands = np.ones((50, 3), dtype=np.float32)
    for chunk in (50, 8):
        index = ExactIndex(chunk_size=chunk)
        index.update_candidates(cands)
        _, ids = index(np.ones((4, 3)), k=5)
        assert ids.tolist() == [[0, 1, 2, 3, 4]] * 4
    # A tie straddling the cut: one winner, then ties among 10..19.
    cands = np.zeros((30, 1), dtype=np.float32)
    cands[25] = 2.0
    cands[10:20] = 1.0
    index = ExactIndex()
    index.update_candidates(cands)
    _, ids = index(np.array([[1.0]]), k=4)
    assert ids.tolist() == [[25, 10, 11, 12]]


def test_custom_ids_map_results_and_exclusions() -> None:
    rng = np.random.default_rng(3)
    cands = int_embeddings(rng, 30, 3)
    queries = int_embeddings(rng, 6, 3)
    ids = rng.permutation(np.arange(1000, 1030)) * 7
    excl = [np.array([ids[0], ids[5], 99999]) for _ in range(6)]  # 99999 is not a candidate
    index = ExactIndex(chunk_size=4)
    index.update_candidates(cands, ids=ids)
    assert index.ids_.tolist() == ids.tolist()
    scores, got = index(queries, 10, exclude=ItemSets.from_lists(excl))
    want_s, want_i = reference_topk(queries, cands, 10, excl, ids=ids)
    np.testing.assert_array_equal(got, want_i)
    np.testing.assert_array_equal(scores, want_s.astype(np.float32))


def test_padding_when_fewer_than_k_remain() -> None:
    cands = np.arange(1, 4, dtype=np.float32)[:, None]  # scores 1, 2, 3 for query [1]
    index = ExactIndex()
    index.update_candidates(cands)
    scores, ids = index(np.array([[1.0], [1.0]]), k=5, exclude=[[2], [0, 1, 2]])
    assert ids.tolist() == [[1, 0, -1, -1, -1], [-1] * 5]
    assert scores[0, :2].tolist() == [2.0, 1.0]
    assert np.isneginf(scores[0, 2:]).all() and np.isneginf(scores[1]).all()


def test_cosine_metric_and_zero_vectors() -> None:
    cands = np.array([[10.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, -3.0]], dtype=np.float32)
    index = ExactIndex(metric="cosine")
    index.update_candidates(cands)
    scores, ids = index(np.array([[2.0, 0.0]]), k=4)
    assert ids.tolist() == [[0, 1, 2, 3]]
    np.testing.assert_allclose(scores[0], [1.0, np.sqrt(0.5), 0.0, 0.0], atol=1e-6)
    dot = ExactIndex(metric="dot")
    dot.update_candidates(cands)
    assert dot(np.array([[2.0, 0.0]]), k=1)[0].tolist() == [[20.0]]


def test_torch_inputs_give_numpy_and_same_answer() -> None:
    rng = np.random.default_rng(5)
    cands = rng.normal(size=(100, 8)).astype(np.float32)
    queries = rng.normal(size=(10, 8))
    a = ExactIndex()
    a.update_candidates(cands)
    b = ExactIndex()
    b.update_candidates(torch.tensor(cands, requires_grad=True))
    sa, ia = a(queries, 7)
    sb, ib = b(torch.tensor(queries, dtype=torch.float64), 7)
    assert isinstance(sb, np.ndarray) and isinstance(ib, np.ndarray)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(sa, sb, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(6)
    cands = int_embeddings(rng, 5000, 8)
    queries = int_embeddings(rng, 300, 8)
    excl = [rng.choice(5000, size=50, replace=False) for _ in range(300)]
    cpu = ExactIndex(chunk_size=1024)
    cpu.update_candidates(cands)
    gpu = ExactIndex(chunk_size=1024, device="cuda")
    gpu.update_candidates(cands)
    assert gpu.embeddings_ is not None and gpu.embeddings_.is_cuda
    np.testing.assert_array_equal(cpu(queries, 50, excl)[1], gpu(queries, 50, excl)[1])
    on_gpu = ExactIndex()
    on_gpu.update_candidates(torch.tensor(cands, device="cuda"))
    np.testing.assert_array_equal(
        cpu(queries, 50, excl)[1], on_gpu(torch.tensor(queries, device="cuda"), 50, excl)[1]
    )


def test_exact_errors() -> None:
    index = ExactIndex()
    with pytest.raises(ConfigError, match="update_candidates"):
        index(np.ones((1, 2)), k=1)
    index.update_candidates(np.ones((3, 2)))
    with pytest.raises(ConfigError, match="k as an integer >= 1, received 0"):
        index(np.ones((1, 2)), k=0)
    with pytest.raises(DataError, match="dimension 2, received 3"):
        index(np.ones((1, 3)), k=1)
    with pytest.raises(DataError, match="one exclusion set per query"):
        index(np.ones((2, 2)), k=1, exclude=[[0]])
    with pytest.raises(DataError, match="finite queries"):
        index(np.array([[np.nan, 1.0]]), k=1)
    with pytest.raises(DataError, match="2-d"):
        index(np.ones(2), k=1)
    with pytest.raises(DataError, match="finite embeddings"):
        index.update_candidates(np.array([[np.inf, 0.0]]))
    with pytest.raises(DataError, match="unique candidate ids"):
        index.update_candidates(np.ones((2, 2)), ids=[4, 4])
    with pytest.raises(DataError, match="non-negative"):
        index.update_candidates(np.ones((2, 2)), ids=[-1, 4])
    with pytest.raises(DataError, match="expected 2 candidate ids"):
        index.update_candidates(np.ones((2, 2)), ids=[1])
    with pytest.raises(ConfigError, match="metric"):
        ExactIndex(metric="l2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="chunk_size"):
        ExactIndex(chunk_size=0)


def test_exclusions_from_training_interactions(tiny: Interactions) -> None:
    rng = np.random.default_rng(1)
    users = rng.normal(size=(tiny.n_users, 4)).astype(np.float32)
    items = rng.normal(size=(tiny.n_items, 4)).astype(np.float32)
    seen = Exclusions.from_pairs(tiny.user, tiny.item, tiny.n_users)
    index = ExactIndex(chunk_size=6)
    index.update_candidates(items)
    _, ids = index(users, k=tiny.n_items, exclude=seen)
    for u in range(tiny.n_users):
        got = ids[u][ids[u] >= 0]
        unseen = set(range(tiny.n_items)) - set(tiny.item[tiny.user == u].tolist())
        assert set(got.tolist()) == unseen  # every unseen item, no seen one


# --------------------------------------------------------------------------- approximate
def test_approximate_without_faiss_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(ConfigError, match="faiss-cpu"):
        ApproximateIndex()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_approximate_recall_and_exclusions(kind: str, metric: str) -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    cands = rng.normal(size=(3000, 16)).astype(np.float32)
    queries = rng.normal(size=(100, 16)).astype(np.float32)
    excl = [rng.choice(3000, size=40, replace=False) for _ in range(100)]
    ids = np.arange(3000) + 5000
    excl_ids = [e + 5000 for e in excl]
    exact = ExactIndex(metric=metric)  # type: ignore[arg-type]
    exact.update_candidates(cands, ids=ids)
    ann = ApproximateIndex(metric=metric, kind=kind, nprobe=16)  # type: ignore[arg-type]
    ann.update_candidates(cands, ids=ids)
    assert ann.n_candidates == 3000
    scores, got = ann(queries, 20, exclude=excl_ids)
    assert got.shape == (100, 20) and scores.dtype == np.float32
    for q in range(100):
        assert not set(got[q].tolist()) & set(excl_ids[q].tolist())
        assert np.all(np.diff(scores[q]) <= 0)
    recall = ann.recall_against(exact, queries, 20, exclude=excl_ids)
    assert 0.8 <= recall <= 1.0
    # Scores are the true scores of the returned ids.
    e_s, _ = exact(queries, 20, exclude=excl_ids)
    assert np.all(scores <= e_s[:, :1] + 1e-4)  # nothing beats the exact best
    pos = got - 5000
    want = (queries[:, None, :] * cands[pos]).sum(-1)
    if metric == "cosine":
        want = want / np.linalg.norm(queries, axis=1)[:, None] / np.linalg.norm(cands[pos], axis=2)
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-4)


def test_approximate_pads_and_recall_of_identical_answers_is_one() -> None:
    pytest.importorskip("faiss")
    cands = np.eye(4, dtype=np.float32)
    ann = ApproximateIndex()
    ann.update_candidates(cands)
    scores, ids = ann(np.array([[1.0, 2.0, 3.0, 4.0]]), k=6, exclude=[[3]])
    assert ids.tolist() == [[2, 1, 0, -1, -1, -1]]
    assert np.isneginf(scores[0, 3:]).all()
    exact = ExactIndex()
    exact.update_candidates(cands)
    assert ann.recall_against(exact, np.array([[1.0, 2.0, 3.0, 4.0]]), k=3) == 1.0
    with pytest.raises(ConfigError, match="kind"):
        ApproximateIndex(kind="lsh")  # type: ignore[arg-type]
