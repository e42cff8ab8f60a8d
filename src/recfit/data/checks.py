"""Value checks shared by every loader and metric: a :class:`~recfit.errors.DataError` at the
first bad row, naming the value, the file, the row and the column."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from recfit.errors import ConfigError, DataError

T = TypeVar("T")

__all__ = [
    "as_python",
    "check_rating_scale",
    "check_ratings",
    "check_weights",
    "fail_at",
    "first_row",
    "one_of",
    "row_weights",
    "to_float32",
]


def first_row(mask: np.ndarray) -> int:
    """The index of the first ``True`` in ``mask`` (0 when there is none)."""
    return int(np.argmax(mask))


def as_python(v: Any) -> Any:
    """A numpy scalar as the plain Python value (for readable messages)."""
    return v.item() if isinstance(v, np.generic) else v


def fail_at(
    bad: np.ndarray,
    message: Callable[[int], str],
    *,
    file: str | None = None,
    column: str | None = None,
    line_offset: int | None = None,
) -> None:
    """Raise a :class:`DataError` at the first row where ``bad`` holds, if any.

    ``message(row)`` writes the message for that row; ``line_offset`` turns the 0-based
    row into the file's 1-based line number.

    Example:
        >>> fail_at(np.array([False, True]), lambda r: f"expected 0, received row {r}")
        Traceback (most recent call last):
        ...
        recfit.errors.DataError: expected 0, received row 1 (row 1)
    """
    if bad.any():
        row = first_row(bad)
        raise DataError(
            message(row),
            file=file,
            row=row,
            line=None if line_offset is None else row + line_offset,
            column=column,
        )


def check_rating_scale(scale: Any) -> tuple[float, float] | None:
    """``(low, high)`` as floats with finite ``low < high``; ``None`` stays ``None``.

    Raises:
        ConfigError: anything else.

    Example:
        >>> check_rating_scale([1, 5])
        (1.0, 5.0)
    """
    if scale is None:
        return None
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ConfigError(f"expected rating_scale=(low, high), received {scale!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"expected rating_scale with finite low < high, received {scale!r}")
    return lo, hi


def check_ratings(
    r: np.ndarray,
    scale: tuple[float, float] | None,
    *,
    file: str | None = None,
    column: str = "rating",
) -> None:
    """Raise :class:`DataError` at the first non-finite or out-of-scale rating."""
    bad = ~np.isfinite(r)
    fail_at(
        bad,
        lambda row: (
            f"expected finite ratings, received {as_python(r[row])!r} in {int(bad.sum())} rows"
        ),
        file=file,
        column=column,
    )
    if scale is not None and len(r):
        lo, hi = scale
        out = (r < lo) | (r > hi)
        fail_at(
            out,
            lambda row: (
                f"expected ratings in [{lo:g}, {hi:g}], received {float(r[row]):g} "
                f"({int(out.sum())} rows outside)"
            ),
            file=file,
            column=column,
        )


def check_weights(w: np.ndarray, *, file: str | None = None, column: str = "weight") -> None:
    """Raise :class:`DataError` at the first non-finite or negative weight."""
    bad = ~np.isfinite(w) | (w < 0)
    fail_at(
        bad,
        lambda row: (
            f"expected finite non-negative weights, received {as_python(w[row])!r} "
            f"in {int(bad.sum())} rows"
        ),
        file=file,
        column=column,
    )


def row_weights(weight: Any, n: int) -> np.ndarray:
    """One ``float64`` weight per row: ones for ``None``, else the checked values.

    Raises:
        DataError: not ``n`` values, or a non-finite or negative one.

    Example:
        >>> row_weights(None, 2).tolist(), row_weights([0, 2], 2).tolist()
        ([1.0, 1.0], [0.0, 2.0])
    """
    if weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"expected {n} weights, received shape {w.shape}", column="weight")
    check_weights(w)
    return w


def to_float32(
    values: np.ndarray, what: str, *, file: str | None = None, column: str | None = None
) -> np.ndarray:
    """Numbers as ``float32``; one that float32 would turn into ``inf`` or ``0`` is an error.

    ``what`` names the values in the message (``"rating"``, ``"weight"``); ``column``
    defaults to it. Non-finite values pass (their own check reports them).

    Example:
        >>> to_float32(np.array([1e39]), "rating")
        Traceback (most recent call last):
        ...
        recfit.errors.DataError: expected ratings that float32 holds (|x| <= 3.4e38, and 0 or |x| >= 1.4e-45), received 1e+39 (it would become inf) in 1 rows (row 0, column 'rating')
    """
    if values.dtype == np.float32:
        return values
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out = values.astype(np.float32)
        bad = (np.isinf(out) & np.isfinite(values)) | ((out == 0) & (values != 0))
    fail_at(
        bad,
        lambda row: (
            f"expected {what}s that float32 holds (|x| <= 3.4e38, and 0 or "
            f"|x| >= 1.4e-45), received {as_python(values[row])!r} (it would become "
            f"{float(out[row])!r}) in {int(bad.sum())} rows"
        ),
        file=file,
        column=column if column is not None else what,
    )
    return out


def one_of(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``; an unknown name is a :class:`ConfigError` listing the known ones.

    Example:
        >>> one_of({"ml-100k": 1}, "ml-7m", "a MovieLens name")
        Traceback (most recent call last):
        ...
        recfit.errors.ConfigError: expected a MovieLens name in ['ml-100k'], received 'ml-7m'
    """
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ConfigError(f"expected {what} in {list(table)}, received {name!r}") from None
