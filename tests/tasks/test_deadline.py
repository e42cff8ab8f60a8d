"""auto's per-fit timer: the clock, the pace projection, and the compiled epochs it keeps."""

from __future__ import annotations

import time

import pytest

from recfit.config import RatingConfig
from recfit.data.split import random_split
from recfit.data.synthetic import synthetic
from recfit.errors import CancelFitException
from recfit.tasks import blend
from recfit.tasks.tuning.deadline import Deadline


class _Pace:
    """What :class:`Deadline` reads of a Learner: 10 epochs of 10 steps."""

    n_epochs, n_iter, epoch, iter = 10, 10, 0, 0


def test_a_fit_whose_pace_passes_its_deadline_is_cut_early() -> None:
    """After 1 % of the steps no projection yet; after 5 % a pace that ends past the
    deadline cuts the fit at once (``projected``), well before the deadline itself."""
    stop = Deadline(time.perf_counter() + 5.0)
    stop.learn = _Pace()  # type: ignore[assignment]
    stop.start = time.perf_counter() - 1.0  # 1 s for the steps done so far
    stop.after_batch()  # 1 step of 100 done: too early to say
    assert not stop.hit
    stop.learn.iter = 4  # type: ignore[misc]  # 5 steps in 1 s: 100 steps end at +19 s
    with pytest.raises(CancelFitException):
        stop.after_batch()
    assert stop.hit and stop.projected
    quick = Deadline(time.perf_counter() + 50.0)
    quick.learn, quick.start = _Pace(), time.perf_counter() - 1.0  # type: ignore[assignment]
    quick.learn.iter = 4  # type: ignore[misc]
    quick.after_epoch()  # ends at +19 s, before +50 s: goes on
    assert not quick.hit


def test_a_fit_under_the_deadline_keeps_its_compiled_epochs(kernel_epochs: list[int]) -> None:
    """A candidate's fit inside auto runs each epoch as one compiled kernel when its
    family has that path (the timer is checked after each kernel epoch), not step by
    step; a deadline already past cancels it after the first kernel epoch."""
    calls = kernel_epochs
    d = synthetic(4000, 80, 60, seed=0)
    split = random_split(d, 0.2, seed=0)
    cut = blend.inner_cut(split.data, split.train_idx, seed=0)
    cfg = RatingConfig(model="svdpp", epochs=3, budget=0.0)
    stop = Deadline(time.perf_counter() + 600.0)
    learner = blend.train_on(cfg, cut, [stop])
    assert learner.path is not None and learner.path.dense_epochs
    assert len(calls) == 3 and not stop.hit
    calls.clear()
    late = Deadline(time.perf_counter() - 1.0)
    blend.train_on(cfg, cut, [late])
    assert late.hit and len(calls) == 1
