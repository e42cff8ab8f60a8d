"""Named columns of rating data → a checked :class:`Interactions`.

The readers (:mod:`recfit.data.io`, :mod:`recfit.data.parquet`) map the user's column
names to roles (``user``, ``item``, ``rating``, ``timestamp``, ``weight``) and hand the
raw column values here. Every value is checked, column by column and without per-row
Python; nothing is silently dropped or changed by a cast (see :mod:`recfit.data.io`).
A problem raises :class:`~recfit.errors.DataError` naming the source, the 0-based data
row and the column.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np
import pandas as pd

from recfit.data.checks import (
    as_python,
    check_rating_scale,
    check_ratings,
    check_weights,
    fail_at,
    first_row,
    to_float32,
)
from recfit.data.duplicates import DuplicatePolicy, check_policy, merge_duplicates
from recfit.data.interactions import Interactions
from recfit.data.vocab import Vocabulary
from recfit.errors import ConfigError, DataError

__all__ = [
    "ReadOptions",
    "column_mapping",
    "from_columns",
    "implicit_mapping",
    "read_options",
    "require_columns",
    "source_stem",
]

_FLOAT_EXACT = float(2**53)  # every integer up to this is held exactly by a float64
_INT64_MAX = int(np.iinfo(np.int64).max)


# ---------------------------------------------------------------------- column names
class ReadOptions(TypedDict, total=False):
    """The column and value options every reader takes (see :func:`recfit.data.io.from_frame`).

    ``user``, ``item`` (default ``"user"``, ``"item"``), ``rating`` (default ``"rating"``;
    ``None`` for implicit data), ``timestamp``, ``weight`` (default ``None``),
    ``duplicates`` (default ``"error"``), ``rating_scale`` (default ``None``) and
    ``implicit_if_missing`` (default ``False``: a missing rating column is an error;
    ``True``: the data is implicit, every row a positive of value 1).
    """

    user: str
    item: str
    rating: str | None
    timestamp: str | None
    weight: str | None
    duplicates: DuplicatePolicy
    rating_scale: tuple[float, float] | None
    implicit_if_missing: bool


def read_options(options: Mapping[str, Any], reader: str) -> ReadOptions:
    """``options`` checked to be :class:`ReadOptions` (a misspelt keyword is an error).

    Example:
        >>> read_options({"users": "u"}, "read_csv")
        Traceback (most recent call last):
        ...
        recfit.errors.ConfigError: expected keyword arguments of read_csv() among ['duplicates', 'implicit_if_missing', 'item', 'rating', 'rating_scale', 'timestamp', 'user', 'weight'], received 'users'; did you mean 'user'?
    """
    known = sorted(ReadOptions.__optional_keys__)
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"expected keyword arguments of {reader}() among {known}, received {key!r}{hint}"
            )
    return cast(ReadOptions, options)


def column_mapping(options: ReadOptions) -> dict[str, str]:
    """``{role: column name}`` for the roles given; names checked."""
    user, item = options.get("user", "user"), options.get("item", "item")
    m = {"user": user, "item": item}
    for role, col in (
        ("rating", options.get("rating", "rating")),
        ("timestamp", options.get("timestamp")),
        ("weight", options.get("weight")),
    ):
        if col is not None:
            m[role] = col
    for role, col in m.items():
        if not isinstance(col, str) or not col:
            raise ConfigError(f"expected {role}= to be a column name, received {col!r}")
    if m["user"] == m["item"]:
        raise ConfigError(f"expected different user and item columns, received {user!r} twice")
    return m


def require_columns(found: list[str], mapping: dict[str, str], source: str | None) -> None:
    """Raise :class:`DataError` for the first mapped column not ``found``, with a hint."""
    for role, col in mapping.items():
        if col in found:
            continue
        close = difflib.get_close_matches(col, found, n=1, cutoff=0.5)
        lower = [c for c in found if c.lower() == col.lower()]
        prefix = [
            c
            for c in found
            if c and (col.lower().startswith(c.lower()) or c.lower().startswith(col.lower()))
        ]
        candidates = lower or close or prefix
        match = candidates[0] if candidates else None
        hint = (
            f"; did you mean {match!r}? (pass {role}={match!r})"
            if match
            else f"; pass {role}='<column>' to choose one"
        )
        raise DataError(
            f"expected a {role} column {col!r}, received columns {found}{hint}",
            file=source,
            column=col,
        )


def implicit_mapping(
    found: list[str], mapping: dict[str, str], options: ReadOptions
) -> dict[str, str]:
    """``mapping`` without its rating column when the data has none and
    ``options["implicit_if_missing"]`` allows implicit data (each row a positive of
    value 1); otherwise ``mapping`` as it is (a missing column stays an error).

    Example:
        >>> implicit_mapping(["u", "i"], {"user": "u", "item": "i", "rating": "rating"},
        ...                  {"implicit_if_missing": True})
        {'user': 'u', 'item': 'i'}
    """
    if options.get("implicit_if_missing", False) and mapping.get("rating") not in found:
        return {role: col for role, col in mapping.items() if role != "rating"}
    return mapping


def source_stem(p: Path) -> str:
    """A file's name without its suffixes (``r.csv.gz`` → ``r``): the data's default name."""
    name = p.name
    for s in reversed(p.suffixes):
        name = name[: -len(s)] if name.endswith(s) else name
    return name or p.name


# ---------------------------------------------------------------------- one column
def _missing(values: np.ndarray, *, blank: bool = True) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.asarray(np.isnan(values))
    if values.dtype.kind == "M":
        return np.asarray(np.isnat(values))
    if values.dtype.kind in "iub":
        return np.zeros(len(values), dtype=bool)
    miss = np.asarray(pd.isna(values), dtype=bool)
    if not blank:
        return miss
    # empty or blank strings count as missing
    empty = np.asarray(pd.Series(values).astype(str).str.strip().eq("").to_numpy(), dtype=bool)
    return np.asarray(miss | empty)


def _check_missing(
    values: np.ndarray, role: str, col: str, source: str | None, *, blank: bool = True
) -> None:
    miss = _missing(values, blank=blank)
    fail_at(
        miss,
        lambda _: (
            f"expected {role} in every row, received an empty value in {int(miss.sum())} rows"
        ),
        file=source,
        column=col,
    )


def _numbers(values: np.ndarray, role: str, col: str, source: str | None) -> np.ndarray:
    """Float values of a numeric column; non-numbers and missing values are errors."""
    _check_missing(values, role, col, source)
    if values.dtype == np.float32:
        return values  # checked as is: no float64 copy of a large column
    if values.dtype.kind == "b":
        is_bool = np.ones(len(values), dtype=bool)
    elif values.dtype.kind == "O":
        is_bool = np.asarray([isinstance(v, (bool, np.bool_)) for v in values.tolist()], bool)
    else:
        is_bool = np.zeros(len(values), dtype=bool)
    fail_at(
        is_bool,
        lambda row: (
            f"expected a numeric {role}, received a boolean {as_python(values[row])!r} "
            "(convert the column to 0/1 numbers if that is what it means)"
        ),
        file=source,
        column=col,
    )
    if values.dtype.kind in "iuf":
        return values.astype(np.float64, copy=False)
    coerced = _to_float64(values)
    bad = np.isnan(coerced)
    fail_at(
        bad,
        lambda row: (
            f"expected a numeric {role}, received {repr(as_python(values[row]))[:80]} "
            f"in {int(bad.sum())} rows"
        ),
        file=source,
        column=col,
    )
    return coerced


def _to_float64(values: np.ndarray) -> np.ndarray:
    """Numbers of an object column as float64; NaN where a value is no number (or one
    that float64 cannot hold, like a Python int of 400 digits)."""
    try:
        out = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    except (OverflowError, TypeError, ValueError):
        out = np.full(len(values), np.nan)
        for k, v in enumerate(values.tolist()):
            with contextlib.suppress(OverflowError, TypeError, ValueError):
                out[k] = float(v)
    return np.asarray(out)


def _integral(
    values: np.ndarray, expected: str, floats: str, col: str, source: str | None
) -> np.ndarray:
    """Floats that are integers held exactly (within ±2**53), as ``int64``.

    ``expected`` names what the column should hold, ``floats`` what its floats are, in
    the messages.
    """
    frac = ~np.isfinite(values) | (values != np.round(values))
    fail_at(
        frac,
        lambda row: (
            f"expected {expected}, received {as_python(values[row])!r} in {int(frac.sum())} rows"
        ),
        file=source,
        column=col,
    )
    big = np.abs(values) > _FLOAT_EXACT
    fail_at(
        big,
        lambda row: (
            f"expected float {floats} within +-2**53 (held exactly), received "
            f"{as_python(values[row])!r} in {int(big.sum())} rows; keep such values as integers"
        ),
        file=source,
        column=col,
    )
    return values.astype(np.int64)


def _fits_int64(values: np.ndarray, what: str, col: str, source: str | None) -> np.ndarray:
    """Integers as ``int64``; an unsigned value beyond int64 is an error."""
    if values.dtype.kind == "u" and values.size and int(values.max()) > _INT64_MAX:
        beyond = values > np.uint64(_INT64_MAX)
        fail_at(
            beyond,
            lambda row: f"expected {what} that fit int64, received {as_python(values[row])!r}",
            file=source,
            column=col,
        )
    return values.astype(np.int64, copy=False)


def _ids(
    values: np.ndarray, role: str, col: str, source: str | None
) -> tuple[Vocabulary, np.ndarray]:
    _check_missing(values, f"{role} id", col, source, blank=False)
    kind = values.dtype.kind
    if kind == "f":
        values = _integral(values, f"integer or string {role} ids", f"{role} ids", col, source)
    elif kind in "bM":
        what = "booleans" if kind == "b" else "dates"
        raise DataError(
            f"expected integer or string {role} ids, received {what}", file=source, column=col
        )
    if values.dtype.kind == "u" and len(values) and int(values.max()) > _INT64_MAX:
        pass  # beyond int64: Vocabulary.encode keeps them exactly, as decimal text
    elif values.dtype.kind in "iu" and len(values):
        dense = _dense_int_codes(values, role)
        if dense is not None:
            return dense
    try:
        return Vocabulary.encode(values, name=role)
    except (DataError, TypeError) as exc:
        raise DataError(
            f"expected usable {role} ids, received: {exc}", file=source, column=col
        ) from None


def _dense_int_codes(values: np.ndarray, role: str) -> tuple[Vocabulary, np.ndarray] | None:
    """Codes of integer ids whose range is compact, in O(n) without hashing or sorting.

    Indices follow sorted id order, exactly as :meth:`Vocabulary.encode` assigns them.
    """
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span > max(4 * len(values), 1 << 20) or span >= 1 << 31:
        return None
    offset = (values - lo).astype(np.int32, copy=False)
    present = np.zeros(span, dtype=bool)
    present[offset] = True
    ids = np.flatnonzero(present).astype(np.int64) + lo
    lookup = np.cumsum(present, dtype=np.int32) - 1
    codes = lookup[offset]
    return Vocabulary(ids, name=role), codes


def _timestamps(values: np.ndarray, col: str, source: str | None) -> np.ndarray:
    """``int64`` epoch seconds from integers, integral floats, datetimes or ISO strings."""
    _check_missing(values, "timestamp", col, source)
    kind = values.dtype.kind
    if kind == "M":
        return values.astype("datetime64[s]").astype(np.int64)
    if kind in "iu":
        return _fits_int64(values, "timestamps", col, source)
    if kind == "f":
        return _integral(values, "integer timestamps (epoch seconds)", "timestamps", col, source)
    if kind == "b":
        raise DataError("expected integer timestamps, received booleans", file=source, column=col)
    # object / strings: integers first, then ISO-8601 dates
    series = pd.Series(values)
    try:
        exact = pd.to_numeric(series, errors="coerce")
    except (OverflowError, TypeError, ValueError):  # e.g. a Python int beyond float64
        exact = pd.Series(_to_float64(values))
    if exact.dtype.kind in "iu" and not exact.isna().any():
        return _timestamps(exact.to_numpy(), col, source)  # integers, exactly
    if exact.dtype.kind == "O":  # integers beyond int64 (Python ints)
        fail_at(
            exact.notna().to_numpy(),
            lambda row: f"expected timestamps that fit int64, received {as_python(values[row])!r}",
            file=source,
            column=col,
        )
    num = exact.to_numpy(dtype=np.float64)
    nan = np.isnan(num)
    if not nan.any():
        return _timestamps(num, col, source)
    if not nan.all():  # numbers and dates in one column: which unit is meant?
        fail_at(
            nan,
            lambda row: (
                f"expected integer timestamps (epoch seconds) or ISO-8601 dates, not "
                f"both in one column, received {as_python(values[first_row(~nan)])!r} and "
                f"{as_python(values[row])!r}"
            ),
            file=source,
            column=col,
        )
    dates = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    fail_at(
        dates.isna().to_numpy(),
        lambda row: (
            f"expected integer timestamps (epoch seconds) or ISO-8601 dates, "
            f"received {as_python(values[row])!r}"
        ),
        file=source,
        column=col,
    )
    return dates.dt.tz_localize(None).to_numpy().astype("datetime64[s]").astype(np.int64)


# ---------------------------------------------------------------------- all columns
def from_columns(
    cols: dict[str, np.ndarray],
    mapping: dict[str, str],
    options: ReadOptions,
    *,
    name: str,
    source: str | None,
) -> Interactions:
    """The :class:`Interactions` of raw columns by role (``mapping``: role → column name),
    with ``options``' duplicate policy and rating scale.

    Raises:
        DataError: a missing or invalid value, a repeated pair under
            ``duplicates="error"``; the message names the source, row and column.
        ConfigError: ``duplicates`` or ``rating_scale`` is not valid.
    """
    duplicates = options.get("duplicates", "error")
    check_policy(duplicates)
    scale = check_rating_scale(options.get("rating_scale"))
    n = len(cols["user"])
    if n == 0:
        raise DataError("expected at least one rating row, received none", file=source)

    users, u = _ids(cols["user"], "user", mapping["user"], source)
    items, i = _ids(cols["item"], "item", mapping["item"], source)

    if "rating" in cols:
        r64 = _numbers(cols["rating"], "rating", mapping["rating"], source)
        check_ratings(r64, scale, file=source, column=mapping["rating"])
        r = to_float32(r64, "rating", file=source, column=mapping["rating"])
        if duplicates == "sum":  # values that add up: counts, plays, durations
            fail_at(
                r64 < 0,
                lambda row: (
                    f"expected non-negative values to sum (duplicates='sum'), received "
                    f"{float(r64[row])!r}"
                ),
                file=source,
                column=mapping["rating"],
            )
        del r64
    else:  # implicit data: every row is a positive of value 1
        r = np.ones(n, dtype=np.float32)

    w: np.ndarray | None = None
    if "weight" in cols:
        w64 = _numbers(cols["weight"], "weight", mapping["weight"], source)
        check_weights(w64, file=source, column=mapping["weight"])
        w = to_float32(w64, "weight", file=source, column=mapping["weight"])

    ts: np.ndarray | None = None
    if "timestamp" in cols:
        ts = t = _timestamps(cols["timestamp"], mapping["timestamp"], source)
        if len(t) and int(t.max()) - int(t.min()) > _INT64_MAX:
            fail_at(
                t == t.max(),
                lambda row: (
                    f"expected timestamps spanning at most 2**63 - 1 seconds, "
                    f"received {int(t.min())} and {int(t[row])}"
                ),
                file=source,
                column=mapping["timestamp"],
            )

    u, i, r, w, ts, n_dup = merge_duplicates(
        u, i, r, w, ts, users, items,
        duplicates=duplicates, columns=(mapping["user"], mapping["item"]), source=source,
        stacklevel=4,
    )  # fmt: skip
    meta: dict[str, Any] = {"duplicates_merged": n_dup} if n_dup else {}
    if "rating" not in cols:
        meta["implicit"] = True
    if source is not None:
        meta["source"] = source
    made = [a for a in (r, w) if a is not None]
    shared = any(np.may_share_memory(a, c) for a in made for c in cols.values())
    return Interactions.from_indices(
        u, i, r, users, items,
        weight=w, timestamp=ts, rating_scale=scale, name=name, meta=meta,
        copy=shared,  # a float32 column of the caller's frame, not one made here
    )  # fmt: skip
