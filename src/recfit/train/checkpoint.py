"""Full training state, saved atomically and resumed exactly.

A run directory written by ``recfit train --out RUN`` holds ``checkpoint.safetensors``,
rewritten (to a temporary name, fsynced, then renamed over the old one) at every epoch
end, every ``checkpoint_every`` optimiser steps when asked, when Ctrl-C (SIGINT) or
SIGTERM stops the run, and once more at the end of the fit. It is one safetensors file
(no pickle anywhere, :mod:`recfit.train.checkpoint_file`) holding the state of each
component, asked for by its ``state_dict`` and put back by its ``load_state_dict``:

* ``model.*``: the model's ``state_dict``;
* ``optimizer``: the optimiser's ``state_dict`` (moments, step counters, momentum
  buffers...) and its type;
* ``learner``: :meth:`Learner.state_dict <recfit.train.learner.Learner.state_dict>`: the
  position (epoch, batches done in it, global step = scheduler position, epochs and
  steps of the fit; kept at the top of the metadata as ``position``), the epoch's running
  loss sums, learning rate and momentum, the history so far, the batch-order RNG at the
  start of the current epoch (the epoch's permutation is drawn again from it and the
  batches already done are skipped) and a fingerprint of the training data;
* ``callbacks``: each callback's :meth:`~recfit.train.callbacks.Callback.state_dict`
  (whatever its type; a callback without state saves nothing);
* ``rng``: the global RNGs (PyTorch's, CUDA's, NumPy's legacy one).

Schedules hold no state: their value at a step depends on the step alone.

Reading a checkpoint checks it before anything is restored, and any failure is a
:class:`~recfit.errors.CheckpointError`: the checksum must match (a flipped bit anywhere
is caught), every floating-point tensor must be finite, and the position must be
consistent (``0 <= epoch <= n_epochs``, ``0 <= batches_done <= steps_per_epoch``, the
global step at most ``epoch × steps_per_epoch + batches_done``, finite loss sums); a file
of another format version (also an older recfit's) is refused, never misread. A
checkpoint is never written from weights
that are not finite (:class:`~recfit.errors.TrainingDivergedError` instead).

``recfit train --resume RUN`` rebuilds the Learner from the stored config (same data,
same split, same seed), and :meth:`ResumeState.apply` puts every piece of state back
before the first batch. On CPU the resumed run is **bit-identical** to an uninterrupted
one with the same seed (same metrics, same history; only wall-clock fields differ); on
CUDA it is identical up to the non-determinism of the GPU kernels themselves.

Example:
    >>> import tempfile
    >>> from recfit.data.synthetic import synthetic
    >>> from recfit.models import DotBias
    >>> from recfit.train.learner import Learner
    >>> d = synthetic(300, 20, 30, seed=0)
    >>> run = tempfile.mkdtemp()
    >>> learn = Learner(DotBias(d.n_users, d.n_items, 4), d, bs=32, progress=False,
    ...                 callbacks=[TrainCheckpoint(run, every=3)])
    >>> _ = learn.fit(1, 1e-2)
    >>> read_checkpoint(run).meta["position"]["complete"]
    True
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from recfit.config import validate_config
from recfit.errors import BundleError, CheckpointError, ConfigError, TrainingInterrupted
from recfit.train import sparse_dist
from recfit.train.callbacks import Callback
from recfit.train.checkpoint_file import (
    CHECKPOINT_FILE,
    CHECKPOINT_VERSION,
    checksum,
    decode_state,
    encode_state,
    load_rng_state,
    read_file,
    rng_state,
    write_checkpoint,
)
from recfit.train.distributed import attach, enable_bf16

if TYPE_CHECKING:
    from recfit.config import TrainConfig
    from recfit.train.distributed import DistContext
    from recfit.train.learner import Learner, StateAt

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


# ------------------------------------------------------------------ callbacks' state
def _cb_key(i: int, cb: Callback) -> str:
    return f"{i}.{type(cb).__name__}"


def _callback_states(learn: Learner, tensors: dict[str, Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, cb in enumerate(learn.cbs):
        state = cb.state_dict()
        if state:
            key = _cb_key(i, cb)
            out[key] = encode_state(state, f"cb.{key}", tensors)
    return out


# ------------------------------------------------------------------ capture / apply
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
    if learn.owns_users:  # users' rows from the ranks owning them
        sparse_dist.replicate(learn.opt, learn.dist)
    tensors: dict[str, Tensor] = {}
    for k, v in learn.model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().to("cpu", copy=True).contiguous()
    opt_state = None if learn.opt is None else encode_state(learn.opt.state_dict(), "opt", tensors)
    at: StateAt = "end" if complete else "epoch" if epoch_end else "batch"
    own = learn.state_dict(at)
    position = own.pop("position")
    meta: dict[str, Any] = {
        "format": "recfit.checkpoint",
        "version": CHECKPOINT_VERSION,
        "config": None if config is None else config.model_dump(mode="json"),
        "position": position,
        "learner": encode_state(own, "learner", tensors),
        "optimizer": {"type": type(learn.opt).__name__, "state": opt_state},
        "callbacks": _callback_states(learn, tensors),
        "rng": encode_state(rng_state(learn.device), "rng", tensors),
        "saved_at": time.time(),
    }
    return tensors, meta


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
        """Put back each component's state (Learner, model, optimiser, global RNGs,
        callbacks); the epoch to continue from. Called by the Learner's fit after
        ``before_fit`` (the optimiser exists by then)."""
        t, where = self.tensors, repr(str(self.path))
        own = {**decode_state(self.meta["learner"], t), "position": self.meta["position"]}
        try:
            learn.load_state_dict(own)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (checkpoint {where})") from exc
        state = {k[len("model.") :]: v for k, v in t.items() if k.startswith("model.")}
        try:
            learn.model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"expected model tensors matching {type(learn.model).__name__}, received "
                f"others in {where}: {exc}"
            ) from exc
        opt = self.meta["optimizer"]
        if opt["state"] is not None and learn.opt is not None:
            if opt["type"] != type(learn.opt).__name__:
                raise ConfigError(
                    f"expected optimiser {opt['type']} as in {where}, received "
                    f"{type(learn.opt).__name__}"
                )
            learn.opt.load_state_dict(decode_state(opt["state"], t))
        load_rng_state(decode_state(self.meta["rng"], t), learn.device)
        saved = self.meta["callbacks"]
        for i, cb in enumerate(learn.cbs):
            key = _cb_key(i, cb)
            if key in saved:
                cb.load_state_dict(decode_state(saved[key], t))
        return int(self.meta["position"]["epoch"])


def read_checkpoint(run: str | Path) -> ResumeState:
    """Read ``RUN/checkpoint.safetensors`` (or a checkpoint file given directly).

    Raises:
        CheckpointError: no checkpoint, a damaged one (checksum, non-finite tensor,
            inconsistent position), or one of another format version.
    """
    return ResumeState(*read_file(run))


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
        self.learn.check_finite()  # identical on every rank: never save NaN weights
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

    @property
    def steps_in_bulk(self) -> bool:
        """Without ``every``, an epoch may run as one kernel (a stop request is then
        honoured at its end)."""
        return self.every is None

    def after_steps(
        self, lrs: Sequence[float], moms: Sequence[float], losses: Sequence[float]
    ) -> None:
        """Nothing to do: the epoch's end saves."""

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
