"""Components own their state: state_dict / load_state_dict round trips, and checkpoints
that ask each component (a callback's type is never looked at)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import CheckpointError, ConfigError
from recfit.models import DotBias
from recfit.train import callbacks as cbs
from recfit.train import checkpoint as ckpt
from recfit.train import checkpoint_file as ckpt_file
from recfit.train.callbacks import Callback
from recfit.train.checkpoint import read_checkpoint
from recfit.train.learner import Learner


def _data(n: int = 1200, seed: int = 0) -> tuple[Interactions, Interactions]:
    rng = np.random.default_rng(seed)
    d = Interactions.from_arrays(
        rng.integers(0, 30, n), rng.integers(0, 40, n), rng.integers(1, 6, n).astype(float)
    )
    cut = n * 4 // 5
    return d.take(np.arange(cut)), d.take(np.arange(cut, n))


def _encoded(state: dict[str, Any]) -> tuple[str, dict[str, torch.Tensor]]:
    """The checkpoint's encoding of ``state``: JSON text and the tensors it names."""
    tensors: dict[str, torch.Tensor] = {}
    return json.dumps(ckpt_file.encode_state(state, "x", tensors)), tensors


def _json_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """Through the checkpoint's encoding, as a file would carry it."""
    text, tensors = _encoded(state)
    return ckpt_file.decode_state(json.loads(text), tensors)  # type: ignore[no-any-return]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    (text_a, ta), (text_b, tb) = _encoded(a), _encoded(b)
    return (
        text_a == text_b and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    )


class Snapshot(Callback):
    """Captures the Learner's state in the middle of epoch 1."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.state: dict[str, Any] | None = None

    def after_batch(self) -> None:
        if self.learn.train_iter == self.at:
            self.state = self.learn.state_dict("batch")


def test_learner_state_dict_round_trips() -> None:
    train, valid = _data()
    snap = Snapshot(20)
    a = Learner(DotBias(train.n_users, train.n_items, 4), train, valid, bs=64,
                progress=False, callbacks=[snap])  # fmt: skip
    a.fit(3, 1e-2)
    assert snap.state is not None
    pos = snap.state["position"]
    assert (pos["epoch"], pos["train_iter"], pos["complete"]) == (1, 20, False)
    assert pos["batches_done"] == 20 - a.steps_per_epoch
    state = _json_round_trip(snap.state)
    assert _same(state, snap.state)
    # a second Learner fitting the same data takes it back mid-fit
    b = Learner(DotBias(train.n_users, train.n_items, 4), train, valid, bs=64, progress=False)
    b.n_epochs, b.n_iter = 3, b.steps_per_epoch
    b.load_state_dict(state)
    assert b.train_iter == 20 and b.history == snap.state["history"]
    assert torch.equal(b._gen.get_state(), snap.state["batch_order"])
    end = a.state_dict("end")
    assert end["position"]["epoch"] == 3 and end["position"]["complete"]
    assert end["history"] == a.history and end["data"] == b.fingerprint()


def test_learner_state_of_another_fit_or_data_is_refused() -> None:
    train, _ = _data()
    a = Learner(DotBias(train.n_users, train.n_items, 4), train, bs=64, progress=False)
    a.fit(2, 1e-2)
    state = a.state_dict("epoch")
    b = Learner(DotBias(train.n_users, train.n_items, 4), train, bs=64, progress=False)
    b.n_epochs, b.n_iter = 3, b.steps_per_epoch
    with pytest.raises(ConfigError, match="expected a fit of 2 epochs"):
        b.load_state_dict(state)
    other = train.take(np.arange(1, len(train)))  # one row fewer: other data
    c = Learner(DotBias(train.n_users, train.n_items, 4), other, bs=64, progress=False)
    c.n_epochs, c.n_iter = 2, a.steps_per_epoch
    with pytest.raises(ConfigError, match="training data"):
        c.load_state_dict(state)


def _fitted(cb: Callback, epochs: int = 3) -> Callback:
    train, valid = _data()
    Learner(DotBias(train.n_users, train.n_items, 4), train, valid, bs=64, progress=False,
            callbacks=[cb]).fit(epochs, 1e-2)  # fmt: skip
    return cb


@pytest.mark.parametrize(
    "make",
    [
        lambda: cbs.EarlyStopping("mse", patience=1),
        lambda: cbs.EarlyStopping("mse", patience=10, restore_best=True),
        lambda: cbs.ScheduleRecorder(),
        lambda: cbs.ProgressBar(quiet=True),
    ],
    ids=["early-stopping-stopped", "early-stopping-best-weights", "recorder", "progress"],
)
def test_callback_state_dict_round_trips(make: Any) -> None:
    cb = _fitted(make())
    state = cb.state_dict()
    assert state  # each of these has state
    fresh = make()
    fresh.load_state_dict(_json_round_trip(state))
    assert _same(fresh.state_dict(), state)


def test_best_checkpoint_state_round_trips(tmp_path: Path) -> None:
    cb = _fitted(cbs.Checkpoint(tmp_path, monitor="mse"))
    assert cb.state_dict()["best_epoch"] >= 0
    fresh = cbs.Checkpoint(tmp_path, monitor="mse")
    fresh.load_state_dict(_json_round_trip(cb.state_dict()))
    assert (fresh.best, fresh.best_epoch) == (cb.best, cb.best_epoch)


def test_stateless_callbacks_save_nothing(tmp_path: Path) -> None:
    assert Callback().state_dict() == {}
    assert cbs.CSVLogger(tmp_path / "h.csv").state_dict() == {}


class Counter(Callback):
    """A user's callback with state of its own: checkpoint.py knows nothing of it."""

    def __init__(self) -> None:
        self.steps, self.seen = 0, torch.zeros(3, dtype=torch.float64)

    def before_fit(self) -> None:
        self.steps, self.seen = 0, torch.zeros(3, dtype=torch.float64)

    def after_batch(self) -> None:
        self.steps += 1
        self.seen[self.steps % 3] += float(self.learn.loss or 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seen": self.seen.clone(), "tag": ("counter", 1)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert state["tag"] == ("counter", 1)
        self.steps, self.seen = int(state["steps"]), state["seen"].clone()


class SaveAt(Callback):
    """Writes a checkpoint after global step ``at`` and lets the fit go on."""

    order = 55  # after the callbacks whose state it saves

    def __init__(self, path: Path, at: int) -> None:
        self.path, self.at = path, at

    def after_batch(self) -> None:
        if self.learn.train_iter == self.at:
            ckpt.write_checkpoint(self.path, *ckpt.capture(self.learn, epoch_end=False))


def test_checkpoint_asks_each_component_and_resumes_a_custom_callback(tmp_path: Path) -> None:
    train, valid = _data()

    def learner(*extra: Callback) -> Learner:
        return Learner(DotBias(train.n_users, train.n_items, 4), train, valid, bs=64,
                       progress=False, callbacks=[Counter(), *extra])  # fmt: skip

    path = tmp_path / ckpt.CHECKPOINT_FILE
    ref = learner(SaveAt(path, 20)).fit_one_cycle(3, 1e-2)  # saved mid-epoch, went on
    state = read_checkpoint(tmp_path)
    assert state.meta["version"] == ckpt.CHECKPOINT_VERSION
    assert state.meta["callbacks"]["0.Counter"]["steps"] == 20
    assert "cb.0.Counter.seen" in state.tensors
    resumed = learner()
    resumed.resume_state = state
    resumed.fit_one_cycle(3, 1e-2)
    a, b = resumed.cbs[0], ref.cbs[0]
    assert isinstance(a, Counter) and isinstance(b, Counter)
    assert a.steps == b.steps and torch.equal(a.seen, b.seen)
    for pa, pb in zip(resumed.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_a_checkpoint_of_the_previous_format_is_refused(tmp_path: Path) -> None:
    """Files written before each component kept its state (format 2) are refused with a
    CheckpointError naming the versions, never misread."""
    train, _ = _data()
    learn = Learner(DotBias(train.n_users, train.n_items, 4), train, bs=64, progress=False)
    learn.fit(1, 1e-2)
    tensors, meta = ckpt.capture(learn, epoch_end=True)
    old = {k: v for k, v in meta.items() if k not in ("learner", "rng")}
    old.update(version=2, acc=[0.0, 0.0, 0.0], lr=0.01, mom=0.9, history=[], numpy_rng=[])
    ckpt.write_checkpoint(tmp_path / ckpt.CHECKPOINT_FILE, tensors, old)
    with pytest.raises(
        CheckpointError, match=r"version 3, received 'recfit\.checkpoint' version 2"
    ):
        read_checkpoint(tmp_path)


def test_a_resumed_fit_writes_the_same_history_csv(tmp_path: Path) -> None:
    train, valid = _data()

    def learner(csv: Path, *extra: Callback) -> Learner:
        return Learner(DotBias(train.n_users, train.n_items, 4), train, valid, bs=64,
                       progress=False, callbacks=[cbs.CSVLogger(csv), *extra])  # fmt: skip

    path = tmp_path / ckpt.CHECKPOINT_FILE
    learner(tmp_path / "ref.csv", SaveAt(path, 2 * 15 + 3)).fit(3, 1e-2)  # 15 steps an epoch
    state = read_checkpoint(path)
    assert state.meta["callbacks"]["0.CSVLogger"] == {
        "fields": list(pd.read_csv(tmp_path / "ref.csv"))
    }
    resumed = learner(tmp_path / "resumed.csv")
    resumed.resume_state = state
    resumed.fit(3, 1e-2)
    ref, again = (
        pd.read_csv(tmp_path / f).drop(columns="time") for f in ("ref.csv", "resumed.csv")
    )
    pd.testing.assert_frame_equal(again, ref)
    assert len(ref) == 3
