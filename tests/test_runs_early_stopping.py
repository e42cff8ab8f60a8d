"""Early stopping chooses the epoch on an inner cut of the training rows, never on the
held-out rows a run reports: those are evaluated once, after training (every task)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import recfit.tasks.retrieval.evaluation as retrieval_mod
from recfit.cli import app
from recfit.config import validate_config
from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.runs import run_config, train_run
from recfit.tasks.common import inner_validation, load_split
from recfit.train.callbacks import Callback
from recfit.train.learner import Learner

BASE: dict[str, dict[str, Any]] = {
    "rating": {"epochs": 4, "bs": 32, "n_factors": 4, "budget": 0},  # auto by size, no search
    "classification": {"task": "classification", "epochs": 4, "bs": 32, "n_factors": 4,
                       "layers": (8,)},
    "retrieval": {"task": "retrieval", "epochs": 4, "bs": 64, "n_factors": 4, "layers": (4,),
                  "eval_every": 1},
}  # fmt: skip


def _data() -> Interactions:
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    keep = rng.random(u.shape) < 0.6
    u, i = u[keep], i[keep]
    pu, qi = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    r = np.clip(np.round(3 + (pu[u] * qi[i]).sum(1)), 1, 5)
    return Interactions.from_arrays(u, i, r, rating_scale=(1, 5))


def _keys(d: Interactions) -> set[tuple[int, int]]:
    return set(zip(d.user.tolist(), d.item.tolist(), strict=True))


def _cfg(task: str, **extra: Any) -> Any:
    return validate_config({**BASE[task], "patience": 2, "device": "cpu", **extra})


def _spy(monkeypatch: pytest.MonkeyPatch, task: str) -> list[set[tuple[int, int]]]:
    """Record the (user, item) pairs of every evaluation: Learner.evaluate (rating,
    classification) or evaluate_retrieval (retrieval: the per-epoch tracker and the end)."""
    seen: list[set[tuple[int, int]]] = []
    if task == "retrieval":
        real = retrieval_mod.evaluate_retrieval

        def spy_r(model: Any, test: Interactions, **kw: Any) -> dict[str, Any]:
            seen.append(_keys(test))
            return real(model, test, **kw)

        monkeypatch.setattr(retrieval_mod, "evaluate_retrieval", spy_r)
    else:
        real_eval = Learner.evaluate

        def spy_l(self: Learner, data: Interactions | None = None) -> dict[str, float]:
            seen.append(_keys(data if data is not None else self.valid))  # type: ignore[arg-type]
            return real_eval(self, data)

        monkeypatch.setattr(Learner, "evaluate", spy_l)
    return seen


@pytest.mark.parametrize("task", list(BASE))
def test_with_patience_the_held_out_rows_are_evaluated_once_after_training(
    task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data()
    cfg = _cfg(task)
    split = load_split(cfg, data)
    test, train = _keys(split.test), _keys(split.train)
    seen = _spy(monkeypatch, task)
    res = train_run(cfg, data=data, progress=False)
    touching = [n for n, keys in enumerate(seen) if keys & test]
    # before: the held-out rows were evaluated after every epoch to choose the best one
    assert touching == [len(seen) - 1], (
        f"held-out rows evaluated in calls {touching} of {len(seen)}"
    )
    assert seen[-1] == test
    during = seen[:-1]
    assert during and all(keys <= train for keys in during)  # the inner cut, training rows
    inner = inner_validation(cfg, split)
    assert inner is not None and during[0] == _keys(inner.test)
    assert not _keys(inner.test) & _keys(res.learner.train)  # not trained on
    assert res.learner.train.n_users == split.train.n_users  # ids and sizes unchanged
    es = res.details["early_stopping"]
    assert es["monitored_on"].startswith("inner validation, 10% of training")
    assert es["inner_rows"] == len(inner.test_idx) > 0


def test_inner_cut_is_a_seeded_tenth_of_the_training_rows() -> None:
    data = _data()
    cfg = _cfg("rating")
    split = load_split(cfg, data)
    a, b = inner_validation(cfg, split), inner_validation(cfg, split)
    assert a is not None and b is not None
    assert np.array_equal(a.test_idx, b.test_idx) and np.array_equal(a.train_idx, b.train_idx)
    assert len(a.test_idx) == round(0.1 * len(split.train_idx))
    both = np.sort(np.concatenate([a.train_idx, a.test_idx]))
    assert np.array_equal(both, np.sort(split.train_idx))  # a partition of the training rows
    c = inner_validation(cfg.replace(seed=7), load_split(cfg.replace(seed=7), data))
    assert c is not None and not np.array_equal(c.test_idx, a.test_idx)
    assert inner_validation(cfg.replace(inner_valid=0.3), split).test_idx.size == round(  # type: ignore[union-attr]
        0.3 * len(split.train_idx)
    )
    assert inner_validation(validate_config({**BASE["rating"]}), split) is None


def test_retrieval_cuts_training_positives_only() -> None:
    data = _data()
    cfg = _cfg("retrieval", positive_min_rating=4.0)
    split = load_split(cfg, data)
    inner = inner_validation(cfg, split)
    assert inner is not None
    assert (split.data.rating[inner.test_idx] >= 4.0).all()
    n_pos = int((split.data.rating[split.train_idx] >= 4.0).sum())
    assert len(inner.test_idx) == round(0.1 * n_pos)


@pytest.mark.parametrize("task", list(BASE))
def test_metrics_json_says_how_the_epoch_was_chosen(task: str, tmp_path: Path) -> None:
    data = _data()
    out = tmp_path / "run"
    res = train_run(_cfg(task), out, data=data, progress=False)
    m = json.loads((out / "metrics.json").read_text())
    es = m["details"]["early_stopping"]
    what = "positives" if task == "retrieval" else "rows"
    assert es["monitored_on"] == f"inner validation, 10% of training {what}"
    assert es["monitor"] == res.config.monitor and es["inner_valid"] == 0.1
    assert f"inner validation, 10% of training {what}" in (out / "report.html").read_text()
    assert 0 <= es["best_epoch"] < es["epochs_trained"] <= 4
    assert es["stopped_epoch"] is None or es["stopped_epoch"] == es["epochs_trained"] - 1
    # the reported figures are the held-out part's, measured with the restored weights
    if task != "retrieval":
        again = res.learner.evaluate(res.split.test)
        assert m[res.config.monitor] == pytest.approx(again[res.config.monitor])
    assert m["details"]["split"]["test"] == len(res.split.test_idx)  # the outer split
    plain = train_run(validate_config({**BASE[task], "device": "cpu"}), data=data,
                      progress=False)  # fmt: skip
    assert "early_stopping" not in plain.details


def test_inner_valid_needs_patience_and_a_share_below_half() -> None:
    with pytest.raises(ConfigError, match="inner_valid"):
        validate_config({"inner_valid": 0.2})
    for bad in (0.0, 0.5, 1.2):
        with pytest.raises(ConfigError, match="inner_valid"):
            validate_config({"patience": 2, "inner_valid": bad})
    assert validate_config({"patience": 2, "inner_valid": 0.2}).inner_valid == 0.2


def test_too_few_training_rows_for_an_inner_cut_is_an_error() -> None:
    d = Interactions.from_arrays([0, 1, 2, 3], [0, 1, 0, 1], [3.0, 4.0, 5.0, 2.0])
    cfg = validate_config({"patience": 1, "split": "random:0.25", "device": "cpu"})
    with pytest.raises(ConfigError, match="inner validation cut"):
        inner_validation(cfg, load_split(cfg, d))


def test_cli_train_help_shows_inner_valid() -> None:
    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--inner-valid" in res.output


def test_a_run_with_patience_resumes_to_the_same_numbers(
    tmp_path: Path, crash_at: Callable[[int], Callback]
) -> None:
    data = _data()
    cfg = _cfg("rating", epochs=3, checkpoint_every=5, patience=5)
    ref = train_run(cfg, tmp_path / "ref", data=data, progress=False)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="crash"):
        train_run(cfg, run, data=data, progress=False, callbacks=[crash_at(12)])
    assert not (run / "metrics.json").exists() and (run / "checkpoint.safetensors").exists()
    again = train_run(run_config(run), run, data=data, progress=False, resume=True)
    strip = {"fit_seconds"}
    assert {k: v for k, v in again.metrics.items() if k not in strip} == {
        k: v for k, v in ref.metrics.items() if k not in strip
    }
    a = json.loads((run / "metrics.json").read_text())["details"]["early_stopping"]
    b = json.loads((tmp_path / "ref" / "metrics.json").read_text())["details"]["early_stopping"]
    assert a == b
