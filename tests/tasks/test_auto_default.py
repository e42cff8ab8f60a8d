"""The default budget of model="auto": by the size of the training part, recorded in the
run, and budget 0 (the size rule without a search) where a run asks for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import RatingConfig, load_config, validate_config
from recfit.config import rating as rating_config
from recfit.config.rating import BUDGET_RANGE, default_budget
from recfit.config.schema import show_config, shown_default
from recfit.data import Interactions
from recfit.data.split import Split
from recfit.errors import ConfigError
from recfit.runs import train_run
from recfit.tasks import auto, tuning
from recfit.tasks.common import get_task

runner = CliRunner()
SMALL = {"epochs": 1, "n_factors": 4, "bs": 32, "seed": 0}


@pytest.mark.parametrize(
    ("n_train", "seconds"),
    [(0, 120.0), (80_000, 120.0), (180_000, 120.0), (300_000, 200.0), (900_000, 600.0),
     (900_168, 600.0), (25_000_000, 600.0)],
)  # fmt: skip
def test_default_budget_by_size(n_train: int, seconds: float) -> None:
    assert default_budget(n_train) == seconds


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_default_budget_is_bounded_and_grows_with_the_data(a: int, b: int) -> None:
    lo, hi = BUDGET_RANGE
    assert lo <= default_budget(a) <= hi
    if a <= b:
        assert default_budget(a) <= default_budget(b)


def test_the_default_is_auto_with_a_budget_by_size() -> None:
    cfg = RatingConfig()
    assert cfg.model == "auto" and cfg.budget is None and cfg.searches()
    assert cfg.resolve_budget(80_000).budget == 120.0
    assert cfg.resolve_budget(900_000).budget == 600.0
    # every rating family may be tried, so their settings apply
    assert "autorec" in [f.name for f in cfg.candidate_families()]
    zero = RatingConfig(budget=0)
    assert not zero.searches() and zero.resolve_budget(80_000).budget == 0
    assert [f.name for f in zero.candidate_families()] == ["svdpp", "dot"]


def test_an_explicit_budget_is_kept() -> None:
    assert RatingConfig(budget=30).resolve_budget(10**7).budget == 30
    assert RatingConfig(budget=0.5).resolve_budget(0).budget == 0.5
    assert RatingConfig(model="dot").resolve_budget(80_000).budget is None  # not auto


@pytest.mark.parametrize("text", ["auto", "AUTO", "none", " auto "])
def test_auto_spells_the_default(text: str, tmp_path: Path) -> None:
    assert validate_config({"budget": text}).budget is None  # type: ignore[union-attr]
    toml = tmp_path / "c.toml"
    toml.write_text(f'budget = "{text}"\n')
    assert load_config(toml).budget is None  # type: ignore[union-attr]
    assert validate_config({"budget": "30"}).budget == 30  # type: ignore[union-attr]


def test_old_config_files_still_load() -> None:
    """Before the default by size every config stored budget 0, the then default: a
    resolved family with budget 0 loads (budget not given), and model auto with budget 0
    keeps the size rule without a search."""
    old = RatingConfig(budget=0).resolve_model(big=False).model_dump(mode="json")
    old["budget"] = 0.0
    cfg = validate_config(old)
    assert cfg.model == "svdpp" and cfg.budget is None  # type: ignore[union-attr]
    auto_old = validate_config({"version": 2, "model": "auto", "budget": 0.0})
    assert not auto_old.searches()  # type: ignore[union-attr]
    assert auto_old.resolve_model(big=False).model == "svdpp"
    with pytest.raises(Exception, match="budget"):
        validate_config({"model": "dot", "budget": 30})  # a real budget there is unread


def test_help_and_config_show_say_the_default() -> None:
    assert shown_default("budget").startswith("auto (by size")
    lines = [line for line in show_config("rating").splitlines() if "budget" in line]
    assert lines and lines[0].startswith("#") and "by size" in lines[0]
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert res.exit_code == 0 and "by size" in res.output


@pytest.fixture
def tiny_default(monkeypatch: pytest.MonkeyPatch) -> float:
    """The default budget squeezed to 2 ms, so that a default run's search takes no time."""
    monkeypatch.setattr(rating_config, "BUDGET_RANGE", (0.001, 0.002))
    return 0.002


def _spy(monkeypatch: pytest.MonkeyPatch, out: Path | None = None) -> list[dict[str, Any]]:
    """Record each search's config (and the run's config.json at that moment)."""
    calls: list[dict[str, Any]] = []
    real = auto.choose_model

    def spy(cfg: RatingConfig, split: Split) -> Any:
        seen: dict[str, Any] = {"budget": cfg.budget, "n_train": len(split.train_idx)}
        if out is not None:
            seen["config.json"] = json.loads((out / "config.json").read_text())
        calls.append(seen)
        return real(cfg, split)

    monkeypatch.setattr(auto, "choose_model", spy)
    return calls


def _no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("model auto searched")

    monkeypatch.setattr(auto, "choose_model", refuse)


def test_a_default_run_searches_within_the_budget_by_size_and_records_it(
    tiny: Interactions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_default: float
) -> None:
    out = tmp_path / "run"
    calls = _spy(monkeypatch, out)
    res = train_run(RatingConfig(**SMALL), out, data=tiny, progress=False)
    n_train = len(res.split.train_idx)
    assert [c["budget"] for c in calls] == [tiny_default]
    # config.json holds the resolved budget while the search runs
    during = calls[0]["config.json"]
    assert during["model"] == "auto" and during["budget"] == tiny_default
    found = json.loads((out / "metrics.json").read_text())["details"]["model_auto"]
    assert found["budget_seconds"] == found["default_budget_seconds"] == tiny_default
    assert f"{n_train:,} training ratings" in found["default_budget_rule"]
    # the finished run's config.json is the resolved model: re-run, it does not search
    stored = validate_config(json.loads((out / "config.json").read_text()))
    assert stored.model != "auto" and stored.model == res.config.model
    _no_search(monkeypatch)
    again = train_run(stored, data=tiny, progress=False)
    assert again.config.model == res.config.model and "model_auto" not in again.details


def test_budget_zero_keeps_the_size_rule_without_a_search(
    tiny: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_search(monkeypatch)
    res = train_run(RatingConfig(**SMALL, budget=0), data=tiny, progress=False)
    assert res.config.model == "svdpp" and "model_auto" not in res.details


def test_an_explicit_budget_is_the_search_budget(
    tiny: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy(monkeypatch)
    res = train_run(RatingConfig(**SMALL, budget=0.003), data=tiny, progress=False)
    assert [c["budget"] for c in calls] == [0.003]
    found = res.details["model_auto"]
    assert found["budget_seconds"] == 0.003
    assert found["default_budget_seconds"] == default_budget(len(res.split.train_idx)) == 120.0


def test_settle_is_the_one_place_the_budget_is_settled(
    tiny: Interactions, monkeypatch: pytest.MonkeyPatch, tiny_default: float
) -> None:
    """A run settles the budget once (``settle``, before ``prepare``); ``prepare`` and
    the search take it as settled and refuse a budget that is not."""
    task = get_task("rating")
    cfg = RatingConfig(**SMALL)
    split = task.load_split(cfg, tiny)
    assert task.settle(cfg, split).budget == tiny_default
    assert task.settle(cfg.replace(budget=7), split).budget == 7
    settled: list[float | None] = []
    real = RatingConfig.resolve_budget

    def resolve(self: RatingConfig, n_train: int) -> RatingConfig:
        settled.append(self.budget)
        return real(self, n_train)

    monkeypatch.setattr(RatingConfig, "resolve_budget", resolve)
    calls = _spy(monkeypatch)
    train_run(cfg, data=tiny, progress=False)
    assert settled == [None] and [c["budget"] for c in calls] == [tiny_default]
    with pytest.raises(ConfigError, match=r"budget.*settle"):
        task.prepare(cfg, split)


def test_tune_with_model_auto_tunes_the_size_rule_family(
    tiny: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search is the tuner's: auto, with a budget given or not, takes its size rule
    (the config says how: ``without_search``; the tuner names no model)."""
    _no_search(monkeypatch)
    for budget in (None, 30.0):
        cfg = RatingConfig(**SMALL, budget=budget)
        res = tuning.tune(cfg, tiny, budget_s=60, n_trials=1, progress=False)
        assert res.best_config.model == "svdpp"
        assert cfg.searches() and not cfg.without_search().searches()
    assert RatingConfig(model="mf").without_search() == RatingConfig(model="mf")
    assert "budget" in RatingConfig.AUTO_FIELDS and len(RatingConfig.AUTO_FIELDS) == 1
    assert RatingConfig(budget=30).resolve_model(big=True).budget is None


def test_cli_train_says_how_auto_chose(
    ratings_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_default: float
) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "-d", str(ratings_csv), "--epochs", "1", "--n-factors",
                              "4", "-q", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "budget by size" in text and "model auto chose" in text
    assert f"{tiny_default:g} s budget" in text
    res = runner.invoke(app, ["train", "-d", str(ratings_csv), "--epochs", "1", "--n-factors",
                              "4", "-q", "--budget", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "model svdpp" in res.output and "model auto chose" not in res.output
    res = runner.invoke(app, ["train", "-d", str(ratings_csv), "--budget", "soon"])
    assert res.exit_code == 2 and "budget" in res.output


def test_distributed_training_takes_the_size_rule_and_says_so(
    tiny: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process would search on its own (and might choose another model)."""
    _no_search(monkeypatch)
    task = get_task("rating")
    cfg = RatingConfig(**SMALL)
    split = task.load_split(cfg, tiny)
    resolved = task.prepare(task.settle(cfg, split), split, distributed=True)
    assert resolved.model == "svdpp"
    learner = task.build(resolved, split, callbacks=(), progress=False)
    found = task.evaluate(learner, resolved, split)[1]["model_auto"]
    assert found["chosen"] == "the size rule" and "distributed" in found["by"]
    assert found["budget_seconds"] == default_budget(len(split.train_idx))
