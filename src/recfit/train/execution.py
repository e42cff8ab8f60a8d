"""How the Learner runs a step: its execution options, resolved in one place.

:class:`Execution` holds the switches (each ``"auto"``, ``True`` or ``False``) and the
CPU thread count; :meth:`Execution.resolve` turns them into a :class:`Path` for one
model, loss, optimiser and device:

* ``fused``: the model's hand-written gradient on the looked-up rows instead of autograd
  (dot models with a loss that has a known derivative); ``auto`` uses it where it exists.
* ``row_wise``: the row-wise optimiser of :mod:`recfit.train.sparse` (only the rows in the
  batch are updated, lazy state, exact decoupled ``wd``), for ``opt="adam"`` (row-wise
  AdamW) or ``"adagrad"``. ``auto`` uses it on the fused path of a family that trains
  row-wise, of at least :data:`~recfit.train.sparse.SPARSE_MIN_PARAMS` parameters (so
  fastai's R1 configuration on ml-100k keeps dense AdamW, exactly fastai's semantics);
  under distributed training the ranks exchange only the touched rows' gradients
  (:mod:`recfit.train.sparse_dist`).
* ``compiled``: the row-wise step as one compiled CPU kernel (:mod:`recfit.train.kernels`:
  forward, MSE loss, gradient and update without intermediate tensors); ``auto`` does so
  whenever the row-wise optimiser runs on CPU with the MSE loss. Where dense AdamW
  trains a DotBias-family model or an SVD++ on CPU with the MSE loss in one process
  (fastai's configuration, ``recfit train``'s default), each epoch as one compiled kernel
  instead (:mod:`recfit.train.dense_epoch`: the same steps, every row decayed at every
  step).

``True`` requires a path (a :class:`~recfit.errors.ConfigError` says why it cannot run);
``False`` refuses it. The optimisers themselves are built by :func:`build_optimizer`.

Example:
    >>> Execution(fused=False).fused, Execution().row_wise
    (False, 'auto')
    >>> Execution(compiled="yes")
    Traceback (most recent call last):
    ...
    recfit.errors.ConfigError: expected compiled 'auto', True or False, received 'yes'
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from recfit._cpu import Threads, cpu_cores, free_cores, limit_threads
from recfit.errors import ConfigError
from recfit.models.base import RatingModel
from recfit.models.losses import Loss, MSELoss
from recfit.train import dense_epoch, kernels
from recfit.train.optim import AdamW
from recfit.train.sparse import SPARSE_MIN_PARAMS, RowAdagrad, RowAdamW, supports_rows

__all__ = [
    "ADAM_BETA2",
    "ADAM_EPS",
    "OPTIMIZERS",
    "SMALL_BATCH",
    "SMALL_MODEL",
    "Execution",
    "Path",
    "build_optimizer",
    "resolve_device",
    "thread_count",
    "thread_split",
    "threads",
]

Switch = bool | Literal["auto"]
OptSpec = str | Callable[..., torch.optim.Optimizer]

OPTIMIZERS = ("adam", "sgd", "momentum", "adagrad")
"""Optimiser names understood by the Learner."""
ADAM_BETA2 = 0.99
ADAM_EPS = 1e-5
SMALL_BATCH = 512
"""Batches from this size up use every CPU thread even for a small model."""
SMALL_MODEL = 2_000_000
"""Parameters; below this (and :data:`SMALL_BATCH`), CPU training uses one thread."""


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


@dataclass(frozen=True)
class Path:
    """The resolved execution path of a Learner (see the module docs)."""

    fused: bool
    row_wise: bool = False
    compiled: bool = False
    dense_epochs: bool = False
    """Dense AdamW epochs as one compiled kernel (:mod:`recfit.train.dense_epoch`)."""

    @property
    def name(self) -> str:
        """``compiled``, ``dense-compiled``, ``row-wise``, ``fused`` or ``dense``.

        Example:
            >>> Path(fused=True, row_wise=True).name, Path(True, dense_epochs=True).name
            ('row-wise', 'dense-compiled')
        """
        if self.compiled:
            return "compiled"
        if self.dense_epochs:
            return "dense-compiled"
        if self.row_wise:
            return "row-wise"
        return "fused" if self.fused else "dense"


@dataclass(frozen=True)
class Execution:
    """The Learner's execution switches (each ``"auto"``, ``True`` or ``False``).

    Attributes:
        fused: the model's fused step (hand-written gradient) instead of autograd.
        row_wise: the row-wise optimiser of :mod:`recfit.train.sparse`.
        compiled: the row-wise step as one compiled CPU kernel, or dense AdamW's
            epochs as one (:mod:`recfit.train.dense_epoch`).
        num_threads: CPU threads while training/predicting; ``None`` picks 1 for a small
            model with small batches (under :data:`SMALL_MODEL` parameters and
            :data:`SMALL_BATCH` rows) and the cores free at the fit's start otherwise
            (:func:`thread_count`).
    """

    fused: Switch = "auto"
    row_wise: Switch = "auto"
    compiled: Switch = "auto"
    num_threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("fused", "row_wise", "compiled"):
            v = getattr(self, name)
            if not (v is True or v is False or v == "auto"):
                raise ConfigError(f"expected {name} 'auto', True or False, received {v!r}")
        n = self.num_threads
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ConfigError(f"expected num_threads an integer >= 1 or None, received {n!r}")

    def resolve_fused(self, model: RatingModel, loss: Loss) -> bool:
        """Whether the fused step runs (known when the Learner is built)."""
        can = type(model).supports_fused and type(loss).grad is not Loss.grad
        if self.fused is True and not can:
            raise ConfigError(
                f"expected a model with a fused step and a loss with a gradient for fused=True, "
                f"received {type(model).__name__} with {loss!r}"
            )
        return bool(can) if self.fused == "auto" else bool(self.fused)

    def resolve(
        self,
        model: RatingModel,
        loss: Loss,
        opt: OptSpec,
        *,
        device: torch.device,
        distributed: bool = False,
        bf16: bool = False,
    ) -> Path:
        """The path a fit takes (known when the optimiser is built: distributed training
        and bf16 are attached after the Learner is built). Every path runs distributed
        too, except the dense epochs' kernel (one process only)."""
        fused = self.resolve_fused(model, loss)
        if opt not in ("adam", "adagrad"):  # the row-wise rules: AdamW and Adagrad
            if self.compiled is True:
                raise ConfigError(
                    f"expected opt 'adam' or 'adagrad' for compiled=True, received {opt!r}"
                )
            return Path(fused=fused)
        can_rows = fused and supports_rows(model)
        if self.row_wise is True and not can_rows:
            raise ConfigError(
                f"expected a DotBias-family model on the fused path for "
                f"row_wise=True, received {type(model).__name__} (fused={fused})"
            )
        if self.row_wise == "auto":
            rows = can_rows and model.n_parameters() >= SPARSE_MIN_PARAMS
        else:
            rows = bool(self.row_wise) and can_rows
        compiled = (
            rows
            and self.compiled is not False
            and device.type == "cpu"
            and kernels.available()
            and type(loss) is MSELoss
            and not bf16
        )
        dense = (
            not rows
            and opt == "adam"
            and fused
            and self.compiled is not False
            and not distributed
            and dense_epoch.supports(model, loss, device, bf16)
        )
        if self.compiled is True and not (compiled or dense):
            raise ConfigError(
                "expected a CPU model, numba and the MSE loss for compiled=True, received "
                f"device {device}, loss {loss!r}"
            )
        return Path(fused=fused, row_wise=rows, compiled=compiled, dense_epochs=dense)


def thread_count(execution: Execution, model: RatingModel, bs: int, device: torch.device) -> int:
    """The CPU threads a Learner works with, asked again at each fit: ``num_threads`` when
    set, else 1 for a small model with small batches (thread hand-offs cost more than they
    save), else the cores free now (:func:`recfit._cpu.free_cores`); never more than the
    cores this process may use."""
    n = execution.num_threads
    small = model.n_parameters() < SMALL_MODEL and bs < SMALL_BATCH
    if n is None:
        n = 1 if device.type == "cpu" and small else free_cores()
    return max(1, min(int(n), cpu_cores()))


def thread_split(n: int, compiled: bool) -> Threads:
    """Who gets the ``n`` threads: on the compiled path numba's kernel does the work and
    PyTorch's small tensor operations between two kernels run on one thread; elsewhere
    PyTorch and the BLAS (numba only shuffles once an epoch). Only one runtime computes at a
    time, so the threads in use never exceed ``n``.

    Example:
        >>> thread_split(2, compiled=True)
        Threads(torch=1, numba=2, blas=1)
    """
    return Threads(1, n, 1) if compiled else Threads.all(n)


@contextlib.contextmanager
def threads(n: int | Threads | None) -> Iterator[None]:
    """Run the block with ``n`` CPU threads (PyTorch, numba and the BLAS, see
    :func:`recfit._cpu.limit_threads`; ``None``: unchanged), then restore."""
    if n is None:
        yield
        return
    with limit_threads(n):
        yield


def build_optimizer(opt: OptSpec, model: RatingModel, wd: float, row_wise: bool) -> Any:
    """The optimiser ``opt`` names for ``model`` (a callable gets the trainable
    parameters and handles ``wd`` itself); row-wise AdamW / Adagrad on the row-wise path."""
    params = [p for p in model.parameters() if p.requires_grad]
    if callable(opt):
        return opt(params)
    if row_wise:
        if opt == "adam":
            return RowAdamW(
                model,  # type: ignore[arg-type]
                lr=1e-3, betas=(0.9, ADAM_BETA2), eps=ADAM_EPS, weight_decay=wd,
            )  # fmt: skip
        return RowAdagrad(model, lr=1e-2, weight_decay=wd)  # type: ignore[arg-type]
    if opt == "adam":
        return AdamW(params, lr=1e-3, betas=(0.9, ADAM_BETA2), eps=ADAM_EPS, weight_decay=wd)
    if opt == "sgd":
        return torch.optim.SGD(params, lr=1e-3)
    if opt == "momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    return torch.optim.Adagrad(params, lr=1e-2)
