"""Full training state, saved atomically and resumed exactly.

A run directory written by ``recfit train --out RUN`` holds ``checkpoint.safetensors``,
rewritten (to a temporary name, fsynced, then renamed over the old one) at every epoch
end, every ``checkpoint_every`` optimiser steps when asked, when Ctrl-C (SIGINT) or
SIGTERM stops the run, and once more at the end of the fit. It is one safetensors file
(no pickle anywhere): the tensors are

* ``model.*``: the model's ``state_dict``;
* ``opt.*``: every tensor of the optimiser's state (moments, step counters, momentum
  buffers...), serialised by walking its ``state_dict``;
* ``rng.batch_order``: the state of the Learner's ``torch.Generator`` at the start of
  the current epoch (the epoch's permutation is drawn again from it and the batches
  already done are skipped); ``rng.torch`` / ``rng.cuda``: the global RNG that dropout
  uses; ``rng.numpy``: NumPy's legacy global RNG (the training loop does not use NumPy's
  RNG; it is saved so user callbacks that do resume too);
* ``cb.*``: tensors of callbacks (ScheduleRecorder's per-step records, EarlyStopping's
  best weights);

and the file's metadata key ``recfit.checkpoint`` holds JSON with the format version,
the run's :class:`~recfit.config.TrainConfig`, the position (epoch, batches done in it,
global step = scheduler position, epochs and steps of the fit), the epoch's running
loss sums, the history so far, the optimiser's non-tensor state, callback state and a
fingerprint of the training data. The metadata key ``recfit.sha256`` is the SHA-256 of
that JSON and of every tensor (name, dtype, shape and bytes, in name order).

Reading a checkpoint checks it before anything is restored, and any failure is a
:class:`~recfit.errors.CheckpointError`: the checksum must match (a flipped bit anywhere
is caught), every floating-point tensor must be finite, and the position must be
consistent (``0 <= epoch <= n_epochs``, ``0 <= batches_done <= steps_per_epoch``, the
global step at most ``epoch × steps_per_epoch + batches_done``, finite loss sums). A checkpoint is never written from weights
that are not finite (:class:`~recfit.errors.TrainingDivergedError` instead).

``recfit train --resume RUN`` rebuilds the Learner from the stored config (same data,
same split, same seed), and :meth:`ResumeState.apply` puts every piece of state back
before the first batch. On CPU the resumed run is **bit-identical** to an uninterrupted
one with the same seed (same metrics, same history; only wall-clock fields differ); on
CUDA it is identical up to the non-determinism of the GPU kernels themselves.

Example:
    >>> import numpy as np, tempfile
    >>> from recfit.data import Interactions
    >>> from recfit.models import DotBias
    >>> from recfit.train.learner import Learner
    >>> rng = np.random.default_rng(0)
    >>> d = Interactions.from_arrays(rng.integers(0, 20, 300), rng.integers(0, 30, 300),
    ...                              rng.integers(1, 6, 300).astype(float))
    >>> run = tempfile.mkdtemp()
    >>> learn = Learner(DotBias(d.n_users, d.n_items, 4), d, bs=32, progress=False,
    ...                 callbacks=[TrainCheckpoint(run, every=3)])
    >>> _ = learn.fit(1, 1e-2)
    >>> read_checkpoint(run).meta["position"]["complete"]
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from recfit._fs import atomic_write, read_plain_file
from recfit.config import validate_config
from recfit.errors import BundleError, CheckpointError, ConfigError, TrainingInterrupted
from recfit.train.callbacks import Callback, EarlyStopping, ScheduleRecorder, _Monitor
from recfit.train.distributed import attach, enable_bf16

if TYPE_CHECKING:
    from recfit.config import TrainConfig
    from recfit.train.distributed import DistContext
    from recfit.train.learner import Learner

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_VERSION",
    "ResumeState",
    "TrainCheckpoint",
    "TrainingInterrupted",
    "capture",
    "checksum",
    "read_checkpoint",
    "resume_config",
    "setup_run",
    "write_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.safetensors"
"""The checkpoint's file name inside a run directory."""
CHECKPOINT_VERSION = 2
_META_KEY = "recfit.checkpoint"
_SHA_KEY = "recfit.sha256"


def _tensor_bytes(t: Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return bytes(flat.view(torch.uint8).numpy().tobytes())


def checksum(text: str, tensors: dict[str, Tensor]) -> str:
    """SHA-256 of a checkpoint's metadata JSON and its tensors (name, dtype, shape, bytes).

    Example:
        >>> a = checksum("{}", {"x": torch.zeros(2)})
        >>> a == checksum("{}", {"x": torch.zeros(2)}), a == checksum("{}", {"x": torch.ones(2)})
        (True, False)
    """
    h = hashlib.sha256(text.encode("utf-8"))
    for k in sorted(tensors):
        t = tensors[k]
        h.update(f"\0{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


# ------------------------------------------------------------------ tree <-> (json, tensors)
def _encode(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        items = [(k, _encode(v, f"{key}.{k}", tensors)) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
            return dict(items)
        return {
            "__dict__": [[_encode(k, f"{key}.k{i}", tensors), v] for i, (k, v) in enumerate(items)]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ConfigError(
        f"expected optimiser/callback state made of tensors, numbers, strings, lists and "
        f"dicts, received {type(obj).__name__} at {key!r}"
    )


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def _float_list(values: list[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------ callbacks' state
def _callback_state(learn: Learner, tensors: dict[str, Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, cb in enumerate(learn.cbs):
        key = f"{i}.{type(cb).__name__}"
        pre = f"cb.{key}"
        if callable(getattr(cb, "state_dict", None)) and callable(
            getattr(cb, "load_state_dict", None)
        ):
            state = cb.state_dict()  # type: ignore[attr-defined]
            out[key] = {"state": _encode(state, pre, tensors)}
        elif isinstance(cb, ScheduleRecorder):
            for name in ("lrs", "moms", "losses"):
                tensors[f"{pre}.{name}"] = _float_list(getattr(cb, name))
            out[key] = {"recorder": True}
        elif isinstance(cb, _Monitor):
            st: dict[str, Any] = {"best": cb.best, "best_epoch": cb.best_epoch}
            if isinstance(cb, EarlyStopping):
                st.update(wait=cb.wait, stopped_epoch=cb.stopped_epoch)
                if cb.best_state is not None:
                    st["best_state"] = _encode(dict(cb.best_state), f"{pre}.best", tensors)
            out[key] = {"monitor": st}
    return out


def _restore_callbacks(learn: Learner, saved: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    for i, cb in enumerate(learn.cbs):
        key = f"{i}.{type(cb).__name__}"
        st = saved.get(key)
        if st is None:
            continue
        pre = f"cb.{key}"
        if "state" in st:
            cb.load_state_dict(_decode(st["state"], tensors))  # type: ignore[attr-defined]
        elif "recorder" in st and isinstance(cb, ScheduleRecorder):
            for name in ("lrs", "moms", "losses"):
                setattr(cb, name, tensors[f"{pre}.{name}"].tolist())
        elif "monitor" in st and isinstance(cb, _Monitor):
            m = st["monitor"]
            cb.best, cb.best_epoch = float(m["best"]), int(m["best_epoch"])
            if isinstance(cb, EarlyStopping):
                cb.wait, cb.stopped_epoch = int(m["wait"]), m["stopped_epoch"]
                best = m.get("best_state")
                cb.best_state = None if best is None else _decode(best, tensors)


# ------------------------------------------------------------------ capture / apply
def _fingerprint(learn: Learner) -> dict[str, Any]:
    cached = getattr(learn, "_ckpt_fingerprint", None)
    if cached is not None:
        return dict(cached)
    cols = learn._train_td.columns
    crc = 0
    for k in ("user", "item", "rating", "weight"):
        crc = zlib.crc32(cols[k].cpu().numpy().tobytes(), crc)
    fp = {"rows": len(learn._train_td), "crc32": crc, "model": type(learn.model).__name__}
    learn._ckpt_fingerprint = fp  # type: ignore[attr-defined]
    return dict(fp)


def capture(
    learn: Learner, *, epoch_end: bool, config: TrainConfig | None = None, complete: bool = False
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The Learner's full training state as (tensors, JSON-able metadata).

    Args:
        learn: a Learner inside ``fit`` (or just after it).
        epoch_end: the state after ``learn.epoch`` ended (else after batch ``learn.iter``).
        config: the run's config, stored so the run can be resumed from the file alone.
        complete: the fit has finished (a resume then only evaluates and writes).

    Under distributed training every rank must call it at the same point (the running
    loss sums are all-reduced); only rank 0 needs to write the result.
    """
    tensors: dict[str, Tensor] = {}
    for k, v in learn.model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().to("cpu", copy=True).contiguous()
    opt_state = None if learn.opt is None else _encode(learn.opt.state_dict(), "opt", tensors)
    if epoch_end or complete:
        epoch, done = learn.epoch + 1, 0
        gen_state = learn._gen.get_state()
        acc = [0.0, 0.0, 0.0]
    else:
        epoch, done = learn.epoch, learn.iter + 1
        assert learn.epoch_gen_state is not None
        gen_state = learn.epoch_gen_state
        acc_t = torch.stack([a.detach() for a in learn._acc])
        if learn.dist is not None:
            acc_t = learn.dist.all_reduce_(acc_t.clone())
        acc = [float(a) for a in acc_t]
    if complete:
        epoch = learn.n_epochs
    tensors["rng.batch_order"] = gen_state.clone()
    tensors["rng.torch"] = torch.get_rng_state()
    if learn.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(learn.device)
    np_state = np.random.get_state(legacy=True)  # noqa: NPY002 - the global RNG itself
    assert isinstance(np_state, tuple)
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    meta: dict[str, Any] = {
        "format": "recfit.checkpoint",
        "version": CHECKPOINT_VERSION,
        "config": None if config is None else config.model_dump(mode="json"),
        "position": {
            "epoch": epoch,
            "batches_done": done,
            "train_iter": learn.train_iter,
            "n_epochs": learn.n_epochs,
            "steps_per_epoch": learn.n_iter,
            "complete": complete,
            "world": 1 if learn.dist is None else learn.dist.world,
        },
        "acc": acc,
        "lr": learn.lr,
        "mom": learn.mom,
        "history": learn.history,
        "optimizer": {"type": type(learn.opt).__name__, "state": opt_state},
        "callbacks": _callback_state(learn, tensors),
        "numpy_rng": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "data": _fingerprint(learn),
        "saved_at": time.time(),
    }
    return tensors, meta


def write_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write one checkpoint file atomically (temporary file, fsync, rename)."""
    path = Path(path)
    text = json.dumps(meta, allow_nan=True, default=float)
    digest = checksum(text, tensors)
    atomic_write(path, st_save(tensors, metadata={_META_KEY: text, _SHA_KEY: digest}))
    return path


@dataclass
class ResumeState:
    """A checkpoint read back; :meth:`apply` puts it into a Learner.

    Attributes:
        tensors: every tensor of the file by name.
        meta: the JSON metadata (see the module docs).
        path: where it was read from.
    """

    tensors: dict[str, Tensor]
    meta: dict[str, Any]
    path: Path

    @property
    def config(self) -> TrainConfig:
        """The run's stored config."""
        cfg = self.meta.get("config")
        if cfg is None:
            raise BundleError(
                f"expected a config in the checkpoint {str(self.path)!r}, received none"
            )
        return validate_config(cfg, source=str(self.path))

    def apply(self, learn: Learner) -> int:
        """Restore model, optimiser, RNGs, position, history and callbacks; the epoch to
        continue from. Called by the Learner's fit after ``before_fit`` (the optimiser
        exists by then)."""
        pos = self.meta["position"]
        if (pos["n_epochs"], pos["steps_per_epoch"]) != (learn.n_epochs, learn.n_iter):
            raise ConfigError(
                f"expected a fit of {pos['n_epochs']} epochs of {pos['steps_per_epoch']} steps "
                f"to resume {str(self.path)!r}, received {learn.n_epochs} epochs of "
                f"{learn.n_iter} steps (different config or data)"
            )
        fp = self.meta.get("data")
        if fp is not None and fp != _fingerprint(learn):
            raise ConfigError(
                f"expected the training data of the checkpoint ({fp['rows']} rows, crc32 "
                f"{fp['crc32']}), received {_fingerprint(learn)} in {str(self.path)!r}"
            )
        t = self.tensors
        state = {k[len("model.") :]: v for k, v in t.items() if k.startswith("model.")}
        try:
            learn.model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"expected model tensors matching {type(learn.model).__name__}, received "
                f"others in {str(self.path)!r}: {exc}"
            ) from exc
        opt = self.meta["optimizer"]
        if opt["state"] is not None and learn.opt is not None:
            if opt["type"] != type(learn.opt).__name__:
                raise ConfigError(
                    f"expected optimiser {opt['type']} as in {str(self.path)!r}, received "
                    f"{type(learn.opt).__name__}"
                )
            learn.opt.load_state_dict(_decode(opt["state"], t))
        learn._gen.set_state(t["rng.batch_order"])
        torch.set_rng_state(t["rng.torch"])
        if "rng.cuda" in t and learn.device.type == "cuda":
            torch.cuda.set_rng_state(t["rng.cuda"], learn.device)
        name, npos, has_gauss, gauss = self.meta["numpy_rng"]
        keys = t["rng.numpy"].numpy().astype(np.uint32)
        np.random.set_state((name, keys, int(npos), int(has_gauss), float(gauss)))  # noqa: NPY002
        learn.train_iter = int(pos["train_iter"])
        learn.history[:] = [dict(r) for r in self.meta["history"]]
        learn.lr, learn.mom = float(self.meta["lr"]), float(self.meta["mom"])
        learn._skip = int(pos["batches_done"])
        main = learn.dist is None or learn.dist.is_main
        acc = self.meta["acc"] if main else [0.0, 0.0, 0.0]
        learn._acc_init = (float(acc[0]), float(acc[1]), float(acc[2]))
        _restore_callbacks(learn, self.meta["callbacks"], t)
        learn._ckpt_resumed = self  # type: ignore[attr-defined]
        return int(pos["epoch"])


def read_checkpoint(run: str | Path) -> ResumeState:
    """Read ``RUN/checkpoint.safetensors`` (or a checkpoint file given directly).

    Raises:
        CheckpointError: no checkpoint, a damaged one (checksum, non-finite tensor,
            inconsistent position), or one of another format version.
    """
    p = Path(run)
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if not os.path.lexists(p):
        raise CheckpointError(
            f"expected a checkpoint at {str(p)!r}, received no such file (the run stopped "
            "before its first checkpoint, or was not written with --out)"
        )
    data = read_plain_file(p.parent, p.name, error=CheckpointError)  # no link followed
    try:
        tensors: dict[str, Tensor] = st_load(data)
        n_header = int.from_bytes(data[:8], "little")
        meta_all = json.loads(data[8 : 8 + n_header]).get("__metadata__") or {}
        text = meta_all[_META_KEY]
        meta = json.loads(text)
    except Exception as exc:  # safetensors raises its own SafetensorError too
        raise CheckpointError(
            f"expected a readable recfit checkpoint, received {str(p)!r}: {exc}"
        ) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"expected checkpoint metadata as a JSON object, received {type(meta).__name__} "
            f"in {str(p)!r}"
        )
    if meta.get("format") != "recfit.checkpoint" or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"expected checkpoint format version {CHECKPOINT_VERSION}, received "
            f"{meta.get('format')!r} version {meta.get('version')!r} in {str(p)!r}"
        )
    stored = meta_all.get(_SHA_KEY)
    actual = checksum(text, tensors)
    if stored != actual:
        raise CheckpointError(
            f"expected the checkpoint's sha256 {stored!r}, received {actual!r} for the "
            f"contents of {str(p)!r} (the file was changed or damaged after it was written)"
        )
    _validate(meta, tensors, p)
    return ResumeState(tensors, meta, p)


def _validate(meta: dict[str, Any], tensors: dict[str, Tensor], p: Path) -> None:
    """Finite tensors and a consistent position (see the module docs)."""
    where = f"in {str(p)!r}"
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"expected finite values in tensor {k!r}, received NaN or inf {where}"
            )
    if not any(k.startswith("model.") for k in tensors):
        raise CheckpointError(f"expected model tensors (model.*), received none {where}")
    pos = meta.get("position")
    names = ("epoch", "batches_done", "train_iter", "n_epochs", "steps_per_epoch", "world")
    if not isinstance(pos, dict) or not all(
        isinstance(pos.get(n), int) and not isinstance(pos.get(n), bool) for n in names
    ):
        raise CheckpointError(
            f"expected position fields {list(names)} as integers, received {pos!r} {where}"
        )
    ep, done, it = pos["epoch"], pos["batches_done"], pos["train_iter"]
    n_ep, steps = pos["n_epochs"], pos["steps_per_epoch"]
    if n_ep < 0 or steps < 1 or pos["world"] < 1:
        raise CheckpointError(
            f"expected n_epochs >= 0, steps_per_epoch >= 1 and world >= 1, received {pos!r} {where}"
        )
    if not 0 <= ep <= n_ep:
        raise CheckpointError(f"expected epoch in [0, {n_ep}], received {ep} {where}")
    if not 0 <= done <= steps or (done and ep >= n_ep):
        raise CheckpointError(
            f"expected batches_done in [0, {steps}] inside an epoch, received {done} at "
            f"epoch {ep} {where}"
        )
    expected = ep * steps + done  # fewer when a callback cancelled batches or epochs
    if not 0 <= it <= expected:
        raise CheckpointError(
            f"expected train_iter in [0, {expected}] (epoch {ep} × {steps} steps + {done}), "
            f"received {it} {where}"
        )
    acc = meta.get("acc")
    if not (
        isinstance(acc, list)
        and len(acc) == 3
        and all(isinstance(a, int | float) and math.isfinite(a) for a in acc)
        and acc[0] >= 0
    ):
        raise CheckpointError(f"expected three finite loss sums in acc, received {acc!r} {where}")
    for name in ("lr", "mom"):
        v = meta.get(name)
        if not (isinstance(v, int | float) and math.isfinite(v)):
            raise CheckpointError(f"expected a finite {name}, received {v!r} {where}")
    hist = meta.get("history")
    if not isinstance(hist, list) or not all(isinstance(r, dict) for r in hist):
        raise CheckpointError(
            f"expected the history as a list of records, received {type(hist).__name__} {where}"
        )
    if not isinstance(meta.get("optimizer"), dict) or not isinstance(meta.get("callbacks"), dict):
        raise CheckpointError(f"expected optimizer and callbacks state objects {where}")
    if not (isinstance(meta.get("numpy_rng"), list) and len(meta["numpy_rng"]) == 4):
        raise CheckpointError(
            f"expected numpy_rng as 4 values, received {meta.get('numpy_rng')!r} {where}"
        )
    for k in ("rng.batch_order", "rng.torch", "rng.numpy"):
        if k not in tensors:
            raise CheckpointError(f"expected the tensor {k!r}, received none {where}")


def resume_config(run: str | Path) -> TrainConfig:
    """The config stored in a run's checkpoint (what ``recfit train --resume`` uses).

    Example:
        >>> # cfg = resume_config("runs/ml100k")
    """
    return read_checkpoint(run).config


# ------------------------------------------------------------------ the callback
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainCheckpoint(Callback):
    """Saves the full training state to ``dir/checkpoint.safetensors``; stops on a signal.

    Saves at every epoch end, every ``every`` optimiser steps (when given) and at the end
    of the fit. While fitting it handles SIGINT (Ctrl-C) and SIGTERM: the current batch
    finishes, a checkpoint is written, and :class:`TrainingInterrupted` is raised (a second
    Ctrl-C interrupts at once). Under distributed training every rank runs it (the stop is
    agreed on by all ranks at the same step) and only the rank with ``write=True`` writes.

    Args:
        dir: the run directory.
        every: also save every ``every`` global steps (``None``: epoch ends only).
        config: stored in the checkpoint so ``recfit train --resume`` can rebuild the run.
        write: whether this process writes (rank 0).
        handle_signals: install the SIGINT/SIGTERM handlers during the fit.

    Example:
        >>> TrainCheckpoint("runs/a", every=100).path.name
        'checkpoint.safetensors'
    """

    order = 55  # after EarlyStopping (50): an epoch-end checkpoint includes its decision

    def __init__(
        self,
        dir: str | Path,
        every: int | None = None,
        *,
        config: TrainConfig | None = None,
        write: bool = True,
        handle_signals: bool = True,
    ) -> None:
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ConfigError(f"expected checkpoint every N >= 1 steps, received {every!r}")
        self.dir, self.every, self.config = Path(dir), every, config
        self.write, self.handle_signals = write, handle_signals
        self._old: dict[int, Any] = {}
        self._signum = int(signal.SIGINT)
        self.saves = 0

    @property
    def path(self) -> Path:
        """The checkpoint file."""
        return self.dir / CHECKPOINT_FILE

    def save(self, *, epoch_end: bool, complete: bool = False) -> Path | None:
        """Capture and (if this process writes) write the state now.

        Raises:
            TrainingDivergedError: a weight is not finite (nothing is written).
        """
        self.learn._check_weights()  # identical on every rank: never save NaN weights
        tensors, meta = capture(
            self.learn, epoch_end=epoch_end, config=self.config, complete=complete
        )
        if not self.write:
            return None
        self.saves += 1
        return write_checkpoint(self.path, tensors, meta)

    # signals ----------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.learn.stop_requested = True
        self._signum = signum
        self._restore_handlers()  # a second Ctrl-C interrupts at once
        if self.write:
            print(
                f"\nrecfit: {signal.Signals(signum).name} received; finishing this batch and "
                "saving a checkpoint (press Ctrl-C again to abort without saving)",
                file=sys.stderr,
                flush=True,
            )

    def _install(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for s in _SIGNALS:
            self._old[s] = signal.signal(s, self._on_signal)

    def _restore_handlers(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _stop_agreed(self, collective: bool) -> bool:
        learn = self.learn
        if learn.dist is None:
            return learn.stop_requested
        if collective:  # outside the per-step reduction (e.g. at an epoch end)
            flag = torch.tensor([float(learn.stop_requested)], dtype=torch.float64)
            return bool(learn.dist.all_reduce_(flag)[0] > 0)
        return bool(getattr(learn.dist, "stop_agreed", False))

    def _interrupt(self, *, epoch_end: bool) -> None:
        self._restore_handlers()
        where = self.save(epoch_end=epoch_end)
        learn = self.learn
        pos = f"epoch {learn.epoch + 1}/{learn.n_epochs}, step {learn.train_iter}"
        raise TrainingInterrupted(
            f"training stopped by {signal.Signals(self._signum).name} at {pos}; checkpoint "
            f"saved in {str(self.dir)!r}; continue with: recfit train --resume {self.dir}",
            where if where is not None else self.path,
            self._signum,
        )

    # events -----------------------------------------------------------------
    def before_fit(self) -> None:
        self.learn.stop_requested = False
        if self.write:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._install()

    def after_batch(self) -> None:
        learn = self.learn
        if self._stop_agreed(collective=False):
            self._interrupt(epoch_end=False)
        if (
            self.every is not None
            and learn.train_iter % self.every == 0
            and learn.iter + 1 < learn.n_iter
        ):
            self.save(epoch_end=False)

    def after_epoch(self) -> None:
        self.save(epoch_end=True)
        if self._stop_agreed(collective=True):
            self._interrupt(epoch_end=True)

    def after_fit(self) -> None:
        self._restore_handlers()
        self.save(epoch_end=True, complete=True)

    def __repr__(self) -> str:
        return f"TrainCheckpoint({str(self.dir)!r}, every={self.every})"


# ------------------------------------------------------------------ wiring a run
def setup_run(
    learn: Learner,
    cfg: TrainConfig,
    out: str | Path | None,
    *,
    resume: bool = False,
    ctx: DistContext | None = None,
) -> Learner:
    """Prepare ``learn`` for :func:`recfit.runs.train_run`: distributed attachment,
    bf16, the checkpoint callback (when ``out`` is given) and the resume state.

    Raises:
        ConfigError: ``resume`` without ``out``, bf16 without CUDA.
        BundleError: ``resume`` and no readable checkpoint in ``out``.
    """
    if ctx is not None:
        attach(learn, ctx)
    if getattr(cfg, "bf16", False):
        enable_bf16(learn)
    if out is not None:
        every = getattr(cfg, "checkpoint_every", None)
        write = ctx is None or ctx.is_main
        learn.add_cb(TrainCheckpoint(out, every, config=cfg, write=write))
    if resume:
        if out is None:
            raise ConfigError("expected a run directory to resume, received out=None")
        state = read_checkpoint(out)
        if state.meta["config"] is not None and state.config != cfg:
            raise ConfigError(
                f"expected the config stored in {str(state.path)!r} to resume, received a "
                "different one"
            )
        learn.resume_state = state
    return learn
