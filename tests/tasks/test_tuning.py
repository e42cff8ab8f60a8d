"""recfit.tasks.tuning: the search, its inner cut, pruning, the budget and its files."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.config import RatingConfig, load_config
from recfit.config.base import ROW_WISE_DEFAULTS
from recfit.data import Interactions
from recfit.data.synthetic import synthetic
from recfit.errors import CancelFitException, ConfigError, TrainingDivergedError
from recfit.models.registry import families, family
from recfit.models.search import Param
from recfit.tasks.common import get_task
from recfit.tasks.rating import resolve_config
from recfit.tasks.tuning import Trial, TuneResult, search_space, should_prune, tune
from recfit.tasks.tuning.search import _Watch


@pytest.fixture(scope="module")
def data() -> Interactions:
    return synthetic(2000, 60, 50, seed=0)


def _cfg(**kw: Any) -> RatingConfig:
    return RatingConfig(**{"model": "dot", "n_factors": 4, "epochs": 2, "bs": 64, "seed": 0, **kw})


def test_first_trial_is_the_config_and_the_best_is_the_best_complete(data: Interactions) -> None:
    cfg = _cfg()
    r = tune(cfg, data, n_trials=4, seed=0, prune=False)
    assert len(r.trials) == 4 and [t.number for t in r.trials] == [0, 1, 2, 3]
    first = r.trials[0]
    assert first.default and not any(t.default for t in r.trials[1:])
    assert first.params == {"n_factors": 4, "epochs": 2, "lr": 5e-3, "reg": 0.05}
    done = [t for t in r.trials if t.state == "complete"]
    assert r.best_score == min(t.score for t in done if t.score is not None)
    best = r.best_trial
    assert isinstance(r.best_config, RatingConfig) and r.best_config.model == "dot"
    for k, v in best.params.items():
        assert getattr(r.best_config, k) == v
    # the best config is never worse on the inner cut than the config's own values
    assert r.default_score is not None and r.best_score <= r.default_score
    assert r.metric == "rmse" and r.mode == "min"


def test_trials_train_and_score_on_training_rows_only(data: Interactions) -> None:
    cfg = _cfg()
    r = tune(cfg, data, n_trials=1, seed=0)
    assert r.valid_rows == round(0.1 * len(data)) and r.fit_rows + r.valid_rows == len(data)
    # given rows to score on, they are what trials are scored on
    valid = data.take(np.arange(100))
    rest = data.take(np.arange(100, len(data)))
    r2 = tune(cfg, rest, valid=valid, n_trials=1, seed=0)
    assert (r2.fit_rows, r2.valid_rows) == (len(rest), 100)
    other = synthetic(20, 5, 5, seed=1)
    with pytest.raises(ConfigError, match="vocabularies"):
        tune(cfg, data, valid=other, n_trials=1)


def test_same_seed_same_trials(data: Interactions) -> None:
    space = {"lr": Param(1e-3, 0.1, log=True), "n_factors": Param(2, 16, integer=True)}
    a = tune(_cfg(), data, n_trials=3, seed=3, prune=False, space=space)
    b = tune(_cfg(), data, n_trials=3, seed=3, prune=False, space=space)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.score for t in a.trials] == pytest.approx([t.score for t in b.trials], rel=1e-5)
    c = tune(_cfg(), data, n_trials=3, seed=4, prune=False, space=space)
    assert [t.params for t in c.trials][1:] != [t.params for t in a.trials][1:]


def test_several_families_and_nothing_to_search(data: Interactions) -> None:
    r = tune(_cfg(), data, n_trials=3, seed=0, families=["dot", "nn"])
    assert [t.family for t in r.trials[:2]] == ["dot", "nn"]
    assert all(t.default for t in r.trials[:2]) and not r.trials[2].default
    assert r.trials[1].params["layers"] == (100,) and "n_factors" not in r.trials[1].params
    assert r.best_config.model == r.best_trial.family
    # nothing to search: the config's own values once, whatever the budget
    only = tune(_cfg(), data, budget_s=60, space={})
    assert [(t.state, t.params) for t in only.trials] == [("complete", {})]
    with pytest.raises(ConfigError, match="model"):
        tune(_cfg(), data, n_trials=1, families=["nope"])


def test_an_invalid_setting_fails_its_trial_not_the_search(data: Interactions) -> None:
    space = {"epochs": Param(choices=(-1,))}  # widened to hold the config's 2
    r = tune(_cfg(), data, n_trials=6, seed=0, space=space)
    states = {t.params["epochs"]: t.state for t in r.trials}
    assert states == {2: "complete", -1: "failed"}
    failed = next(t for t in r.trials if t.state == "failed")
    assert "ConfigError" in failed.note and failed.score is None


def test_ctrl_c_ends_the_search_and_keeps_what_completed(data: Interactions) -> None:
    seen: list[str] = []

    def log(line: str) -> None:
        seen.append(line)
        if len(seen) == 2:
            raise KeyboardInterrupt

    r = tune(_cfg(), data, n_trials=5, seed=0, prune=False, log=log)
    assert len(r.trials) == 2 and r.extra["interrupted"] and r.best_score < math.inf


def test_bad_budget_or_trial_count(data: Interactions) -> None:
    with pytest.raises(ConfigError, match="budget_s"):
        tune(_cfg(), data, budget_s=0)
    with pytest.raises(ConfigError, match="n_trials"):
        tune(_cfg(), data, n_trials=0)


def test_the_budget_stops_a_running_trial() -> None:
    class _Learn:
        history: tuple[dict[str, float], ...] = ()

    watch = _Watch(None, "rmse", time.monotonic() - 1.0, [], "min", True)  # type: ignore[arg-type]
    watch.learn = _Learn()  # type: ignore[assignment]
    with pytest.raises(CancelFitException):
        watch.after_batch()
    assert watch.stopped == "timeout" and "budget" in watch.note
    assert watch.steps_in_bulk  # a fit whose epochs run as one kernel keeps that path
    with pytest.raises(CancelFitException):
        watch.after_steps([0.1], [0.9], [1.0])
    # a search whose budget is spent before its first trial ends says so
    d = synthetic(20_000, 300, 200, seed=0)
    with pytest.raises(ConfigError, match=r"timeout|none"):
        tune(_cfg(epochs=40), d, budget_s=0.05, seed=0)


def test_pruning_stops_trials_that_trail_the_median(data: Interactions) -> None:
    # a learning rate that learns nothing trails every trial that learns
    space = {"lr": Param(choices=(5e-3, 1e-7)), "reg": Param(0.01, 0.1)}
    r = tune(_cfg(epochs=4), data, n_trials=10, seed=0, prune=True, space=space)
    pruned = [t for t in r.trials if t.state == "pruned"]
    assert pruned, r.markdown()
    for t in pruned:
        assert 1 < len(t.curve) < (t.epochs or 0) and t.score is None and t.params["lr"] == 1e-7
    assert sum(t.state == "complete" for t in r.trials[: r.trials.index(pruned[0])]) >= 4
    never = tune(_cfg(epochs=4), data, n_trials=10, seed=0, prune=False, space=space)
    assert not [t for t in never.trials if t.state == "pruned"]


def test_should_prune_rule() -> None:
    done = [([1.0, 0.9, 0.8, 0.7], 4)] * 4
    assert should_prune([1.0, 0.95], 4, done)
    assert not should_prune([1.0, 0.9], 4, done)  # equal to the median: kept
    assert not should_prune([1.0, 0.95, 0.9, 0.9], 4, done)  # the last epoch: finished anyway
    # 4 of 8 epochs is half the schedule: compared with epoch 2 of 4 (0.9)
    assert not should_prune([1.0, 0.95, 0.9, 0.9], 8, done)
    assert should_prune([1.0, 0.95, 0.92, 0.91], 8, done)
    assert not should_prune([1.1, 1.05], 8, done)  # a quarter of the schedule: too early
    assert not should_prune([1.1, 1.05], 8, done, min_share=0.5)
    assert should_prune([1.1, 1.05], 8, done, min_share=0.25)  # against epoch 1 of 4 (1.0)
    assert not should_prune([1.0, 0.95], 4, done, mode="max")
    assert not should_prune([math.nan, math.nan], 4, done)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 5), min_size=1, max_size=10),
    st.integers(1, 12),
    st.lists(st.tuples(st.lists(st.floats(0, 5), min_size=1, max_size=12), st.integers(1, 12))),
)
def test_should_prune_never_in_warmup_at_the_end_or_without_enough_trials(
    curve: list[float], epochs: int, finished: list[tuple[list[float], int]]
) -> None:
    got = should_prune(curve, epochs, finished)
    if len(curve) <= 1 or len(curve) >= epochs or len(curve) < epochs / 2 or len(finished) < 4:
        assert not got
    # a trial as good as or better than every finished value is never pruned
    best = [0.0] * len(curve)
    assert not should_prune(best, epochs, finished)


def test_search_spaces_of_the_rating_families() -> None:
    for name in ("dot", "mf", "svdpp", "nn"):
        assert family(name).search, name
    assert not family("baseline").search
    # every default the rating task resolves to lies inside the declared ranges
    small = synthetic(500, 30, 30, seed=0)
    wide = Interactions.from_arrays(np.arange(3000), np.arange(3000) % 2000, np.ones(3000) * 3)
    for cfg in (
        resolve_config(RatingConfig(model="dot"), wide),  # row-wise Adagrad
        resolve_config(RatingConfig(model="dot"), small),  # AdamW
        resolve_config(RatingConfig(model="svdpp"), small),
        resolve_config(RatingConfig(model="mf", trainer="als", reg=0.3, epochs=15), small),
        resolve_config(RatingConfig(model="nn"), small),
    ):
        for k, p in family(cfg.model).search.items():
            if cfg.applies(k):
                assert p.contains(getattr(cfg, k)), (cfg.model, k, getattr(cfg, k))
    assert resolve_config(RatingConfig(model="dot"), wide).lr == ROW_WISE_DEFAULTS["lr"]
    assert sorted(search_space(RatingConfig(model="mf", trainer="als"))) == [
        "epochs", "n_factors", "reg"
    ]  # fmt: skip
    assert search_space(RatingConfig(model="dot", n_factors=300))["n_factors"].high == 300
    assert [f.name for f in families("rating") if f.search]  # tune has something to search


def test_results_table_plot_and_files(tmp_path: Path, data: Interactions) -> None:
    space = {"lr": Param(1e-3, 0.1, log=True), "n_factors": Param(2, 16, integer=True)}
    r = tune(_cfg(), data, n_trials=3, seed=0, space=space)
    df = r.table()
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert {"number", "family", "state", "score", "seconds", "lr", "n_factors"} <= set(df.columns)
    assert int(df["best"].sum()) == 1
    paths = r.write(tmp_path / "tune")
    assert sorted(paths) == ["best.toml", "trials.csv", "trials.md", "trials.png", "tune.json"]
    assert paths["trials.png"].stat().st_size > 1000
    again = load_config(paths["best.toml"])
    assert again == r.best_config
    assert len(pd.read_csv(paths["trials.csv"])) == 3
    assert "| number |" in paths["trials.md"].read_text()
    assert r.plot(None).axes


def test_result_with_a_maximised_metric() -> None:
    t = [Trial(0, "x", {}, 0.2, 1.0, "complete"), Trial(1, "x", {}, 0.3, 1.0, "complete")]
    r = TuneResult(_cfg(), 0.3, t, "ndcg@10", "max")
    assert r.best_trial.number == 1 and r.table()["best"].tolist() == [False, True]


def test_keep_holds_what_the_best_trial_left_and_only_that(data: Interactions) -> None:
    """``keep`` is called for each trial that beats the ones before it; the result keeps
    its value for the best trial, and earlier bests are let go (memory of one model)."""
    seen: list[tuple[float, Any]] = []

    def keep(learner: Any, fit: Any) -> tuple[int, Any]:
        seen.append((float(np.sqrt(np.mean((learner.predict(fit.test) - fit.test.rating) ** 2))),
                     weakref.ref(learner.model)))  # fmt: skip
        return len(seen) - 1, learner.model

    r = tune(_cfg(), data, n_trials=5, seed=0, prune=False, keep=keep)
    scores = [s for s, _ in seen]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert seen[-1][0] == pytest.approx(r.best_score, rel=1e-5)
    assert r.kept[0] == len(seen) - 1 and r.kept[1] is seen[-1][1]()
    gc.collect()
    assert [ref() is not None for _, ref in seen] == [False] * (len(seen) - 1) + [True]
    assert tune(_cfg(), data, n_trials=1, seed=0).kept is None


def _failing_fit(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    """The rating task's fit raises ``exc`` from the second trial on."""
    task = type(get_task("rating"))
    real, calls = task.fit, []

    def fit(self: Any, learner: Any, cfg: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise exc
        return real(self, learner, cfg)

    monkeypatch.setattr(task, "fit", fit)


@pytest.mark.parametrize("exc", [ValueError("a bug"), RuntimeError("a bug"), KeyError("a bug")])
def test_a_bug_in_a_trial_ends_the_search(
    data: Interactions, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    """Only what a bad setting can cause fails a trial; anything else is a bug, not hidden."""
    _failing_fit(monkeypatch, exc)
    with pytest.raises(type(exc), match="a bug") as info:
        tune(_cfg(), data, n_trials=3, seed=0)
    assert type(info.value) is type(exc)


def _real_cpu_oom() -> RuntimeError:
    """The error of a real failed CPU allocation (torch's own message, not a made-up one)."""
    try:
        torch.empty(2**50)
    except RuntimeError as e:
        return e
    raise AssertionError("expected a failed allocation of 2**50 floats, received a tensor")


@pytest.mark.parametrize(
    "exc",
    [
        _real_cpu_oom(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        TrainingDivergedError("diverged", epoch=0, step=3, what="loss"),
    ],
)
def test_out_of_memory_or_divergence_fails_the_trial_not_the_search(
    data: Interactions, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    _failing_fit(monkeypatch, exc)
    r = tune(_cfg(), data, n_trials=3, seed=0)
    assert [t.state for t in r.trials] == ["complete", "failed", "failed"]
    note = r.trials[1].note
    assert ("out of memory" in note) == isinstance(exc, RuntimeError)


def test_the_first_search_of_a_process_lets_its_callers_locals_go() -> None:
    """Optuna keeps the traceback of an optional import it could not make (redis), which
    holds every frame on the stack of its first import: imported with the module, not by
    the first search, so a search's data and models (and its callers') are let go."""
    code = (
        "import gc, weakref\n"
        "from recfit.config import RatingConfig\n"
        "from recfit.data.synthetic import synthetic\n"
        "from recfit.tasks.tuning import tune\n"
        "class Big: pass\n"
        "def run():\n"
        "    big = Big()\n"
        "    tune(RatingConfig(model='baseline'), synthetic(300, 20, 20, seed=0), n_trials=1)\n"
        "    return weakref.ref(big)\n"
        "ref = run(); gc.collect(); print(ref() is None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "True", out.stderr[-2000:]
