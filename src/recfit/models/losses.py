"""Per-row losses that compare a model's output with a batch.

A loss returns one value per row; the :class:`~recfit.train.Learner` aggregates them as
Σ w·loss / Σ w with the batch's ``weight`` column (Lesson 2 in DESIGN.md). A loss that
knows its derivative with respect to the output (``grad``) lets models with a fused
training step skip autograd.

Example:
    >>> import torch
    >>> get_loss("mse")(torch.tensor([3.0, 5.0]), {"rating": torch.tensor([4.0, 5.0])})
    tensor([1., 0.])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from recfit.errors import ConfigError

__all__ = ["LOSSES", "HuberLoss", "L1Loss", "Loss", "MSELoss", "get_loss"]


class Loss:
    """Base class: ``__call__(output, batch) -> per-row loss``; optional ``grad``."""

    name: str = "loss"

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Per-row loss of ``output`` (shape ``[B]``) against ``batch["rating"]``."""
        raise NotImplementedError

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        """d(per-row loss)/d(output), or ``None`` when only autograd can compute it."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MSELoss(Loss):
    """Squared error ``(output - rating)²``.

    Example:
        >>> import torch
        >>> MSELoss().grad(torch.tensor([3.0]), {"rating": torch.tensor([4.0])})
        tensor([-2.])
    """

    name = "mse"

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        d = output - batch["rating"]
        return d * d

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        return 2.0 * (output - batch["rating"])


class L1Loss(Loss):
    """Absolute error ``|output - rating|``.

    Example:
        >>> import torch
        >>> L1Loss()(torch.tensor([3.0]), {"rating": torch.tensor([4.5])})
        tensor([1.5000])
    """

    name = "mae"

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return (output - batch["rating"]).abs()

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        return torch.sign(output - batch["rating"])


class HuberLoss(Loss):
    """Huber loss: ``0.5 d²`` for ``|d| <= delta``, else ``delta (|d| - 0.5 delta)``.

    Example:
        >>> import torch
        >>> HuberLoss(1.0)(torch.tensor([0.5, 3.0]), {"rating": torch.tensor([0.0, 0.0])})
        tensor([0.1250, 2.5000])
    """

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0:
            raise ConfigError(f"expected delta > 0, received {delta!r} (parameter 'delta')")
        self.delta = float(delta)

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        d = (output - batch["rating"]).abs()
        return torch.where(d <= self.delta, 0.5 * d * d, self.delta * (d - 0.5 * self.delta))

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        return (output - batch["rating"]).clamp(-self.delta, self.delta)

    def __repr__(self) -> str:
        return f"HuberLoss(delta={self.delta})"


LOSSES: dict[str, type[Loss]] = {"mse": MSELoss, "mae": L1Loss, "l1": L1Loss, "huber": HuberLoss}
"""Loss classes by name."""


def get_loss(loss: str | Loss) -> Loss:
    """A :class:`Loss` from its name (``mse``, ``mae``/``l1``, ``huber``) or as given.

    Example:
        >>> get_loss("mse")
        MSELoss()
    """
    if isinstance(loss, Loss):
        return loss
    try:
        return LOSSES[loss]()
    except KeyError:
        raise ConfigError(
            f"expected a loss among {sorted(LOSSES)} or a Loss, received {loss!r} "
            "(parameter 'loss')"
        ) from None
