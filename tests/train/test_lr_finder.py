"""LR range test: sensible range on a problem with a known good LR; state restored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import DotBias
from recfit.train import Callback, Learner
from recfit.train.lr_finder import minimum, steep, suggest, valley
from recfit.train.schedules import Constant


def _bias_only() -> tuple[Interactions, DotBias]:
    # prediction = b_u + b_i, loss (b_u + b_i - r)²: Hessian eigenvalue 4, so plain SGD
    # converges for lr < 0.5 (fastest at 0.25) and diverges above.
    rng = np.random.default_rng(0)
    n = 2000
    d = Interactions.from_arrays(np.zeros(n, int), np.zeros(n, int), 3 + 0.5 * rng.normal(size=n))
    return d, DotBias(1, 1, 0, bias_init_std=0.0)


def test_lr_find_on_a_problem_with_known_good_lr() -> None:
    d, model = _bias_only()
    learn = Learner(model, d, opt="sgd", wd=0.0, bs=16, progress=False)
    res = learn.lr_find(1e-5, 10.0, 100)
    assert res.diverged  # lr grows past 0.5
    assert res.lrs[-1] < 10.0 and len(res.lrs) < 100
    for name in ("valley", "steep", "minimum"):
        assert 1e-3 < res.suggestions[name] < 0.5, (name, res.suggestions)
    assert res.valley == res.suggestions["valley"]
    fig = res.plot()
    assert fig.axes[0].get_xscale() == "log"


def test_lr_find_restores_model_optimizer_and_rng(tiny: Interactions) -> None:
    def fresh() -> Learner:
        return Learner(DotBias(tiny.n_users, tiny.n_items, 4, seed=1), tiny, progress=False)

    a = fresh()
    a.fit(1, 1e-2)
    state = {k: v.clone() for k, v in a.model.state_dict().items()}
    opt_state = a.opt.state_dict()
    a.lr_find(num_it=30)
    for k, v in a.model.state_dict().items():
        assert v.equal(state[k])
    for x, y in zip(a.opt.state_dict()["exp_avg"], opt_state["exp_avg"], strict=True):
        assert x.equal(y)
    assert len(a.history) == 1
    a.fit(1, 1e-2)
    b = fresh()
    b.fit(1, 1e-2)
    b.fit(1, 1e-2)
    assert a.history_frame().drop(columns="time").equals(b.history_frame().drop(columns="time"))


def test_lr_find_before_any_fit_leaves_no_optimizer(tiny: Interactions) -> None:
    learn = Learner(DotBias(tiny.n_users, tiny.n_items, 4), tiny, progress=False)
    res = learn.lr_find(num_it=20)
    assert learn.opt is None and len(res.lrs) <= 20
    with pytest.raises(ConfigError):
        learn.lr_find(1.0, 0.1)
    with pytest.raises(ConfigError):
        learn.lr_find(num_it=1)


def test_trial_undoes_training_even_when_it_raises(tiny: Interactions) -> None:
    learn = Learner(DotBias(tiny.n_users, tiny.n_items, 4, seed=1), tiny, progress=False)
    learn.fit(1, 1e-2)
    state = {k: v.clone() for k, v in learn.model.state_dict().items()}
    steps = learn.opt.state_dict()["step_count"]
    with pytest.raises(RuntimeError, match="stop"), learn.trial():
        learn.fit(2, 1e-2)
        assert len(learn.history) == 3
        raise RuntimeError("stop")
    assert all(v.equal(state[k]) for k, v in learn.model.state_dict().items())
    assert learn.opt.state_dict()["step_count"] == steps and len(learn.history) == 1


def test_fit_schedule_keeps_momentum_and_takes_callbacks_for_one_fit(tiny: Interactions) -> None:
    class Count(Callback):
        n = 0

        def after_batch(self) -> None:
            self.n += 1

    learn = Learner(DotBias(tiny.n_users, tiny.n_items, 4), tiny, tiny, progress=False)
    learn.fit_one_cycle(1, 1e-2)  # ends near the cycle's final momentum, 0.95
    mom, count = learn.mom, Count()
    learn.fit_schedule(1, Constant(1e-3), cbs=[count], validate=False)
    assert count.n == learn.steps_per_epoch and count not in learn.cbs
    assert learn.mom == mom > 0.93 and len(learn.history) == 1  # no validation, no row
    learn.fit(1, 1e-3)  # fit's default momentum
    assert learn.mom == pytest.approx(0.9) and count.n == learn.steps_per_epoch


def test_suggestion_functions() -> None:
    lrs = np.logspace(-6, 0, 61)
    losses = np.concatenate([np.full(10, 2.0), np.linspace(2.0, 0.2, 40), np.linspace(0.3, 9, 11)])
    assert minimum(lrs, losses) == pytest.approx(lrs[49] / 10)
    g = np.diff(losses) / np.diff(np.log(lrs))
    assert steep(lrs, losses) == lrs[int(np.argmin(g))]
    v = valley(lrs, losses)
    assert lrs[10] < v < lrs[49]
    s = suggest(lrs, np.where(np.arange(61) > 55, np.nan, losses), num_it=61)
    assert all(math.isfinite(x) for x in s.values())
    assert suggest(lrs[:5], losses[:5])["valley"] is None  # too few points to judge


def test_flat_noisy_curve_gets_no_suggestion_and_says_why() -> None:
    """A flat curve with noise: steep and minimum used to land on the noise."""
    rng = np.random.default_rng(3)
    lrs = np.logspace(-7, 1, 100)
    losses = 1.8 + 0.03 * rng.standard_normal(100)
    losses[-8:] += np.linspace(0.2, 1.5, 8)  # rises at the end, never falls
    old = {"steep": steep(lrs[10:95], losses[10:95]), "minimum": minimum(lrs[10:95], losses[10:95])}
    assert old["steep"] < 1e-2 or old["minimum"] < 1e-2  # what the raw rules give: noise
    s = suggest(lrs, losses, 100)
    assert s == {"valley": None, "steep": None, "minimum": None}
    from recfit.train.lr_finder import LRFinderResult, explain

    reason = explain(lrs, losses, 100)
    assert reason is not None and "flat" in reason
    res = LRFinderResult(lrs, losses, s, reason=reason)
    assert res.valley is None and res.steep is None
    fig = res.plot()
    assert "no suggestion" in fig.axes[0].get_title()


def test_steep_is_searched_on_the_descent_only() -> None:
    rng = np.random.default_rng(4)
    lrs = np.logspace(-7, 1, 100)
    losses = 2.0 + 0.03 * rng.standard_normal(100)
    losses[60:85] = np.linspace(2.0, 0.8, 25)
    losses[85:] = np.linspace(0.8, 4.0, 15)
    s = suggest(lrs, losses, 100)
    assert s["steep"] is not None and lrs[58] <= s["steep"] <= lrs[85]
    assert s["minimum"] is not None and lrs[80] / 10 <= s["minimum"] <= lrs[86] / 10


def test_ml100k_like_flat_curve_through_lr_find(tiny: Interactions) -> None:
    """A real range test on a model that barely learns in the range: no suggestion."""
    learn = Learner(DotBias(tiny.n_users, tiny.n_items, 4, seed=1), tiny, progress=False)
    res = learn.lr_find(1e-9, 1e-6, num_it=40)  # far too small to move the loss
    assert res.reason is not None
    assert res.suggestions == {"valley": None, "steep": None, "minimum": None}


def test_a_descent_of_one_point_suggests_no_steep_rather_than_nan() -> None:
    # the lowest loss lies at the very start of the window, below the noisy plateau
    lrs = np.logspace(-6, 0, 60)
    losses = np.full(60, 2.0)
    losses[6] = 1.0  # the window starts at num_it // 10 = 6
    losses[7:] += 0.001 * np.sin(np.arange(53.0))
    s = suggest(lrs, losses)
    assert s["steep"] is None
    assert s["minimum"] == pytest.approx(lrs[6] / 10)
