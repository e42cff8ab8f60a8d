"""Metrics of a predicted distribution over rating levels, and the lookup of every
rating-scale metric by name.

A level model (a rating classifier) predicts, for each row, probabilities over the ``K``
rating levels; these metrics score that distribution against the true ratings, weighted
like every other metric (a weight of 0 means the row does not exist).

Example:
    >>> level_accuracy([[0.7, 0.3], [0.6, 0.4]], [1.0, 2.0], [1.0, 2.0])
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from recfit.errors import ConfigError, DataError
from recfit.metrics.classification import accuracy, balanced_accuracy, f1
from recfit.metrics.decoding import decode_argmax, decode_expected, ratings_to_levels
from recfit.metrics.rating import METRICS, Metric, mse

__all__ = [
    "LEVEL_METRICS",
    "LevelMetric",
    "get_metric",
    "is_level_metric",
    "level_accuracy",
    "level_balanced_accuracy",
]


LevelMetric = Callable[[Any, Any, Any, Any], float]
"""``fn(probs, levels, rating, weight)``: a metric of a predicted distribution over rating
levels (``probs`` of shape ``(n, K)``, ``levels`` the ``K`` ratings) against true ratings."""


def _level_inputs(
    probs: Any, levels: Any, rating: Any, weight: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(probs, grid, true ratings, true levels, weights) over the rows of positive weight."""
    pr = np.asarray(probs, dtype=np.float64)
    grid = np.asarray(levels, dtype=np.float64).reshape(-1)
    t = np.asarray(rating, dtype=np.float64).reshape(-1)
    if pr.ndim != 2 or pr.shape != (len(t), len(grid)):
        raise DataError(
            f"expected probabilities of shape ({len(t)}, {len(grid)}), received {pr.shape}",
            column="probs",
        )
    w = None
    if weight is not None:
        w = np.asarray(weight, dtype=np.float64).reshape(-1)
        if w.shape != t.shape:
            raise DataError(
                f"expected one weight per row ({t.size}), received {w.size}", column="weight"
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataError(
                "expected finite non-negative weights, received others", column="weight"
            )
        keep = w > 0
        if not keep.all():  # weight 0: the row does not exist (its rating may be off the grid)
            pr, t, w = pr[keep], t[keep], w[keep]
    return pr, grid, t, ratings_to_levels(t, grid), w


def _argmax_levels(probs: np.ndarray) -> np.ndarray:
    return np.argmax(probs, axis=1).astype(np.int64) if len(probs) else np.zeros(0, np.int64)


def level_accuracy(probs: Any, levels: Any, rating: Any, weight: Any = None) -> float:
    """Weighted accuracy of the most likely level.

    Example:
        >>> level_accuracy([[0.7, 0.3], [0.6, 0.4]], [1.0, 2.0], [1.0, 2.0])
        0.5
    """
    pr, _, _, t, w = _level_inputs(probs, levels, rating, weight)
    return accuracy(_argmax_levels(pr), t, w)


def level_balanced_accuracy(probs: Any, levels: Any, rating: Any, weight: Any = None) -> float:
    """Weighted balanced accuracy (mean recall per true level) of the most likely level.

    Example:
        >>> level_balanced_accuracy([[0.7, 0.3], [0.6, 0.4], [0.6, 0.4]], [1, 2], [1, 2, 2])
        0.5
    """
    pr, _, _, t, w = _level_inputs(probs, levels, rating, weight)
    return balanced_accuracy(_argmax_levels(pr), t, w)


def _f1(average: Any) -> LevelMetric:
    def fn(probs: Any, levels: Any, rating: Any, weight: Any = None) -> float:
        pr, _, _, t, w = _level_inputs(probs, levels, rating, weight)
        return float(f1(_argmax_levels(pr), t, w, average=average))

    fn.__name__ = f"level_{average}_f1"
    fn.__doc__ = f"{average.capitalize()} F1 over the levels of the most likely level (weighted)."
    return fn


def _decoded(kind: str, root: bool) -> LevelMetric:
    def fn(probs: Any, levels: Any, rating: Any, weight: Any = None) -> float:
        pr, grid, t, _, w = _level_inputs(probs, levels, rating, weight)
        dec = decode_argmax if kind == "argmax" else decode_expected
        pred = dec(pr, grid) if len(pr) else np.zeros(0)
        err = mse(pred, t, w)
        return math.sqrt(err) if root else err

    fn.__name__ = f"{'r' if root else ''}mse_{kind}"
    fn.__doc__ = f"{'RMSE' if root else 'MSE'} in rating units of the {kind} decoding (weighted)."
    return fn


LEVEL_METRICS: dict[str, LevelMetric] = {
    "accuracy": level_accuracy,
    "balanced_accuracy": level_balanced_accuracy,
    "macro_f1": _f1("macro"),
    "weighted_f1": _f1("weighted"),
    "mse_argmax": _decoded("argmax", False),
    "rmse_argmax": _decoded("argmax", True),
    "mse_expected": _decoded("expected", False),
    "rmse_expected": _decoded("expected", True),
}
"""Metrics of a predicted level distribution, ``fn(probs, levels, rating, weight)``, by name.
The Learner computes them from ``predict_proba(data)`` for models with rating levels."""


def is_level_metric(name: str) -> bool:
    """Whether ``name`` is a metric of a level distribution (see :data:`LEVEL_METRICS`).

    Example:
        >>> is_level_metric("accuracy"), is_level_metric("mse")
        (True, False)
    """
    return name in LEVEL_METRICS


def get_metric(name: str) -> Metric | LevelMetric:
    """The metric function registered as ``name`` (in :data:`METRICS` or
    :data:`LEVEL_METRICS`).

    Example:
        >>> get_metric("mae")([1.0], [2.0])
        1.0
    """
    if name in METRICS:
        return METRICS[name]
    if name in LEVEL_METRICS:
        return LEVEL_METRICS[name]
    raise ConfigError(
        f"expected a metric among {sorted([*METRICS, *LEVEL_METRICS])}, received {name!r} "
        "(parameter 'metrics')"
    )
