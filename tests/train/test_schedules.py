"""Schedules against their formulas at key points."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from recfit.errors import ConfigError
from recfit.train import schedules
from recfit.train.schedules import (
    CombinedCos,
    Constant,
    Cosine,
    Cyclic,
    Exponential,
    OneCycle,
    Schedule,
    one_cycle_momentum,
    sched_cos,
)


def test_one_cycle_matches_fastai_formulas() -> None:
    total = 6000  # a quarter of it is a whole number of steps
    s = OneCycle(5e-3, total)
    assert s.lr_at(0) == pytest.approx(5e-3 / 25)
    warm = int(0.25 * total)
    assert s.lr_at(warm) == pytest.approx(5e-3)
    # half-way up: start + (1 + cos(pi/2)) (end - start) / 2
    assert s.lr_at(warm // 2) == pytest.approx(5e-3 / 25 + (5e-3 - 5e-3 / 25) / 2, rel=1e-3)
    down = warm + (total - warm) // 2
    assert s.lr_at(down) == pytest.approx((5e-3 + 5e-3 / 1e5) / 2, rel=1e-3)
    assert s.lr_at(total) == pytest.approx(5e-3 / 1e5)
    vals = s.values()
    assert vals.argmax() == warm and len(vals) == total
    assert np.all(np.diff(vals[:warm]) > 0) and np.all(np.diff(vals[warm:]) < 0)


def test_one_cycle_momentum() -> None:
    m = one_cycle_momentum(100, 0.25, (0.95, 0.85, 0.95))
    assert m.lr_at(0) == pytest.approx(0.95)
    assert m.lr_at(25) == pytest.approx(0.85)
    assert m.lr_at(100) == pytest.approx(0.95)
    assert m.lr_at(12) == pytest.approx(sched_cos(0.95, 0.85, 12 / 25))


def test_cyclic_modes() -> None:
    tri = Cyclic(0.1, 1.0, step_size=4)
    assert [tri.lr_at(k) for k in (0, 2, 4, 6, 8, 12)] == pytest.approx(
        [0.1, 0.55, 1.0, 0.55, 0.1, 1.0]
    )
    t2 = Cyclic(0.0, 1.0, step_size=4, mode="triangular2")
    assert [t2.lr_at(k) for k in (4, 12, 20)] == pytest.approx([1.0, 0.5, 0.25])
    ex = Cyclic(0.0, 1.0, step_size=4, mode="exp_range", gamma=0.9)
    assert ex.lr_at(4) == pytest.approx(0.9**4)
    with pytest.raises(ConfigError):
        Cyclic(0.1, 1.0, 4, mode="sine")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Cyclic(0.1, 1.0, 0)


def test_cosine_constant_exponential() -> None:
    c = Cosine(1.0, 100, lr_min=0.1, warmup_steps=10)
    assert c.lr_at(0) == pytest.approx(0.1) and c.lr_at(9) == pytest.approx(1.0)
    assert c.lr_at(10) == pytest.approx(1.0)
    assert c.lr_at(55) == pytest.approx(0.55)
    assert c.lr_at(100) == pytest.approx(0.1)
    assert Constant(0.3).lr_at(7) == 0.3
    e = Exponential(1e-7, 10.0, 100)
    assert e.lr_at(50) == pytest.approx(math.sqrt(1e-7 * 10.0))
    with pytest.raises(ConfigError):
        Exponential(1.0, 0.1, 10)
    with pytest.raises(ConfigError):
        CombinedCos(1.5, 0, 1, 0, 10)
    with pytest.raises(ConfigError):
        Constant(1.0).values()
    assert len(Cyclic(0.1, 1.0, 3).values(12)) == 12


def test_schedules_know_nothing_of_plotting() -> None:
    """Plotting a schedule lives in recfit.plots, which takes the schedule's values:
    the schedules module neither imports it nor offers a plot method."""
    assert "import recfit.plots" not in inspect.getsource(schedules)
    assert "from recfit.plots" not in inspect.getsource(schedules)
    assert not hasattr(Schedule, "plot")
    assert len(OneCycle(1e-2, 50).values()) == 50
