"""Every task goes through the same interface, and runs.py dispatches to it by name only."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import recfit.runs
from recfit.config import validate_config
from recfit.data import Interactions
from recfit.runs import train_run
from recfit.tasks import TASKS, get_task
from recfit.tasks.common import Task
from recfit.tasks.rating import RatingTask
from recfit.train.learner import Learner

SETTINGS: dict[str, dict[str, Any]] = {
    "rating": {"model": "mf", "n_factors": 4, "bs": 32},
    "classification": {"n_factors": 4, "layers": (8,), "bs": 32},
    "retrieval": {"n_factors": 4, "layers": (4,), "bs": 64, "eval_every": 1, "n_bootstrap": 0},
    "topn": {"model": "popularity", "n_bootstrap": 0},
}
EPOCHS = {"topn": {}}  # a closed-form family reads no epochs


def _data() -> Interactions:
    rng = np.random.default_rng(0)
    u, i = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    keep = rng.random(u.shape) < 0.6
    u, i = u[keep], i[keep]
    r = rng.integers(1, 6, len(u)).astype(float)
    return Interactions.from_arrays(u, i, r, rating_scale=(1, 5))


def _cfg(task: str) -> Any:
    epochs = EPOCHS.get(task, {"epochs": 1})
    return validate_config({"task": task, **epochs, "device": "cpu", **SETTINGS[task]})


def test_every_task_is_registered_and_has_settings_here() -> None:
    assert sorted(TASKS) == sorted(SETTINGS) == ["classification", "rating", "retrieval", "topn"]
    assert all(get_task(name).name == name for name in TASKS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_task_builds_fits_evaluates_and_writes_artefacts(name: str, tmp_path: Path) -> None:
    task: Task[Any] = TASKS[name]
    data = _data()
    cfg = _cfg(name)
    split = task.load_split(cfg, data)
    cfg = task.prepare(cfg, split)
    assert task.inner_rows(cfg, split).size > 0
    learner = task.build(cfg, split, callbacks=(), progress=False)
    assert isinstance(learner, Learner) and learner.history == []
    learner = task.fit(learner, cfg)
    assert len(learner.history) == 1  # one epoch
    metrics, details = task.evaluate(learner, cfg, split)
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    assert isinstance(details, dict)
    figures = task.figures(learner, cfg)
    assert all(name.endswith(".png") for name in figures)
    direct = tmp_path / "direct"
    direct.mkdir()
    task.artefacts(learner, cfg, split, direct)
    # the same steps through a run directory: every file of a run, the task's own too
    out = tmp_path / "run"
    res = train_run(_cfg(name), out, data=data, progress=False)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.json", "history.csv", "bundle", "report.html"} <= names
    assert set(res.figures) <= names and {p.name for p in direct.iterdir()} <= names
    written = json.loads((out / "metrics.json").read_text())
    assert {k: written[k] for k in metrics if "seconds" not in k} == {
        k: v for k, v in res.metrics.items() if "seconds" not in k
    }


class _Spy:
    """The rating task, recording which of its steps a run calls."""

    def __init__(self) -> None:
        self.real: Task[Any] = RatingTask()
        self.name, self.unit = "rating", "rows"
        self.calls: list[str] = []

    def __getattr__(self, step: str) -> Any:
        fn = getattr(self.real, step)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(step)
            out = fn(*args, **kwargs)
            if step == "evaluate":
                out[0]["spied"] = 1.0
            if step == "artefacts":
                (args[-1] / "spied.txt").write_text("spied\n")
            return out

        return call


def test_a_run_calls_the_task_it_looks_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy()
    monkeypatch.setitem(TASKS, "rating", spy)  # type: ignore[arg-type]
    out = tmp_path / "run"
    res = train_run(_cfg("rating"), out, data=_data(), progress=False)
    steps = [c for c in spy.calls if c != "checkpointed"]
    assert steps == [
        "warm_up", "load_split", "settle", "prepare", "build", "fit", "evaluate", "figures",
        "artefacts",
    ]  # fmt: skip
    assert res.metrics["spied"] == 1.0 and (out / "spied.txt").exists()


def test_runs_has_no_branch_on_a_task_name() -> None:
    """runs.py reaches a task through TASKS only: no comparison with a task's name."""
    tree = ast.parse(Path(recfit.runs.__file__).read_text(encoding="utf-8"))
    names = set(TASKS)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            consts = {
                p.value for p in ast.walk(ast.Tuple(elts=parts)) if isinstance(p, ast.Constant)
            }
            if consts & names:
                found.append(ast.unparse(node))
    assert not found, f"runs.py compares with task names: {found}"
    for name in ("classification", "retrieval", "imbalance", "two_tower", "TwoTower"):
        code = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Name | ast.Attribute)]
        assert not [c for c in code if name in c], f"runs.py names {name!r} in its code"
