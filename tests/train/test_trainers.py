"""One trainer protocol: every trainer name reachable, each trains through the Learner."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import BiasedMF, DotBias, EmbeddingNN, RatingModel
from recfit.train import kernels
from recfit.train.execution import Execution, Path
from recfit.train.learner import Learner
from recfit.train.trainers import (
    TRAINERS,
    ClosedFormTrainer,
    FitSpec,
    SGDTrainer,
    Trainer,
    trainer_for,
)


def _data(n: int = 600, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions.from_arrays(
        rng.integers(0, 30, n), rng.integers(0, 40, n), rng.integers(1, 6, n).astype(float)
    )


def test_every_trainer_name_is_reachable_and_follows_the_protocol() -> None:
    assert sorted(TRAINERS) == ["als", "closed_form", "sgd"]
    for name in ("sgd", "als", "closed_form"):
        t = trainer_for(name)
        assert isinstance(t, Trainer) and t.name == name and TRAINERS[name] is t


@pytest.mark.parametrize("name", ["adam", "", "SGD", None, 3])
def test_an_unknown_trainer_is_a_config_error_naming_the_known_ones(name: Any) -> None:
    with pytest.raises(
        ConfigError, match=r"expected trainer among \['als', 'closed_form', 'sgd'\]"
    ):
        trainer_for(name)


@pytest.mark.parametrize("schedule", ["one_cycle", "constant", "cosine", "cyclic"])
def test_sgd_trains_along_each_schedule(schedule: str) -> None:
    d = _data()
    learn = Learner(DotBias(d.n_users, d.n_items, 4), d, d, bs=64, progress=False)
    before = learn.evaluate(d)["loss"]  # the objective: shown ratings are clipped
    out = trainer_for("sgd").fit(learn, FitSpec(epochs=3, lr=2e-2, schedule=schedule))  # type: ignore[arg-type]
    assert out is learn and len(learn.history) == 3
    assert learn.evaluate(d)["loss"] < before


def test_sgd_one_cycle_is_exactly_fit_one_cycle() -> None:
    d = _data()
    a = Learner(DotBias(d.n_users, d.n_items, 4), d, d, bs=64, progress=False)
    b = Learner(DotBias(d.n_users, d.n_items, 4), d, d, bs=64, progress=False)
    SGDTrainer().fit(a, FitSpec(epochs=2, lr=1e-2, pct_start=0.3))
    b.fit_one_cycle(2, 1e-2, pct_start=0.3)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in b.history]


def test_als_fills_the_learners_history() -> None:
    d = _data()
    learn = Learner(BiasedMF(d.n_users, d.n_items, 4), d, d, reg=0.1, progress=False)
    trainer_for("als").fit(learn, FitSpec(epochs=3, reg_exponent=0.75))
    assert [r["epoch"] for r in learn.history] == [0, 1, 2]
    assert all(math.isnan(r["lr"]) for r in learn.history)
    assert learn.history[-1]["mse"] == learn.evaluate()["mse"]


def test_closed_form_runs_the_given_solver_once_and_records_one_epoch() -> None:
    d = _data()
    calls: list[tuple[RatingModel, Interactions]] = []

    def solve(model: RatingModel, train: Interactions) -> None:
        calls.append((model, train))
        assert isinstance(model, BiasedMF)
        model.global_mean = float(train.rating.mean())

    learn = Learner(BiasedMF(d.n_users, d.n_items, 2, init_std=0.0), d, d, progress=False)
    trainer_for("closed_form").fit(learn, FitSpec(solve=solve))
    assert calls == [(learn.model, d)] and len(learn.history) == 1
    rec = learn.history[0]
    assert rec["train_loss"] == pytest.approx(learn.evaluate(d)["loss"])
    assert rec["mse"] == learn.evaluate()["mse"] and learn.fit_seconds >= 0.0


def test_closed_form_without_a_solver_names_the_model() -> None:
    d = _data()
    learn = Learner(EmbeddingNN(d.n_users, d.n_items), d, progress=False)
    with pytest.raises(ConfigError, match=r"closed-form fit.*EmbeddingNN"):
        ClosedFormTrainer().fit(learn, FitSpec())


def test_fit_spec_reads_a_config_and_checks_the_schedule() -> None:
    class Cfg:
        epochs, lr, schedule, pct_start, reg, reg_exponent, bs = (
            4,
            0.01,
            "cosine",
            0.3,
            0.05,
            1.0,
            64,
        )

    spec = FitSpec.from_config(Cfg(), lr=0.02)
    assert (spec.epochs, spec.lr, spec.schedule, spec.pct_start, spec.reg) == (
        4, 0.02, "cosine", 0.3, 0.05
    )  # fmt: skip
    assert FitSpec.from_config({"epochs": 2}).schedule == "one_cycle"
    with pytest.raises(ConfigError, match="schedule"):
        FitSpec(schedule="linear")  # type: ignore[arg-type]


def test_execution_switches_resolve_in_one_place() -> None:
    d = _data()
    learn = Learner(DotBias(d.n_users, d.n_items, 4), d, progress=False)
    assert learn.path is None and not learn.sparse  # resolved by the first fit
    learn.fit(1, 1e-2)
    # fastai's configuration on CPU: dense AdamW epochs as one compiled kernel
    assert learn.path == Path(fused=True, dense_epochs=kernels.available())
    assert learn.path.name == ("dense-compiled" if kernels.available() else "fused")
    dense = Learner(DotBias(d.n_users, d.n_items, 4), d, progress=False,
                    execution=Execution(fused=False)).fit(1, 1e-2)  # fmt: skip
    assert dense.path is not None and dense.path.name == "dense"
    rows = Learner(DotBias(d.n_users, d.n_items, 4), d, progress=False, opt="adagrad",
                   execution=Execution(row_wise=True, compiled=False)).fit(1, 1e-2)  # fmt: skip
    assert rows.path is not None and rows.path.name == "row-wise"
    with pytest.raises(ConfigError, match="compiled=True"):
        Learner(DotBias(d.n_users, d.n_items, 4), d, opt="sgd", progress=False,
                execution=Execution(compiled=True)).fit(1, 1e-2)  # fmt: skip
    for bad in ({"fused": "on"}, {"row_wise": 1}, {"num_threads": 0}):
        with pytest.raises(ConfigError, match="expected"):
            Execution(**bad)
    with pytest.raises(ConfigError, match="execution"):
        Learner(DotBias(d.n_users, d.n_items, 4), d, execution={"fused": True})  # type: ignore[arg-type]
