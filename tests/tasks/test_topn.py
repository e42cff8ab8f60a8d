"""The top-N task: from a plain CSV of clicks to answers, and the protocols it measures."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import validate_config
from recfit.data import Interactions
from recfit.models.registry import Family, register_family, sized_build, unregister_family
from recfit.models.topn import TOPN_READS, TopNModel, fit_topn
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.tasks.topn import TOPN

runner = CliRunner()


def _clicks_frame(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Users in 6 taste groups, each clicking (with repeats) among its group's 8 items."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 60, n)
    i = (u % 6) * 8 + rng.integers(0, 8, n)
    return pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i],
                         "time": rng.integers(1_600_000_000, 1_700_000_000, n)})  # fmt: skip


def _seen(run: Path, user: str) -> set[str]:
    """The user's training items, as the run's bundle holds them."""
    rec = Recommender.load(run)
    u = int(rec.users.index([user])[0])
    return set(rec.items.id(rec.seen.indices[rec.seen.indptr[u] : rec.seen.indptr[u + 1]]))


def test_three_commands_train_recommend_serve(tmp_path: Path, serve_process: Any) -> None:
    """The README's sequence: a plain CSV of clicks, then train, recommend and serve."""
    frame = _clicks_frame()
    csv = tmp_path / "clicks.csv"
    frame[["user", "item"]].to_csv(csv, index=False)
    run = tmp_path / "R"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # repeated clicks are summed, and said
        res = runner.invoke(app, ["train", "--task", "topn", "-d", str(csv), "--out", str(run)])
    assert res.exit_code == 0, res.output
    assert "implicit data" in res.output and "recall@20" in res.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["details"]["recall@20_ci"][0] <= metrics["recall@20"]
    assert metrics["details"]["exclude_seen"] is True
    assert (run / "topn.md").is_file()

    res = runner.invoke(app, ["recommend", str(run), "--user", "u1"])
    assert res.exit_code == 0, res.output
    listed = {w for w in res.output.split() if w.startswith("i") and w[1:].isdigit()}
    assert listed and not listed & _seen(run, "u1")

    with serve_process(run) as url:
        got = httpx.get(url + "/recommend", params={"user": "u1", "n": 5}, timeout=30)
        assert got.status_code == 200, got.text
        items = [x["id"] for x in got.json()["items"]]
        assert len(items) == 5 and not set(items) & _seen(run, "u1")


def test_train_and_test_files_with_unknown_ids(tmp_path: Path) -> None:
    frame = _clicks_frame()[["user", "item"]].drop_duplicates()
    train, test = frame.iloc[:-40], frame.iloc[-40:].copy()
    test.iloc[:3, 0] = ["new1", "new2", "new3"]  # users the training file has never seen
    test = test[
        ~test.set_index(["user", "item"]).index.isin(train.set_index(["user", "item"]).index)
    ]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    res = runner.invoke(app, ["train", "--task", "topn", "--model", "popularity", "--train",
                              str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                              "--n-bootstrap", "0", "--out", str(tmp_path / "R")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "3 users" in res.output  # dropped and said
    written = json.loads((tmp_path / "R" / "metrics.json").read_text())
    info = written["details"]["split"]["test_file"]
    assert info["dropped_unknown_users"] == 3 and info["rows"] == len(test)


def test_positives_are_chosen_before_splitting() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    d = Interactions.from_arrays(rng.integers(0, 50, n), rng.integers(0, 70, n),
                                 rng.integers(1, 6, n).astype(float), timestamp=np.arange(n))  # fmt: skip
    d = d.take(np.unique(d.user.astype(np.int64) * 100 + d.item, return_index=True)[1])
    cfg = validate_config({"task": "topn", "model": "popularity", "positive_min_rating": 4,
                           "split": "last:1", "device": "cpu", "n_bootstrap": 0})  # fmt: skip
    sp_ = TOPN.load_split(cfg, d)
    assert (sp_.data.rating >= 4).all()
    # last:1 holds out each user's latest *positive*
    test_users = sp_.data.user[sp_.test_idx]
    assert len(np.unique(test_users)) == len(test_users)
    ts = sp_.data.timestamp
    for u, t in zip(test_users, ts[sp_.test_idx], strict=True):
        assert t == ts[sp_.data.user == u].max()


class _Oracle(TopNModel):
    """A test family known to the registry only: the item index is the score."""

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:
        pass

    def score_history(self, X_rows: sp.csr_matrix) -> np.ndarray:
        return np.tile(np.arange(self.n_items, dtype=np.float32), (X_rows.shape[0], 1))


@pytest.fixture
def oracle_family() -> Any:
    fam = register_family(Family(
        name="test_oracle", task="topn", model_class=_Oracle, output="score", reads=TOPN_READS,
        trainers=("closed_form",), adapter="topn", closed_form=fit_topn, defaults={},
        build=sized_build(_Oracle),
    ))  # fmt: skip
    yield fam
    unregister_family(fam.name)


def test_a_family_registered_anywhere_trains_through_the_task(oracle_family: Family) -> None:
    frame = _clicks_frame()[["user", "item"]].drop_duplicates()
    data = Interactions.from_arrays(frame.user, frame.item, np.ones(len(frame)))
    cfg = validate_config({"task": "topn", "model": "test_oracle", "device": "cpu",
                           "n_bootstrap": 0})  # fmt: skip
    res = train_run(cfg, data=data, progress=False)
    assert type(res.learner.model) is _Oracle
    assert set(res.metrics) >= {"recall@20", "ndcg@20", "map@20", "hit_rate@20", "coverage@20"}


def test_auto_records_its_choice_and_inner_scores(tmp_path: Path) -> None:
    frame = _clicks_frame()[["user", "item"]].drop_duplicates()
    data = Interactions.from_arrays(frame.user, frame.item, np.ones(len(frame)))
    cfg = validate_config({"task": "topn", "device": "cpu", "n_bootstrap": 0})
    res = train_run(cfg, tmp_path / "R", data=data, progress=False)
    auto = res.details["model_auto"]
    assert auto["chosen"] == res.config.model != "auto"
    assert auto["chosen"] == max(auto["inner_scores"], key=auto["inner_scores"].get)
    stored = json.loads((tmp_path / "R" / "config.json").read_text())
    assert stored["model"] == auto["chosen"]


def test_strong_generalisation_scores_held_out_users_from_their_given_items() -> None:
    from recfit.data.split import Split

    if "fold_in_idx" not in Split.__dataclass_fields__:  # pragma: no cover
        pytest.skip("the users:F:G split is not in data.split")
    frame = _clicks_frame(3000)[["user", "item"]].drop_duplicates()
    data = Interactions.from_arrays(frame.user, frame.item, np.ones(len(frame)))
    cfg = validate_config({"task": "topn", "model": "popularity", "split": "users:0.2:0.8",
                           "device": "cpu", "n_bootstrap": 0})  # fmt: skip
    res = train_run(cfg, data=data, progress=False)
    split = res.split
    held = np.unique(split.data.user[split.test_idx])
    assert not np.isin(split.data.user[split.train_idx], held).any()
    assert res.details["n_fold_in_users"] == len(held) > 0


def test_recfit_evaluate_measures_a_topn_run_by_ranking(tmp_path: Path) -> None:
    """``evaluate_run`` of a top-N run ranks (no MSE of scores), on its own split."""
    from recfit.runs import evaluate_run

    frame = _clicks_frame()[["user", "item"]].drop_duplicates()
    csv = tmp_path / "clicks.csv"
    frame.to_csv(csv, index=False)
    cfg = validate_config({"task": "topn", "model": "popularity", "dataset": str(csv),
                           "device": "cpu", "n_bootstrap": 0})  # fmt: skip
    res = train_run(cfg, tmp_path / "R", progress=False)
    ev = evaluate_run(tmp_path / "R")
    assert ev.n_overlap == 0 and "mse" not in ev.metrics
    assert ev.metrics["recall@20"] == pytest.approx(res.metrics["recall@20"])


def test_a_clicks_run_stores_implicit_data_in_its_config(tmp_path: Path) -> None:
    """config.json says the data had no rating column, so a re-run reads it the same way."""
    frame = _clicks_frame()[["user", "item"]].drop_duplicates()
    csv = tmp_path / "clicks.csv"
    frame.to_csv(csv, index=False)
    cfg = validate_config({"task": "topn", "model": "popularity", "dataset": str(csv),
                           "device": "cpu", "n_bootstrap": 0})  # fmt: skip
    first = train_run(cfg, tmp_path / "R", progress=False)
    stored = json.loads((tmp_path / "R" / "config.json").read_text())
    assert stored["rating_col"] is None
    again = train_run(validate_config(stored), progress=False)
    same = [k for k in first.metrics if "seconds" not in k]
    assert {k: again.metrics[k] for k in same} == {k: first.metrics[k] for k in same}


def test_auto_passes_each_candidate_only_its_own_settings() -> None:
    """A family setting given with model auto goes to the candidates that read it; the
    others are compared without it (not refused)."""
    from recfit.config.topn import FAMILY_SETTINGS
    from recfit.tasks.topn import _as_family

    cfg = validate_config({"task": "topn", "device": "cpu"})
    cands = cfg.candidate_families()
    own = sorted({f for fam in cands for f in fam.reads} & (FAMILY_SETTINGS - {"opt"}))
    if not own or len(cands) < 2:  # pragma: no cover - depends on the families registered
        pytest.skip("no candidate of model auto reads a family setting")
    field = own[0]
    value = 3 if isinstance(getattr(cfg, field), int) else 0.5
    cfg = validate_config({"task": "topn", "device": "cpu", field: value})
    for fam in cands:
        one = _as_family(cfg, fam.name)
        assert one.model == fam.name
        assert (field in one.model_fields_set) == (field in fam.reads)


def test_config_show_and_flags_of_the_topn_task(tmp_path: Path) -> None:
    """`recfit config show --task topn` writes a file `recfit train --config` reads back;
    the task's fields are flags of `recfit train`."""
    from recfit.config import load_toml_text

    res = runner.invoke(app, ["config", "show", "--task", "topn"])
    assert res.exit_code == 0, res.output
    cfg = load_toml_text(res.output)
    assert cfg.task == "topn" and cfg.model == "auto"
    res = runner.invoke(app, ["train", "--help"])
    for flag in ("--confidence", "--positive-min-rating", "--ease-lambda", "--knn-k"):
        assert flag in res.output
    res = runner.invoke(app, ["train", "--task", "topn", "--model", "popularity",
                              "--knn-k", "5", "-d", "x.csv"])  # fmt: skip
    assert res.exit_code != 0 and "knn_k" in res.output  # a setting nothing would read
