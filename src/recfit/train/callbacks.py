"""Callbacks: a fixed event vocabulary (fastai's) and the built-in callbacks.

Events, in the order a fit fires them::

    before_fit
      before_epoch
        before_train
          before_batch → after_pred → after_loss → before_backward → after_backward
                       → after_step → after_batch           (once per batch)
        after_train
        before_validate → after_validate                    (when there is validation data)
      after_epoch                                           (history[-1] is this epoch)
    after_fit

A callback overrides the methods it needs and reads or changes the Learner through
``self.learn`` (``epoch``, ``n_epochs``, ``iter``, ``n_iter``, ``train_iter``, ``batch``,
``pred``, ``loss``, ``lr``, ``mom``, ``history``, ``model``, ``opt``). Raising
:class:`~recfit.errors.CancelBatchException` skips the rest of the batch (``after_batch``
still runs), :class:`~recfit.errors.CancelEpochException` the rest of the epoch
(``after_epoch`` still runs) and :class:`~recfit.errors.CancelFitException` the rest of
the fit (``after_fit`` still runs). Callbacks run in increasing ``order``.

A callback that keeps state across epochs (a best value, recorded steps...) returns it
from :meth:`Callback.state_dict` (tensors, numbers, strings, lists and dicts) and takes
it back in :meth:`Callback.load_state_dict`; checkpoints save and restore it that way,
whatever the callback's type (the default: no state).

In the fused training path ``learn.loss`` is a tensor without autograd history;
callbacks that need autograd (e.g. to change the loss) should use ``fused=False``.

Example:
    >>> class Count(Callback):
    ...     def before_fit(self) -> None:
    ...         self.n = 0
    ...     def after_batch(self) -> None:
    ...         self.n += 1
    >>> "after_batch" in EVENTS
    True
"""

from __future__ import annotations

import copy
import csv
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from tqdm.auto import tqdm

from recfit.errors import CancelFitException, ConfigError, UnknownMetricError
from recfit.metrics.registry import metric_direction
from recfit.models.persist import write_model_file

if TYPE_CHECKING:
    from recfit.train.learner import Learner

__all__ = [
    "EVENTS",
    "CSVLogger",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "ProgressBar",
    "ScheduleRecorder",
    "TensorBoardLogger",
]

EVENTS: tuple[str, ...] = (
    "before_fit",
    "before_epoch",
    "before_train",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "after_step",
    "after_batch",
    "after_train",
    "before_validate",
    "after_validate",
    "after_epoch",
    "after_fit",
)
"""Every event, in firing order."""


class Callback:
    """Base class: every event is a no-op method; ``learn`` is set by the Learner."""

    order: int = 0
    learn: Learner

    def before_fit(self) -> None:
        """Start of ``fit``."""

    def before_epoch(self) -> None:
        """Start of an epoch."""

    def before_train(self) -> None:
        """Start of an epoch's training part."""

    def before_batch(self) -> None:
        """A batch is in ``learn.batch``."""

    def after_pred(self) -> None:
        """``learn.pred`` holds the model's output."""

    def after_loss(self) -> None:
        """``learn.loss`` holds the batch objective (data loss + reg loss)."""

    def before_backward(self) -> None:
        """Before gradients are computed."""

    def after_backward(self) -> None:
        """Gradients are in ``.grad``."""

    def after_step(self) -> None:
        """The optimiser has stepped."""

    def after_batch(self) -> None:
        """End of a batch (also after a cancelled one)."""

    def after_train(self) -> None:
        """End of an epoch's training part."""

    def before_validate(self) -> None:
        """Before validation."""

    def after_validate(self) -> None:
        """``learn.valid_metrics`` holds the validation results."""

    def after_epoch(self) -> None:
        """``learn.history[-1]`` holds this epoch's record."""

    def after_fit(self) -> None:
        """End of ``fit`` (also after a cancelled fit)."""

    def after_steps(
        self, lrs: Sequence[float], moms: Sequence[float], losses: Sequence[float]
    ) -> None:
        """The steps of an epoch that ran as one compiled kernel, with no batch event
        (:mod:`recfit.train.dense_epoch`): each step's learning rate, momentum and loss.
        A callback that handles a batch event keeps its epochs step by step unless it
        defines this method (then it gets this call instead of those events)."""

    @property
    def steps_in_bulk(self) -> bool:
        """Whether this callback takes an epoch's steps at once (:meth:`after_steps`)
        instead of its batch events; a callback that handles a batch event and says no
        keeps its epochs step by step. Default: whether it defines :meth:`after_steps`."""
        return type(self).after_steps is not Callback.after_steps

    def state_dict(self) -> dict[str, Any]:
        """The state a resumed fit needs (tensors, numbers, strings, lists, dicts);
        ``{}`` when there is none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned (called after ``before_fit``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _resolve_mode(monitor: str, mode: str) -> Literal["min", "max"]:
    """The direction of ``monitor``: from :mod:`recfit.metrics.registry` for ``auto``.

    An explicit ``mode`` must agree with a known metric's direction; for a name that is
    not a recfit metric (e.g. a key a custom callback adds) it must be given.
    """
    if mode not in ("min", "max", "auto"):
        raise ConfigError(f"expected mode 'min', 'max' or 'auto', received {mode!r}")
    try:
        known: Literal["min", "max"] | None = metric_direction(monitor)
    except UnknownMetricError:
        if mode == "auto":
            raise
        known = None
    if mode == "auto":
        assert known is not None
        return known
    if known is not None and mode != known:
        raise ConfigError(
            f"expected mode {known!r} (or 'auto') for monitor {monitor!r}, received {mode!r}"
        )
    return "min" if mode == "min" else "max"


class _Monitor(Callback):
    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        self.monitor, self.mode = monitor, _resolve_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1

    def _current(self) -> float:
        rec = self.learn.history[-1]
        if self.monitor not in rec:
            raise ConfigError(f"expected monitor among {sorted(rec)}, received {self.monitor!r}")
        return float(rec[self.monitor])

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def before_fit(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` (``valid_loss`` or any metric name) stops improving.

    Args:
        monitor: a key of the epoch record (``valid_loss``, ``mse``, ``r2``, ``recall@20``...).
        mode: ``auto`` (the metric's direction, :func:`recfit.metrics.registry.metric_info`;
            an unknown name is an :class:`~recfit.errors.UnknownMetricError`), or ``min`` /
            ``max``, which must agree with a known metric's direction.
        patience: evaluated epochs without improvement before stopping (epochs whose
            value is NaN, e.g. ranking metrics between two ``eval_every`` epochs, are not
            evaluations and do not count).
        min_delta: smallest change that counts as an improvement.
        restore_best: put back the weights of the best epoch at the end of the fit.

    Example:
        >>> EarlyStopping("rmse", patience=2).mode, EarlyStopping("recall@20").mode
        ('min', 'max')
    """

    order = 50

    def __init__(
        self,
        monitor: str = "valid_loss",
        mode: str = "auto",
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best = patience, restore_best
        self.wait = 0
        self.best_state: dict[str, Any] | None = None
        self.stopped_epoch: int | None = None

    def before_fit(self) -> None:
        super().before_fit()
        self.wait, self.best_state, self.stopped_epoch = 0, None, None

    def after_epoch(self) -> None:
        value = self._current()
        if math.isnan(value):  # not evaluated this epoch
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, self.learn.epoch, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(self.learn.model.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = self.learn.epoch
            raise CancelFitException(
                f"{self.monitor} did not improve for {self.patience} epochs "
                f"(best {self.best:.6g} at epoch {self.best_epoch})"
            )

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}
        if self.best_state is not None:
            state["best_state"] = dict(self.best_state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait, self.stopped_epoch = int(state["wait"]), state["stopped_epoch"]
        best = state.get("best_state")
        self.best_state = None if best is None else dict(best)

    def after_fit(self) -> None:
        if self.restore_best and self.best_state is not None:
            self.learn.model.load_state_dict(self.best_state)


class Checkpoint(_Monitor):
    """Save ``last.safetensors`` every epoch and ``best.safetensors`` on improvement.

    Files are written with :func:`recfit.models.write_model_file` (config + weights).

    Example:
        >>> Checkpoint("/tmp/ckpt").mode
        'min'
    """

    order = 60

    def __init__(
        self,
        dir: str | Path,
        monitor: str = "valid_loss",
        mode: str = "auto",
        save_best: bool = True,
        save_last: bool = True,
    ) -> None:
        super().__init__(monitor, mode, 0.0)
        self.dir, self.save_best, self.save_last = Path(dir), save_best, save_last

    @property
    def best_path(self) -> Path:
        """Where the best weights go."""
        return self.dir / "best.safetensors"

    @property
    def last_path(self) -> Path:
        """Where the last weights go."""
        return self.dir / "last.safetensors"

    def after_epoch(self) -> None:
        meta = {"epoch": str(self.learn.epoch)}
        if self.save_last:
            write_model_file(self.learn.model, self.last_path, meta)
        if self.save_best:
            value = self._current()
            if self._improved(value):
                self.best, self.best_epoch = value, self.learn.epoch
                write_model_file(
                    self.learn.model, self.best_path, {**meta, self.monitor: repr(value)}
                )


class CSVLogger(Callback):
    """Append each epoch's record to a CSV file (header from the first record).

    Its state is the header; a resumed fit (``append=False``) writes the file again from
    the restored history, so it ends as an uninterrupted fit's would.

    Example:
        >>> CSVLogger("history.csv").path.name
        'history.csv'
    """

    order = 70

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path, self.append = Path(path), append
        self._fields: list[str] | None = None

    def before_fit(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.append and self.path.exists():
            self.path.unlink()
        self._fields = None

    def after_epoch(self) -> None:
        rec = self.learn.history[-1]
        new = not self.path.exists()
        if self._fields is None:
            self._fields = list(rec)
        self._write([rec], header=new)

    def _write(self, rows: list[dict[str, Any]], header: bool) -> None:
        assert self._fields is not None
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if header:
                w.writeheader()
            w.writerows(rows)

    def state_dict(self) -> dict[str, Any]:
        return {} if self._fields is None else {"fields": list(self._fields)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._fields = list(state["fields"])
        if not self.append:  # before_fit emptied the file: the epochs before the resume
            self._write(self.learn.history, header=True)


class TensorBoardLogger(Callback):
    """Write epoch records (and the training loss every ``every`` steps) to TensorBoard.

    Needs the ``tensorboard`` package (``pip install 'recfit[tensorboard]'``).
    """

    order = 70

    def __init__(self, log_dir: str | Path, every: int = 50) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                "expected the tensorboard package for TensorBoardLogger "
                "(pip install 'recfit[tensorboard]'), received ImportError: "
                f"{e}"
            ) from e
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.every = every

    def after_batch(self) -> None:
        learn = self.learn
        if learn.training and learn.train_iter % self.every == 0 and learn.loss is not None:
            self.writer.add_scalar("train/loss_step", float(learn.loss), learn.train_iter)
            self.writer.add_scalar("train/lr", learn.lr, learn.train_iter)

    def after_epoch(self) -> None:
        for k, v in self.learn.history[-1].items():
            if isinstance(v, int | float) and k != "epoch":
                self.writer.add_scalar(f"epoch/{k}", v, self.learn.epoch)
        self.writer.flush()

    def after_fit(self) -> None:
        self.writer.flush()


class ScheduleRecorder(Callback):
    """Record the learning rate, momentum and batch loss of every training step.

    Example:
        >>> r = ScheduleRecorder()
        >>> r.lrs, r.moms, r.losses
        ([], [], [])
    """

    order = 10
    _LISTS = ("lrs", "moms", "losses")

    def __init__(self, record_loss: bool = True) -> None:
        self.record_loss = record_loss
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.losses: list[float] = []

    def before_fit(self) -> None:
        self.lrs, self.moms, self.losses = [], [], []

    def after_step(self) -> None:
        self.lrs.append(self.learn.lr)
        self.moms.append(self.learn.mom)
        if self.record_loss and self.learn.loss is not None:
            self.losses.append(float(self.learn.loss.detach()))

    def after_steps(
        self, lrs: Sequence[float], moms: Sequence[float], losses: Sequence[float]
    ) -> None:
        self.lrs.extend(lrs)
        self.moms.extend(moms)
        if self.record_loss:
            self.losses.extend(losses)

    def state_dict(self) -> dict[str, Any]:
        return {k: torch.tensor(getattr(self, k), dtype=torch.float64) for k in self._LISTS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self._LISTS:
            setattr(self, k, [float(v) for v in state[k].tolist()])

    def plot(self) -> Any:
        """Figure of the recorded learning rate and momentum per step."""
        from recfit.plots import plot_schedule  # matplotlib is heavy: only when plotting

        return plot_schedule(self.lrs, moms=self.moms or None)


class ProgressBar(Callback):
    """Progress bars (tqdm) over epochs and batches with the live training loss.

    Quiet when ``quiet=True``, or when ``quiet=None`` and stderr is not a terminal. The
    loss shown is read every ``every`` batches (reading it costs a device sync).
    """

    order = 90

    def __init__(self, quiet: bool | None = None, every: int = 50) -> None:
        self.quiet = quiet
        self.every = max(1, every)
        self._epochs: Any = None
        self._batches: Any = None
        self._t0 = 0.0
        self._done = 0  # epochs shown as done

    def _active(self) -> bool:
        if self.quiet is None:
            return bool(getattr(sys.stderr, "isatty", lambda: False)())
        return not self.quiet

    def before_fit(self) -> None:
        self._done = 0
        if not self._active():
            return
        self._epochs = tqdm(total=self.learn.n_epochs, desc="epochs", unit="ep", leave=True)
        self._t0 = time.perf_counter()

    def before_train(self) -> None:
        if self._epochs is None:
            return
        self._batches = tqdm(total=self.learn.n_iter, desc="train", leave=False, unit="b")

    def after_batch(self) -> None:
        if self._batches is None:
            return
        self._batches.update(1)
        if self.learn.iter % self.every == 0 and self.learn.loss is not None:
            self._batches.set_postfix(loss=f"{float(self.learn.loss):.4f}", refresh=False)

    def after_steps(
        self, lrs: Sequence[float], moms: Sequence[float], losses: Sequence[float]
    ) -> None:
        if self._batches is None:
            return
        self._batches.update(len(lrs))
        if losses:
            self._batches.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)

    def after_train(self) -> None:
        if self._batches is not None:
            self._batches.close()
            self._batches = None

    def after_epoch(self) -> None:
        self._done += 1
        if self._epochs is None:
            return
        rec = self.learn.history[-1]
        shown = {
            k: f"{v:.4f}"
            for k, v in rec.items()
            if k in ("train_loss", "valid_loss", "mse", "rmse") and isinstance(v, float)
        }
        self._epochs.set_postfix(shown, refresh=False)
        self._epochs.update(1)

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_done": self._done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        done = int(state["epochs_done"])
        if self._epochs is not None:  # a resumed fit: the bar continues where it stopped
            self._epochs.update(done - self._done)
        self._done = done

    def after_fit(self) -> None:
        if self._batches is not None:
            self._batches.close()
            self._batches = None
        if self._epochs is not None:
            self._epochs.close()
            self._epochs = None
