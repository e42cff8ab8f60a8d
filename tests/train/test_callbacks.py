"""Callbacks: event order, cancellation, built-ins."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from recfit.data import Interactions
from recfit.errors import (
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    ConfigError,
)
from recfit.models import DotBias, read_model_file
from recfit.train import (
    EVENTS,
    Callback,
    Checkpoint,
    CSVLogger,
    EarlyStopping,
    Learner,
    ProgressBar,
    ScheduleRecorder,
    TensorBoardLogger,
)


class Tracer(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattribute__(self, name: str) -> object:
        if name in EVENTS:
            return lambda: object.__getattribute__(self, "events").append(name)
        return object.__getattribute__(self, name)


for _ev in EVENTS:  # mark every event as overridden so the Learner dispatches it
    setattr(Tracer, _ev, lambda self: None)


def _learner(tiny: Interactions, *cbs: Callback, valid: bool = True, bs: int = 200) -> Learner:
    model = DotBias(tiny.n_users, tiny.n_items, 4)
    return Learner(model, tiny, tiny if valid else None, bs=bs, callbacks=cbs, progress=False)


def test_events_fire_in_order(tiny: Interactions) -> None:
    t = Tracer()
    learn = _learner(tiny, t)
    learn.fit(1)
    batch = [
        "before_batch", "after_pred", "after_loss", "before_backward", "after_backward",
        "after_step", "after_batch",
    ]  # fmt: skip
    n = learn.n_iter
    assert n == 2
    expected = ["before_fit", "before_epoch", "before_train", *batch * n, "after_train",
                "before_validate", "after_validate", "after_epoch", "after_fit"]  # fmt: skip
    assert t.events == expected
    t.events.clear()
    _learner(tiny, t, valid=False).fit(1)
    assert "before_validate" not in t.events and t.events[-2:] == ["after_epoch", "after_fit"]


class CancelFitAfterFirstStep(Callback):
    def __init__(self) -> None:
        self.after_fit_ran = False
        self.after_batches = 0

    def after_step(self) -> None:
        raise CancelFitException("stop")

    def after_batch(self) -> None:
        self.after_batches += 1

    def after_fit(self) -> None:
        self.after_fit_ran = True


def test_cancel_fit_still_runs_after_fit(tiny: Interactions) -> None:
    cb = CancelFitAfterFirstStep()
    learn = _learner(tiny, cb, bs=20)
    learn.fit(3)
    assert cb.after_fit_ran and learn.train_iter == 0 and cb.after_batches == 0
    assert learn.history == []


class SkipBatches(Callback):
    def __init__(self) -> None:
        self.after_batches = 0

    def before_backward(self) -> None:
        raise CancelBatchException("skip")

    def after_batch(self) -> None:
        self.after_batches += 1


def test_cancel_batch_skips_the_step(tiny: Interactions) -> None:
    cb = SkipBatches()
    learn = _learner(tiny, cb, bs=50)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(2, 0.1)
    assert cb.after_batches == 2 * learn.n_iter
    for k, v in learn.model.state_dict().items():
        assert v.equal(before[k])  # no step happened


class SkipEpoch(Callback):
    def __init__(self) -> None:
        self.after_epochs = 0
        self.validated = 0

    def after_step(self) -> None:
        raise CancelEpochException("next")

    def after_validate(self) -> None:
        self.validated += 1

    def after_epoch(self) -> None:
        self.after_epochs += 1


def test_cancel_epoch(tiny: Interactions) -> None:
    cb = SkipEpoch()
    learn = _learner(tiny, cb, bs=20)
    learn.fit(3)
    assert cb.after_epochs == 3 and cb.validated == 0
    assert learn.train_iter == 0  # like fastai, a batch cut short by a cancel is not counted
    assert len(learn.history) == 3


def test_early_stopping_restores_best(tiny: Interactions) -> None:
    es = EarlyStopping("mse", patience=2, restore_best=True)
    learn = _learner(tiny, es, bs=32)
    learn.fit(40, 0.3)  # far too high an LR: validation gets worse quickly
    assert es.stopped_epoch is not None and es.stopped_epoch < 39
    assert len(learn.history) == es.stopped_epoch + 1
    best = min(h["mse"] for h in learn.history)
    assert es.best == best
    assert learn.evaluate()["mse"] == pytest.approx(best, rel=1e-6)
    with pytest.raises(ConfigError):
        EarlyStopping(mode="sideways")
    bad = _learner(tiny, EarlyStopping("accuracy"))
    with pytest.raises(ConfigError, match="monitor"):
        bad.fit(1)


def test_checkpoint_and_csv(tiny: Interactions, tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path / "ck", monitor="rmse")
    log = CSVLogger(tmp_path / "history.csv")
    learn = _learner(tiny, ck, log, bs=32)
    learn.fit(3, 1e-2)
    assert ck.last_path.exists() and ck.best_path.exists()
    last = read_model_file(ck.last_path)
    for k, v in learn.model.state_dict().items():
        assert last.state_dict()[k].equal(v)
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and float(rows[-1]["mse"]) == pytest.approx(learn.history[-1]["mse"])
    learn.fit(1, 1e-2)  # a new fit starts a new file
    with open(tmp_path / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_schedule_recorder_one_cycle(tiny: Interactions) -> None:
    rec = ScheduleRecorder()
    learn = _learner(tiny, rec, bs=20)
    learn.fit_one_cycle(2, 1e-2)
    total = 2 * learn.n_iter
    assert len(rec.lrs) == total == len(rec.moms) == len(rec.losses)
    assert rec.lrs[0] == pytest.approx(1e-2 / 25)
    assert max(rec.lrs) == pytest.approx(1e-2, rel=0.02)
    assert min(rec.moms) == pytest.approx(0.85, abs=0.01) and rec.moms[0] == pytest.approx(0.95)
    assert learn.opt.param_groups[0]["betas"][0] == pytest.approx(rec.moms[-1])
    assert len(rec.plot().axes) == 2


def test_progress_bar_quiet_and_active(
    tiny: Interactions, capsys: pytest.CaptureFixture[str]
) -> None:
    _learner(tiny, ProgressBar(quiet=True)).fit(1)
    assert capsys.readouterr().err == ""
    _learner(tiny, ProgressBar(quiet=False, every=1), bs=20).fit(2)
    err = capsys.readouterr().err
    assert "epochs" in err and "2/2" in err


def test_tensorboard_missing_is_a_clear_error(tmp_path: Path) -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="tensorboard"):
            TensorBoardLogger(tmp_path)
    else:  # pragma: no cover - only where tensorboard is installed
        TensorBoardLogger(tmp_path)


def test_learner_attributes_visible_to_callbacks(tiny: Interactions) -> None:
    seen: list[tuple[int, int, float]] = []

    class Peek(Callback):
        def after_loss(self) -> None:
            assert self.learn.loss is not None and self.learn.pred is not None
            seen.append((self.learn.epoch, self.learn.iter, float(self.learn.loss)))

    _learner(tiny, Peek(), bs=100).fit(2)
    assert [s[:2] for s in seen][:2] == [(0, 0), (0, 1)] and np.isfinite([s[2] for s in seen]).all()


def test_early_stopping_keeps_going_while_recall_rises() -> None:
    """recall@20 is higher-is-better: a rising recall is an improvement (it was minimised)."""
    from types import SimpleNamespace

    import torch

    from recfit.errors import CancelFitException

    es = EarlyStopping("recall@20", patience=1, restore_best=False)
    fake = SimpleNamespace(history=[], epoch=0, model=torch.nn.Linear(1, 1))
    es.learn = fake  # type: ignore[assignment]
    es.before_fit()
    for epoch, value in enumerate([0.10, 0.12, 0.15, float("nan"), 0.18]):
        fake.epoch = epoch
        fake.history.append({"epoch": epoch, "recall@20": value})
        es.after_epoch()  # never stops: each evaluated epoch improves (NaN: not evaluated)
    assert es.best == 0.18 and es.best_epoch == 4
    fake.epoch = 5
    fake.history.append({"epoch": 5, "recall@20": 0.17})
    with pytest.raises(CancelFitException):
        es.after_epoch()
