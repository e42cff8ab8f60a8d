"""Matplotlib figures: loss curves, schedules, the LR finder, metrics by epoch, confusion
matrices and seed-averaged comparisons. Every plot recfit draws lives here.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, no global
backend change), so they work headless; save them with ``fig.savefig(path)``. Importing
this module imports matplotlib: modules below it import it inside the function that
draws.

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
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recfit.errors import ConfigError
from recfit.metrics.classification import Normalize, normalize_confusion

__all__ = [
    "LRCurve",
    "StepValues",
    "plot_comparison",
    "plot_confusion_matrix",
    "plot_losses",
    "plot_lr_find",
    "plot_metric_by_epoch",
    "plot_schedule",
    "plot_trials",
]


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


def plot_metric_by_epoch(
    curves: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "top_100_accuracy"
) -> Figure:
    """One line per label: ``metric`` against the (1-based) epoch, like keras-rs's plot.

    Args:
        curves: label → records ``{"epoch": e, metric: value, ...}`` (as in
            :attr:`recfit.tasks.retrieval.RetrievalResult.epoch_metrics`).
        metric: the metric to plot.

    Example:
        >>> fig = plot_metric_by_epoch({"1 layer": [{"epoch": 5, "top_100_accuracy": 0.2}]})
        >>> fig.axes[0].get_ylabel()
        'top_100_accuracy'
    """
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for label, recs in curves.items():
        xs = [r["epoch"] for r in recs if metric in r]
        ys = [r[metric] for r in recs if metric in r]
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_title(f"{metric} vs epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if curves:
        ax.legend()
    return fig


def plot_trials(trials: Sequence[Mapping[str, Any]], metric: str, mode: str = "min") -> Figure:
    """A hyper-parameter search: each trial's score by its number (pruned and timed-out
    trials at their last value, hollow), the best so far, the default trial circled; and
    each trial's inner metric by epoch.

    Args:
        trials: records with ``number``, ``state``, ``score``, ``curve`` and ``default``
            (as :class:`recfit.tasks.tuning.Trial` gives them).
        metric: the metric scored.
        mode: ``"min"`` or ``"max"``, its direction.

    Example:
        >>> fig = plot_trials([{"number": 0, "state": "complete", "score": 0.9,
        ...                     "curve": [1.0, 0.9], "default": True}], "rmse")
        >>> [ax.get_xlabel() for ax in fig.axes]
        ['trial', 'epoch']
    """
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    done = [t for t in trials if t["state"] == "complete" and t["score"] is not None]
    stopped = [t for t in trials if t["state"] in ("pruned", "timeout") and t["curve"]]
    left.scatter([t["number"] for t in done], [t["score"] for t in done], s=18, label="complete")
    if stopped:
        left.scatter([t["number"] for t in stopped], [t["curve"][-1] for t in stopped], s=18,
                     facecolors="none", edgecolors="grey", label="pruned (last epoch)")  # fmt: skip
    if done:
        pick = min if mode == "min" else max
        xs = [t["number"] for t in done]
        ys = list(np.asarray([t["score"] for t in done], dtype=float))
        best = [pick(ys[: k + 1]) for k in range(len(ys))]
        left.step(xs, best, where="post", color="C3", label="best so far")
        left.set_ylim(*_score_limits(ys, mode))
    for t in trials:
        if t.get("default") and t["state"] == "complete":
            left.scatter([t["number"]], [t["score"]], s=90, facecolors="none",
                         edgecolors="C2", label="default")  # fmt: skip
        if t["curve"]:
            right.plot(range(len(t["curve"])), t["curve"], lw=0.8, alpha=0.6,
                       color="C0" if t["state"] == "complete" else "grey")  # fmt: skip
    if done:
        right.set_ylim(*_score_limits(ys, mode))
    left.set_xlabel("trial")
    left.set_ylabel(f"inner {metric}")
    left.legend(fontsize=8)
    right.set_xlabel("epoch")
    right.set_ylabel(f"inner {metric}")
    right.set_title("by epoch (grey: stopped)", fontsize=10)
    return fig


def _score_limits(ys: Sequence[float], mode: str) -> tuple[float, float]:
    """Axis limits that show the good scores rather than the worst outliers."""
    if mode == "min":
        lo, hi = float(np.min(ys)), float(np.quantile(ys, 0.9))
    else:
        lo, hi = float(np.quantile(ys, 0.1)), float(np.max(ys))
    pad = max(hi - lo, 1e-3) * 0.15
    return lo - pad, hi + pad


def _figure_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """The given axes and their figure, or a new headless (Agg) figure of ``size``."""
    if ax is not None:
        return ax.get_figure(), ax  # type: ignore[return-value]
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_confusion_matrix(
    cm: Any,
    labels: Sequence[str] | None = None,
    normalize: Normalize | None = None,
    *,
    title: str | None = None,
    ax: Axes | None = None,
    cmap: str = "Blues",
) -> Figure:
    """Draw a confusion matrix (true levels as rows) as an annotated heat map.

    Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend
    change), so it works headless; save with ``fig.savefig("cm.png")``.

    Args:
        cm: a ``(K, K)`` matrix from :func:`confusion_matrix` (counts or normalised).
        labels: tick labels, one per level (default ``0..K-1``).
        normalize: normalise the counts first (``"true"``, ``"pred"``, ``"all"``).
        title: figure title.
        ax: draw into these axes instead of a new figure.
        cmap: matplotlib colour map name.

    Example:
        >>> fig = plot_confusion_matrix([[5, 1], [2, 8]], ["1", "2"], normalize="true")
        >>> fig.axes[0].get_xlabel()
        'predicted'
    """
    m = normalize_confusion(cm, normalize)
    k = m.shape[0]
    names = [str(i) for i in range(k)] if labels is None else [str(x) for x in labels]
    if len(names) != k:
        raise ConfigError(f"expected {k} labels (one per level), received {len(names)}")
    fig, ax = _figure_axes(ax, (1.2 + 0.6 * k, 1.0 + 0.55 * k))
    image = ax.imshow(m, cmap=cmap, vmin=0.0, vmax=max(float(m.max(initial=0.0)), 1e-12))
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    top = float(m.max(initial=0.0))
    integral = normalize is None and bool(np.all(m == np.round(m)))
    for i in range(k):
        for j in range(k):
            v = m[i, j]
            text = f"{v:.0f}" if integral else f"{v:.2f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if top > 0 and v > 0.6 * top else "black",
            )
    return fig


def plot_comparison(
    summary: pd.DataFrame,
    metric: str,
    *,
    baseline: str | None = None,
    interval: str = "std",
    n_seeds: int | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Bar chart of one metric per configuration with error bars (the baseline darker).

    Args:
        summary: one row per configuration, indexed by its name, with columns ``mean``
            and ``hi`` (the upper end of the interval), as
            :meth:`recfit.experiments.ExperimentResults.summary` gives for one metric.
        metric: the metric's name (the y label).
        baseline: the configuration drawn darker.
        interval: ``"std"`` (mean ± 2σ) or ``"sem"`` (95% Student-t), for the title.
        n_seeds: the number of seeds, for the title.
        ax: draw into these axes instead of a new figure.
        title: the title (default: the metric, the interval and the seeds).

    Example:
        >>> s = pd.DataFrame({"mean": [0.4, 0.5], "hi": [0.45, 0.52]}, index=["a", "b"])
        >>> fig = plot_comparison(s, "acc", baseline="a")
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
        ['a', 'b']
    """
    configs = [str(c) for c in summary.index]
    fig, ax = _figure_axes(ax, (max(4.0, 1.1 * len(configs) + 1.5), 3.6))
    means = summary["mean"].to_numpy(dtype=np.float64)
    err = np.nan_to_num((summary["hi"] - summary["mean"]).to_numpy(dtype=np.float64))
    colors = ["#1f4e79" if n == baseline else "#6fa8dc" for n in configs]
    x = np.arange(len(configs))
    ax.bar(x, means, yerr=err, capsize=5, color=colors, edgecolor="black")
    ax.set_xticks(x, configs, rotation=20 if len(configs) > 4 else 0)
    ax.set_ylabel(metric)
    kind = "± 2σ, standard deviation" if interval == "std" else "95% Student-t interval"
    seeds = f" over {n_seeds} seeds" if n_seeds is not None else ""
    ax.set_title(title or f"{metric}: mean {kind}{seeds}")
    for xi, m, e in zip(x, means, err, strict=True):
        ax.annotate(
            f"{m:.3f}", (xi, m + e), textcoords="offset points", xytext=(0, 3), ha="center",
            fontsize=8,
        )  # fmt: skip
    return fig
