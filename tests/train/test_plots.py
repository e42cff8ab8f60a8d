"""recfit.plots: figures build headless and show what they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recfit.data import Interactions
from recfit.models import DotBias
from recfit.plots import plot_losses, plot_lr_find, plot_schedule
from recfit.train import Learner
from recfit.train.lr_finder import LRFinderResult, suggest
from recfit.train.schedules import OneCycle, one_cycle_momentum


def test_loss_curves_from_history(tiny: Interactions, tmp_path: Path) -> None:
    learn = Learner(DotBias(tiny.n_users, tiny.n_items, 4), tiny, tiny, progress=False).fit(3)
    fig = plot_losses(learn.history_frame(), metrics=("rmse",))
    train_line = fig.axes[0].get_lines()[0]
    assert list(train_line.get_ydata()) == [h["train_loss"] for h in learn.history]
    fig.savefig(tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 1000


def test_schedule_and_lr_find_plots() -> None:
    fig = plot_schedule(OneCycle(1e-2, 40), moms=one_cycle_momentum(40))
    assert len(fig.axes) == 2
    lrs = np.logspace(-6, 0, 50)
    losses = np.concatenate([np.linspace(2, 0.5, 40), np.linspace(0.6, 4, 10)])
    fig = plot_lr_find(LRFinderResult(lrs, losses, suggest(lrs, losses)))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.get_lines()) == 4  # the curve and three suggestions


def test_schedule_plot_takes_any_values_per_step() -> None:
    """plot_schedule needs no Schedule class: anything with values(n) or a sequence."""
    import pandas as pd

    class Ramp:
        def values(self, n: int | None = None) -> np.ndarray:
            return np.linspace(0.0, 1.0, n or 5)

    fig = plot_schedule(Ramp(), 7, moms=pd.Series([0.9] * 7))
    assert len(fig.axes[0].get_lines()[0].get_ydata()) == 7
    assert list(fig.axes[1].get_lines()[0].get_ydata()) == [0.9] * 7
