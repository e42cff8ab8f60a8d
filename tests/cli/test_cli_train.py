from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recfit.cli import app
from recfit.data import Interactions

runner = CliRunner()


@pytest.fixture
def ratings_csv(tmp_path: Path, tiny: Interactions) -> Path:
    p = tmp_path / "r.csv"
    tiny.to_frame().to_csv(p, index=False)
    return p


def test_train_evaluate_lr_find(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--dataset", str(ratings_csv), "--epochs", "2", "--bs", "32",
                              "--n-factors", "4", "--out", str(out), "-q"])  # fmt: skip
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
