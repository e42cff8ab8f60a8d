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
import grid
import peer_recfit
import run
import splits
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ----------------------------------------------------------------------------- the grid
def test_t_quantiles_match_scipy() -> None:
    from scipy import stats

    for df in range(1, 31):
        assert grid.t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4), df
    assert grid.t_quantile(200) == 1.96
    with pytest.raises(ValueError):
        grid.t_quantile(0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.5, 1.5, allow_nan=False), min_size=2, max_size=12))
def test_t_interval_matches_scipy(values: list[float]) -> None:
    from scipy import stats

    mean, lo, hi = grid.t_interval(values)
    assert mean == pytest.approx(np.mean(values))
    sem = stats.sem(values)
    if sem == 0:
        assert lo == pytest.approx(mean) and hi == pytest.approx(mean)
        return
    want = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sem)
    assert lo == pytest.approx(want[0], abs=1e-3 * max(sem, 1e-9) + 1e-9)
    assert hi == pytest.approx(want[1], abs=1e-3 * max(sem, 1e-9) + 1e-9)
    assert lo <= mean <= hi


def test_t_interval_of_one_value_has_no_width() -> None:
    assert grid.t_interval([0.8]) == (0.8, 0.8, 0.8)
    with pytest.raises(ValueError):
        grid.t_interval([])


def test_verdicts() -> None:
    d = (0.80, 0.79, 0.81)
    assert grid.verdict(d, [(0.85, 0.82, 0.88), (0.90, 0.85, 0.95)]) == "ahead, intervals apart"
    # touching ends overlap: the default's high end must be strictly below
    assert grid.verdict(d, [(0.85, 0.81, 0.89)]) == "ahead on the mean only"
    assert grid.verdict(d, [(0.85, 0.82, 0.88), (0.805, 0.80, 0.81)]) == "ahead on the mean only"
    assert grid.verdict(d, [(0.80, 0.79, 0.81)]) == "behind"  # a tie is not ahead
    assert grid.verdict(d, [(0.85, 0.82, 0.88), (0.79, 0.70, 0.88)]) == "behind"


def test_paired_uses_shared_parts_only() -> None:
    a = {"s0": 0.80, "s1": 0.82, "s2": 0.81}
    b = {"s0": 0.85, "s1": 0.86, "s3": 0.5}
    mean, lo, hi = grid.paired(a, b)  # type: ignore[misc]
    assert mean == pytest.approx(-0.045) and lo < mean < hi
    assert grid.paired(a, {"s0": 0.9}) is None


def _grid_rec(lib: str, row: str, proto: str, part: str, value: float) -> dict:
    key = grid.METRIC[proto][0]
    rec = {"library": lib, "model": row if lib != "recfit" else f"{row}: desc",
           "protocol": proto, "part": part, "metrics": {key: value}, "fit_seconds": 1.0,
           "load_avg": [2.0], "load_start": 1.5}  # fmt: skip
    if lib == "recfit":
        rec["variant"] = row
    return rec


def test_protocol_summary_verdict_on_the_defaults_parts() -> None:
    recs = [
        *(_grid_rec("recfit", "auto", "R1", p, v) for p, v in (("a", 0.77), ("b", 0.78), ("c", 0.775))),
        *(_grid_rec("recfit", "family-bmf", "R1", p, v) for p, v in (("a", 0.80), ("b", 0.81), ("c", 0.805))),
        # a part the default did not run does not enter the verdict
        _grid_rec("surprise", "SVD", "R1", "a", 0.88), _grid_rec("surprise", "SVD", "R1", "z", 0.1),
    ]  # fmt: skip
    s = grid.protocol_summary(recs, "R1")
    assert s["default"]["parts"] == ["a", "b", "c"]
    assert s["verdict"] == "ahead, intervals apart"
    assert s["best_other"]["row"] == "family-bmf"
    assert s["paired_ahead"] == 1 and s["paired_total"] == 1  # SVD shares one part: no pair
    assert s["rows"][0]["row"] == "SVD"  # its mean over a and z is lowest
    recs.append(_grid_rec("recfit", "family-svdpp", "R1", "a", 0.70))
    assert grid.protocol_summary(recs, "R1")["verdict"] == "behind"


def test_grid_markdown_lists_rows_not_run_with_reasons() -> None:
    recs = [_grid_rec("recfit", "family-dot", "R5", "fold0", 0.86),
            _grid_rec("recfit", "family-dot", "R5", "fold1", 0.87)]  # fmt: skip
    md = grid.markdown(recs, ("R5",))
    assert "| R5 | not run | — | not measured |" in md
    assert "0.8650 [" in md
    assert "published (Surprise README, 5 folds in 41:06): RMSE 0.862" in md
    assert "| recfit | auto | — | not run: no time left in this session" in md
    assert "| surprise | SVD++ | — | not run: about 36 min a part" in md
    assert "| surprise | KNNWithZScore | — | not run: no time left in this session" in md


def test_grid_records_keep_the_last_run_of_a_part(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    first = _grid_rec("surprise", "SVD", "R2", "u1-s0", 0.95)
    again = _grid_rec("surprise", "SVD", "R2", "u1-s0", 0.94)
    path.write_text("\n".join(common.json.dumps(r) for r in (first, again)) + "\nnoise\n")
    recs = grid.load_records(path)
    assert len(recs) == 1 and recs[0]["metrics"]["rmse"] == 0.94
    assert grid.row_name(_grid_rec("recfit", "auto", "R2", "u1-s0", 0.9)) == "auto"


def test_parts_name_their_split_file_and_seed() -> None:
    assert [common.split_name(p) for p in common.PROTOCOLS["R2"][1]] == ["u1"] * 3
    assert [common.part_seed(p) for p in common.PROTOCOLS["R2"][1]] == [0, 1, 2]
    assert [common.part_seed(p) for p in common.PROTOCOLS["R4"][1]] == [0, 1, 2]
    assert common.part_seed("fold4") == 0 and common.split_name("fold4") == "fold4"
    assert "R4_seed2" in splits.SPLIT_NAMES and len(set(splits.SPLIT_NAMES)) == 19


def test_r4_rows_are_recfits_random_split() -> None:
    from recfit.data import Interactions
    from recfit.data.split import random_split

    n = 1000
    d = Interactions.from_arrays(np.arange(n) % 37, np.arange(n) % 53, np.ones(n))
    for seed in (0, 1, 2):
        train, test = splits.random_rows(n, 0.1, seed)
        s = random_split(d, 0.1, seed=seed)
        assert np.array_equal(train, s.train_idx) and np.array_equal(test, s.test_idx)


def test_auto_budget_by_size() -> None:
    assert peer_recfit.by_size_budget(80_000) == 120.0
    assert peer_recfit.by_size_budget(900_188) == 600.0
    assert peer_recfit.by_size_budget(450_000) == 300.0
    seconds, source = peer_recfit.auto_budget(80_000)
    assert seconds == 120.0 and source
    assert set(peer_recfit.GRID) == set(grid.RECFIT)
