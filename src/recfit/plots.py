"""Matplotlib figures: loss curves, schedules, the LR finder.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global
backend change), so they work headless; save them with ``fig.savefig(path)``.

Example:
    >>> fig = plot_losses([{"epoch": 0, "train_loss": 1.0, "valid_loss": 1.1},
    ...                    {"epoch": 1, "train_loss": 0.8, "valid_loss": 0.9}])
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['train_loss', 'valid_loss']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from matplotlib.figure import Figure

__all__ = ["LRCurve", "StepValues", "plot_losses", "plot_lr_find", "plot_schedule"]


@runtime_checkable
class StepValues(Protocol):
    """Anything with a value per step, such as a :class:`recfit.train.schedules.Schedule`."""

    def values(self, n: int | None = None) -> np.ndarray: ...


class LRCurve(Protocol):
    """What :func:`plot_lr_find` draws, such as a
    :class:`recfit.train.lr_finder.LRFinderResult`."""

    @property
    def lrs(self) -> np.ndarray: ...

    @property
    def losses(self) -> np.ndarray: ...

    @property
    def suggestions(self) -> Mapping[str, float | None]: ...


def _step_values(x: StepValues | Sequence[float], n: int | None) -> np.ndarray:
    # a pandas Series has a `values` attribute that is not a method: read it as numbers
    if isinstance(x, StepValues) and callable(x.values):
        return np.asarray(x.values(n))
    return np.asarray(x)


def plot_losses(
    history: Sequence[Mapping[str, Any]] | Any,
    keys: Sequence[str] = ("train_loss", "valid_loss"),
    metrics: Sequence[str] = (),
) -> Figure:
    """Loss curves per epoch from a Learner's ``history`` (list of dicts or DataFrame).

    Metrics named in ``metrics`` go on a second panel.
    """
    rows = history.to_dict("records") if hasattr(history, "to_dict") else list(history)
    fig = Figure(figsize=(6.4 * (1 + bool(metrics)) * 0.8, 4.0))
    axes = fig.subplots(1, 1 + bool(metrics), squeeze=False)[0]
    epochs = [r.get("epoch", i) + 1 for i, r in enumerate(rows)]
    for k in keys:
        vals = [float(r.get(k, np.nan)) for r in rows]
        if not np.all(np.isnan(vals)):
            axes[0].plot(epochs, vals, marker="o", label=k)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    if metrics:
        for m in metrics:
            axes[1].plot(epochs, [float(r.get(m, np.nan)) for r in rows], marker="o", label=m)
        axes[1].set_xlabel("epoch")
        axes[1].legend()
    fig.tight_layout()
    return fig


def plot_schedule(
    schedule: StepValues | Sequence[float],
    n: int | None = None,
    moms: Sequence[float] | StepValues | None = None,
) -> Figure:
    """LR per step (a :class:`~recfit.train.schedules.Schedule` or recorded values),
    with momentum on a second panel when given."""
    lrs = _step_values(schedule, n)
    mv = None if moms is None else _step_values(moms, len(lrs))
    fig = Figure(figsize=(9.0 if mv is not None else 5.0, 3.6))
    axes = fig.subplots(1, 2 if mv is not None else 1, squeeze=False)[0]
    axes[0].plot(np.arange(len(lrs)), lrs)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("learning rate")
    if mv is not None:
        axes[1].plot(np.arange(len(mv)), mv)
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("momentum")
    fig.tight_layout()
    return fig


def plot_lr_find(result: LRCurve, skip_end: int = 5) -> Figure:
    """Smoothed loss against LR (log x-axis) with the suggestions marked, like fastai."""
    lrs, losses = result.lrs, result.losses
    if skip_end and len(lrs) > skip_end:
        lrs, losses = lrs[:-skip_end], losses[:-skip_end]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    markers = {"valley": "o", "steep": "^", "minimum": "s"}
    shown = False
    for name, lr in result.suggestions.items():
        if lr is not None and np.isfinite(lr) and len(result.lrs):
            y = float(np.interp(np.log(lr), np.log(result.lrs), result.losses))
            ax.plot([lr], [y], markers.get(name, "x"), label=f"{name}: {lr:.2e}")
            shown = True
    if shown:
        ax.legend()
    reason = getattr(result, "reason", None)
    if reason:  # a flat curve: say so instead of marking noise
        ax.set_title("no suggestion: the loss curve is flat", fontsize=10)
        ax.text(0.02, 0.02, reason, transform=ax.transAxes, fontsize=7, wrap=True, va="bottom")
    fig.tight_layout()
    return fig
