"""Checks of the peer-benchmark helpers: shared metrics against recfit's, splits, report.

Run with ``.venv/bin/pytest benchmarks/peers -q -p no:randomly``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import run
import splits

from recfit.data import Interactions
from recfit.tasks.retrieval import evaluate_vectors


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, Interactions, Interactions]:
    """Random vectors and a random 450/150 split of 600 distinct (user, item) pairs."""
    rng = np.random.default_rng(seed)
    n_users, n_items, dim = 30, 60, 4
    uv = rng.normal(size=(n_users, dim))
    iv = rng.normal(size=(n_items, dim))
    pairs = rng.choice(n_users * n_items, size=600, replace=False)
    u, i = pairs // n_items, pairs % n_items
    r = rng.integers(1, 6, size=len(u)).astype(np.float64)
    # leading rows put every user and item in the vocabulary; they are in neither part
    lead_u, lead_i = np.arange(n_items) % n_users, np.arange(n_items)
    full = Interactions.from_arrays(
        np.concatenate([lead_u, u]), np.concatenate([lead_i, i]),
        np.concatenate([np.full(n_items, 3.0), r]),
    )  # fmt: skip
    train = full.take(np.arange(n_items, n_items + 450))
    test = full.take(np.arange(n_items + 450, n_items + 600))
    uid = np.asarray(full.users.id(np.arange(full.n_users))).astype(int)
    iid = np.asarray(full.items.id(np.arange(full.n_items))).astype(int)
    return uv[uid], iv[iid], train, test


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_recfit(seed: int) -> None:
    uv, iv, train, test = _random_case(seed)
    ours = common.ranking_metrics(
        uv @ iv.T, test.user, test.item, train.user, train.item, k=5, n_bootstrap=0
    )
    rep = evaluate_vectors(uv, iv, test, train=train, exclude_seen=True, ks=(5,), n_bootstrap=0)
    for key in ("recall@5", "ndcg@5", "hit_rate@5"):
        assert ours[key] == pytest.approx(rep[key], abs=1e-9), key


@pytest.mark.parametrize("seed", [0, 3])
def test_topk_accuracy_matches_recfit(seed: int) -> None:
    uv, iv, _, test = _random_case(seed)
    five = test.rating >= 5
    ours = common.topk_accuracy(uv @ iv.T, test.user[five], test.item[five], k=10)
    rep = evaluate_vectors(
        uv, iv, test, exclude_seen=False, ks=(10,), relevant_min_rating=5.0, n_bootstrap=0
    )
    assert ours == pytest.approx(rep["top_10_accuracy"], abs=1e-12)


def test_topk_excludes_and_orders() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    assert common.topk(scores, 2).tolist() == [[1, 3]]
    assert common.topk(scores, 2, [np.array([1])]).tolist() == [[3, 2]]


def test_random_and_kfold_rows_partition() -> None:
    tr, te = splits.random_rows(1000, 0.2, 42)
    assert len(te) == 200 and np.intersect1d(tr, te).size == 0
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(1000))
    folds = splits.kfold_rows(103, 5, 0)
    tests = np.concatenate([t for _, t in folds])
    assert np.array_equal(np.sort(tests), np.arange(103))
    assert all(np.intersect1d(a, b).size == 0 for a, b in folds)


def _rec(lib: str, model: str, proto: str, value: float, secs: float, **kw: object) -> dict:
    key = run.METRIC[proto][0]
    return {"library": lib, "model": model, "protocol": proto, "part": "p0", "version": "1",
            "metrics": {key: value}, "fit_seconds": secs, "peak_mb": 1.0, **kw}  # fmt: skip


def test_targets_verdicts() -> None:
    recs = [
        _rec("recfit", "a", "R1", 0.80, 2.0, variant="fastai"),
        _rec("fastai", "EmbeddingDotBias (50)", "R1", 0.85, 30.0),
        _rec("recfit", "b", "R5", 0.86, 3.0, variant="fast"),
        _rec("surprise", "SVD", "R5", 0.87, 6.0),
    ]
    verdicts = {t: v for t, v, _ in run.targets(run.summarize(recs))}
    r1 = next(v for t, v in verdicts.items() if t.startswith("R1: recfit >= 10x"))
    r5 = next(v for t, v in verdicts.items() if t.startswith("R5: recfit >= 5x"))
    assert r1 == "met" and r5 == "not met"
    assert verdicts["R5: recfit's best at least as good as the best peer (rmse)"] == "met"


def test_markdown_lists_not_run() -> None:
    recs = [_rec("recfit", "a", "T1", 0.5, 2.0, variant="softmax"),
            _rec("keras-rs", "k", "T1", 0.3, 20.0)]  # fmt: skip
    report = {"records": recs, "not_run": [{"library": "x", "protocol": "T1", "model": None,
              "reason": "because"}], "started": "now", "quick": True, "cpus": 2, "threads": 1,
              "load_before": [1.0], "load_after": [1.0], "wall_seconds": 1.0}  # fmt: skip
    report["summary"] = run.summarize(recs)
    report["targets"] = run.targets(report["summary"])
    md = run.markdown(report)
    assert "not run: because" in md and "10.0x faster" in md and "+0.2000" in md


def test_numpy_ease_is_the_closed_form() -> None:
    import peer_ease_numpy as pe

    rng = np.random.default_rng(0)
    x = (rng.random((40, 12)) < 0.3).astype(np.float32)
    lam = 5.0
    b = pe.ease(x, lam).astype(np.float64)
    assert np.allclose(np.diag(b), 0.0)
    # (XᵀX + λI)(I − B) is diagonal: the stationarity condition with diag(B) = 0
    m = (x.T @ x + lam * np.eye(12)) @ (np.eye(12) - b)
    assert np.allclose(m - np.diag(np.diag(m)), 0.0, atol=1e-4)


def test_shared_metrics_agree_with_evaluate_topn() -> None:
    """common.ranking_metrics (every library's scorer) and recfit's evaluate_topn give the
    same Recall@20, NDCG@20 and HitRate@20 on the same scores."""
    import scipy.sparse as sp

    from recfit.models.topn import TopNModel, fit_topn
    from recfit.tasks.topn_eval import evaluate_topn

    uv, iv, train, test = _random_case(3)
    table = (uv @ iv.T).astype(np.float32)

    class Table(TopNModel):
        def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
            pass

        def score_users(self, users: np.ndarray, X_rows: sp.csr_matrix) -> np.ndarray:
            return table[users]

    model = Table(train.n_users, train.n_items)
    fit_topn(model, train)
    ours = evaluate_topn(model, train, test, ks=(20,), n_bootstrap=0)
    theirs = common.ranking_metrics(
        table, test.user, test.item, train.user, train.item, n_bootstrap=0
    )
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value), key


def test_synthetic_positives_are_shared_and_shaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "SPLITS", tmp_path)
    u, i, n_users, n_items = common.synthetic_positives(0.001)
    assert (n_users, n_items) == (163, 59)
    assert len(np.unique(u.astype(np.int64) * n_items + i)) == len(u)
    assert u.max() < n_users and i.max() < n_items
    again = common.synthetic_positives(0.001)  # read back from the file
    assert np.array_equal(again[0], u) and np.array_equal(again[1], i)


def test_jobs_cover_the_topn_peers() -> None:
    names = {(j.library, j.protocol, j.model) for j in run.jobs()}
    assert ("implicit", "T2", "BPR") in names and ("implicit", "T2", "ALS") in names
    assert ("numpy-ease", "T2", None) in names
    assert ("implicit", "S-T", None) in names and ("recfit", "S-T", None) in names
    assert run.METRIC["S-T"][1] is False  # seconds: lower is better


def test_shared_metrics_bootstrap_intervals() -> None:
    uv, iv, train, test = _random_case(4)
    m = common.ranking_metrics(uv @ iv.T, test.user, test.item, train.user, train.item, k=5)
    for key in ("recall@5", "ndcg@5", "hit_rate@5"):
        assert m[f"{key}_lo"] <= m[key] <= m[f"{key}_hi"]
    again = common.ranking_metrics(uv @ iv.T, test.user, test.item, train.user, train.item, k=5)
    assert again == m
