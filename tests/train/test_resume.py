"""Checkpoints and resume: exact continuation in-process, after SIGKILL, after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recfit.cli import app
from recfit.data import Interactions
from recfit.errors import BundleError, CheckpointError, ConfigError, TrainingDivergedError
from recfit.models import DotBias, EmbeddingNN
from recfit.train import checkpoint as ckpt
from recfit.train import checkpoint_file as ckpt_file
from recfit.train.callbacks import Callback, EarlyStopping, ScheduleRecorder
from recfit.train.checkpoint import TrainCheckpoint, read_checkpoint
from recfit.train.execution import Execution
from recfit.train.learner import Learner

runner = CliRunner()


def _data(n: int = 2400, seed: int = 0) -> tuple[Interactions, Interactions]:
    rng = np.random.default_rng(seed)
    d = Interactions.from_arrays(
        rng.integers(0, 40, n), rng.integers(0, 50, n), rng.integers(1, 6, n).astype(float),
        weight=rng.choice([0.0, 0.5, 1.0, 2.0], n).astype(np.float32),
    )  # fmt: skip
    cut = n * 4 // 5
    return d.take(np.arange(cut)), d.take(np.arange(cut, n))


def _learner(
    kind: str, opt: str, train: Interactions, valid: Interactions, cbs: list[Any]
) -> Learner:
    if kind.startswith("dot"):
        model: Any = DotBias(train.n_users, train.n_items, 6, y_range=(0, 5.5))
    else:
        model = EmbeddingNN(train.n_users, train.n_items, (6, 5), layers=(12,), dropout=0.3)
    cbs = [ScheduleRecorder(), EarlyStopping("mse", patience=10), *cbs]
    sparse = kind == "dot-rows"  # the row-wise (lazy) AdamW of recfit.train.sparse
    return Learner(
        model,
        train,
        valid,
        bs=64,
        opt=opt,
        progress=False,
        callbacks=cbs,
        execution=Execution(row_wise=sparse),
    )


def _strip(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


@pytest.mark.parametrize(
    ("kind", "opt"),
    [("dot", "adam"), ("dot-rows", "adam"), ("dot", "momentum"), ("nn", "adam"), ("nn", "adagrad")],
)
def test_resume_mid_epoch_is_bit_identical(
    tmp_path: Path, kind: str, opt: str, crash_at: Callable[[int], Callback]
) -> None:
    train, valid = _data()
    # the same callbacks as the resumed fit: saving every 7 steps keeps every epoch step by
    # step (without it, dot + adam epochs run as one compiled kernel: other float rounding)
    ref = _learner(kind, opt, train, valid, [TrainCheckpoint(tmp_path / "ref", every=7)])
    ref.fit_one_cycle(3, 1e-2)
    crashed = _learner(kind, opt, train, valid, [TrainCheckpoint(tmp_path, every=7), crash_at(45)])
    with pytest.raises(RuntimeError, match="crash"):
        crashed.fit_one_cycle(3, 1e-2)
    state = read_checkpoint(tmp_path)
    pos = state.meta["position"]
    assert pos["epoch"] == 1 and 0 < pos["batches_done"] < pos["steps_per_epoch"]
    assert pos["train_iter"] == 42 and not pos["complete"]
    resumed = _learner(kind, opt, train, valid, [TrainCheckpoint(tmp_path, every=7)])
    resumed.resume_state = state
    resumed.fit_one_cycle(3, 1e-2)
    assert _strip(resumed.history) == _strip(ref.history)
    assert resumed.evaluate(valid) == ref.evaluate(valid)
    for a, b in zip(resumed.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(a, b)
    rec_a = next(c for c in resumed.cbs if isinstance(c, ScheduleRecorder))
    rec_b = next(c for c in ref.cbs if isinstance(c, ScheduleRecorder))
    assert rec_a.lrs == rec_b.lrs and rec_a.losses == rec_b.losses
    assert read_checkpoint(tmp_path).meta["position"]["complete"]


def test_resume_without_restoring_differs(
    tmp_path: Path, crash_at: Callable[[int], Callback]
) -> None:
    """The test above can fail: skipping the optimiser state changes the numbers."""
    train, valid = _data()
    ref = _learner("dot", "adam", train, valid, []).fit_one_cycle(2, 1e-2)
    crashed = _learner(
        "dot", "adam", train, valid, [TrainCheckpoint(tmp_path, every=5), crash_at(35)]
    )
    with pytest.raises(RuntimeError):
        crashed.fit_one_cycle(2, 1e-2)
    state = read_checkpoint(tmp_path)
    state.meta["optimizer"]["state"] = None  # forget the moments
    resumed = _learner("dot", "adam", train, valid, [])
    resumed.resume_state = state
    resumed.fit_one_cycle(2, 1e-2)
    assert resumed.evaluate(valid)["mse"] != ref.evaluate(valid)["mse"]


def test_resume_checks_the_fit(tmp_path: Path) -> None:
    train, valid = _data()
    learn = _learner("dot", "adam", train, valid, [TrainCheckpoint(tmp_path)]).fit(1, 1e-2)
    assert learn.history
    other = _learner("dot", "adam", train, valid, [])
    other.resume_state = read_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="expected a fit of 1 epochs"):
        other.fit(2, 1e-2)
    changed = train.take(np.arange(len(train) - 1))
    other = _learner("dot", "adam", changed, valid, [])
    other.resume_state = read_checkpoint(tmp_path)
    with pytest.raises(ConfigError):
        other.fit(1, 1e-2)


def test_read_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="expected a checkpoint"):
        read_checkpoint(tmp_path)
    (tmp_path / ckpt.CHECKPOINT_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(BundleError, match="expected a readable recfit checkpoint"):
        read_checkpoint(tmp_path)
    train, valid = _data()
    learn = _learner("dot", "adam", train, valid, [])
    learn.fit(1, 1e-2)
    tensors, meta = ckpt.capture(learn, epoch_end=True)
    meta["version"] = 99
    ckpt.write_checkpoint(tmp_path / ckpt.CHECKPOINT_FILE, tensors, meta)
    with pytest.raises(
        BundleError,
        match=rf"version {ckpt.CHECKPOINT_VERSION}, received 'recfit\.checkpoint' version 99",
    ):
        read_checkpoint(tmp_path)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, valid = _data()
    learn = _learner("dot", "adam", train, valid, [TrainCheckpoint(tmp_path)]).fit(1, 1e-2)
    good = (tmp_path / ckpt.CHECKPOINT_FILE).read_bytes()

    def broken(*_a: Any, **_k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    tensors, meta = ckpt.capture(learn, epoch_end=True)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(tmp_path / ckpt.CHECKPOINT_FILE, tensors, meta)
    assert (tmp_path / ckpt.CHECKPOINT_FILE).read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.CHECKPOINT_FILE]


_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False), st.text(max_size=5),
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=0, max_size=4).map(
        lambda v: torch.tensor(v, dtype=torch.float64)
    ),
)  # fmt: skip
_tree = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.text("abc", min_size=1, max_size=3), kids, max_size=3),
        st.dictionaries(st.integers(0, 9), kids, max_size=3),
    ),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=60, deadline=None)
@given(_tree)
def test_state_encoding_round_trips_through_json(tree: Any) -> None:
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(ckpt_file.encode_state(tree, "opt", tensors))
    assert _same(ckpt_file.decode_state(json.loads(text), tensors), tree)


def test_cli_resume_rejects_config_flags_and_missing_checkpoint(tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "--resume", str(tmp_path), "--epochs", "3"])
    assert res.exit_code == 2 and "expected no config flags with --resume" in res.output
    res = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "expected a checkpoint" in res.output


def test_bf16_needs_cuda(tmp_path: Path, tiny: Interactions) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    csv = tmp_path / "r.csv"
    tiny.to_frame().to_csv(csv, index=False)
    res = runner.invoke(app, ["train", "-d", str(csv), "--epochs", "1", "--bf16", "-q",
                              "--device", "cpu", "--budget", "0"])  # fmt: skip
    assert res.exit_code == 2 and "expected a CUDA device for bf16" in res.output


# ---------------------------------------------------------------- real processes
def _ratings_csv(path: Path, n: int = 24_000) -> Path:
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 600, n), rng.integers(0, 900, n)
    r = np.clip(np.round(3 + np.sin(users) + np.cos(items) + rng.normal(0, 0.5, n)), 1, 5)
    frame = pd.DataFrame({"user": users, "item": items, "rating": r})
    frame.drop_duplicates(["user", "item"]).to_csv(path, index=False)
    return path


def _cmd(*args: str) -> list[str]:
    if "--resume" not in args:  # model auto by size (svdpp here), no search
        args = ("--budget", "0", *args)
    return [sys.executable, "-m", "recfit", "train", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _wait_for(
    proc: subprocess.Popen[bytes], path: Path, ok: Any, limit: float = 120.0
) -> dict[str, Any]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (code {proc.returncode}) before the checkpoint")
        if path.exists():
            try:
                pos: dict[str, Any] = read_checkpoint(path).meta["position"]
            except BundleError:  # being replaced right now
                pos = {}
            if pos and ok(pos):
                return pos
        time.sleep(0.005)
    raise AssertionError("no checkpoint in time")


def _metrics(run: Path) -> dict[str, Any]:
    m = json.loads((run / "metrics.json").read_text())
    m.pop("fit_seconds")
    m["details"]["metrics"].pop("fit_seconds")  # wall clock: the only fields that differ
    m["details"].pop("compile_seconds", None)  # compiling or loading kernels: wall clock too
    return m


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    csv = _ratings_csv(tmp_path / "r.csv")
    flags = ["-d", str(csv), "--epochs", "3", "--bs", "16", "--n-factors", "8", "--seed", "5",
             "--device", "cpu", "--checkpoint-every", "150", "-q"]  # fmt: skip
    ref = tmp_path / "ref"
    subprocess.run(_cmd(*flags, "--out", str(ref)), check=True, env=_env(), capture_output=True)
    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd(*flags, "--out", str(run)), env=_env(), stderr=subprocess.PIPE)
    try:
        _wait_for(
            proc, run / ckpt.CHECKPOINT_FILE, lambda p: p["epoch"] == 1 and p["batches_done"] > 0
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    pos = read_checkpoint(run).meta["position"]
    assert pos["batches_done"] > 0 and not pos["complete"], pos  # killed mid-epoch
    assert not (run / "metrics.json").exists()
    res = subprocess.run(
        _cmd("--resume", str(run), "-q"), env=_env(), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert _metrics(run) == _metrics(ref)  # bit-identical on CPU
    h_run = pd.read_csv(run / "history.csv").drop(columns="time")
    h_ref = pd.read_csv(ref / "history.csv").drop(columns="time")
    pd.testing.assert_frame_equal(h_run, h_ref, check_exact=True)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path: Path) -> None:
    csv = _ratings_csv(tmp_path / "r.csv", n=12_000)
    run = tmp_path / "run"
    flags = ["-d", str(csv), "--epochs", "2", "--bs", "8", "--n-factors", "4", "--device", "cpu",
             "--checkpoint-every", "100", "-q", "--out", str(run)]  # fmt: skip
    proc = subprocess.Popen(_cmd(*flags), env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        seen = _wait_for(proc, run / ckpt.CHECKPOINT_FILE, lambda p: p["train_iter"] >= 100)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and f"recfit train --resume {run}" in err.replace("\n", "")
    state = read_checkpoint(run)
    pos = state.meta["position"]
    assert not pos["complete"] and pos["train_iter"] >= seen["train_iter"]
    assert state.meta["config"]["epochs"] == 2
    assert not (run / "metrics.json").exists()
    res = subprocess.run(
        _cmd("--resume", str(run), "-q"), env=_env(), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((run / "metrics.json").read_text())["mse"] > 0
    assert len(pd.read_csv(run / "history.csv")) == 2


# ---------------------------------------------------------------- damaged checkpoints
def _crashed_run(tmp_path: Path, crash_at: Callable[[int], Callback]) -> Path:
    train, valid = _data()
    crashed = _learner(
        "dot", "adam", train, valid, [TrainCheckpoint(tmp_path, every=5), crash_at(35)]
    )
    with pytest.raises(RuntimeError):
        crashed.fit_one_cycle(2, 1e-2)
    return tmp_path / ckpt.CHECKPOINT_FILE


def _tensor_span(path: Path, name: str) -> tuple[int, int]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    lo, hi = header[name]["data_offsets"]
    return 8 + n + lo, 8 + n + hi


def test_flipped_bits_in_a_tensor_are_caught(
    tmp_path: Path, crash_at: Callable[[int], Callback]
) -> None:
    path = _crashed_run(tmp_path, crash_at)
    read_checkpoint(tmp_path)  # the intact file reads
    lo, hi = _tensor_span(path, "model.user_factors")
    raw = bytearray(path.read_bytes())
    raw[(lo + hi) // 2] ^= 0x40  # one bit of one float: finite, plausible, wrong
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        read_checkpoint(tmp_path)


def test_edited_metadata_is_caught(tmp_path: Path, crash_at: Callable[[int], Callback]) -> None:
    path = _crashed_run(tmp_path, crash_at)
    raw = path.read_bytes()
    edited = raw.replace(b'\\"epoch\\": 1,', b'\\"epoch\\": 9,', 1)
    assert edited != raw
    path.write_bytes(edited)
    with pytest.raises(CheckpointError, match="sha256"):
        read_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"epoch": 99}, "epoch in"),
        ({"batches_done": -1}, "batches_done"),
        ({"train_iter": 10**6}, "train_iter"),
        ({"epoch": "1"}, "integers"),
    ],
)
def test_inconsistent_positions_are_refused_even_when_rehashed(
    tmp_path: Path, change: dict[str, Any], match: str, crash_at: Callable[[int], Callback]
) -> None:
    """A checkpoint written with a valid checksum but an impossible position (epoch 99
    used to skip training and exit 0)."""
    state = read_checkpoint(_crashed_run(tmp_path, crash_at))
    state.meta["position"].update(change)
    ckpt.write_checkpoint(tmp_path / ckpt.CHECKPOINT_FILE, state.tensors, state.meta)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(tmp_path)


def test_nan_tensor_is_refused_even_when_rehashed(
    tmp_path: Path, crash_at: Callable[[int], Callback]
) -> None:
    state = read_checkpoint(_crashed_run(tmp_path, crash_at))
    state.tensors["model.user_factors"][0, 0] = float("nan")
    ckpt.write_checkpoint(tmp_path / ckpt.CHECKPOINT_FILE, state.tensors, state.meta)
    with pytest.raises(CheckpointError, match=r"finite values in tensor 'model\.user_factors'"):
        read_checkpoint(tmp_path)


def test_no_checkpoint_is_written_from_nan_weights(tmp_path: Path) -> None:
    train, valid = _data()
    cb = TrainCheckpoint(tmp_path)
    learn = _learner("dot", "adam", train, valid, [cb]).fit(1, 1e-2)
    before = (tmp_path / ckpt.CHECKPOINT_FILE).read_bytes()
    with torch.no_grad():
        learn.model.user_factors[1, 2] = float("inf")  # type: ignore[index]
    with pytest.raises(TrainingDivergedError, match="user_factors"):
        cb.save(epoch_end=True)
    assert (tmp_path / ckpt.CHECKPOINT_FILE).read_bytes() == before


def test_cli_resume_of_a_damaged_checkpoint_fails(tmp_path: Path) -> None:
    csv = _ratings_csv(tmp_path / "r.csv", n=3000)
    run = tmp_path / "run"
    res = runner.invoke(
        app, ["train", "-d", str(csv), "--epochs", "1", "--bs", "64", "--n-factors", "4",
              "--device", "cpu", "-q", "--budget", "0", "--out", str(run)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    path = run / ckpt.CHECKPOINT_FILE
    if not path.exists():
        pytest.skip("this run layout keeps no checkpoint after a finished run")
    lo, _ = _tensor_span(path, "model.user_factors")
    raw = bytearray(path.read_bytes())
    raw[lo + 5] ^= 0x08
    path.write_bytes(bytes(raw))
    res = runner.invoke(app, ["train", "--resume", str(run), "-q"])
    assert res.exit_code != 0
