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

from recfit.errors import DataError
from recfit.metrics.registry import metric_info

__all__ = [
    "METRICS",
    "Metric",
    "higher_is_better",
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


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the named metric is better
    (:func:`recfit.metrics.registry.metric_info`, which holds every metric's direction).

    Raises:
        UnknownMetricError: ``name`` is not a metric recfit reports.

    Example:
        >>> higher_is_better("r2"), higher_is_better("rmse"), higher_is_better("recall@20")
        (True, False, True)
    """
    return metric_info(name).higher_is_better
