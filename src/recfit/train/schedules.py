"""Learning-rate and momentum schedules as plain objects: ``lr_at(step) -> value``.

``step`` counts optimiser steps from 0. Schedules that span a run know ``total_steps``;
the value at step ``k`` uses the position ``k / total_steps``, exactly like fastai's
``ParamScheduler`` (which reads ``pct_train`` before each batch).

* :class:`OneCycle` — fastai's ``fit_one_cycle``: cosine from ``lr_max/div`` up to
  ``lr_max`` over ``pct_start`` of training, then cosine down to ``lr_max/div_final``.
  :func:`one_cycle_momentum` gives the matching momentum (0.95 → 0.85 → 0.95).
* :class:`Cyclic` — Leslie Smith's CLR (``triangular``, ``triangular2``, ``exp_range``).
* :class:`Cosine` — cosine annealing from ``lr_max`` to ``lr_min`` with optional warm-up.
* :class:`Constant` and :class:`Exponential` (the LR finder's sweep).

Example:
    >>> s = OneCycle(1e-2, total_steps=100)
    >>> round(s.lr_at(0), 6), round(s.lr_at(25), 6), s.lr_at(100) < 1e-6
    (0.0004, 0.01, True)
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from recfit.errors import ConfigError

__all__ = [
    "CombinedCos",
    "Constant",
    "Cosine",
    "Cyclic",
    "Exponential",
    "OneCycle",
    "Schedule",
    "one_cycle_momentum",
    "sched_cos",
]


def sched_cos(start: float, end: float, pos: float) -> float:
    """fastai's ``SchedCos``: ``start + (1 + cos(pi (1 - pos))) (end - start) / 2``.

    Example:
        >>> sched_cos(1.0, 3.0, 0.0), sched_cos(1.0, 3.0, 0.5), sched_cos(1.0, 3.0, 1.0)
        (1.0, 2.0, 3.0)
    """
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


class Schedule:
    """Base class: ``lr_at(step)``; ``values(n)`` for plotting
    (:func:`recfit.plots.plot_schedule` draws any schedule from its values)."""

    total_steps: int | None = None

    def lr_at(self, step: int) -> float:
        """The value at optimiser step ``step`` (0-based)."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        return self.lr_at(step)

    def values(self, n: int | None = None) -> np.ndarray:
        """Values at steps ``0 .. n-1`` (``n`` defaults to ``total_steps``)."""
        n = n if n is not None else self.total_steps
        if n is None:
            raise ConfigError("expected n (this schedule has no total_steps), received None")
        return np.array([self.lr_at(k) for k in range(n)], dtype=np.float64)

    def _pos(self, step: int) -> float:
        if self.total_steps is None:
            raise ConfigError("expected a schedule with total_steps, received None")
        return step / self.total_steps


def _check_total(total_steps: int) -> int:
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError(f"expected total_steps >= 1, received {total_steps!r}")
    return total_steps


class Constant(Schedule):
    """The same value at every step.

    Example:
        >>> Constant(0.1).lr_at(1000)
        0.1
    """

    def __init__(self, value: float, total_steps: int | None = None) -> None:
        self.value, self.total_steps = float(value), total_steps

    def lr_at(self, step: int) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"Constant({self.value:g})"


class CombinedCos(Schedule):
    """fastai's ``combined_cos(pct, start, middle, end)``: two cosine phases.

    Example:
        >>> s = CombinedCos(0.25, 0.95, 0.85, 0.95, total_steps=8)
        >>> round(s.lr_at(0), 4), round(s.lr_at(2), 4), round(s.lr_at(8), 4)
        (0.95, 0.85, 0.95)
    """

    def __init__(
        self, pct: float, start: float, middle: float, end: float, total_steps: int
    ) -> None:
        if not 0.0 <= pct <= 1.0:
            raise ConfigError(f"expected pct_start in [0, 1], received {pct!r}")
        self.pct, self.start, self.middle, self.end = float(pct), start, middle, end
        self.total_steps = _check_total(total_steps)

    def lr_at(self, step: int) -> float:
        pos = self._pos(step)
        # fastai's combine_scheds: the phase is the last boundary <= pos
        if pos >= self.pct and self.pct < 1.0:
            return sched_cos(self.middle, self.end, (pos - self.pct) / (1.0 - self.pct))
        return sched_cos(self.start, self.middle, pos / self.pct)


class OneCycle(CombinedCos):
    """fastai's one-cycle LR: ``combined_cos(pct_start, lr_max/div, lr_max, lr_max/div_final)``.

    Example:
        >>> s = OneCycle(5e-3, total_steps=100)
        >>> round(s.lr_at(0), 8), s.lr_at(25), round(s.lr_at(100), 10)
        (0.0002, 0.005, 5e-08)
    """

    def __init__(
        self,
        lr_max: float,
        total_steps: int,
        pct_start: float = 0.25,
        div: float = 25.0,
        div_final: float = 1e5,
    ) -> None:
        if not lr_max > 0:
            raise ConfigError(f"expected lr_max > 0, received {lr_max!r}")
        self.lr_max, self.div, self.div_final = float(lr_max), div, div_final
        super().__init__(pct_start, lr_max / div, lr_max, lr_max / div_final, total_steps)

    def __repr__(self) -> str:
        return (
            f"OneCycle(lr_max={self.lr_max:g}, total_steps={self.total_steps}, "
            f"pct_start={self.pct:g}, div={self.div:g}, div_final={self.div_final:g})"
        )


def one_cycle_momentum(
    total_steps: int,
    pct_start: float = 0.25,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
) -> CombinedCos:
    """The momentum (Adam's beta1) schedule that goes with :class:`OneCycle`.

    Example:
        >>> round(one_cycle_momentum(100).lr_at(25), 6)
        0.85
    """
    return CombinedCos(pct_start, moms[0], moms[1], moms[2], total_steps)


class Cosine(Schedule):
    """Cosine annealing ``lr_min + (lr_max - lr_min)(1 + cos(pi t/T))/2`` after a linear warm-up.

    Example:
        >>> s = Cosine(1.0, total_steps=10)
        >>> s.lr_at(0), s.lr_at(5), s.lr_at(10)
        (1.0, 0.5, 0.0)
    """

    def __init__(
        self, lr_max: float, total_steps: int, lr_min: float = 0.0, warmup_steps: int = 0
    ) -> None:
        self.lr_max, self.lr_min = float(lr_max), float(lr_min)
        self.total_steps = _check_total(total_steps)
        if not 0 <= warmup_steps < total_steps:
            raise ConfigError(f"expected 0 <= warmup_steps < total_steps, received {warmup_steps}")
        self.warmup_steps = warmup_steps
        self._total: int = self.total_steps

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr_max * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / (self._total - self.warmup_steps)
        t = min(max(t, 0.0), 1.0)
        return self.lr_min + (self.lr_max - self.lr_min) * (1 + math.cos(math.pi * t)) / 2


class Cyclic(Schedule):
    """Leslie Smith's cyclical learning rate (CLR, 2017).

    ``cycle = floor(1 + step / (2 step_size))``, ``x = |step / step_size - 2 cycle + 1|``,
    ``lr = base_lr + (max_lr - base_lr) max(0, 1 - x) scale`` where ``scale`` is 1
    (``triangular``), ``1 / 2^(cycle-1)`` (``triangular2``) or ``gamma^step`` (``exp_range``).

    Example:
        >>> s = Cyclic(0.1, 1.0, step_size=10)
        >>> s.lr_at(0), s.lr_at(10), s.lr_at(20), round(s.lr_at(5), 6)
        (0.1, 1.0, 0.1, 0.55)
        >>> Cyclic(0.0, 1.0, 10, mode="triangular2").lr_at(30)
        0.5
    """

    def __init__(
        self,
        base_lr: float,
        max_lr: float,
        step_size: int,
        mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
        gamma: float = 1.0,
        total_steps: int | None = None,
    ) -> None:
        if step_size < 1:
            raise ConfigError(f"expected step_size >= 1, received {step_size!r}")
        if mode not in ("triangular", "triangular2", "exp_range"):
            raise ConfigError(
                f"expected mode triangular, triangular2 or exp_range, received {mode!r}"
            )
        self.base_lr, self.max_lr, self.step_size = float(base_lr), float(max_lr), step_size
        self.mode, self.gamma, self.total_steps = mode, float(gamma), total_steps

    def lr_at(self, step: int) -> float:
        cycle = math.floor(1 + step / (2 * self.step_size))
        x = abs(step / self.step_size - 2 * cycle + 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / 2 ** (cycle - 1)
        else:
            scale = self.gamma**step
        return self.base_lr + (self.max_lr - self.base_lr) * max(0.0, 1 - x) * scale


class Exponential(Schedule):
    """fastai's ``SchedExp``: ``start (end/start)^(step/total_steps)``.

    Example:
        >>> s = Exponential(1e-7, 10.0, total_steps=8)
        >>> s.lr_at(0), round(s.lr_at(8), 6)
        (1e-07, 10.0)
    """

    def __init__(self, start: float, end: float, total_steps: int) -> None:
        if not 0 < start < end:
            raise ConfigError(f"expected 0 < start < end, received {start!r}, {end!r}")
        self.start, self.end, self.total_steps = float(start), float(end), _check_total(total_steps)

    def lr_at(self, step: int) -> float:
        return float(self.start * (self.end / self.start) ** self._pos(step))
