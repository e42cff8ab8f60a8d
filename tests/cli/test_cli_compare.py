"""``recfit compare``: a tiny TOML, 2 runs, outputs, and resuming without redoing runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from recfit.cli import app

runner = CliRunner()

SPEC = """
title = "tiny"
baseline = "none"
runs = 2
metrics = ["accuracy", "mse_expected"]

[base]
dataset = "{csv}"
task = "classification"
epochs = 1
layers = [8]
bs = 64
device = "cpu"

[configs.none]
imbalance = "none"

[configs.over]
imbalance = "oversample"
"""


def _csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 400
    pairs = rng.choice(30 * 40, n, replace=False)
    df = pd.DataFrame(
        {
            "user": pairs // 40,
            "item": pairs % 40,
            "rating": rng.choice([1, 2, 3, 4, 5], n, p=[0.1, 0.1, 0.2, 0.3, 0.3]),
        }
    )
    path = tmp_path / "ratings.csv"
    df.to_csv(path, index=False)
    return path


def test_compare_writes_results_and_resumes(tmp_path: Path) -> None:
    spec = tmp_path / "compare.toml"
    spec.write_text(SPEC.format(csv=_csv(tmp_path)))
    out = tmp_path / "out"
    args = ["compare", "--config", str(spec), "--runs", "2", "--out", str(out), "--quiet"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    for name in ("summary.csv", "runs.csv", "results.json", "results.txt", "accuracy.png"):
        assert (out / name).exists(), name
    text = " ".join(first.output.split())  # rich wraps long lines
    assert "mean ± 2σ over 2 seeds" in text and "paired difference vs none" in text
    # two seeds: the paired interval uses Student's t (12.71), not ±2σ, and says so
    assert "paired difference vs none over 2 seeds" in text and "t = 12.71" in text
    assert "accuracy ↑" in text and "mse_expected ↓" in text  # directions from the registry
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 4
    res = json.loads((out / "results.json").read_text())
    assert res["configs"] == ["none", "over"] and res["seeds"] == [0, 1]
    stamp = (out / "runs.jsonl").stat().st_mtime_ns

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "4 of 4 runs already finished" in " ".join(second.output.split())
    assert (out / "runs.jsonl").read_text().splitlines() == lines  # nothing redone
    assert (out / "runs.jsonl").stat().st_mtime_ns == stamp

    more = runner.invoke(app, [*args[:4], "3", *args[5:]])  # a third seed: only 2 new runs
    assert more.exit_code == 0, more.output
    assert len((out / "runs.jsonl").read_text().splitlines()) == 6


def test_compare_rejects_unknown_keys(tmp_path: Path) -> None:
    spec = tmp_path / "compare.toml"
    spec.write_text(SPEC.format(csv=_csv(tmp_path)).replace("epochs = 1", "epoch = 1"))
    res = runner.invoke(app, ["compare", "-c", str(spec), "-o", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2
    assert "unknown key 'epoch'" in " ".join(res.output.split())
