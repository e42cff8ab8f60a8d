"""A diverging fit stops with TrainingDivergedError (epoch, step, what) on every path.

Each path used to return NaN metrics (``learn.fit(2, 1e6)`` gave ``{'mse': nan...}``) and a
run still wrote its bundle.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recfit.config import RatingConfig, validate_config
from recfit.data import Interactions
from recfit.errors import ConfigError, TrainingDivergedError
from recfit.models import BiasedMF, DotBias, EmbeddingNN
from recfit.train import Learner, kernels
from recfit.train.callbacks import Callback
from recfit.train.checkpoint import CHECKPOINT_FILE, TrainCheckpoint
from recfit.train.execution import Execution


def _data(n_users: int = 40, n_items: int = 30, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    keep = rng.random(u.shape) < 0.7
    u, i = u[keep], i[keep]
    return Interactions.from_arrays(u, i, rng.integers(1, 6, len(u)).astype(float))


def _check(err: pytest.ExceptionInfo[TrainingDivergedError], epochs: int = 2) -> None:
    e = err.value
    assert 0 <= e.epoch < epochs and e.step >= 0 and e.what
    assert f"epoch {e.epoch}, step {e.step}" in str(e)


def test_dense_fused_step_stops_at_the_first_nan_loss() -> None:
    d = _data()
    learn = Learner(DotBias(d.n_users, d.n_items, 8, seed=0), d, bs=64, progress=False)
    assert learn.fused
    with pytest.raises(TrainingDivergedError) as err:
        learn.fit(2, 1e6)
    _check(err)
    assert err.value.what == "loss" and err.value.epoch == 0  # stopped early, not at the end


def test_autograd_path_stops() -> None:
    d = _data()
    model = EmbeddingNN(d.n_users, d.n_items, (4, 4), layers=(8,), batch_norm=False, seed=0)
    learn = Learner(model, d, bs=64, opt="sgd", wd=0.0, progress=False)
    with pytest.raises(TrainingDivergedError) as err:
        learn.fit(2, 1e12)
    _check(err)


@pytest.mark.parametrize("compiled", [False, True])
def test_row_wise_paths_stop(compiled: bool) -> None:
    if compiled and not kernels.available():
        pytest.skip("numba is not installed")
    d = _data()
    learn = Learner(
        BiasedMF(d.n_users, d.n_items, 8, seed=0), d, bs=64, opt="adam", progress=False,
        execution=Execution(row_wise=True, compiled=compiled),
    )  # fmt: skip
    with pytest.raises(TrainingDivergedError) as err:
        learn.fit(2, 1e30)
    assert learn.sparse and learn.compiled == compiled
    _check(err)


def test_a_finite_fit_is_unchanged_and_checks_nothing_it_should_not() -> None:
    d = _data()
    learn = Learner(DotBias(d.n_users, d.n_items, 8, seed=0), d, d, bs=64, progress=False)
    learn.fit_one_cycle(2, 1e-2)
    assert all(math.isfinite(h["train_loss"]) for h in learn.history)


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("fit", {"lr": math.inf}),
        ("fit", {"lr": math.nan}),
        ("fit", {"lr": 1e-2, "wd": math.inf}),
        ("fit", {"lr": 1e-2, "mom": math.nan}),
        ("fit_one_cycle", {"lr_max": math.inf}),
        ("fit_one_cycle", {"lr_max": 1e-2, "wd": math.nan}),
        ("fit_one_cycle", {"lr_max": 1e-2, "div": math.inf}),
        ("fit_one_cycle", {"lr_max": 1e-2, "moms": (0.95, math.nan, 0.95)}),
    ],
)
def test_non_finite_fit_arguments_are_rejected(call: str, kwargs: dict[str, object]) -> None:
    d = _data()
    learn = Learner(DotBias(d.n_users, d.n_items, 4, seed=0), d, progress=False)
    with pytest.raises(ConfigError, match="finite"):
        getattr(learn, call)(1, **kwargs)


@pytest.mark.parametrize("field", ["lr", "wd", "reg", "pct_start", "temperature"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_config_values_are_rejected(field: str, value: float) -> None:
    task = "retrieval" if field == "temperature" else "rating"
    with pytest.raises(ConfigError, match=field):
        validate_config({"task": task, field: value})


def test_config_y_range_must_be_finite() -> None:
    with pytest.raises(ConfigError):
        validate_config({"y_range": (0.0, math.inf)})


def test_classification_stops() -> None:
    from recfit.tasks.classification import train_classifier

    d = _data()
    with pytest.raises(TrainingDivergedError) as err:
        train_classifier(d, d, epochs=2, lr=1e30, wd=0.0, device="cpu")
    _check(err)


def test_retrieval_stops() -> None:
    from recfit.config import RetrievalConfig
    from recfit.tasks.retrieval import train_retrieval

    d = _data()
    cfg = RetrievalConfig(
        objective="mse", opt="adam", lr=1e30, epochs=2, bs=64, n_bootstrap=0, use_ids=True,
        user_features=(), item_features=(),
    )  # fmt: skip
    with pytest.raises(TrainingDivergedError) as err:
        train_retrieval(cfg, d, "random:0.2")
    _check(err)


def test_als_stops_on_non_finite_factors(monkeypatch: pytest.MonkeyPatch) -> None:
    from recfit.train import als

    d = _data()
    learn = Learner(BiasedMF(d.n_users, d.n_items, 4, seed=0), d, d, reg=0.1, progress=False)
    real = als.fit_als

    def poisoned(model: DotBias, *args: object, **kwargs: object) -> object:
        cb = kwargs["callback"]

        def bad(rec: dict[str, float]) -> None:
            if len(learn.history) == 1:  # the second sweep produces a NaN factor
                with torch.no_grad():
                    model.item_factors[3, 0] = math.nan
            cb(rec)  # type: ignore[operator]

        kwargs["callback"] = bad
        return real(model, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(als, "fit_als", poisoned)
    with pytest.raises(TrainingDivergedError) as err:
        als.fit_als_learner(learn, 3)
    assert err.value.epoch == 1 and err.value.what == "item_factors"
    assert len(learn.history) == 1


def test_train_run_writes_no_bundle_from_a_diverged_fit(tmp_path: Path) -> None:
    from recfit.runs import train_run

    d = _data()
    cfg = RatingConfig(model="dot", n_factors=4, epochs=2, lr=1e9, bs=64, opt="sgd", wd=0.0)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError):
        train_run(cfg, out, data=d, progress=False)
    assert not (out / "bundle").exists()
    assert not list(tmp_path.rglob("*.safetensors")) or all(
        "checkpoint" in p.name for p in tmp_path.rglob("*.safetensors")
    )


def test_cli_rejects_lr_inf(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recfit.cli import app

    d = _data()
    csv = tmp_path / "r.csv"
    csv.write_text(
        "user,item,rating\n"
        + "".join(f"{u},{i},{r}\n" for u, i, r in zip(d.user, d.item, d.rating, strict=True))
    )
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            str(csv),
            "--epochs",
            "1",
            "--lr",
            "inf",
            "--budget",
            "0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code != 0 and "lr" in res.output
    assert not (out / "bundle").exists()


_DIVERGING_WORKER = r"""
import json, sys
import numpy as np
from recfit.data import Interactions
from recfit.errors import TrainingDivergedError
from recfit.models import DotBias
from recfit.train import distributed as D
from recfit.train.learner import Learner

out = sys.argv[1]
with D.session("cpu") as ctx:
    rng = np.random.default_rng(0)
    n = 2000
    d = Interactions.from_arrays(rng.integers(0, 40, n), rng.integers(0, 50, n),
                                 rng.integers(1, 6, n).astype(float))
    learn = D.attach(Learner(DotBias(d.n_users, d.n_items, 6, seed=1), d, bs=64,
                             progress=False), ctx)
    try:
        learn.fit(2, 1e6)
        res = {"raised": False}
    except TrainingDivergedError as e:
        res = {"raised": True, "epoch": e.epoch, "step": e.step, "what": e.what}
    with open(f"{out}/rank{ctx.rank}.json", "w") as f:
        json.dump(res, f)
"""


@pytest.mark.slow
def test_two_ranks_both_stop_without_hanging(tmp_path: Path) -> None:
    import json

    from tests.train.test_distributed import _torchrun

    script = tmp_path / "worker.py"
    script.write_text(_DIVERGING_WORKER)
    res = _torchrun(str(script), str(tmp_path), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["raised"] for r in ranks)
    assert ranks[0]["epoch"] == ranks[1]["epoch"] == 0


def test_deferred_check_names_the_same_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA (and under distributed training) the loss is buffered and checked at the
    epoch's end, without a device sync per step: it must name the same step."""
    d = _data()

    def diverge() -> TrainingDivergedError:
        learn = Learner(DotBias(d.n_users, d.n_items, 8, seed=0), d, bs=16, progress=False)
        with pytest.raises(TrainingDivergedError) as err:
            learn.fit(2, 3e3)
        return err.value

    now = diverge()
    monkeypatch.setattr(Learner, "check_each_step", property(lambda self: False))
    later = diverge()
    assert (later.epoch, later.step, later.what) == (now.epoch, now.step, "loss")
    assert now.step > 0  # a later step, not the first one


@pytest.mark.parametrize("deferred", [False, True])
def test_a_fit_cancelled_mid_epoch_is_still_checked(
    deferred: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A callback that ends the fit in the middle of an epoch (CancelFitException) does
    not skip the epoch-end checks of the losses so far and of the weights."""
    from recfit.errors import CancelFitException

    class Poison(Callback):
        def after_batch(self) -> None:
            if self.learn.train_iter == 3:
                with torch.no_grad():
                    next(self.learn.model.parameters()).fill_(math.nan)
                raise CancelFitException("enough")

    if deferred:
        monkeypatch.setattr(Learner, "check_each_step", property(lambda self: False))
    d = _data()
    learn = Learner(DotBias(d.n_users, d.n_items, 8, seed=0), d, bs=16, progress=False)
    learn.cbs.append(Poison())
    with pytest.raises(TrainingDivergedError) as err:
        learn.fit(2, 1e-3)
    assert err.value.epoch == 0 and err.value.what != "loss"


def test_a_mid_epoch_checkpoint_checks_the_deferred_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where losses are checked at the epoch's end (CUDA), a checkpoint saved in the
    middle of the epoch first checks the losses so far: no checkpoint holds a diverged
    step, and the error names that step."""

    class NaNLoss(Callback):
        def after_loss(self) -> None:
            if self.learn.train_iter == 1:
                self.learn.loss = torch.tensor(math.nan)

    monkeypatch.setattr(Learner, "check_each_step", property(lambda self: False))
    d = _data()
    learn = Learner(DotBias(d.n_users, d.n_items, 8, seed=0), d, bs=16, progress=False,
                    callbacks=[NaNLoss(), TrainCheckpoint(tmp_path, every=3)])  # fmt: skip
    with pytest.raises(TrainingDivergedError) as err:
        learn.fit(1, 1e-3)
    assert (err.value.step, err.value.what) == (1, "loss")
    assert not (tmp_path / CHECKPOINT_FILE).exists()
