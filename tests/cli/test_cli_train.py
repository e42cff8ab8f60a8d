from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recfit.cli import app
from recfit.data import Interactions

runner = CliRunner()


def test_train_evaluate_lr_find(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--dataset", str(ratings_csv), "--epochs", "2", "--bs", "32",
                              "--n-factors", "4", "--budget", "0", "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "mse" in res.output and (out / "metrics.json").exists()
    assert "model svdpp, 2 epochs (model auto)" in res.output  # the resolved default model
    mse = json.loads((out / "metrics.json").read_text())["mse"]
    res = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["mse"] == pytest.approx(mse, rel=1e-6)
    png = tmp_path / "lr.png"
    res = runner.invoke(app, ["lr-find", "--dataset", str(ratings_csv), "--num-it", "30", "--bs", "16",
                              "--out", str(png)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "valley" in res.output and png.stat().st_size > 1000


def test_config_file_and_flag_override(tmp_path: Path, ratings_csv: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'dataset = "{ratings_csv}"\nepochs = 1\nbs = 32\nn_factors = 3\nmodel = "mf"\n')
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["train", "--config", str(cfg), "--epochs", "2", "--out", str(out), "-q"]
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["model"] == "mf" and saved["n_factors"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "bogus"], "model"),
        (["train", "--dataset", "nope.csv"], "nope.csv"),
        (["train", "--y-range", "a,b"], "y-range"),
        (["evaluate", "/nonexistent/run"], "run directory"),
    ],
)
def test_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_retrieval_task_writes_ranking_metrics(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--dataset", str(ratings_csv), "--task", "retrieval",
                              "--epochs", "2", "--bs", "64", "--eval-every", "1",
                              "--exclude-seen", "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"], saved["opt"], saved["lr"]) == ("two_tower", "adagrad", 0.05)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["recall@20"] <= 1 and "top_100_accuracy" in metrics
    assert metrics["details"]["exclude_seen"] is True
    assert len(metrics["details"]["recall@20_ci"]) == 2
    assert (out / "metric_vs_epoch.png").exists() and (out / "report.html").exists()
    res = runner.invoke(app, ["similar", str(out), "--item", "1000", "-n", "3"])
    assert res.exit_code == 0, res.output


def test_classification_task_uses_its_defaults(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--dataset", str(ratings_csv), "--task", "classification",
                              "--epochs", "1", "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"], saved["loss"], saved["bs"]) == ("classifier", "cross_entropy", 256)
    assert "accuracy" in json.loads((out / "metrics.json").read_text())
    assert (out / "confusion_matrix.png").exists()


# ------------------------------------------------------------------ run directories
def _train(*args: str) -> Any:
    return runner.invoke(app, ["train", "--epochs", "1", "--bs", "32", "--n-factors", "4", "-q",
                               "--budget", "0", *args])  # fmt: skip


def test_out_onto_a_finished_run_needs_force(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    assert _train("-d", str(ratings_csv), "--out", str(out), "--seed", "1").exit_code == 0
    res = _train("-d", str(ratings_csv), "--out", str(out), "--seed", "2")
    assert res.exit_code == 2 and "finished run" in res.output and "--force" in res.output
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    res = _train("-d", str(ratings_csv), "--out", str(out), "--seed", "2", "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["seed"] == 2
    bundle_cfg = json.loads((out / "bundle" / "recommender.json").read_text())["config"]
    assert bundle_cfg["seed"] == 2


def test_resume_before_the_first_checkpoint_uses_config_json(
    tmp_path: Path, ratings_csv: Path
) -> None:
    from recfit.config import RatingConfig

    out = tmp_path / "run"  # what a kill before the first checkpoint leaves
    out.mkdir()
    cfg = RatingConfig(dataset=str(ratings_csv), epochs=1, bs=32, n_factors=4, seed=4, budget=0)
    (out / "config.json").write_text(cfg.model_dump_json())
    res = runner.invoke(app, ["train", "--resume", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["details"]["seed"] == 4


# ------------------------------------------------------------------ evaluation overlap
def test_evaluate_on_another_split_refuses_training_rows(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    assert _train("-d", str(ratings_csv), "--out", str(out)).exit_code == 0
    res = runner.invoke(app, ["evaluate", str(out), "--split", "random:0.2", "--seed", "9"])
    assert res.exit_code == 2, res.output
    assert "training rows" in res.output and "--allow-overlap" in res.output
    res = runner.invoke(app, ["evaluate", str(out), "--split", "random:0.2", "--seed", "9",
                              "--allow-overlap", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["overlap_rows"] > 0
    res = runner.invoke(app, ["evaluate", str(out), "--json"])  # the run's own split
    assert res.exit_code == 0 and json.loads(res.output)["overlap_rows"] == 0


# ------------------------------------------------------------------ own files, columns
def _own_split(tmp_path: Path, tiny: Interactions) -> tuple[Path, Path, Any]:
    frame = tiny.to_frame().rename(columns={"user": "userId", "item": "movieId",
                                            "rating": "stars"})  # fmt: skip
    rng = np.random.default_rng(0)
    test_mask = rng.random(len(frame)) < 0.2
    train, test = frame[~test_mask], frame[test_mask]
    extra = pd.DataFrame({"userId": [99999, train.userId.iloc[0]],
                          "movieId": [train.movieId.iloc[0], 88888],
                          "stars": [3.0, 4.0], "timestamp": [1_000_000, 1_000_001]})  # fmt: skip
    test = pd.concat([test, extra], ignore_index=True)
    tr, te = tmp_path / "train.csv", tmp_path / "test.parquet"
    train.to_csv(tr, index=False)
    test.to_parquet(te, index=False)
    return tr, te, test


def test_train_on_given_train_and_test_files(tmp_path: Path, tiny: Interactions) -> None:
    from recfit.metrics.rating import mse
    from recfit.recommender import Recommender

    tr, te, test = _own_split(tmp_path, tiny)
    out = tmp_path / "run"
    res = _train("--train", str(tr), "--test", str(te), "--out", str(out),
                 "--columns", "user=userId,item=movieId", "--rating-col", "stars")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 of" in res.output and "dropped" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    info = metrics["details"]["split"]
    assert info["test_file"]["dropped_unknown_rows"] == 2 and info["test"] == len(test) - 2
    known = test.iloc[:-2]  # the rows whose ids the training file knows
    rec = Recommender.load(out)
    pred = rec.predict(known.userId.to_numpy(), known.movieId.to_numpy())
    assert metrics["mse"] == pytest.approx(float(mse(pred, known.stars.to_numpy())), rel=1e-5)
    res = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["mse"] == pytest.approx(metrics["mse"], rel=1e-6)
    saved = json.loads((out / "config.json").read_text())
    assert (saved["split"], saved["test_file"], saved["user_col"]) == ("file", str(te), "userId")


def test_given_test_file_sharing_training_rows_is_refused(
    tmp_path: Path, tiny: Interactions
) -> None:
    tr, _, _ = _own_split(tmp_path, tiny)
    leaky = tmp_path / "leaky.csv"
    pd.read_csv(tr).head(5).to_csv(leaky, index=False)
    res = _train("--train", str(tr), "--test", str(leaky), "--columns",
                 "user=userId,item=movieId,rating=stars")  # fmt: skip
    assert res.exit_code == 2 and "5 of 5 test rows" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--test", "x.csv"], "expected --train (or --dataset FILE)"),
        (["--train", "x.csv"], "expected --test"),
        (["--train", "x.csv", "-d", "ml-100k", "--test", "y.csv"], "--train or --dataset"),
        (["--columns", "usr=a"], "role=name"),
        (["--columns", "user=a", "--user-col", "b"], "one column name"),
        (["-d", "x.csv", "--test", "y.csv", "--split", "u1"], "split 'file'"),
    ],
)
def test_file_and_column_flag_errors(args: list[str], message: str) -> None:
    res = runner.invoke(app, ["train", *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_column_flags_and_their_hint(tmp_path: Path, tiny: Interactions) -> None:
    p = tmp_path / "ratings.csv"
    tiny.to_frame().rename(columns={"user": "userId"}).to_csv(p, index=False)
    res = _train("-d", str(p))
    assert res.exit_code == 2 and "pass --user-col 'userId'" in res.output, res.output
    res = _train("-d", str(p), "--user-col", "userId")
    assert res.exit_code == 0, res.output


def test_version_and_help_defaults() -> None:
    from recfit import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"recfit {__version__}"
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert res.exit_code == 0
    text = " ".join(res.output.replace("│", " ").split())  # a long default wraps in its box
    for shown in ("[default: (42)]", "[default: (random:0.2)]", "svdpp: 6", "retrieval: 30",
                  "row-wise adagrad: 0.03"):  # fmt: skip
        assert shown in text, shown
