"""Per-row losses that compare a model's output with a batch.

A loss returns one value per row; the :class:`~recfit.train.Learner` aggregates them as
Σ w·loss / Σ w with the batch's ``weight`` column, over the whole set rather than as a mean of batch means. A loss that
knows its derivative with respect to the output (``grad``) lets models with a fused
training step skip autograd.

Example:
    >>> import torch
    >>> get_loss("mse")(torch.tensor([3.0, 5.0]), {"rating": torch.tensor([4.0, 5.0])})
    tensor([1., 0.])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from recfit.errors import ConfigError

__all__ = ["LOSSES", "CrossEntropyLoss", "HuberLoss", "L1Loss", "Loss", "MSELoss", "get_loss"]


class Loss:
    """Base class: ``__call__(output, batch) -> per-row loss``; optional ``grad``."""

    name: str = "loss"

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Per-row loss of ``output`` (shape ``[B]``) against ``batch["rating"]``."""
        raise NotImplementedError

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        """d(per-row loss)/d(output), or ``None`` when only autograd can compute it."""
        return None

    def bind(self, model: Any) -> Loss:
        """The loss to use with ``model`` (the Learner calls this once). Losses that need
        something from the model (e.g. its rating levels) return a bound copy."""
        return self

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


class CrossEntropyLoss(Loss):
    """Cross-entropy of the true rating level under a classifier's output.

    ``output`` holds one log-probability (or unnormalised logit) per rating level,
    shape ``[B, K]``; the per-row loss is ``-log_softmax(output)[level(rating)]``. The
    level of a rating is the nearest level on the grid ``levels`` (rows off the grid can
    only be rows of weight 0, which never count). ``bind(model)`` takes the grid from a
    model with a ``levels`` attribute (e.g. :class:`~recfit.models.RatingClassifier`).

    Example:
        >>> import torch
        >>> ce = CrossEntropyLoss(levels=[1.0, 2.0, 3.0])
        >>> out = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
        >>> round(float(ce(out, {"rating": torch.tensor([2.0])})[0]), 4)
        1.3863
    """

    name = "cross_entropy"

    def __init__(self, levels: Any = None) -> None:
        self.levels: Tensor | None = None
        if levels is not None:
            grid = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
            if len(grid) < 2 or not bool((grid[1:] > grid[:-1]).all()):
                raise ConfigError(
                    f"expected at least 2 increasing rating levels, received {levels!r} "
                    "(parameter 'levels')"
                )
            self.levels = grid

    def bind(self, model: Any) -> Loss:
        levels = getattr(model, "levels", None)
        if levels is None:
            raise ConfigError(
                "expected a model with rating levels (a classifier) for the cross_entropy "
                f"loss, received {type(model).__name__}"
            )
        return CrossEntropyLoss(levels)

    def target(self, rating: Tensor) -> Tensor:
        """The level index (int64) of each rating: the nearest level on the grid."""
        if self.levels is None:
            raise ConfigError(
                "expected levels for the cross_entropy loss, received none "
                "(use it through a Learner with a classifier, or pass levels=)"
            )
        grid = self.levels.to(device=rating.device, dtype=rating.dtype)
        mid = (grid[1:] + grid[:-1]) / 2
        return torch.bucketize(rating.contiguous(), mid)

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        if output.ndim != 2:
            raise ConfigError(
                f"expected classifier output of shape [B, K] for cross_entropy, received "
                f"{tuple(output.shape)}"
            )
        idx = self.target(batch["rating"]).unsqueeze(1)
        return -torch.log_softmax(output, dim=1).gather(1, idx).squeeze(1)

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        """``softmax(output) - onehot(level)``, shape ``[B, K]`` (one row per rating)."""
        idx = self.target(batch["rating"]).unsqueeze(1)
        g = torch.softmax(output.detach(), dim=1)
        return g.scatter_add_(1, idx, torch.full_like(idx, -1, dtype=g.dtype))

    def __repr__(self) -> str:
        if self.levels is None:
            return "CrossEntropyLoss()"
        return f"CrossEntropyLoss(levels={self.levels.tolist()})"


LOSSES: dict[str, type[Loss]] = {
    "mse": MSELoss,
    "mae": L1Loss,
    "l1": L1Loss,
    "huber": HuberLoss,
    "cross_entropy": CrossEntropyLoss,
}
"""Loss classes by name."""


def get_loss(loss: str | Loss) -> Loss:
    """A :class:`Loss` from its name (``mse``, ``mae``/``l1``, ``huber``,
    ``cross_entropy``) or as given.

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
