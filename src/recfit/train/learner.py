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
Columns are tensors built once (:mod:`recfit.train.batches`). Models that provide a fused
step (``supports_fused``: :class:`~recfit.models.DotBias`, :class:`~recfit.models.BiasedMF`)
are trained with a hand-written gradient on the looked-up rows instead of autograd, when
the loss has a known derivative; both paths give the same numbers. The default optimiser
is AdamW with fastai's Adam defaults (betas 0.9/0.99, eps 1e-5, decoupled ``wd``) using
PyTorch's fused kernel (:mod:`recfit.train.optim`). On CPU small models run on one thread (faster for tiny steps).
DotBias-family models of at least :data:`~recfit.train.sparse.SPARSE_MIN_PARAMS`
parameters use a row-wise optimiser of :mod:`recfit.train.sparse` instead (``sparse``;
``opt="adam"``: row-wise AdamW, ``opt="adagrad"``: row-wise Adagrad): a step updates
only the rows in the batch (lazy state, exact decoupled ``wd``), so its cost does not
grow with the tables; weights are flushed before each validation. On CPU with the MSE
loss that step is one compiled kernel (``compiled``, :mod:`recfit.train.kernels`).

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> from recfit.models import DotBias
    >>> rng = np.random.default_rng(0)
    >>> d = Interactions.from_arrays(rng.integers(0, 20, 400), rng.integers(0, 30, 400),
    ...                              rng.integers(1, 6, 400).astype(float))
    >>> learn = Learner(DotBias(d.n_users, d.n_items, 8, y_range=(0, 5.5)), d, bs=32,
    ...                 progress=False)
    >>> learn = learn.fit_one_cycle(2, 1e-2)
    >>> sorted(learn.evaluate(d))
    ['loss', 'mae', 'mse', 'n_fallback', 'reg_loss', 'rmse']
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recfit.data.interactions import Interactions
from recfit.errors import (
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    ConfigError,
    DataError,
    TrainingDivergedError,
)
from recfit.metrics.levels import LEVEL_METRICS, get_metric, is_level_metric
from recfit.models.base import RatingModel
from recfit.models.classifier import LevelModel
from recfit.models.losses import Loss, MSELoss, get_loss
from recfit.train import kernels
from recfit.train.batches import PARALLEL_SHUFFLE_MIN, TensorData, n_batches
from recfit.train.callbacks import EVENTS, Callback, ProgressBar
from recfit.train.distributed import evaluate as dist_evaluate
from recfit.train.lr_finder import lr_find
from recfit.train.optim import AdamW
from recfit.train.schedules import Constant, OneCycle, Schedule, one_cycle_momentum
from recfit.train.sparse import (
    SPARSE_MIN_PARAMS,
    RowAdagrad,
    RowAdamW,
    RowOptimizer,
    supports_rows,
)

__all__ = ["OPTIMIZERS", "Learner", "resolve_device"]

OPTIMIZERS = ("adam", "sgd", "momentum", "adagrad")
"""Optimiser names understood by the Learner."""

ADAM_BETA2 = 0.99
ADAM_EPS = 1e-5
SMALL_BATCH = 512
"""Batches from this size up use every CPU thread even for a small model."""
SMALL_MODEL = 2_000_000  # parameters; below this (and SMALL_BATCH), CPU training uses one thread


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; other values as ``torch.device``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(
            f"expected a device like 'auto', 'cpu', 'cuda', received {device!r}"
        ) from e


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


class Learner:
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
        fused: ``"auto"`` uses the model's fused step when it has one; ``False`` forces
            autograd; ``True`` requires the fused step.
        num_threads: CPU threads while training/predicting; ``None`` picks 1 for a small
            model with small batches (under ``SMALL_MODEL`` parameters and ``SMALL_BATCH``
            rows) and leaves PyTorch's setting otherwise.
        progress: add a :class:`~recfit.train.callbacks.ProgressBar` (``None``: only on a
            terminal).
        drop_last: drop the last incomplete training batch.
        sparse: row-wise optimiser (:class:`~recfit.train.sparse.RowAdamW`: only the rows
            in the batch are updated, lazy moments, exact decoupled ``wd``). ``"auto"``
            uses it with ``opt="adam"`` on the fused path of a DotBias-family model of at
            least :data:`~recfit.train.sparse.SPARSE_MIN_PARAMS` parameters in a single
            process (so fastai's R1 configuration on ml-100k keeps dense AdamW, exactly
            fastai's semantics); ``True`` requires it; ``False`` keeps dense AdamW.
        compiled: run the row-wise step as one compiled CPU kernel
            (:mod:`recfit.train.kernels`: forward, MSE loss, gradient and update without
            intermediate tensors). ``"auto"`` does so whenever the row-wise optimiser runs
            on CPU with the MSE loss; ``True`` requires it; ``False`` keeps the PyTorch
            operations (same semantics, used on CUDA).
    """

    def __init__(
        self,
        model: RatingModel,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        loss: str | Loss | None = None,
        metrics: Sequence[str] | None = None,
        opt: str | Callable[..., torch.optim.Optimizer] = "adam",
        bs: int = 64,
        wd: float = 0.01,
        reg: float = 0.0,
        device: str | torch.device = "auto",
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        eval_bs: int = 65536,
        fused: bool | str = "auto",
        num_threads: int | None = None,
        progress: bool | None = None,
        drop_last: bool = False,
        sparse: bool | str = "auto",
        compiled: bool | str = "auto",
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
        if sparse not in ("auto", True, False):
            raise ConfigError(f"expected sparse 'auto', True or False, received {sparse!r}")
        if fused not in ("auto", True, False):
            raise ConfigError(f"expected fused 'auto', True or False, received {fused!r}")
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
        self._metric_fns = {m: get_metric(m) for m in self.metrics}
        self.opt_name = opt
        self.bs, self.eval_bs, self.wd, self.reg = bs, eval_bs, float(wd), float(reg)
        self.seed, self.num_threads, self.drop_last = seed, num_threads, drop_last
        self.fused = self._resolve_fused(fused)
        self.sparse_mode: bool | str = sparse
        self.sparse = False  # resolved when the optimiser is created (first fit)
        if compiled not in ("auto", True, False):
            raise ConfigError(f"expected compiled 'auto', True or False, received {compiled!r}")
        self.compiled: bool | str = compiled
        # load numba now, not in the middle of the first fit: loading it changes the last
        # bits of some PyTorch results, and a fit must give the same numbers every time
        kernels.available()
        self._compiled = False  # resolved with ``sparse``
        self.train, self.valid = train, valid
        self._check_data(train, "train")
        if valid is not None:
            self._check_data(valid, "valid")
        if hasattr(model, "train_user_count") and not model.has_record:
            # which users and items get trained (the others are answered by the baseline)
            model.record_training(train.user, train.item, train.rating, train.weights())
        self._train_td = TensorData.from_interactions(train, self.device)
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
        self._skip: int = 0  # batches of the current epoch already done (resume)
        self._acc_init: tuple[float, float, float] | None = None
        self._loss_buf: Tensor | None = None  # this epoch's step losses (checked at its end)
        self._epoch_first = (0, 0)  # (first batch, its step) of the current epoch

    # ------------------------------------------------------------------ set-up
    def _resolve_fused(self, fused: bool | str) -> bool:
        can = type(self.model).supports_fused and type(self.loss_func).grad is not Loss.grad
        if fused is True and not can:
            raise ConfigError(
                f"expected a model with a fused step and a loss with a gradient for fused=True, "
                f"received {type(self.model).__name__} with {self.loss_func!r}"
            )
        return bool(can) if fused == "auto" else bool(fused)

    def _check_data(self, data: Interactions, where: str) -> None:
        for side, size in (("user", "n_users"), ("item", "n_items")):
            limit = getattr(self.model, size, None)
            idx = getattr(data, side)
            if limit is not None and len(idx) and int(idx.max()) >= limit:
                raise DataError(
                    f"expected {side} indices < {limit} (the model's {size}), received "
                    f"{int(idx.max())} in {where} data; build the model from the full vocabulary",
                    column=side,
                )

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one training epoch."""
        return n_batches(len(self._train_td), self.bs, self.drop_last)

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        n = self.num_threads
        small = self.model.n_parameters() < SMALL_MODEL and self.bs < SMALL_BATCH
        if n is None and self.device.type == "cpu" and small:
            n = 1  # tiny steps: thread hand-offs cost more than they save
        if n is None:
            yield
            return
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def create_opt(self) -> Any:
        """Build the optimiser (done at the first fit; kept across fits like fastai)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        name = self.opt_name
        if callable(name):
            return name(params)
        if name in ("adam", "adagrad") and self._use_sparse():
            self.sparse = True
            opt: RowOptimizer
            if name == "adam":
                opt = RowAdamW(
                    self.model,  # type: ignore[arg-type]
                    lr=1e-3, betas=(0.9, ADAM_BETA2), eps=ADAM_EPS, weight_decay=self.wd,
                )  # fmt: skip
            else:
                opt = RowAdagrad(self.model, lr=1e-2, weight_decay=self.wd)  # type: ignore[arg-type]
            self._compiled = (
                self.compiled is not False
                and opt.compiled()
                and type(self.loss_func) is MSELoss
                and not self.bf16
            )
            if self.compiled is True and not self._compiled:
                raise ConfigError(
                    "expected a CPU model, numba and the MSE loss for compiled=True, received "
                    f"device {self.device}, loss {self.loss_func!r}"
                )
            return opt
        if name == "adam":
            return AdamW(
                params, lr=1e-3, betas=(0.9, ADAM_BETA2), eps=ADAM_EPS, weight_decay=self.wd
            )
        if name == "sgd":
            return torch.optim.SGD(params, lr=1e-3)
        if name == "momentum":
            return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        return torch.optim.Adagrad(params, lr=1e-2)

    def _use_sparse(self) -> bool:
        can = self.fused and supports_rows(self.model) and self.dist is None
        if self.sparse_mode is True and not can:
            raise ConfigError(
                f"expected a DotBias-family model on the fused path in one process for "
                f"sparse=True, received {type(self.model).__name__} (fused={self.fused})"
            )
        if self.sparse_mode == "auto":
            return bool(can) and self.model.n_parameters() >= SPARSE_MIN_PARAMS
        return bool(self.sparse_mode) and bool(can)

    def _flush(self) -> None:
        """Apply the row-wise optimiser's owed weight decay (exact weights)."""
        if self.sparse and self.opt is not None:
            self.opt.flush()

    def _set_hyper(self, lr: float, mom: float | None, wd: float) -> None:
        self.lr = lr
        assert self.opt is not None
        for g in self.opt.param_groups:
            g["lr"] = lr
            if self.opt_name == "adam" or self.sparse:
                g["weight_decay"] = wd
                if mom is not None:
                    g["betas"] = (mom, ADAM_BETA2)
            elif self.opt_name == "momentum" and mom is not None:
                g["momentum"] = mom
        if mom is not None:
            self.mom = mom

    def _opt_step(self, wd: float) -> None:
        assert self.opt is not None
        if wd and isinstance(self.opt_name, str) and self.opt_name != "adam":
            with torch.no_grad():
                for g in self.opt.param_groups:
                    for p in g["params"]:
                        p.mul_(1.0 - self.lr * wd)
        self.opt.step()

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
        return self._fit(epochs, sched, mom_s, self.wd if wd is None else wd)

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
        return self._fit(epochs, sched, mom_s, self.wd if wd is None else wd)

    def _fit(
        self,
        epochs: int,
        sched: Schedule,
        mom_sched: Schedule | None,
        wd: float,
        extra_cbs: Sequence[Callback] = (),
        validate: bool = True,
    ) -> Learner:
        if not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(f"expected epochs an integer >= 0, received {epochs!r}")
        if self.opt is None:
            self.opt = self.create_opt()
        self._prepare_events([*self.cbs, *extra_cbs])
        self.n_epochs, self.n_iter, self.train_iter = epochs, self.steps_per_epoch, 0
        self._wd = wd
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        td = self._train_td  # compile before the timer: compiling is not training
        shuffle = self.device.type == "cpu" and len(td) >= PARALLEL_SHUFFLE_MIN
        if self._compiled or shuffle:
            warm = (lambda: self.opt.warm_up(td.columns)) if self._compiled else None
            self.compile_seconds += kernels.ensure_compiled(warm, td.columns, shuffle)
        t_fit = time.perf_counter()
        with self._threads(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self._gen)))
            cancelled = False
            try:
                self._event("before_fit")
                first = 0
                if self.resume_state is not None:
                    first, self.resume_state = self.resume_state.apply(self), None
                for epoch in range(first, epochs):
                    self.epoch = epoch
                    self._do_epoch(sched, mom_sched, wd, validate)
            except CancelFitException:  # mid-epoch too: the epoch's checks still apply
                cancelled = True
            finally:
                self.training = False
                self._flush()
                self.model.eval()
            if cancelled:  # the losses so far are each rank's own: checked alone
                if self.dist is None:
                    self._check_losses()
                self._check_weights()  # identical on every rank
                self._loss_buf = None
            self.fit_seconds = time.perf_counter() - t_fit
            self._event("after_fit")
        return self

    def _do_epoch(
        self, sched: Schedule, mom_sched: Schedule | None, wd: float, validate: bool
    ) -> None:
        t0 = time.perf_counter()
        acc = [torch.zeros((), dtype=torch.float64, device=self.device) for _ in range(3)]
        if self._acc_init is not None:  # resumed mid-epoch: the sums so far
            for a, v in zip(acc, self._acc_init, strict=True):
                a.fill_(v)
        skip, self._skip, self._acc_init = self._skip, 0, None
        self.valid_metrics = {}
        try:
            self._event("before_epoch")
            self.training = True
            self.model.train()
            self._event("before_train")
            self._acc = acc
            self._epoch_first = (skip, self.train_iter)
            self._loss_buf = (
                None
                if self._check_now
                else torch.zeros(max(1, self.n_iter - skip), device=self.device)
            )
            self.epoch_gen_state = self._gen.get_state()
            shard = None if self.dist is None else self.dist.shard
            batches = self._train_td.epoch(
                self.bs, self._gen, self.drop_last, skip=skip, shard=shard
            )
            for it, batch in enumerate(batches, start=skip):
                self.iter = it
                self._set_hyper(
                    sched.lr_at(self.train_iter),
                    None if mom_sched is None else mom_sched.lr_at(self.train_iter),
                    wd,
                )
                self.batch = batch
                try:
                    self._event("before_batch")
                    self._do_batch(batch)
                except CancelBatchException:
                    pass
                self.train_iter += 1
                self._event("after_batch")
            self._flush()
            self.training = False
            self._event("after_train")
            if validate and self.valid is not None:
                self._event("before_validate")
                self.valid_metrics = self.evaluate(self.valid)
                self._event("after_validate")
        except CancelEpochException:
            pass
        finally:
            self.training = False
        if self.dist is not None:  # exact sums over the ranks
            acc = list(self.dist.all_reduce_(torch.stack(acc)).unbind())
        w_sum, l_sum, r_sum = (float(a) for a in acc)
        self._check_epoch(l_sum)
        rec: dict[str, Any] = {
            "epoch": self.epoch,
            "train_loss": l_sum / w_sum if w_sum > 0 else math.nan,
            "reg_loss": r_sum / w_sum if w_sum > 0 else math.nan,
            "valid_loss": self.valid_metrics.get("loss", math.nan),
            "valid_reg_loss": self.valid_metrics.get("reg_loss", math.nan),
        }
        for m in self.metrics:
            rec[m] = self.valid_metrics.get(m, math.nan)
        rec["lr"] = self.lr
        rec["time"] = time.perf_counter() - t0
        if validate:
            self.history.append(rec)
        self._event("after_epoch")

    def _do_batch(self, batch: dict[str, Tensor]) -> None:
        w = batch["weight"]
        w_sum = w.sum()
        w_tot = w_sum if self.dist is None else self.dist.global_weight(self, w_sum)
        scale = w / w_tot
        use_pen = self.reg > 0
        if self._compiled:  # one compiled kernel: forward, loss, gradient, update
            self._compiled_batch(batch, w_sum, w_tot)
            return
        if self.fused:
            out, pen, saved = self.model.fused_forward(batch, use_pen)
        else:
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                out = (self.model if self.ddp is None else self.ddp)(batch)
                pen = self.model.penalty(batch) if use_pen else None
            if self.bf16:
                out, pen = out.float(), None if pen is None else pen.float()
        self.pred = out
        self._event("after_pred")
        data_loss = (self.loss_func(out, batch) * scale).sum()
        reg_loss = None if pen is None else self.reg * (pen * scale).sum()
        self.loss = data_loss if reg_loss is None else data_loss + reg_loss
        self._event("after_loss")
        self._event("before_backward")
        assert self.opt is not None
        if self.sparse:  # row-wise step: gradient and update of the looked-up rows only
            g = self.loss_func.grad(out, batch)
            assert g is not None
            self.opt.fused_step(batch, saved, g * scale, None if pen is None else self.reg * scale)
            self._event("after_backward")
            self._event("after_step")
            self._accumulate(w_sum, w_tot, reg_loss)
            return
        if self.fused:
            g = self.loss_func.grad(out, batch)
            assert g is not None
            self.model.fused_backward(
                batch, saved, g * scale, None if pen is None else self.reg * scale
            )
        else:
            self.opt.zero_grad(set_to_none=True)
            self.loss.backward()  # type: ignore[no-untyped-call]
        if self.fused and self.dist is not None:
            self.dist.sync_grads(list(self.model.parameters()))
        self._event("after_backward")
        self._opt_step(self._wd)
        self._event("after_step")
        self._accumulate(w_sum, w_tot, reg_loss)

    def _compiled_batch(self, batch: dict[str, Tensor], w_sum: Tensor, w_tot: Tensor) -> None:
        """The row-wise step in :mod:`recfit.train.kernels` (same events, same sums)."""
        assert isinstance(self.opt, RowOptimizer)
        threads = self.num_threads or torch.get_num_threads()  # PyTorch's setting rules
        out, loss, pen = self.opt.compiled_step(batch, float(w_tot), self.reg, threads)
        self.pred = out
        self._event("after_pred")
        reg_loss = torch.tensor(pen, dtype=torch.float32) if self.reg > 0 else None
        self.loss = torch.tensor(loss + pen, dtype=torch.float32)
        self._event("after_loss")
        self._event("before_backward")
        self._event("after_backward")
        self._event("after_step")
        self._accumulate(w_sum, w_tot, reg_loss)

    def _accumulate(self, w_sum: Tensor, w_tot: Tensor, reg_loss: Tensor | None) -> None:
        assert self.loss is not None
        if self._check_now:  # one CPU scalar read per step: stop at the step that diverged
            if not math.isfinite(float(self.loss.detach())):
                raise self._diverged("loss", self.train_iter)
        elif self._loss_buf is not None:  # no device sync: checked at the epoch's end
            self._loss_buf[self.iter - self._epoch_first[0]] = self.loss.detach()
        acc = self._acc
        acc[0].add_(w_sum)
        acc[1].add_(self.loss.detach() * w_tot)
        if reg_loss is not None:
            acc[2].add_(reg_loss.detach() * w_tot)

    # ------------------------------------------------------------------ divergence
    @property
    def _check_now(self) -> bool:
        """Check each step's loss as it comes (CPU, one process); else at the epoch's end."""
        return self.device.type == "cpu" and self.dist is None

    def _diverged(self, what: str, step: int) -> TrainingDivergedError:
        where = "loss" if what == "loss" else f"parameter {what!r}"
        return TrainingDivergedError(
            f"expected finite values during training, received a non-finite {where} at "
            f"epoch {self.epoch}, step {step} (lr {self.lr:.3g}); lower the learning rate "
            "or check the data",
            epoch=self.epoch,
            step=step,
            what=what,
        )

    def _check_losses(self) -> None:
        buf = getattr(self, "_loss_buf", None)
        if buf is None:
            return
        done = self.iter - self._epoch_first[0] + 1
        bad = torch.nonzero(~torch.isfinite(buf[: max(0, done)]))
        if len(bad):
            raise self._diverged("loss", self._epoch_first[1] + int(bad[0]))

    def _check_weights(self) -> None:
        params = list(self.model.named_parameters())
        if not params:
            return
        ok = torch.stack([torch.isfinite(p.detach()).all() for _, p in params])
        if not bool(ok.all()):
            name = params[int(torch.nonzero(~ok)[0])][0]
            raise self._diverged(name, max(0, self.train_iter - 1))

    def _check_epoch(self, l_sum: float) -> None:
        """End of an epoch: the losses (when not checked per step) and every weight."""
        self._check_losses()
        if not math.isfinite(l_sum):  # e.g. another rank's loss
            raise self._diverged("loss", max(0, self.train_iter - 1))
        self._check_weights()
        self._loss_buf = None

    # ------------------------------------------------------------------ inference
    def _tensor_data(self, data: Interactions) -> TensorData:
        if data is self.valid:
            if self._valid_td is None:
                self._valid_td = TensorData.from_interactions(data, self.device, False)
            return self._valid_td
        self._check_data(data, "given")
        return TensorData.from_interactions(data, self.device, drop_zero_weight=False)

    def _outputs(
        self, data: Interactions, with_loss: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Predicted ratings (float32), and per-row loss and penalty (float64) if asked."""
        td = self._tensor_data(data)
        preds, losses, pens = [], [], []
        was_training = self.model.training
        self.model.eval()
        try:
            with self._threads(), torch.inference_mode():
                for b in td.epoch(self.eval_bs, None):
                    out = self.model(b)
                    shown = self.model.apply_fallback(b, out)[0]  # unknown pairs: baseline
                    preds.append(self.model.to_rating(shown).float().cpu())
                    if with_loss:  # per-row loss in float64, like the metrics
                        b64 = {**b, "rating": b["rating"].double()}
                        losses.append(self.loss_func(out.double(), b64).cpu())
                        if self.reg > 0:
                            pen = self.model.penalty(b)
                            if pen is not None:
                                pens.append(pen.double().cpu())
        finally:
            self.model.train(was_training)
        cat = (lambda xs: torch.cat(xs).numpy()) if len(data) else (lambda xs: np.zeros(0))
        pred = cat(preds).astype(np.float32, copy=False)
        if not with_loss:
            return pred, None, None
        return pred, cat(losses), (cat(pens) if pens else None)

    def predict(self, data: Interactions) -> np.ndarray:
        """Predicted ratings for every row of ``data`` (weight-0 rows included), float32,
        in the original rating units. A row whose user or item had no training row of
        positive weight gets the model's baseline (:meth:`fallback` says which)."""
        return self._outputs(data, with_loss=False)[0]

    def fallback(self, data: Interactions) -> np.ndarray:
        """``bool`` per row of ``data``: the prediction is the baseline (global mean plus
        the known side's bias) because the user or the item was never trained."""
        self._check_data(data, "given")
        u = torch.from_numpy(np.asarray(data.user, dtype=np.int64))
        i = torch.from_numpy(np.asarray(data.item, dtype=np.int64))
        return self.model.unknown(u.to(self.device), i.to(self.device)).cpu().numpy()

    def predict_proba(self, data: Interactions) -> np.ndarray:
        """The predicted distribution over the rating levels for every row of ``data``,
        shape ``(n, K)`` float64 (models with levels only, e.g. a classifier; level ``k``
        is rating ``model.levels[k]``)."""
        if not isinstance(self.model, LevelModel):
            raise ConfigError(
                f"expected a model with rating levels for predict_proba, received "
                f"{type(self.model).__name__}"
            )
        td = self._tensor_data(data)
        k = len(self.model.levels)
        parts: list[Tensor] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with self._threads(), torch.inference_mode():
                for b in td.epoch(self.eval_bs, None):
                    out = self.model.apply_fallback(b, self.model(b))[0]
                    parts.append(self.model.to_proba(out).double().cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(parts).numpy() if parts else np.zeros((0, k))

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
        pred, per_row, pen = self._outputs(data, with_loss=True)
        w = data.weights().astype(np.float64)
        keep = w > 0
        assert per_row is not None
        w_k = w[keep]
        total = w_k.sum()
        data_loss = float((w_k * per_row[keep]).sum() / total) if total > 0 else math.nan
        reg_loss = 0.0
        if pen is not None:
            reg_loss = self.reg * float((w_k * pen[keep]).sum() / total) if total > 0 else math.nan
        out: dict[str, float] = {"loss": data_loss + reg_loss, "reg_loss": reg_loss}
        if self.model.has_record:  # rows (of positive weight) answered by the baseline
            out["n_fallback"] = float(self.fallback(data)[keep].sum())
        weight = data.weight
        proba = None
        for name, fn in self._metric_fns.items():
            if is_level_metric(name):
                if proba is None:
                    proba = self.predict_proba(data)
                levels = self.model.levels  # type: ignore[attr-defined]
                out[name] = fn(proba, levels, data.rating, weight)  # type: ignore[call-arg]
            else:
                out[name] = fn(pred, data.rating, weight)  # type: ignore[call-arg]
        return out

    # ------------------------------------------------------------------ reports
    def history_frame(self) -> pd.DataFrame:
        """``history`` as a DataFrame, one row per epoch."""
        return pd.DataFrame(self.history)

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_it: int = 100,
        stop_div: bool = True,
    ) -> Any:
        """LR range test (fastai's ``lr_find``); model, optimiser and RNG are restored after.

        Returns:
            a :class:`recfit.train.lr_finder.LRFinderResult` (``valley``, ``steep``,
            ``minimum``, ``lrs``, ``losses``, ``plot()``).
        """
        return lr_find(self, start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "opt": None if self.opt is None else copy.deepcopy(self.opt.state_dict()),
            "gen": self._gen.get_state(),
            "history": len(self.history),
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        if snap["opt"] is None:
            self.opt = None
        else:
            assert self.opt is not None
            self.opt.load_state_dict(snap["opt"])
        for p in self.model.parameters():
            p.grad = None
        self._gen.set_state(snap["gen"])
        del self.history[snap["history"] :]
