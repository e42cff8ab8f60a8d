"""Rating-prediction metrics: pure functions of (prediction, target, weight).

Every metric aggregates over the whole set, Σ w·e / Σ w, in float64, in the units of the
ratings given (recfit always passes predictions in the original rating units). A weight
of 0 means the row does not exist: such rows are removed before summing, so adding
weight-0 rows never changes a value, not even in the last bit. Rows weighing 2 count
exactly like two copies of the row.

Example:
    >>> import numpy as np
    >>> mse(np.array([3.0, 4.0]), np.array([4.0, 4.0]))
    0.5
    >>> mse(np.array([3.0, 4.0]), np.array([4.0, 4.0]), np.array([0.0, 1.0]))
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from recfit.errors import ConfigError, DataError

__all__ = [
    "LEVEL_METRICS",
    "METRICS",
    "LevelMetric",
    "Metric",
    "get_metric",
    "higher_is_better",
    "is_level_metric",
    "mae",
    "mse",
    "r2",
    "r2_from_sums",
    "rmse",
]

Metric = Callable[[Any, Any, Any], float]


def _prepare(
    prediction: Any, target: Any, weight: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p = np.asarray(prediction, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise DataError(
            f"expected predictions and targets of the same length, received {p.size} and {t.size}"
        )
    if weight is None:
        return p, t, None
    w = np.asarray(weight, dtype=np.float64).reshape(-1)
    if w.shape != t.shape:
        raise DataError(
            f"expected one weight per row ({t.size}), received {w.size}", column="weight"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataError("expected finite non-negative weights, received others", column="weight")
    keep = w > 0
    if not keep.all():
        p, t, w = p[keep], t[keep], w[keep]
    return p, t, w


def _wmean(values: np.ndarray, w: np.ndarray | None) -> float:
    if w is None:
        return float(values.sum() / values.size) if values.size else math.nan
    total = w.sum()
    return float((w * values).sum() / total) if total > 0 else math.nan


def mse(prediction: Any, target: Any, weight: Any = None) -> float:
    """Weighted mean squared error Σ w (p - t)² / Σ w.

    Example:
        >>> mse([1.0, 2.0, 4.0], [1.0, 3.0, 2.0], [1.0, 2.0, 1.0])
        1.5
    """
    p, t, w = _prepare(prediction, target, weight)
    return _wmean((p - t) ** 2, w)


def rmse(prediction: Any, target: Any, weight: Any = None) -> float:
    """Square root of :func:`mse`.

    Example:
        >>> rmse([1.0, 3.0], [3.0, 1.0])
        2.0
    """
    return math.sqrt(mse(prediction, target, weight))


def mae(prediction: Any, target: Any, weight: Any = None) -> float:
    """Weighted mean absolute error Σ w |p - t| / Σ w.

    Example:
        >>> mae([1.0, 2.0, 4.0], [1.0, 3.0, 2.0], [1.0, 2.0, 1.0])
        1.0
    """
    p, t, w = _prepare(prediction, target, weight)
    return _wmean(np.abs(p - t), w)


def r2(prediction: Any, target: Any, weight: Any = None) -> float:
    """Weighted coefficient of determination 1 - Σ w (p - t)² / Σ w (t - t̄_w)².

    ``t̄_w`` is the weighted mean target. NaN when the targets do not vary
    (:func:`r2_from_sums`).

    Example:
        >>> r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        1.0
        >>> r2([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
        0.0
    """
    p, t, w = _prepare(prediction, target, weight)
    ww = np.ones_like(t) if w is None else w
    total = ww.sum()
    if total <= 0:
        return math.nan
    mean = (ww * t).sum() / total
    ss_tot = (ww * (t - mean) ** 2).sum()
    return r2_from_sums(float((ww * (p - t) ** 2).sum()), float(ss_tot), float((ww * t * t).sum()))


R2_CONSTANT = 1e-20
"""Targets whose weighted spread ``Σ w (t - t̄)²`` is at most this share of ``Σ w t²`` count
as constant: what is left of the spread is the rounding of ``t̄`` (identical targets can
leave ``1e-31`` where ``0`` is meant, which would make R² about ``-1e31``)."""


def r2_from_sums(ss_res: float, ss_tot: float, ss_raw: float) -> float:
    """R² from ``Σ w (p - t)²``, ``Σ w (t - t̄)²`` and ``Σ w t²``; NaN for constant targets.

    Example:
        >>> r2_from_sums(1.0, 4.0, 20.0), r2_from_sums(1.0, 1e-31, 66.0)
        (0.75, nan)
    """
    if not ss_tot > R2_CONSTANT * ss_raw:  # also 0 against 0, and NaN sums
        return math.nan
    return 1.0 - ss_res / ss_tot


METRICS: dict[str, Metric] = {"mse": mse, "rmse": rmse, "mae": mae, "r2": r2}
"""Metric functions by name (the names a :class:`~recfit.train.Learner` accepts)."""

# --------------------------------------------------------------------------- level metrics
LevelMetric = Callable[[Any, Any, Any, Any], float]
"""``fn(probs, levels, rating, weight)``: a metric of a predicted distribution over rating
levels (``probs`` of shape ``(n, K)``, ``levels`` the ``K`` ratings) against true ratings."""


def _level_inputs(
    probs: Any, levels: Any, rating: Any, weight: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(probs, grid, true ratings, true levels, weights) over the rows of positive weight."""
    from recfit.metrics.classification import ratings_to_levels

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
    from recfit.metrics.classification import accuracy

    pr, _, _, t, w = _level_inputs(probs, levels, rating, weight)
    return accuracy(_argmax_levels(pr), t, w)


def level_balanced_accuracy(probs: Any, levels: Any, rating: Any, weight: Any = None) -> float:
    """Weighted balanced accuracy (mean recall per true level) of the most likely level.

    Example:
        >>> level_balanced_accuracy([[0.7, 0.3], [0.6, 0.4], [0.6, 0.4]], [1, 2], [1, 2, 2])
        0.5
    """
    from recfit.metrics.classification import balanced_accuracy

    pr, _, _, t, w = _level_inputs(probs, levels, rating, weight)
    return balanced_accuracy(_argmax_levels(pr), t, w)


def _f1(average: Any) -> LevelMetric:
    def fn(probs: Any, levels: Any, rating: Any, weight: Any = None) -> float:
        from recfit.metrics.classification import f1

        pr, _, _, t, w = _level_inputs(probs, levels, rating, weight)
        return float(f1(_argmax_levels(pr), t, w, average=average))

    fn.__name__ = f"level_{average}_f1"
    fn.__doc__ = f"{average.capitalize()} F1 over the levels of the most likely level (weighted)."
    return fn


def _decoded(kind: str, root: bool) -> LevelMetric:
    def fn(probs: Any, levels: Any, rating: Any, weight: Any = None) -> float:
        from recfit.metrics.classification import decode_argmax, decode_expected

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


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the named metric is better
    (:func:`recfit.metrics.registry.metric_info`, which holds every metric's direction).

    Raises:
        UnknownMetricError: ``name`` is not a metric recfit reports.

    Example:
        >>> higher_is_better("r2"), higher_is_better("rmse"), higher_is_better("recall@20")
        (True, False, True)
    """
    from recfit.metrics.registry import metric_info

    return metric_info(name).higher_is_better


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
