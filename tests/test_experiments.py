"""Repeated experiments: statistics, paired comparisons, resume after interruption, TOML specs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from recfit.errors import ConfigError, DataError
from recfit.experiments import (
    ExperimentResults,
    RunRecord,
    load_compare_config,
    load_results,
    run_experiments,
    seeds_for,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"mu": 0.40, "spread": 0.01},
    "weights": {"mu": 0.43, "spread": 0.02},
    "smote": {"mu": 0.41, "spread": 0.03},
}


class FakeRunner:
    """Deterministic, cheap: a shared per-seed "split" effect plus a per-config effect."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_at = fail_at

    def __call__(self, name: str, config: dict[str, Any], seed: int) -> dict[str, float]:
        self.calls.append((name, seed))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        split_effect = np.random.default_rng(seed).normal(0, 0.05)  # same for every config
        own = np.random.default_rng([seed, int(config["mu"] * 1000)]).normal(0, config["spread"])
        acc = config["mu"] + split_effect + own
        return {"accuracy": float(acc), "mse": float(1.0 - acc)}


def expected_values(name: str, seeds: list[int]) -> np.ndarray:
    return np.array([FakeRunner()(name, CONFIGS[name], s)["accuracy"] for s in seeds])


def test_seeds_for() -> None:
    assert seeds_for(4) == [0, 1, 2, 3]
    assert seeds_for(10, 7)[:5] == seeds_for(5, 7)
    with pytest.raises(ConfigError, match="runs >= 1"):
        seeds_for(0)


def test_runs_every_config_and_seed_seed_major() -> None:
    runner = FakeRunner()
    seeds = seeds_for(4, 10)
    res = run_experiments(CONFIGS, runner, seeds, progress=False)
    assert runner.calls == [(n, s) for s in seeds for n in CONFIGS]
    runs = res.runs
    assert list(runs.columns) == ["config", "seed", "metric", "value"]
    assert len(runs) == 3 * 4 * 2
    assert res.metrics == ["accuracy", "mse"]
    wide = res.wide()
    assert len(wide) == 12 and {"accuracy", "mse", "seconds"} <= set(wide.columns)
    assert (wide["seconds"] >= 0).all()


def test_summary_matches_numpy() -> None:
    seeds = seeds_for(6)
    res = run_experiments(CONFIGS, FakeRunner(), seeds, progress=False)
    s = res.summary()
    assert list(s.config.unique()) == list(CONFIGS)
    for name in CONFIGS:
        v = expected_values(name, seeds)
        row = s[(s.config == name) & (s.metric == "accuracy")].iloc[0]
        assert row["n"] == 6
        assert row["mean"] == pytest.approx(v.mean())
        assert row["std"] == pytest.approx(v.std(ddof=1))
        assert row["sem"] == pytest.approx(v.std(ddof=1) / math.sqrt(6))
        assert row["lo"] == pytest.approx(v.mean() - 2 * v.std(ddof=1))
        assert row["hi"] == pytest.approx(v.mean() + 2 * v.std(ddof=1))
    sem = res.summary("sem")
    t6 = scipy.stats.t.ppf(0.975, 5)  # Student's t for 6 seeds, not 2
    assert (sem["hi"] - sem["lo"]).to_numpy() == pytest.approx(2 * t6 * sem["sem"].to_numpy())
    with pytest.raises(ConfigError, match="interval"):
        res.summary("var")  # type: ignore[arg-type]


def test_paired_differences_remove_the_shared_split_effect() -> None:
    seeds = seeds_for(8)
    res = run_experiments(CONFIGS, FakeRunner(), seeds, progress=False, baseline="none")
    p = res.paired(None, "accuracy")
    assert p.baseline == "none" and list(p.differences.columns) == ["weights", "smote"]
    d = expected_values("weights", seeds) - expected_values("none", seeds)
    assert p.differences["weights"].to_numpy() == pytest.approx(d)
    row = p.summary.set_index("config").loc["weights"]
    assert row["mean"] == pytest.approx(d.mean())
    assert row["std"] == pytest.approx(d.std(ddof=1))
    t8 = scipy.stats.t.ppf(0.975, 7)
    assert row["lo"] == pytest.approx(d.mean() - t8 * d.std(ddof=1) / math.sqrt(8))
    assert bool(row["excludes_zero"]) == (row["lo"] > 0 or row["hi"] < 0)
    # pairing helps: the paired spread is smaller than the unpaired one
    unpaired = math.hypot(
        expected_values("weights", seeds).std(ddof=1), expected_values("none", seeds).std(ddof=1)
    )
    assert row["std"] < unpaired
    wide = res.paired("none", "accuracy", interval="std").summary.set_index("config")
    assert wide.loc["weights", "hi"] - wide.loc["weights", "lo"] == pytest.approx(4 * d.std(ddof=1))
    with pytest.raises(ConfigError, match="baseline"):
        res.paired("nope", "accuracy")
    with pytest.raises(ConfigError, match="metric"):
        res.paired("none", "ndcg")


def test_paired_uses_only_common_seeds() -> None:
    recs = (
        RunRecord("a", 0, {"m": 1.0}, 0.0),
        RunRecord("b", 0, {"m": 3.0}, 0.0),
        RunRecord("a", 1, {"m": 2.0}, 0.0),
        RunRecord("b", 2, {"m": 9.0}, 0.0),
    )
    p = ExperimentResults(recs, ("a", "b"), (0, 1, 2)).paired("a", "m")
    assert p.summary.loc[0, "n"] == 1 and p.summary.loc[0, "mean"] == 2.0
    assert math.isnan(p.summary.loc[0, "std"])


# ----------------------------------------------------------------- resume
def test_interrupted_comparison_resumes_without_redoing_finished_runs(tmp_path: Path) -> None:
    seeds = seeds_for(4)
    total = len(CONFIGS) * len(seeds)
    k = 7
    first = FakeRunner(fail_at=k)
    with pytest.raises(KeyboardInterrupt) as exc:
        run_experiments(CONFIGS, first, seeds, out_dir=tmp_path, progress=False)
    assert any("6 of 12 runs finished" in n for n in exc.value.__notes__)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == k - 1
    finished = set(first.calls[: k - 1])

    second = FakeRunner()
    res = run_experiments(CONFIGS, second, seeds, out_dir=tmp_path, progress=False)
    assert len(second.calls) == total - (k - 1)
    assert not (set(second.calls) & finished)
    assert set(second.calls) | finished == {(n, s) for n in CONFIGS for s in seeds}
    # the same numbers as an uninterrupted comparison
    clean = run_experiments(CONFIGS, FakeRunner(), seeds, progress=False)
    pd.testing.assert_frame_equal(res.runs, clean.runs)
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == total

    # a third run does nothing; more seeds only run the new ones
    third = FakeRunner()
    run_experiments(CONFIGS, third, seeds, out_dir=tmp_path, progress=False)
    assert third.calls == []
    more = FakeRunner()
    res6 = run_experiments(CONFIGS, more, seeds_for(6), out_dir=tmp_path, progress=False)
    assert {s for _, s in more.calls} == {4, 5} and len(more.calls) == 6
    assert res6.seeds == (0, 1, 2, 3, 4, 5)
    # and results can be read back from the folder
    back = load_results(tmp_path, baseline="none")
    assert len(back.records) == 18
    assert back.summary()["mean"].to_numpy() == pytest.approx(res6.summary()["mean"].to_numpy())


def test_torn_last_line_is_dropped_and_rerun(tmp_path: Path) -> None:
    seeds = seeds_for(2)
    run_experiments(CONFIGS, FakeRunner(), seeds, out_dir=tmp_path, progress=False)
    path = tmp_path / "runs.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # torn final write
    runner = FakeRunner()
    run_experiments(CONFIGS, runner, seeds, out_dir=tmp_path, progress=False)
    assert runner.calls == [("smote", 1)]
    assert [json.loads(x)["config"] for x in path.read_text().splitlines()][-1] == "smote"
    assert len(path.read_text().splitlines()) == 6


def test_damaged_middle_line_and_changed_config(tmp_path: Path) -> None:
    run_experiments(CONFIGS, FakeRunner(), [0], out_dir=tmp_path, progress=False)
    changed = {**CONFIGS, "weights": {"mu": 0.5, "spread": 0.02}}
    with pytest.raises(ConfigError, match="changed configuration"):
        run_experiments(changed, FakeRunner(), [0], out_dir=tmp_path, progress=False)
    path = tmp_path / "runs.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="JSON run record") as e:
        run_experiments(CONFIGS, FakeRunner(), [0], out_dir=tmp_path, progress=False)
    assert e.value.row == 1 and e.value.file == str(path)


def test_input_validation() -> None:
    r = FakeRunner()
    with pytest.raises(ConfigError, match="at least one configuration"):
        run_experiments({}, r, [0], progress=False)
    with pytest.raises(ConfigError, match="distinct seeds"):
        run_experiments(CONFIGS, r, [1, 1], progress=False)
    with pytest.raises(ConfigError, match="integer seeds"):
        run_experiments(CONFIGS, r, [1.5], progress=False)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="baseline"):
        run_experiments(CONFIGS, r, [0], progress=False, baseline="x")
    with pytest.raises(DataError, match="mapping of metric name"):
        run_experiments({"a": 1}, lambda n, c, s: [1.0], [0], progress=False)  # type: ignore[arg-type,return-value]
    with pytest.raises(DataError, match="number for metric 'acc'"):
        run_experiments({"a": 1}, lambda n, c, s: {"acc": "high"}, [0], progress=False)  # type: ignore[dict-item]


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    run_experiments({"a": 1}, lambda n, c, s: {"m": float(s)}, [0, 1], progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "compare" in captured.err and "2/2" in captured.err


# ----------------------------------------------------------------- output
def test_outputs(tmp_path: Path) -> None:
    res = run_experiments(CONFIGS, FakeRunner(), seeds_for(5), progress=False, baseline="none")
    text = res.table()
    assert "mean ± 2σ over 5 seeds" in text and "paired difference vs none" in text
    assert str(res) == text
    for name in CONFIGS:
        assert name in text
    csv = pd.read_csv(res.to_csv(tmp_path / "s.csv"))
    assert list(csv.columns) == ["config", "metric", "n", "mean", "std", "sem", "lo", "hi"]
    assert len(csv) == 6
    assert len(pd.read_csv(res.to_csv(tmp_path / "r.csv", "runs"))) == 30
    doc = json.loads((res.to_json(tmp_path / "r.json")).read_text())
    assert doc["baseline"] == "none" and len(doc["runs"]) == 15
    assert set(doc["paired"]) == {"accuracy", "mse"}
    assert len(doc["paired"]["accuracy"]) == 2

    fig = res.plot("accuracy")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CONFIGS)
    from matplotlib.container import BarContainer

    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    s = res.summary().query("metric == 'accuracy'").set_index("config").loc[list(CONFIGS)]
    assert [b.get_height() for b in bars] == pytest.approx(s["mean"].tolist())
    segs = bars.errorbar.lines[2][0].get_segments()  # type: ignore[attr-defined]
    lengths = [seg[1][1] - seg[0][1] for seg in segs]
    assert lengths == pytest.approx((4 * s["std"]).tolist())
    png = tmp_path / "acc.png"
    fig.savefig(png)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="metric"):
        res.plot("ndcg")

    paths = res.save(tmp_path / "report")
    assert set(paths) == {
        "summary.csv",
        "runs.csv",
        "results.json",
        "results.txt",
        "accuracy.png",
        "mse.png",
    }
    assert all(p.exists() for p in paths.values())


def test_single_seed_json_has_no_nan(tmp_path: Path) -> None:
    res = run_experiments(CONFIGS, FakeRunner(), [0], progress=False)
    doc = json.loads(res.to_json(tmp_path / "one.json").read_text())
    assert doc["summary"][0]["std"] is None
    assert math.isnan(res.summary().loc[0, "std"])
    res.plot("accuracy")  # nan error bars are drawn as 0, not an error


# ----------------------------------------------------------------- TOML
def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "compare.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_load_compare_config_merges_base(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
title = "imbalance"
baseline = "none"
runs = 10
seed = 3
metrics = ["accuracy", "mse_expected"]

[base]
epochs = 5
lr = 5e-3
[base.model]
kind = "classifier"
n_factors = 50

[configs.none]
imbalance = "none"

[configs.smote]
imbalance = "smote"
epochs = 6
[configs.smote.model]
n_factors = 32
""",
    )
    spec = load_compare_config(p)
    assert spec.configs["none"] == {
        "epochs": 5,
        "lr": 5e-3,
        "model": {"kind": "classifier", "n_factors": 50},
        "imbalance": "none",
    }
    assert spec.configs["smote"]["epochs"] == 6
    assert spec.configs["smote"]["model"] == {"kind": "classifier", "n_factors": 32}
    assert spec.base["model"]["n_factors"] == 50  # base untouched by the merge
    assert (
        spec.baseline == "none" and spec.runs == 10 and spec.metrics == ["accuracy", "mse_expected"]
    )
    assert spec.seeds() == list(range(3, 13)) and spec.seeds(2) == [3, 4]
    assert spec.title == "imbalance"
    # unknown keys inside a configuration pass through (the consumer rejects them)
    spec2 = load_compare_config(write(tmp_path, "[configs.a]\nwhatever = 1\n"))
    assert spec2.configs == {"a": {"whatever": 1}}
    with pytest.raises(ConfigError, match="expected runs"):
        spec2.seeds()
    res = spec.run(lambda n, c, s: {"accuracy": float(c["epochs"] + s)}, runs=2, progress=False)
    assert res.baseline == "none" and res.seeds == (3, 4)
    assert res.paired(None, "accuracy").summary.loc[0, "mean"] == 1.0


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "[base]\nepochs = 5\n\n[configs.a]\nlr = = 3\n")
    with pytest.raises(ConfigError, match="line 5") as e:
        load_compare_config(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[base]\nx = 1\n", "at least one"),
        ("bogus = 1\n[configs.a]\n", "top-level keys"),
        ('baseline = "b"\n[configs.a]\n', "baseline among"),
        ("runs = 0\n[configs.a]\n", "runs >= 1"),
        ('seed = "x"\n[configs.a]\n', "integer seed"),
        ("base = 3\n[configs.a]\n", r"\[base\] to be a table"),
        ("configs = {a = 1}\n", r"\[configs.a\] to be a table"),
        ("metrics = [1]\n[configs.a]\n", "metrics as a list"),
    ],
)
def test_bad_compare_specs(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_compare_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable comparison file"):
        load_compare_config(tmp_path / "nope.toml")


def test_two_seeds_are_not_starred_from_two_sigma() -> None:
    """Two seeds with a consistent small gain: ±2·sem excludes 0, the t interval does not."""
    recs = tuple(
        RunRecord(c, s, {"accuracy": base + gain}, 0.0)
        for s, base in enumerate([0.40, 0.50])
        for c, gain in (("a", 0.0), ("b", 0.010 + 0.004 * s))
    )
    res = ExperimentResults(recs, ("a", "b"), (0, 1), baseline="a")
    row = res.paired("a", "accuracy").summary.iloc[0]
    assert row["mean"] - 2 * row["sem"] > 0  # what the old rule starred
    assert not row["excludes_zero"]
    table = res.table(["accuracy"])
    assert " *" not in table.split("paired")[1].split("\n\n")[0]
    assert "over 2 seeds" in table and "t = 12.71" in table and "accuracy ↑" in table
