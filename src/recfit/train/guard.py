"""The divergence guard: a fit stops at the first non-finite loss or weight.

On CPU in one process each step's loss is read as it comes (one scalar read per step), so
the fit stops at the step that diverged. Elsewhere (CUDA, distributed) reading it would
cost a device sync per step: the losses are kept in a device buffer and checked at the
epoch's end (and when a fit is cancelled), naming the first step that was not finite.
Every weight is checked at each epoch's end. Either failure is a
:class:`~recfit.errors.TrainingDivergedError` with the epoch, the step and what diverged.

Example:
    >>> import torch
    >>> g = DivergenceGuard()
    >>> g.start_epoch(per_step=True, n_steps=4, first_batch=0, first_step=0,
    ...               device=torch.device("cpu"))
    >>> g.record(torch.tensor(float("nan")), batch=0, step=0, epoch=0, lr=0.1)
    Traceback (most recent call last):
    ...
    recfit.errors.TrainingDivergedError: expected finite values during training, received a non-finite loss at epoch 0, step 0 (lr 0.1); lower the learning rate or check the data
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from recfit.errors import TrainingDivergedError

__all__ = ["DivergenceGuard", "diverged", "first_non_finite"]


def diverged(what: str, epoch: int, step: int, lr: float) -> TrainingDivergedError:
    """The error for a non-finite ``what`` (``"loss"`` or a parameter's name)."""
    where = "loss" if what == "loss" else f"parameter {what!r}"
    return TrainingDivergedError(
        f"expected finite values during training, received a non-finite {where} at "
        f"epoch {epoch}, step {step} (lr {lr:.3g}); lower the learning rate or check the data",
        epoch=epoch,
        step=step,
        what=what,
    )


def first_non_finite(model: torch.nn.Module) -> str | None:
    """The name of the first parameter of ``model`` holding a NaN or inf, else ``None``."""
    params = list(model.named_parameters())
    if not params:
        return None
    ok = torch.stack([torch.isfinite(p.detach()).all() for _, p in params])
    if bool(ok.all()):
        return None
    return params[int(torch.nonzero(~ok)[0])][0]


class DivergenceGuard:
    """Checks the losses of one fit's epochs (see the module docs)."""

    def __init__(self) -> None:
        self.per_step = True
        self._buf: Tensor | None = None  # this epoch's step losses (checked at its end)
        self._first = (0, 0)  # (first batch, its step) of the current epoch

    def start_epoch(
        self, *, per_step: bool, n_steps: int, first_batch: int, first_step: int,
        device: torch.device,
    ) -> None:  # fmt: skip
        """A new epoch of ``n_steps`` batches starting at batch ``first_batch`` (a resumed
        epoch skips some), global step ``first_step``."""
        self.per_step = per_step
        self._first = (first_batch, first_step)
        self._buf = None if per_step else torch.zeros(max(1, n_steps - first_batch), device=device)

    def record(self, loss: Tensor, *, batch: int, step: int, epoch: int, lr: float) -> None:
        """The objective of batch ``batch`` (global step ``step``)."""
        if self.per_step:
            if not math.isfinite(float(loss.detach())):
                raise diverged("loss", epoch, step, lr)
        elif self._buf is not None:  # no device sync: checked at the epoch's end
            self._buf[batch - self._first[0]] = loss.detach()

    def check_pending(self, last_batch: int, epoch: int, lr: float) -> None:
        """The buffered losses up to batch ``last_batch`` (e.g. before a checkpoint is
        saved in the middle of an epoch: one device sync); the buffer stays."""
        buf = self._buf
        if buf is None:
            return
        bad = torch.nonzero(~torch.isfinite(buf[: max(0, last_batch - self._first[0] + 1)]))
        if len(bad):
            raise diverged("loss", epoch, self._first[1] + int(bad[0]), lr)

    def check_losses(self, last_batch: int, epoch: int, lr: float) -> None:
        """The buffered losses up to batch ``last_batch``; then the buffer is done."""
        try:
            self.check_pending(last_batch, epoch, lr)
        finally:
            self._buf = None

    def discard(self) -> None:
        """Forget the buffered losses (another rank's check covers them)."""
        self._buf = None
