"""A callback that cancels a fit at a wall-clock deadline, or earlier when its pace says it
would end past it (a slow fit gives its time back instead of running to the deadline and
being cut). Used by ``model="auto"`` for each candidate's fit."""

from __future__ import annotations

import time
from collections.abc import Sequence

from recfit.errors import CancelFitException
from recfit.train.callbacks import Callback

__all__ = ["PROJECT_AFTER", "Deadline"]

PROJECT_AFTER = 0.05
"""A Learner fit is projected from its pace once this share of its steps is done (a
fit projected to end past its share of the budget is cut then)."""


class Deadline(Callback):
    """Cancels a fit once the clock passes ``at`` (``time.perf_counter()`` seconds), or,
    once :data:`PROJECT_AFTER` of its steps are done, as soon as the pace so far says the
    whole fit would end past ``at`` (``projected``: a slow family gives its time back
    early instead of running to ``at`` and being cut)."""

    order = -50

    def __init__(self, at: float) -> None:
        self.at = at
        self.hit = self.projected = False
        self.start = time.perf_counter()

    def before_fit(self) -> None:
        self.start = time.perf_counter()

    def _check(self) -> None:
        now = time.perf_counter()
        if now > self.at:
            self.hit = True
            raise CancelFitException("auto's time budget is spent")
        learn = self.learn
        total = learn.n_epochs * learn.n_iter
        done = learn.epoch * learn.n_iter + learn.iter + 1
        pace_end = self.start + (now - self.start) * total / max(done, 1)
        if total > 0 and done >= PROJECT_AFTER * total and pace_end > self.at:
            self.hit = self.projected = True
            raise CancelFitException("auto's time budget would be spent")

    def after_batch(self) -> None:
        self._check()

    def after_steps(
        self, lrs: Sequence[float], moms: Sequence[float], losses: Sequence[float]
    ) -> None:
        """An epoch run as one compiled kernel (no batch events): the clock and the pace
        are checked after it, so a fit inside auto keeps that fast path."""
        self._check()

    def after_epoch(self) -> None:
        self._check()
