"""The training loop of a Learner: one epoch, one batch, one optimiser step.

:class:`TrainingLoop` is the part of :class:`~recfit.train.learner.Learner` that runs an
epoch (batches in the seeded order, hyper-parameters from the schedules, callbacks'
events, validation, the history row) and a batch on the path the execution options
resolved (:mod:`recfit.train.execution`): autograd, the fused step, the row-wise
optimiser or its compiled kernel. The sums of each epoch are exact weighted sums
(``Σw·loss / Σw`` over the epoch, never a mean of batch means) and every step's loss
goes through the divergence guard (:mod:`recfit.train.guard`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recfit._cpu import active as active_threads
from recfit.data.interactions import Interactions
from recfit.errors import CancelBatchException, CancelEpochException
from recfit.models.base import RatingModel
from recfit.models.losses import Loss
from recfit.train import dense_epoch, sparse_dist
from recfit.train.batches import TensorData, shuffled, take_rows
from recfit.train.callbacks import Callback
from recfit.train.execution import ADAM_BETA2, Execution, OptSpec, Path
from recfit.train.guard import DivergenceGuard, diverged, first_non_finite
from recfit.train.optim import AdamW
from recfit.train.schedules import Schedule
from recfit.train.sparse import RowOptimizer

__all__ = ["TrainingLoop"]


class TrainingLoop:
    """Epochs and batches of a fit (the Learner's base; see the module docs)."""

    model: RatingModel
    loss_func: Loss
    opt: Any
    opt_name: OptSpec
    execution: Execution
    path: Path | None
    fused: bool
    device: torch.device
    dist: Any
    ddp: Any
    bf16: bool
    guard: DivergenceGuard
    bs: int
    reg: float
    metrics: list[str]
    drop_last: bool
    valid: Interactions | None
    history: list[dict[str, Any]]
    valid_metrics: dict[str, float]
    training: bool
    epoch: int
    iter: int
    n_iter: int
    n_epochs: int
    train_iter: int
    batch: dict[str, Tensor]
    pred: Tensor | None
    loss: Tensor | None
    lr: float
    mom: float
    epoch_gen_state: Tensor | None
    _train_td: TensorData
    _gen: torch.Generator
    _wd: float
    _skip: int
    _acc: list[Tensor]
    _acc_init: tuple[float, float, float] | None
    _handlers: dict[str, list[Callable[[], None]]]

    def _event(self, name: str) -> None:
        raise NotImplementedError

    def evaluate(self, data: Interactions | None = None) -> dict[str, float]:
        raise NotImplementedError

    @property
    def sparse(self) -> bool:
        """Whether the row-wise optimiser trains (known after the first fit starts)."""
        return self.path is not None and self.path.row_wise

    @property
    def compiled(self) -> bool:
        """Whether the row-wise step runs as one compiled kernel (after the first fit)."""
        return self.path is not None and self.path.compiled

    @property
    def owns_users(self) -> bool:
        """Whether each rank trains its own users' ratings (distributed, compiled row-wise
        step: :mod:`recfit.train.sparse_dist`), so its copies of the others' user rows
        go stale until :func:`~recfit.train.sparse_dist.replicate`."""
        return self.dist is not None and self.compiled

    def epoch_compiled(self, skip: int) -> bool:
        """Whether the coming epoch runs as one compiled kernel
        (:mod:`recfit.train.dense_epoch`): on that path, in one process, from its first
        batch, with no callback handling a batch event."""
        return (
            self.path is not None
            and self.path.dense_epochs
            and skip == 0
            and self.dist is None
            and isinstance(self.opt, AdamW)
            and all(_in_bulk(h) for e in dense_epoch.BATCH_EVENTS for h in self._handlers[e])
        )

    def compile_dense(self) -> float:
        """Compile (or load) the kernels of the fused dense step and of the dense epochs
        before a fit's timer starts; returns the seconds."""
        seconds = self.model.compile_kernels()
        if self.path is not None and self.path.dense_epochs:
            seconds += dense_epoch.ensure_compiled()
        return seconds

    @property
    def check_each_step(self) -> bool:
        """Check each step's loss as it comes (CPU, one process); else at the epoch's end
        (:mod:`recfit.train.guard`)."""
        return self.device.type == "cpu" and self.dist is None

    def _flush(self) -> None:
        """Apply the row-wise optimiser's owed weight decay (exact weights)."""
        if self.sparse and self.opt is not None:
            if self.owns_users:  # users' rows from their owners
                sparse_dist.flush(self.opt, self.dist)
            else:
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
        plan = getattr(self.model, "plan_fit", None)  # a rule set by the fit's length
        if callable(plan):  # (OrdRec's implicit_every=None; the same at every epoch)
            plan(self.n_epochs * self.n_iter, row_wise=self.sparse)
        try:
            self._event("before_epoch")
            self.training = True
            self.model.train()
            self._event("before_train")
            self._acc = acc
            self.guard.start_epoch(
                per_step=self.check_each_step,
                n_steps=self.n_iter, first_batch=skip, first_step=self.train_iter,
                device=self.device,
            )  # fmt: skip
            if self.epoch_compiled(skip):
                self._compiled_epoch(sched, mom_sched, wd)
            else:
                self._run_batches(sched, mom_sched, wd, skip)
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
        self.guard.check_losses(self.iter, self.epoch, self.lr)
        if not math.isfinite(l_sum):  # e.g. another rank's loss
            raise diverged("loss", self.epoch, max(0, self.train_iter - 1), self.lr)
        self.check_finite()
        if validate:
            self.history.append(
                self.epoch_record(
                    l_sum / w_sum if w_sum > 0 else math.nan,
                    r_sum / w_sum if w_sum > 0 else math.nan,
                    time.perf_counter() - t0,
                )
            )
        self._event("after_epoch")

    def _compiled_epoch(self, sched: Schedule, mom_sched: Schedule | None, wd: float) -> None:
        """The epoch as one kernel (:mod:`recfit.train.dense_epoch`): the same batches,
        hyper-parameters, running sums and divergence check as :meth:`_run_batches`."""
        runner = getattr(self, "_dense_epochs", None)
        if runner is None or runner.opt is not self.opt:
            runner = self._dense_epochs = dense_epoch.DenseEpochs(self.model, self.opt)
        n, nb, first = len(self._train_td), self.n_iter, self.train_iter
        self.epoch_gen_state = self._gen.get_state()
        perm = shuffled(n, self._gen)
        cols = {k: v.numpy() for k, v in take_rows(self._train_td.columns, perm).items()}
        starts = np.minimum(np.arange(nb + 1, dtype=np.int64) * self.bs, n)
        starts[-1] = starts[-1] if self.drop_last else n
        steps = range(first, first + nb)
        lr = np.array([sched.lr_at(t) for t in steps])
        mom = self.opt.param_groups[0]["betas"][0]
        beta1 = np.array([mom if mom_sched is None else mom_sched.lr_at(t) for t in steps])
        losses, pens, done = dense_epoch.fit_epoch(runner, cols, starts, lr, beta1, wd, self.reg)
        last = max(0, done - 1)
        self.lr, self.iter, self.train_iter = float(lr[last]), last, first + done
        if mom_sched is not None:
            self.mom = float(beta1[last])
        w = np.add.reduceat(cols["weight"][: starts[-1]].astype(np.float64), starts[:-1])[:done]
        self._acc[0].add_(float(w.sum()))
        self._acc[1].add_(float(((losses[:done] + pens[:done]) * w).sum()))
        if self.reg > 0:
            self._acc[2].add_(float((pens[:done] * w).sum()))
        self.loss = torch.tensor(losses[last] + pens[last], dtype=torch.float32)
        moms = beta1[:done] if mom_sched is not None else np.full(done, self.mom)
        owners = {id(o): o for hs in self._handlers.values() for o in map(_owner, hs)}
        for cb in owners.values():
            if cb is not None and cb.steps_in_bulk:
                cb.after_steps(lr[:done].tolist(), moms.tolist(), (losses + pens)[:done].tolist())
        if done < nb or not math.isfinite(float(self.loss)):
            raise diverged("loss", self.epoch, first + last, self.lr)

    def _run_batches(
        self, sched: Schedule, mom_sched: Schedule | None, wd: float, skip: int
    ) -> None:
        """The epoch's batches from batch ``skip`` on, one step each."""
        self.epoch_gen_state = self._gen.get_state()
        if self.owns_users:  # this rank's users' ratings
            batches = sparse_dist.owned_batches(
                self.opt, self.dist, self._train_td, self.bs, self._gen, self.drop_last, skip=skip
            )
        else:
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

    def _do_batch(self, batch: dict[str, Tensor]) -> None:
        w = batch["weight"]
        w_sum = w.sum()
        w_tot = w_sum if self.dist is None else self.dist.global_weight(self, w_sum)
        scale = w / w_tot
        use_pen = self.reg > 0
        if self.compiled:  # one compiled kernel: forward, loss, gradient, update
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
            d_pen = None if pen is None else self.reg * scale
            scale = scale if g.ndim == 1 else scale.unsqueeze(1)  # [B, K] of a classifier
            if self.dist is None:
                self.opt.fused_step(batch, saved, g * scale, d_pen)
            else:  # the touched rows' gradients summed over the ranks, then the update
                sparse_dist.fused_step(self.opt, self.dist, batch, saved, g * scale, d_pen)
            self._event("after_backward")
            self._event("after_step")
            self._accumulate(w_sum, w_tot, reg_loss)
            return
        if self.fused:
            g = self.loss_func.grad(out, batch)
            assert g is not None
            d_pen = None if pen is None else self.reg * scale
            scale = scale if g.ndim == 1 else scale.unsqueeze(1)  # [B, K] of a classifier
            self.model.fused_backward(batch, saved, g * scale, d_pen)
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
        policy = active_threads()  # the fit's thread policy (Learner.threads)
        n_threads = policy.numba if policy is not None else self.execution.num_threads
        if self.dist is None:
            out, loss, pen = self.opt.compiled_step(batch, float(w_tot), self.reg, n_threads)
        else:  # this rank's users' ratings of the batch; items' gradients exchanged
            out, loss, pen = sparse_dist.compiled_step(
                self.opt, self.dist, batch, float(w_tot), self.reg, n_threads
            )
        self.pred = out
        self._event("after_pred")
        reg_loss = torch.tensor(pen, dtype=torch.float32) if self.reg > 0 else None
        self.loss = torch.tensor(loss + pen, dtype=torch.float32)
        self._event("after_loss")
        self._event("before_backward")
        self._event("after_backward")
        self._event("after_step")
        self._accumulate(w_sum, w_tot, reg_loss)

    def _warm_kernels(self) -> None:
        """Compile (or load) the kernels the compiled step will run, on an empty batch."""
        cols = self._train_td.columns
        if self.dist is None:
            self.opt.warm_up(cols)
        else:
            sparse_dist.warm_up(self.opt, self.dist, cols)

    def _accumulate(self, w_sum: Tensor, w_tot: Tensor, reg_loss: Tensor | None) -> None:
        assert self.loss is not None
        self.guard.record(
            self.loss, batch=self.iter, step=self.train_iter, epoch=self.epoch, lr=self.lr
        )
        acc = self._acc
        acc[0].add_(w_sum)
        acc[1].add_(self.loss.detach() * w_tot)
        if reg_loss is not None:
            acc[2].add_(reg_loss.detach() * w_tot)

    # ------------------------------------------------------------------ records
    def check_finite(self, loss: float | None = None) -> None:
        """A :class:`~recfit.errors.TrainingDivergedError` when ``loss`` (if given), a
        loss the divergence guard holds unchecked (one process) or a weight of the model
        is not finite (at the current epoch and last step)."""
        if self.dist is None:  # each rank's own losses: their sums are checked together
            self.guard.check_pending(self.iter, self.epoch, self.lr)
        step = max(0, self.train_iter - 1)
        if loss is not None and not math.isfinite(loss):
            raise diverged("loss", self.epoch, step, self.lr)
        name = first_non_finite(self.model)
        if name is not None:
            raise diverged(name, self.epoch, step, self.lr)

    def epoch_record(self, train_loss: float, reg_loss: float, seconds: float) -> dict[str, Any]:
        """The history row of the current epoch: training loss sums and the validation
        results in ``valid_metrics``."""
        rec: dict[str, Any] = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "reg_loss": reg_loss,
            "valid_loss": self.valid_metrics.get("loss", math.nan),
            "valid_reg_loss": self.valid_metrics.get("reg_loss", math.nan),
        }
        for m in self.metrics:
            rec[m] = self.valid_metrics.get(m, math.nan)
        rec["lr"] = self.lr
        rec["time"] = seconds
        return rec

    def record_epoch(self, train_loss: float, reg_loss: float, *, seconds: float) -> None:
        """Evaluate the validation set and append the current epoch's history row (for
        trainers without batches: ALS sweeps, a closed-form solve)."""
        self.valid_metrics = self.evaluate(self.valid) if self.valid is not None else {}
        self.history.append(self.epoch_record(train_loss, reg_loss, seconds))


def _owner(handler: Callable[[], None]) -> Callback | None:
    """The callback an event handler (a bound method) belongs to."""
    owner = getattr(handler, "__self__", None)
    return owner if isinstance(owner, Callback) else None


def _in_bulk(handler: Callable[[], None]) -> bool:
    """Whether the callback of a batch-event handler takes a kernel epoch's steps at once
    (:meth:`~recfit.train.callbacks.Callback.after_steps`)."""
    owner = _owner(handler)
    return owner is not None and owner.steps_in_bulk
