"""The learning-rate range test (fastai's ``lr_find``) and its suggestions.

The LR grows exponentially from ``start_lr`` to ``end_lr`` over ``num_it`` training
steps while the smoothed training loss is recorded (exponential moving average,
beta 0.98, debiased, as fastai's ``AvgSmoothLoss``). The test stops early when the
smoothed loss exceeds 4× its best value (divergence). Afterwards the model weights, the
optimiser state and the Learner's random generator are restored, so the test leaves no
trace on the following fit.

Suggestions (fastai 2.7's functions) use the points ``num_it//10 .. -5``:

* ``valley``: inside the longest decreasing run of the loss, ~half-way down.
* ``steep``: where the loss falls fastest against log(lr), searched only on the descent
  (from where the loss leaves its starting plateau to its lowest point).
* ``minimum``: one tenth of the LR at the lowest loss.

They are made only where the curve is informative: the lowest loss must lie clearly
below the starting plateau (the first third of the points: its median minus
``max(3 × its standard deviation, 1% of it)``). Otherwise every suggestion is ``None``
and :func:`explain` (``LRFinderResult.reason``, the plot's title) says why: on a flat,
noisy curve the steepest point and the lowest point are noise.

Example:
    >>> import numpy as np
    >>> lrs = np.logspace(-5, 0, 40)
    >>> losses = np.concatenate([np.linspace(2, 0.5, 30), np.linspace(0.6, 5, 10)])
    >>> s = suggest(lrs, losses)
    >>> sorted(s), bool(lrs[3] < s["valley"] < lrs[29])
    (['minimum', 'steep', 'valley'], True)
    >>> flat = 1.8 + 0.02 * np.sin(np.arange(40.0))
    >>> suggest(lrs, flat)
    {'valley': None, 'steep': None, 'minimum': None}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from recfit.errors import CancelFitException, ConfigError, TrainingDivergedError
from recfit.train.callbacks import Callback
from recfit.train.schedules import Exponential

if TYPE_CHECKING:
    from recfit.train.learner import Learner

__all__ = [
    "LRFinder",
    "LRFinderResult",
    "explain",
    "lr_find",
    "minimum",
    "steep",
    "suggest",
    "valley",
]

PLATEAU_SIGMAS = 3.0
"""How many standard deviations of the starting plateau the lowest loss must fall below."""
PLATEAU_REL = 0.01
"""...and at least this share of the plateau's level."""


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's ``valley``: the LR ~2/3 down the longest decreasing run of losses."""
    n = len(losses)
    if n == 0:
        return math.nan
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The LR where the loss decreases fastest per unit of log(lr)."""
    if len(losses) < 2:
        return math.nan
    grads = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(grads))])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """One tenth of the LR at the lowest loss."""
    if len(losses) == 0:
        return math.nan
    return float(lrs[int(np.argmin(losses))]) / 10


def _window(
    lrs: np.ndarray, losses: np.ndarray, num_it: int | None
) -> tuple[np.ndarray, np.ndarray]:
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    n = len(lrs) if num_it is None else num_it
    lo, hi = n // 10, len(lrs) - 5
    lr_s, loss_s = lrs[lo:hi], losses[lo:hi]
    bad = ~np.isfinite(loss_s)
    if bad.any():
        cut = int(np.argmax(bad))
        lr_s, loss_s = lr_s[:cut], loss_s[:cut]
    return lr_s, loss_s


def _descent(losses: np.ndarray) -> tuple[int, int] | str:
    """(start, end) of the informative descent, or why there is none."""
    n = len(losses)
    if n < 6:
        return f"expected at least 6 recorded points to judge the curve, received {n}"
    plateau = losses[: max(3, n // 3)]
    level = float(np.median(plateau))
    noise = float(np.std(plateau, ddof=1))
    threshold = level - max(PLATEAU_SIGMAS * noise, PLATEAU_REL * abs(level))
    end = int(np.argmin(losses))
    low = float(losses[end])
    if not low < threshold:
        return (
            f"the loss never fell clearly below its starting plateau (lowest {low:.4g} vs "
            f"plateau {level:.4g} ± {noise:.2g}, needed below {threshold:.4g}): the curve "
            "is flat here, so no learning rate is suggested; try a wider range, more "
            "iterations, or the configuration's default"
        )
    above = np.nonzero(losses[:end] >= threshold)[0]
    start = int(above[-1]) if len(above) else 0
    return start, end


def explain(lrs: np.ndarray, losses: np.ndarray, num_it: int | None = None) -> str | None:
    """Why :func:`suggest` makes no suggestion on this curve (``None``: it makes them).

    Example:
        >>> import numpy as np
        >>> explain(np.logspace(-5, 0, 40), np.full(40, 1.8)).startswith("the loss never")
        True
    """
    d = _descent(_window(lrs, losses, num_it)[1])
    return d if isinstance(d, str) else None


def suggest(
    lrs: np.ndarray, losses: np.ndarray, num_it: int | None = None
) -> dict[str, float | None]:
    """The three suggestions on the points ``num_it//10 .. -5`` (NaN losses cut off);
    each ``None`` when the curve is not informative (:func:`explain` says why)."""
    lr_s, loss_s = _window(lrs, losses, num_it)
    d = _descent(loss_s)
    if isinstance(d, str):
        return {"valley": None, "steep": None, "minimum": None}
    start, end = d
    return {
        "valley": valley(lr_s, loss_s),
        # a descent of one point (the lowest loss right at its start) has no slope
        "steep": steep(lr_s[start : end + 1], loss_s[start : end + 1]) if end > start else None,
        "minimum": minimum(lr_s, loss_s),
    }


@dataclass
class LRFinderResult:
    """Recorded points and suggestions of an LR range test."""

    lrs: np.ndarray
    losses: np.ndarray
    suggestions: dict[str, float | None] = field(default_factory=dict)
    diverged: bool = False
    reason: str | None = None
    """Why there are no suggestions (a flat curve), else ``None``."""

    @property
    def valley(self) -> float | None:
        """The ``valley`` suggestion (fastai's default); ``None`` on a flat curve."""
        return self.suggestions.get("valley")

    @property
    def steep(self) -> float | None:
        """The ``steep`` suggestion; ``None`` on a flat curve."""
        return self.suggestions.get("steep")

    @property
    def minimum(self) -> float | None:
        """The ``minimum`` suggestion (lowest-loss LR / 10); ``None`` on a flat curve."""
        return self.suggestions.get("minimum")

    def plot(self, skip_end: int = 5) -> Any:
        """Loss against LR on a log x-axis with the suggestions marked."""
        from recfit.plots import plot_lr_find  # matplotlib is heavy: only when plotting

        return plot_lr_find(self, skip_end=skip_end)


class LRFinder(Callback):
    """Callback that drives and records the range test (used by :func:`lr_find`)."""

    order = -5

    def __init__(self, num_it: int, stop_div: bool = True, beta: float = 0.98) -> None:
        self.num_it, self.stop_div, self.beta = num_it, stop_div, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.diverged = False

    def before_fit(self) -> None:
        self._avg, self._count, self.best = 0.0, 0, math.inf

    def after_batch(self) -> None:
        learn = self.learn
        if learn.loss is None:
            return
        loss = float(learn.loss)
        self._count += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta**self._count)
        self.lrs.append(learn.lr)
        self.losses.append(smooth)
        if smooth < self.best:
            self.best = smooth
        if not math.isfinite(smooth) or (self.stop_div and smooth > 4 * self.best):
            self.diverged = True
            raise CancelFitException("loss diverged")
        if learn.train_iter >= self.num_it:
            raise CancelFitException("range test done")


def lr_find(
    learn: Learner,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
) -> LRFinderResult:
    """LR range test (fastai's ``lr_find``), also ``Learner.lr_find``: run on ``learn``
    inside :meth:`Learner.trial <recfit.train.learner.Learner.trial>`, so its model,
    optimiser, batch-order RNG and history are as before afterwards.

    Returns:
        a :class:`LRFinderResult` (``valley``, ``steep``, ``minimum``, ``lrs``,
        ``losses``, ``plot()``).

    Example:
        >>> # res = learn.lr_find(); res.valley; res.plot().savefig("lr.png")
    """
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"expected 0 < start_lr < end_lr, received {start_lr!r}, {end_lr!r}")
    if not isinstance(num_it, int) or num_it < 2:
        raise ConfigError(f"expected num_it an integer >= 2, received {num_it!r}")
    finder = LRFinder(num_it, stop_div)
    epochs = math.ceil(num_it / max(1, learn.steps_per_epoch))
    with learn.trial():
        try:
            learn.fit_schedule(
                epochs, Exponential(start_lr, end_lr, num_it), cbs=[finder], validate=False
            )
        except TrainingDivergedError:  # a non-finite loss or weight ends the test
            finder.diverged = True
    lrs, losses = np.array(finder.lrs), np.array(finder.losses)
    return LRFinderResult(
        lrs,
        losses,
        suggest(lrs, losses, num_it),
        finder.diverged,
        explain(lrs, losses, num_it),
    )
