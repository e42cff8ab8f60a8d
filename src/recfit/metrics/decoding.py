"""Rating levels: the grid of a rating scale, ratings as level indices, and decoding
predicted level probabilities back to ratings.

:func:`decode_argmax` picks the most likely level; :func:`decode_expected` takes the
expected rating under the predicted distribution; :func:`decoding_mse` reports the MSE /
RMSE of both in stars, so a classifier compares with regression models.

Example:
    >>> grid = levels_for_scale((1, 5))
    >>> ratings_to_levels([5.0, 1.0], grid).tolist()
    [4, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recfit.data.checks import row_weights
from recfit.errors import ConfigError, DataError
from recfit.metrics.rating import mse

__all__ = [
    "decode_argmax",
    "decode_expected",
    "decoding_mse",
    "levels_for_scale",
    "ratings_to_levels",
]


def levels_for_scale(scale: tuple[float, float] = (1.0, 5.0), step: float = 1.0) -> np.ndarray:
    """The rating values of the levels of a scale, lowest first.

    Args:
        scale: ``(lowest, highest)`` rating.
        step: distance between neighbouring ratings (1 for stars, 0.5 for half stars).

    Returns:
        A ``float64`` array; level ``i`` stands for rating ``levels[i]``.

    Example:
        >>> levels_for_scale((1, 5)).tolist()
        [1.0, 2.0, 3.0, 4.0, 5.0]
        >>> len(levels_for_scale((0.5, 5), step=0.5))
        10
    """
    lo, hi = float(scale[0]), float(scale[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ConfigError(f"expected a scale (low, high) with low < high, received {scale!r}")
    if not (np.isfinite(step) and step > 0):
        raise ConfigError(f"expected step > 0, received {step!r}")
    n = (hi - lo) / step
    if abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise ConfigError(
            f"expected (high - low) to be a multiple of step, received scale {scale!r}, step {step!r}"
        )
    return lo + step * np.arange(round(n) + 1, dtype=np.float64)


def _check_grid(levels: Any) -> np.ndarray:
    grid = np.asarray(levels, dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 2 or not np.isfinite(grid).all():
        raise ConfigError(f"expected a 1-d grid of at least 2 finite ratings, received {levels!r}")
    if (np.diff(grid) <= 0).any():
        raise ConfigError(f"expected strictly increasing rating levels, received {grid.tolist()}")
    return grid


def ratings_to_levels(ratings: Any, levels: Any) -> np.ndarray:
    """Map ratings to level indices on the grid ``levels`` (exactly, up to float32 rounding).

    Raises:
        DataError: a rating is not on the grid (with its row).

    Example:
        >>> ratings_to_levels([5.0, 1.0, 3.0], levels_for_scale((1, 5))).tolist()
        [4, 0, 2]
    """
    grid = _check_grid(levels)
    r = np.asarray(ratings, dtype=np.float64)
    if r.ndim != 1:
        raise DataError(f"expected a 1-d array of ratings, received {r.ndim}-d", column="rating")
    idx = np.clip(np.searchsorted(grid, r), 1, len(grid) - 1)
    left, right = grid[idx - 1], grid[idx]
    idx = np.where(np.abs(r - left) <= np.abs(right - r), idx - 1, idx)
    tol = 1e-6 * np.maximum(1.0, np.abs(grid[idx]))
    off = ~(np.abs(r - grid[idx]) <= tol)  # also catches nan
    if off.any():
        row = int(np.argmax(off))
        raise DataError(
            f"expected ratings on the grid {grid.tolist()}, received {float(r[row])!r}",
            row=row,
            column="rating",
        )
    return idx.astype(np.int64)


def _check_probs(probs: Any, grid: np.ndarray) -> np.ndarray:
    pr = np.asarray(probs, dtype=np.float64)
    if pr.ndim != 2 or pr.shape[1] != len(grid):
        raise DataError(
            f"expected probabilities of shape (n, {len(grid)}), received {pr.shape}",
            column="probs",
        )
    bad = ~np.isfinite(pr).all(axis=1) | (pr < 0).any(axis=1) | (np.abs(pr.sum(axis=1) - 1) > 1e-3)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            "expected non-negative probabilities summing to 1 per row (softmax the logits "
            f"first), received {pr[row].tolist()}",
            row=row,
            column="probs",
        )
    return pr


def decode_argmax(probs: Any, levels: Any) -> np.ndarray:
    """The rating of the most likely level of each row (ties: the lowest level).

    Example:
        >>> decode_argmax([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], [1.0, 2.0, 3.0]).tolist()
        [2.0, 1.0]
    """
    grid = _check_grid(levels)
    pr = _check_probs(probs, grid)
    out: np.ndarray = grid[np.argmax(pr, axis=1)]
    return out


def decode_expected(probs: Any, levels: Any) -> np.ndarray:
    """The expected rating of each row under its predicted level distribution.

    Example:
        >>> decode_expected([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]], [1.0, 2.0, 3.0]).round(6).tolist()
        [2.2, 2.0]
    """
    grid = _check_grid(levels)
    pr = _check_probs(probs, grid)
    out: np.ndarray = pr @ grid
    return out


def decoding_mse(probs: Any, levels: Any, target: Any, weight: Any = None) -> dict[str, float]:
    """MSE and RMSE, in rating units, of the argmax and the expected-rating decodings.

    Args:
        probs: predicted level probabilities, shape ``(n, K)``.
        levels: the rating of each level (``K`` values).
        target: true ratings (not level indices), shape ``(n,)``.
        weight: optional row weights.

    Returns:
        ``{"mse_argmax", "rmse_argmax", "mse_expected", "rmse_expected"}``
        (``nan`` when the weights sum to 0).

    Example:
        >>> m = decoding_mse([[0.2, 0.8], [0.6, 0.4]], [1.0, 2.0], [2.0, 2.0])
        >>> m["mse_argmax"], round(m["mse_expected"], 6)
        (0.5, 0.2)
    """
    t = np.asarray(target, dtype=np.float64)
    if t.ndim != 1:
        raise DataError(f"expected 1-d target ratings, received {t.ndim}-d", column="target")
    pa, pe = decode_argmax(probs, levels), decode_expected(probs, levels)
    if len(t) != len(pa):
        raise DataError(f"expected {len(pa)} target ratings (one per row), received {len(t)}")
    w = row_weights(weight, len(t))
    out: dict[str, float] = {}
    for name, p in (("argmax", pa), ("expected", pe)):
        err = mse(p, t, w)
        out[f"mse_{name}"] = err
        out[f"rmse_{name}"] = float(np.sqrt(err))
    return out
