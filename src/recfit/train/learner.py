"""The Learner: trains a rating model and reports honest, weighted metrics.

Objective and regularisation
----------------------------
For a batch with weights ``w`` the objective is::

    loss = Σ w·ℓ(output, rating) / Σ w   +   reg · Σ w·penalty / Σ w
           └──────── data loss ────────┘     └──────── reg_loss ───────┘

``penalty`` is the model's per-row sum of squares of the parameter rows the batch looked
up (Surprise's ``reg_all`` semantics: ``|p_u|² + |q_i|² + b_u² + b_i²`` for dot models).
Separately, ``wd`` is **decoupled weight decay** over every parameter at every step
(``p ← p (1 - lr·wd)``, AdamW / fastai ``wd``); it is not part of any loss.

``evaluate(data)`` reports ``loss`` (the objective above over the whole set), ``reg_loss``
(its penalty part) and each metric computed by the metric functions of
:mod:`recfit.metrics.rating` on ``predict(data)`` in the original rating units; so
``evaluate(d)["mse"] == mse(predict(d), d.rating, d.weights())`` always holds. Rows of
weight 0 are removed before training and before any sum: they change nothing.

Speed
-----
Columns are tensors built once (:mod:`recfit.train.batches`). How a step runs is set by
the Learner's :class:`~recfit.train.execution.Execution` options, resolved in
:mod:`recfit.train.execution`: the dot models' fused step (a hand-written gradient on the
looked-up rows instead of autograd; both give the same numbers), the row-wise optimiser
of :mod:`recfit.train.sparse` for large DotBias-family models (a step updates only the
rows in the batch; weights are flushed before each validation) and, on CPU with the MSE
loss, that step as one compiled kernel (:mod:`recfit.train.kernels`), or a whole dense
AdamW epoch as one (:mod:`recfit.train.dense_epoch`). The default optimiser is AdamW with
fastai's defaults (betas 0.9/0.99, eps 1e-5, decoupled ``wd``, :mod:`recfit.train.optim`).

State
-----
:meth:`Learner.state_dict` is the training loop's own state (position, running loss sums,
learning rate and momentum, history, the batch-order RNG, a fingerprint of the training
data); the model, optimiser and callbacks keep theirs (:mod:`recfit.train.checkpoint`).

Example:
    >>> from recfit.data.synthetic import synthetic
    >>> from recfit.models import DotBias
    >>> d = synthetic(400, 20, 30, seed=0)
    >>> learn = Learner(DotBias(d.n_users, d.n_items, 8, y_range=(0, 5.5)), d, bs=32,
    ...                 progress=False)
    >>> learn = learn.fit_one_cycle(2, 1e-2)
    >>> sorted(learn.evaluate(d))
    ['loss', 'mae', 'mse', 'n_fallback', 'reg_loss', 'rmse']
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recfit.data.interactions import Interactions
from recfit.errors import (
    CancelFitException,
    ConfigError,
    DataError,
)
from recfit.metrics.levels import LEVEL_METRICS, get_metric, is_level_metric
from recfit.models.base import RatingModel
from recfit.models.classifier import LevelModel
from recfit.models.losses import Loss, get_loss
from recfit.train import evaluation, kernels, lr_finder
from recfit.train.batches import PARALLEL_SHUFFLE_MIN, TensorData, n_batches
from recfit.train.callbacks import EVENTS, Callback, ProgressBar
from recfit.train.distributed import evaluate as dist_evaluate
from recfit.train.execution import (
    OPTIMIZERS,
    Execution,
    OptSpec,
    Path,
    build_optimizer,
    resolve_device,
    thread_count,
    thread_split,
    threads,
)
from recfit.train.guard import DivergenceGuard
from recfit.train.loop import TrainingLoop
from recfit.train.schedules import Constant, OneCycle, Schedule, one_cycle_momentum

__all__ = ["OPTIMIZERS", "Execution", "Learner", "resolve_device"]

StateAt = Literal["batch", "epoch", "end"]


def _check_hyper(
    name: str, value: Any, *, low: float, strict: bool = False, optional: bool = False
) -> None:
    """A finite number ``>= low`` (``> low`` when ``strict``); ``None`` when ``optional``."""
    if value is None and optional:
        return
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if strict else value >= low)
    )
    if not ok:
        rel = ">" if strict else ">="
        raise ConfigError(f"expected {name} a finite number {rel} {low:g}, received {value!r}")


class Learner(TrainingLoop):
    """Trains ``model`` on ``train`` and evaluates it on ``valid``.

    Args:
        model: a :class:`~recfit.models.RatingModel`.
        train: training interactions (indices must fit the model's sizes).
        valid: validation interactions evaluated after each epoch, or ``None``.
        loss: ``"mse"``, ``"mae"``, ``"huber"``, ``"cross_entropy"`` or a
            :class:`~recfit.models.Loss`; ``None``: the model's ``default_loss``
            (``"mse"``, or ``"cross_entropy"`` for classifiers).
        metrics: metric names from :data:`recfit.metrics.METRICS` (on ``predict``'s
            ratings) or :data:`recfit.metrics.levels.LEVEL_METRICS` (on
            ``predict_proba``, for models with rating levels); ``None``: mse, rmse, mae,
            plus every level metric when the model has levels.
        opt: ``"adam"`` (AdamW, fastai defaults), ``"sgd"``, ``"momentum"`` (SGD with the
            scheduled momentum), ``"adagrad"``, or a callable ``params -> Optimizer``
            (then ``wd`` is left to that optimiser).
        bs: training batch size.
        wd: decoupled weight decay over all parameters (fastai's ``wd``).
        reg: weight of the L2 penalty on the rows in each batch (Surprise's ``reg``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        seed: seeds batch order, dropout and the LR finder; same seed → same numbers.
        callbacks: :class:`~recfit.train.callbacks.Callback` objects.
        eval_bs: batch size of ``predict`` / ``evaluate``.
        progress: add a :class:`~recfit.train.callbacks.ProgressBar` (``None``: only on a
            terminal).
        drop_last: drop the last incomplete training batch.
        execution: the execution switches (fused step, row-wise optimiser, compiled
            kernel, CPU threads), :class:`~recfit.train.execution.Execution`; default:
            every switch ``"auto"``.
    """

    def __init__(
        self,
        model: RatingModel,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        loss: str | Loss | None = None,
        metrics: Sequence[str] | None = None,
        opt: OptSpec = "adam",
        bs: int = 64,
        wd: float = 0.01,
        reg: float = 0.0,
        device: str | torch.device = "auto",
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        eval_bs: int = 65536,
        progress: bool | None = None,
        drop_last: bool = False,
        execution: Execution | None = None,
    ) -> None:
        if not isinstance(model, RatingModel):
            raise ConfigError(f"expected a RatingModel, received {type(model).__name__}")
        if isinstance(opt, str) and opt not in OPTIMIZERS:
            raise ConfigError(f"expected opt among {OPTIMIZERS} or a callable, received {opt!r}")
        for name, v in (("bs", bs), ("eval_bs", eval_bs)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"expected {name} an integer >= 1, received {v!r}")
        for name, f in (("wd", wd), ("reg", reg)):
            if not (isinstance(f, int | float) and f >= 0 and math.isfinite(f)):
                raise ConfigError(f"expected {name} >= 0, received {f!r}")
        if execution is not None and not isinstance(execution, Execution):
            raise ConfigError(
                f"expected execution an Execution, received {type(execution).__name__}"
            )
        self.execution = Execution() if execution is None else execution
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        if loss is None:
            loss = str(getattr(type(model), "default_loss", "mse"))
        self.loss_func = get_loss(loss).bind(model)
        if metrics is None:
            metrics = ("mse", "rmse", "mae")
            if isinstance(model, LevelModel):
                metrics = (*metrics, *LEVEL_METRICS)
        self.metrics = list(metrics)
        for m in self.metrics:
            if is_level_metric(m) and not isinstance(model, LevelModel):
                raise ConfigError(
                    f"expected metrics of predicted ratings for {type(model).__name__} (it has "
                    f"no rating levels), received the level metric {m!r}"
                )
        self.metric_fns = {m: get_metric(m) for m in self.metrics}
        self.opt_name = opt
        self.bs, self.eval_bs, self.wd, self.reg = bs, eval_bs, float(wd), float(reg)
        self.seed, self.drop_last = seed, drop_last
        self.fused = self.execution.resolve_fused(self.model, self.loss_func)
        self.path: Path | None = None  # resolved when the optimiser is built (first fit)
        # load numba now, not mid-fit: loading it changes the last bits of some PyTorch
        # results, and a fit must give the same numbers every time
        kernels.available()
        self.train, self.valid = train, valid
        self.check_data(train, "train")
        if valid is not None:
            self.check_data(valid, "valid")
        if hasattr(model, "train_user_count") and not model.has_record:
            # which users and items get trained (the others are answered by the baseline)
            model.record_training(train.user, train.item, train.rating, train.weights())
        stamps = bool(getattr(model, "trains_on_timestamp", False))  # timeSVD++ reads them
        self._train_td = TensorData.from_interactions(train, self.device, timestamp=stamps)
        if len(self._train_td) == 0:
            raise DataError("expected training rows with weight > 0, received none")
        self._valid_td: TensorData | None = None
        self.cbs: list[Callback] = list(callbacks)
        if progress is not False and not any(isinstance(c, ProgressBar) for c in self.cbs):
            self.cbs.append(ProgressBar(quiet=None if progress is None else not progress))
        self.opt: Any = None
        self._gen = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, Any]] = []
        # state visible to callbacks
        self.training = False
        self.epoch = self.n_epochs = self.iter = self.n_iter = self.train_iter = 0
        self.batch: dict[str, Tensor] = {}
        self.pred: Tensor | None = None
        self.loss: Tensor | None = None
        self.lr, self.mom = 0.0, 0.9
        self.valid_metrics: dict[str, float] = {}
        self.fit_seconds = 0.0
        # seconds spent compiling (or loading) the kernels before the fits' timers started,
        # over every fit of this learner; never part of ``fit_seconds``
        self.compile_seconds = 0.0
        # resume and distributed training (recfit.train.checkpoint / .distributed)
        self.dist: Any = None  # a DistContext when this is one rank of a process group
        self.ddp: Any = None  # DistributedDataParallel wrapper of the autograd forward
        self.bf16 = False  # bfloat16 autocast around the autograd forward (CUDA)
        self.stop_requested = False  # set on Ctrl-C; the checkpoint callback stops the fit
        self.epoch_gen_state: Tensor | None = None  # batch-order RNG at the epoch's start
        self.resume_state: Any = None  # a checkpoint.ResumeState applied by the next fit
        self.guard = DivergenceGuard()
        self._skip = 0  # batches of the current epoch already done (resume)
        self._first_epoch = 0  # the epoch the next fit starts at (resume)
        self._acc: list[Tensor] = []  # this epoch's running sums Σw, Σw·loss, Σw·reg_loss
        self._acc_init: tuple[float, float, float] | None = None
        self._fingerprint: dict[str, Any] | None = None

    # ------------------------------------------------------------------ set-up
    def check_data(self, data: Interactions, where: str) -> None:
        """A :class:`~recfit.errors.DataError` when ``data`` has indices the model lacks."""
        for side, size in (("user", "n_users"), ("item", "n_items")):
            limit = getattr(self.model, size, None)
            idx = getattr(data, side)
            if limit is not None and len(idx) and int(idx.max()) >= limit:
                raise DataError(
                    f"expected {side} indices < {limit} (the model's {size}), received "
                    f"{int(idx.max())} in {where} data; build the model from the full vocabulary",
                    column=side,
                )

    def tensor_data(self, data: Interactions) -> TensorData:
        """``data`` as device tensors (the validation set's are built once)."""
        if data is self.valid:
            if self._valid_td is None:
                self._valid_td = TensorData.from_interactions(data, self.device, False)
            return self._valid_td
        self.check_data(data, "given")
        return TensorData.from_interactions(data, self.device, drop_zero_weight=False)

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one training epoch."""
        return n_batches(len(self._train_td), self.bs, self.drop_last)

    def threads(self) -> AbstractContextManager[None]:
        """A context with the CPU threads this Learner trains and predicts with
        (:func:`recfit.train.execution.thread_count`, asked again at each call, shared as
        :func:`~recfit.train.execution.thread_split` says); the previous counts are restored."""
        n = thread_count(self.execution, self.model, self.bs, self.device)
        return threads(thread_split(n, self.compiled))

    def create_opt(self) -> Any:
        """Resolve the execution path and build the optimiser (done at the first fit;
        kept across fits like fastai)."""
        self.path = self.execution.resolve(
            self.model, self.loss_func, self.opt_name, device=self.device,
            distributed=self.dist is not None, bf16=self.bf16,
        )  # fmt: skip
        return build_optimizer(self.opt_name, self.model, self.wd, self.path.row_wise)

    # ------------------------------------------------------------------ events
    def add_cb(self, cb: Callback) -> Learner:
        """Add a callback."""
        self.cbs.append(cb)
        return self

    def remove_cb(self, cb: Callback) -> Learner:
        """Remove a callback."""
        self.cbs.remove(cb)
        return self

    def _prepare_events(self, cbs: Sequence[Callback]) -> None:
        ordered = sorted(cbs, key=lambda c: c.order)
        for c in ordered:
            c.learn = self
        self._handlers: dict[str, list[Callable[[], None]]] = {
            ev: [
                getattr(c, ev)
                for c in ordered
                if getattr(type(c), ev, None) is not getattr(Callback, ev)
            ]
            for ev in EVENTS
        }

    def _event(self, name: str) -> None:
        for h in self._handlers[name]:
            h()

    # ------------------------------------------------------------------ training
    def fit(
        self,
        epochs: int,
        lr: float = 1e-3,
        *,
        wd: float | None = None,
        schedule: Schedule | None = None,
        mom: float | Schedule | None = None,
    ) -> Learner:
        """Train for ``epochs`` at a constant ``lr`` (or along ``schedule``).

        Args:
            epochs: passes over the training data.
            lr: constant learning rate (ignored when ``schedule`` is given).
            wd: decoupled weight decay for this fit (default: the Learner's ``wd``).
            schedule: an LR schedule; its ``lr_at`` gets the step counted from this fit's start.
            mom: momentum / Adam beta1 (a value or a schedule); default 0.9.
        """
        if schedule is None:
            _check_hyper("lr", lr, low=0.0)
        _check_hyper("wd", wd, low=0.0, optional=True)
        if not isinstance(mom, Schedule):
            _check_hyper("mom", mom, low=0.0, optional=True)
        sched = schedule if schedule is not None else Constant(lr)
        mom_s = mom if isinstance(mom, Schedule) else Constant(0.9 if mom is None else mom)
        return self.fit_schedule(epochs, sched, mom_s, wd)

    def fit_one_cycle(
        self,
        epochs: int,
        lr_max: float = 1e-3,
        wd: float | None = None,
        pct_start: float = 0.25,
        div: float = 25.0,
        div_final: float = 1e5,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
    ) -> Learner:
        """fastai's one-cycle policy: cosine LR warm-up then annealing, momentum the reverse.

        Example:
            >>> # learn.fit_one_cycle(5, 5e-3, wd=0.1)  # fastai's collab R1 configuration
        """
        _check_hyper("lr_max", lr_max, low=0.0, strict=True)
        _check_hyper("wd", wd, low=0.0, optional=True)
        _check_hyper("pct_start", pct_start, low=0.0, strict=True)
        _check_hyper("div", div, low=0.0, strict=True)
        _check_hyper("div_final", div_final, low=0.0, strict=True)
        for i, m in enumerate(moms):
            _check_hyper(f"moms[{i}]", m, low=0.0)
        total = max(1, epochs * self.steps_per_epoch)
        sched = OneCycle(lr_max, total, pct_start=pct_start, div=div, div_final=div_final)
        mom_s = one_cycle_momentum(total, pct_start, moms)
        return self.fit_schedule(epochs, sched, mom_s, wd)

    def fit_schedule(
        self,
        epochs: int,
        schedule: Schedule,
        mom: Schedule | None = None,
        wd: float | None = None,
        *,
        cbs: Sequence[Callback] = (),
        validate: bool = True,
    ) -> Learner:
        """The training loop that :meth:`fit` and :meth:`fit_one_cycle` run.

        Args:
            epochs: passes over the training data.
            schedule: the LR schedule; its ``lr_at`` gets the step counted from this fit's
                start.
            mom: the momentum (Adam's beta1) schedule; ``None`` leaves the
                optimiser's momentum as it is.
            wd: decoupled weight decay for this fit (default: the Learner's ``wd``).
            cbs: callbacks for this fit only, besides the Learner's own.
            validate: whether each epoch ends with a validation (when there is a
                validation set).
        """
        if not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(f"expected epochs an integer >= 0, received {epochs!r}")
        if self.opt is None:
            self.opt = self.create_opt()
        self._prepare_events([*self.cbs, *cbs])
        self.n_epochs, self.n_iter, self.train_iter = epochs, self.steps_per_epoch, 0
        wd = self.wd if wd is None else wd
        self._wd = wd
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        td = self._train_td  # compile before the timer: compiling is not training
        shuffle = self.device.type == "cpu" and len(td) >= PARALLEL_SHUFFLE_MIN
        if self.compiled or shuffle:
            warm = self._warm_kernels if self.compiled else None
            self.compile_seconds += kernels.ensure_compiled(warm, td.columns, shuffle)
        if self.fused and not self.sparse:
            self.compile_seconds += self.compile_dense()
        t_fit = time.perf_counter()
        with self.threads(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self._gen)))
            cancelled = False
            try:
                self._event("before_fit")
                self._first_epoch = 0
                if self.resume_state is not None:  # puts back every component's state
                    self.resume_state, resume = None, self.resume_state
                    resume.apply(self)
                for epoch in range(self._first_epoch, epochs):
                    self.epoch = epoch
                    self._do_epoch(schedule, mom, wd, validate)
            except CancelFitException:  # mid-epoch too: the epoch's checks still apply
                cancelled = True
            finally:
                self.training = False
                self._flush()
                self.model.eval()
            if cancelled:  # the losses so far are each rank's own: checked alone
                if self.dist is None:
                    self.guard.check_losses(self.iter, self.epoch, self.lr)
                self.guard.discard()
                self.check_finite()  # identical on every rank
            self.fit_seconds = time.perf_counter() - t_fit
            self._event("after_fit")
        return self

    # ------------------------------------------------------------------ state
    def fingerprint(self) -> dict[str, Any]:
        """Rows and CRC-32 of the training columns, and the model's class (a resume
        refuses other training data)."""
        if self._fingerprint is None:
            cols = self._train_td.columns
            crc = 0
            for k in ("user", "item", "rating", "weight"):
                crc = zlib.crc32(cols[k].cpu().numpy().tobytes(), crc)
            model = type(self.model).__name__
            self._fingerprint = {"rows": len(self._train_td), "crc32": crc, "model": model}
        return dict(self._fingerprint)

    def state_dict(self, at: StateAt = "epoch") -> dict[str, Any]:
        """The training loop's own state (the model, optimiser and callbacks keep theirs).

        Args:
            at: ``"batch"``: after batch ``iter`` of the current epoch (inside a fit);
                ``"epoch"``: after the current epoch; ``"end"``: the fit is complete.

        Returns:
            ``position`` (``epoch`` to continue from, ``batches_done`` in it,
            ``train_iter``, ``n_epochs``, ``steps_per_epoch``, ``complete``, ``world``),
            ``acc`` (the epoch's running sums Σw, Σw·loss, Σw·reg_loss), ``lr``, ``mom``,
            ``history``, ``batch_order`` (the batch-order RNG state the epoch's
            permutation is drawn from) and ``data`` (:meth:`fingerprint`).
        """
        if at == "batch":
            epoch, done = self.epoch, self.iter + 1
            gen = self.epoch_gen_state
            assert gen is not None, "state_dict('batch') inside a fit"
            acc_t = torch.stack([a.detach() for a in self._acc])
            if self.dist is not None:
                acc_t = self.dist.all_reduce_(acc_t.clone())
            acc = [float(a) for a in acc_t]
        else:
            epoch, done = self.epoch + 1, 0
            gen, acc = self._gen.get_state(), [0.0, 0.0, 0.0]
        if at == "end":
            epoch = self.n_epochs
        return {
            "position": {
                "epoch": epoch,
                "batches_done": done,
                "train_iter": self.train_iter,
                "n_epochs": self.n_epochs,
                "steps_per_epoch": self.n_iter,
                "complete": at == "end",
                "world": 1 if self.dist is None else self.dist.world,
            },
            "acc": acc,
            "lr": self.lr,
            "mom": self.mom,
            "history": copy.deepcopy(self.history),
            "batch_order": gen.clone(),
            "data": self.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`state_dict` returned; the next epoch of the running fit
        is ``state["position"]["epoch"]`` (its first ``batches_done`` batches skipped).

        Raises:
            ConfigError: the state is of a fit of other length or of other training data.
        """
        pos = state["position"]
        if (pos["n_epochs"], pos["steps_per_epoch"]) != (self.n_epochs, self.n_iter):
            raise ConfigError(
                f"expected a fit of {pos['n_epochs']} epochs of {pos['steps_per_epoch']} steps "
                f"to resume, received {self.n_epochs} epochs of {self.n_iter} steps "
                "(different config or data)"
            )
        fp = state.get("data")
        if fp is not None and fp != self.fingerprint():
            raise ConfigError(
                f"expected the training data of the saved state ({fp['rows']} rows, crc32 "
                f"{fp['crc32']}), received {self.fingerprint()}"
            )
        self._gen.set_state(state["batch_order"])
        self.train_iter = int(pos["train_iter"])
        self.history[:] = [dict(r) for r in state["history"]]
        self.lr, self.mom = float(state["lr"]), float(state["mom"])
        self._first_epoch, self._skip = int(pos["epoch"]), int(pos["batches_done"])
        main = self.dist is None or self.dist.is_main
        acc = state["acc"] if main else [0.0, 0.0, 0.0]  # the sums count once
        self._acc_init = (float(acc[0]), float(acc[1]), float(acc[2]))

    # ------------------------------------------------------------------ inference
    def predict(self, data: Interactions) -> np.ndarray:
        """Predicted ratings for every row of ``data`` (weight-0 rows included), float32,
        in the original rating units. A row whose user or item had no training row of
        positive weight gets the model's baseline (:meth:`fallback` says which)."""
        return evaluation.predict(self, data)

    def fallback(self, data: Interactions) -> np.ndarray:
        """``bool`` per row of ``data``: the prediction is the baseline (global mean plus
        the known side's bias) because the user or the item was never trained."""
        return evaluation.fallback(self, data)

    def predict_proba(self, data: Interactions) -> np.ndarray:
        """The predicted distribution over the rating levels for every row of ``data``,
        shape ``(n, K)`` float64 (models with levels only, e.g. a classifier; level ``k``
        is rating ``model.levels[k]``)."""
        return evaluation.predict_proba(self, data)

    def evaluate(self, data: Interactions | None = None) -> dict[str, float]:
        """``loss``, ``reg_loss`` and every metric on ``data`` (default: the validation set).

        Metrics are the functions of :mod:`recfit.metrics.rating` applied to
        ``predict(data)``, ``data.rating`` and ``data.weights()`` (``n_fallback``: how
        many rows of positive weight ``predict`` answered by the baseline; ``loss`` is
        the objective on the model's own output); level metrics
        (:data:`~recfit.metrics.levels.LEVEL_METRICS`) are applied to
        ``predict_proba(data)``, ``model.levels``, ``data.rating`` and ``data.weight``.
        """
        if data is None:
            if self.valid is None:
                raise ConfigError("expected data to evaluate or a validation set, received None")
            data = self.valid
        if self.dist is not None:  # each rank evaluates its part; exact sums
            return dist_evaluate(self, data)
        return evaluation.evaluate(self, data)

    # ------------------------------------------------------------------ reports
    def history_frame(self) -> pd.DataFrame:
        """``history`` as a DataFrame, one row per epoch."""
        return pd.DataFrame(self.history)

    lr_find = lr_finder.lr_find
    """LR range test (fastai's ``lr_find``): :func:`recfit.train.lr_finder.lr_find` itself."""

    @contextmanager
    def trial(self) -> Iterator[Learner]:
        """A context whose training is undone on exit: the model's weights, the
        optimiser's state, the batch-order RNG and the history are put back as they were
        (:meth:`lr_find` runs its range test in one).

        Example:
            >>> # with learn.trial(): learn.fit(1, 1e-2); learn.evaluate()  # then as before
        """
        model = copy.deepcopy(self.model.state_dict())
        opt = None if self.opt is None else copy.deepcopy(self.opt.state_dict())
        gen, n_history = self._gen.get_state(), len(self.history)
        try:
            yield self
        finally:
            self.model.load_state_dict(model)
            if opt is None:
                self.opt = None
            else:
                assert self.opt is not None
                self.opt.load_state_dict(opt)
            for p in self.model.parameters():
                p.grad = None
            self._gen.set_state(gen)
            del self.history[n_history:]
