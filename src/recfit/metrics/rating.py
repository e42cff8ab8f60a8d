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
    "METRICS",
    "Metric",
    "get_metric",
    "higher_is_better",
    "mae",
    "mse",
    "r2",
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

    ``t̄_w`` is the weighted mean target. NaN when the targets do not vary.

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
    if ss_tot <= 0:
        return math.nan
    return float(1.0 - (ww * (p - t) ** 2).sum() / ss_tot)


METRICS: dict[str, Metric] = {"mse": mse, "rmse": rmse, "mae": mae, "r2": r2}
"""Metric functions by name (the names a :class:`~recfit.train.Learner` accepts)."""

_HIGHER_IS_BETTER = {"r2"}


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the named metric is better (``r2``), else smaller is.

    Example:
        >>> higher_is_better("r2"), higher_is_better("rmse")
        (True, False)
    """
    return name in _HIGHER_IS_BETTER


def get_metric(name: str) -> Metric:
    """The metric function registered as ``name``.

    Example:
        >>> get_metric("mae")([1.0], [2.0])
        1.0
    """
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(
            f"expected a metric among {sorted(METRICS)}, received {name!r} (parameter 'metrics')"
        ) from None
