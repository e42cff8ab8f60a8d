from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import load_config

runner = CliRunner()


def test_tune_writes_trials_and_a_runnable_best_config(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "tune"
    args = ["tune", "-d", str(ratings_csv), "--model", "dot", "--n-factors", "4", "--epochs",
            "2", "--bs", "32", "--seed", "0", "--n-trials", "3", "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # the console wraps long lines
    assert "trial 0 dot: rmse" in text and "test rows held out" in text
    assert "evaluated once" in text and "test part" in text
    for name in ("trials.csv", "trials.md", "trials.png", "best.toml", "tune.json"):
        assert (out / name).exists(), name
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and bool(trials.loc[0, "default"])
    summary = json.loads((out / "tune.json").read_text())
    best = load_config(out / "best.toml")
    assert best.model == "dot" and best.seed == 0
    assert summary["best_params"]["n_factors"] == best.n_factors  # type: ignore[union-attr]
    assert summary["chosen_on"].startswith("an inner validation cut")
    # the final run trained best.toml on the whole training part: training it again with
    # `recfit train --config` gives the same test figures
    final = summary["final"]
    assert (out / "final" / "metrics.json").exists()
    again = tmp_path / "again"
    res = runner.invoke(
        app, ["train", "--config", str(out / "best.toml"), "--out", str(again), "-q"]
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((again / "metrics.json").read_text())
    assert metrics["rmse"] == pytest.approx(final["rmse"], rel=1e-5)
    # a second search into the same folder needs --force for its final run
    res = runner.invoke(app, [*args, "-q"])
    assert res.exit_code == 2 and "final" in res.output


def test_tune_without_final_and_errors(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "t"
    res = runner.invoke(app, ["tune", "-d", str(ratings_csv), "--model", "mf", "--epochs", "1",
                              "--n-trials", "2", "--no-final", "-q", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "best.toml").exists() and not (out / "final").exists()
    assert "trial 0" not in res.output  # quiet: no line per trial
    res = runner.invoke(app, ["tune", "-d", str(ratings_csv)])
    assert res.exit_code == 2 and "--out" in res.output
    res = runner.invoke(app, ["tune", "-d", str(ratings_csv), "--families", "dot,nope",
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2 and "nope" in res.output
    res = runner.invoke(app, ["tune", "--help"])
    assert res.exit_code == 0 and res.output.count("--budget") == 1
