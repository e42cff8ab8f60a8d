"""Your own rating data: DataFrames, CSV and Parquet files → :class:`Interactions`.

Columns are mapped by name (``user=``, ``item=``, ``rating=``, ``timestamp=``,
``weight=``). Raw ids may be strings or any integers (large, non-contiguous ``int64``
ids are fine). Every value is checked, column by column and without per-row Python;
nothing is silently dropped or changed. A problem raises
:class:`~recfit.errors.DataError` naming the file (``source``), the **0-based data row**
(the header is not counted: in a CSV file with a header row, data row ``r`` is on line
``r + 2``) and the column.

No value is changed by a cast:

* ids: a column of integers is read as numbers (``007`` in a CSV file is the id 7);
  integers beyond int64 are kept exactly, as their decimal text (the whole column then
  holds text ids); a CSV id column that parses as floats is read again as text, where
  ``12`` and ``12.0`` are the id 12 and anything else (``1e3``, ``1.5``) is an error;
  float ids elsewhere must be integers within ±2**53; booleans are no ids;
* ratings and weights are stored as float32: a value that float32 would turn into
  ``inf`` or ``0`` (``1e39``, ``1e-50``) is an error, as are booleans;
* timestamps are int64 seconds: floats only within ±2**53, no value beyond int64, no
  span beyond 2**63 - 1, and not numbers and dates mixed in one column.

Duplicate (user, item) pairs follow ``duplicates=``:

* ``"error"`` (default): raise, with the number of duplicate rows and the first few;
* ``"last"``: keep the last row of each pair, in file order;
* ``"mean"``: keep one row per pair (at the position of its last row, with that row's
  timestamp) whose rating, and weight if any, is the mean over the pair's rows.

Merging emits a :class:`~recfit.errors.DataWarning` with the count, and the count is
kept in ``Interactions.meta["duplicates_merged"]``.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import json
import lzma
import math
import re
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recfit.data.interactions import Interactions, encode_time
from recfit.data.vocab import Vocabulary
from recfit.errors import ConfigError, DataError, DataWarning

__all__ = [
    "DuplicatePolicy",
    "from_frame",
    "load",
    "merge_duplicates",
    "read_csv",
    "read_parquet",
    "write_parquet",
]

DuplicatePolicy = Literal["error", "last", "mean"]

_SHOWN = 5
_META_KEY = b"recfit"
_FORMAT = 1
_FLOAT_EXACT = float(2**53)  # every integer up to this is held exactly by a float64
_INT64_MAX = int(np.iinfo(np.int64).max)
_INT_TEXT = re.compile(r"\s*([+-]?\d{1,40})(?:\.0*)?\s*")


# ---------------------------------------------------------------------- public API
def from_frame(
    df: pd.DataFrame,
    *,
    user: str = "user",
    item: str = "item",
    rating: str | None = "rating",
    timestamp: str | None = None,
    weight: str | None = None,
    duplicates: DuplicatePolicy = "error",
    rating_scale: tuple[float, float] | None = None,
    name: str = "ratings",
    source: str | None = None,
) -> Interactions:
    """Ratings from a DataFrame, one row per rating.

    Args:
        df: the table.
        user: column of raw user ids (strings or integers).
        item: column of raw item ids (strings or integers).
        rating: column of numeric ratings; ``None`` for implicit data (every rating 1).
        timestamp: optional column of integer epoch seconds, or ``datetime64`` values
            (converted to seconds), or ISO-8601 strings.
        weight: optional column of finite non-negative row weights.
        duplicates: what to do with repeated (user, item) pairs (see the module docs).
        rating_scale: ``(low, high)``; ratings outside it are an error.
        name: the data's name.
        source: where the frame came from, used in error messages.

    Returns:
        The ratings, with vocabularies built from the ids.

    Raises:
        DataError: a column is missing, a value is missing or invalid, or a pair is
            repeated under ``duplicates="error"``; the message names the source, the
            0-based data row and the column.
        ConfigError: ``duplicates`` or ``rating_scale`` is not valid.

    Example:
        >>> df = pd.DataFrame({"user": ["a", "b", "a"], "item": [10, 10, 20],
        ...                    "rating": [4.0, 3.5, 5.0]})
        >>> d = from_frame(df)
        >>> len(d), d.users.ids.tolist(), d.item.tolist()
        (3, ['a', 'b'], [0, 0, 1])
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"expected a pandas DataFrame, received {type(df).__name__}")
    mapping = _mapping(user, item, rating, timestamp, weight)
    _require_columns([str(c) for c in df.columns], mapping, source)
    cols = {role: _frame_column(df, col, source) for role, col in mapping.items()}
    return _build(cols, mapping, duplicates, rating_scale, name, source, meta={})


def read_csv(
    path: str | Path,
    *,
    user: str = "user",
    item: str = "item",
    rating: str | None = "rating",
    timestamp: str | None = None,
    weight: str | None = None,
    duplicates: DuplicatePolicy = "error",
    rating_scale: tuple[float, float] | None = None,
    name: str | None = None,
    sep: str = ",",
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    comment: str | None = None,
) -> Interactions:
    """Ratings from a delimited text file (CSV, TSV, ...; compression by suffix).

    Args:
        path: the file.
        user, item, rating, timestamp, weight, duplicates, rating_scale: as in
            :func:`from_frame`.
        name: the data's name (default: the file name without suffix).
        sep: the field separator.
        names: column names for a file without a header row.
        encoding: the text encoding.
        comment: a character that starts a comment line.

    Raises:
        DataError: the file is missing, unreadable or malformed, or a value is
            invalid (see :func:`from_frame`); rows are 0-based data rows.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.csv")
        >>> _ = open(p, "w").write("userId,movieId,rating\\n1,10,4\\n2,10,3\\n")
        >>> read_csv(p, user="userId", item="movieId").summary()["ratings"]
        2
    """
    p = Path(path)
    src = str(path)
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ConfigError(
            f"expected encoding= to name a text encoding (e.g. 'utf-8', 'latin-1'), "
            f"received {encoding!r}"
        ) from None
    if not isinstance(sep, str) or not sep:
        raise ConfigError(f"expected sep= to be a non-empty string, received {sep!r}")
    if comment is not None and (not isinstance(comment, str) or len(comment) != 1):
        raise ConfigError(f"expected comment= to be one character, received {comment!r}")

    def parse(usecols: list[str] | None = None, as_text: bool = False) -> pd.DataFrame:
        return _parse_csv(p, src, sep, names, encoding, comment, usecols, as_text)

    df = parse()
    mapping = _mapping(user, item, rating, timestamp, weight)
    for role in ("user", "item"):
        col = mapping[role]
        if (
            col in df.columns
            and not isinstance(df[col], pd.DataFrame)
            and df[col].dtype.kind == "f"
        ):
            # numbers with a point or an exponent: read the text again, so an id is
            # never the rounding of what the file says
            text = parse([col], as_text=True)[col]
            df[col] = _float_text_ids(text.to_numpy(dtype=object), role, col, src)
    return from_frame(
        df,
        user=user,
        item=item,
        rating=rating,
        timestamp=timestamp,
        weight=weight,
        duplicates=duplicates,
        rating_scale=rating_scale,
        name=name if name is not None else _stem(p),
        source=src,
    )


def read_parquet(
    path: str | Path,
    *,
    user: str = "user",
    item: str = "item",
    rating: str | None = "rating",
    timestamp: str | None = None,
    weight: str | None = None,
    duplicates: DuplicatePolicy = "error",
    rating_scale: tuple[float, float] | None = None,
    name: str | None = None,
) -> Interactions:
    """Ratings from a Parquet file (read with pyarrow, converted straight to numpy).

    A file written by :func:`write_parquet` restores its name and rating scale, and its
    ``timestamp`` and ``weight`` columns are used when present unless other columns are
    named.

    Args:
        path: the file.
        user, item, rating, timestamp, weight, duplicates, rating_scale: as in
            :func:`from_frame`.
        name: the data's name (default: the stored name, else the file name).

    Raises:
        DataError: the file is missing or not Parquet, or a value is invalid.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.parquet")
        >>> write_parquet(Interactions.from_arrays([1, 2], [5, 5], [4.0, 2.0]), p)
        >>> read_parquet(p).rating.tolist()
        [4.0, 2.0]
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = str(path)
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise DataError(
            "expected an existing file, received a path that does not exist", file=src
        ) from None
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"expected a Parquet file, received one pyarrow cannot read: {exc}", file=src
        ) from None
    stored: dict[str, Any] = {}
    if schema.metadata and _META_KEY in schema.metadata:
        stored = _stored_meta(schema.metadata[_META_KEY], src)
    found = [str(c) for c in schema.names]
    if stored:
        if timestamp is None and "timestamp" in found:
            timestamp = "timestamp"
        if weight is None and "weight" in found:
            weight = "weight"
        if rating_scale is None and stored.get("rating_scale") is not None:
            rating_scale = stored["rating_scale"]
    mapping = _mapping(user, item, rating, timestamp, weight)
    _require_columns(found, mapping, src)
    # one column at a time, so Arrow and numpy copies of all columns never coexist
    arrays: dict[str, np.ndarray] = {}
    for col in dict.fromkeys(mapping.values()):
        try:
            table = pq.read_table(path, columns=[col])
            arrays[col] = _arrow_column(table.column(0), src, col)
        except (pa.ArrowException, OSError, ValueError, TypeError, NotImplementedError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(
                f"expected a readable Parquet column, received: {exc}", file=src, column=col
            ) from None
        del table
    cols = {role: arrays[col] for role, col in mapping.items()}
    if name is None:
        name = stored.get("name") or _stem(Path(path))
    return _build(cols, mapping, duplicates, rating_scale, name, src, meta={})


def load(
    source: str | Path | pd.DataFrame,
    *,
    user: str = "user",
    item: str = "item",
    rating: str | None = "rating",
    timestamp: str | None = None,
    weight: str | None = None,
    duplicates: DuplicatePolicy = "error",
    rating_scale: tuple[float, float] | None = None,
    name: str | None = None,
) -> Interactions:
    """Ratings from a DataFrame or a file chosen by its suffix.

    ``.csv`` (comma), ``.tsv`` (tab) — optionally compressed (``.gz``, ``.bz2``,
    ``.zip``, ``.xz``, ``.zst``) — and ``.parquet`` / ``.pq``.

    Raises:
        DataError: the suffix is not one of those, or reading fails.

    Example:
        >>> load(pd.DataFrame({"user": [1], "item": [2], "rating": [3.0]})).n_items
        1
    """
    kw: dict[str, Any] = {
        "user": user,
        "item": item,
        "rating": rating,
        "timestamp": timestamp,
        "weight": weight,
        "duplicates": duplicates,
        "rating_scale": rating_scale,
    }
    if isinstance(source, pd.DataFrame):
        return from_frame(source, name=name or "ratings", **kw)
    p = Path(source)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".csv":
        return read_csv(p, sep=",", name=name, **kw)
    if kind == ".tsv":
        return read_csv(p, sep="\t", name=name, **kw)
    if kind in (".parquet", ".pq"):
        return read_parquet(p, name=name, **kw)
    raise DataError(
        f"expected a .csv, .tsv, .parquet or .pq file, received suffix {kind or '(none)'!r}",
        file=str(source),
    )


def write_parquet(data: Interactions, path: str | Path, *, compression: str = "snappy") -> None:
    """Write ratings as Parquet: raw ``user`` and ``item`` ids, ``rating`` (float32),
    ``timestamp`` (int64, when present) and ``weight`` (float32, when present).

    The name and rating scale go into the file's metadata, so :func:`read_parquet`
    round-trips them. Feature tables are not written.

    Example:
        >>> import tempfile, os
        >>> d = Interactions.from_arrays(["a", "b"], [1, 2], [1.0, 5.0], timestamp=[7, 9])
        >>> p = os.path.join(tempfile.mkdtemp(), "d.parquet")
        >>> write_parquet(d, p)
        >>> read_parquet(p).timestamp.tolist()
        [7, 9]
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, Any] = {
        "user": _id_arrow(data.users.id(data.user)),
        "item": _id_arrow(data.items.id(data.item)),
        "rating": pa.array(data.rating, type=pa.float32()),
    }
    ts = data.timestamp
    if ts is not None:
        cols["timestamp"] = pa.array(ts, type=pa.int64())
    if data.weight is not None:
        cols["weight"] = pa.array(data.weight, type=pa.float32())
    meta = {
        "format": _FORMAT,
        "name": data.name,
        "rating_scale": list(data.rating_scale) if data.rating_scale is not None else None,
    }
    table = pa.table(cols).replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, str(path), compression=compression)


# ---------------------------------------------------------------------- helpers
def _stem(p: Path) -> str:
    name = p.name
    for s in reversed(p.suffixes):
        name = name[: -len(s)] if name.endswith(s) else name
    return name or p.name


def _parse_csv(
    p: Path,
    src: str,
    sep: str,
    names: Sequence[str] | None,
    encoding: str,
    comment: str | None,
    usecols: list[str] | None,
    as_text: bool,
) -> pd.DataFrame:
    """``pd.read_csv`` with every way a file can be unreadable turned into a DataError."""
    try:
        return pd.read_csv(
            p,
            sep=sep,
            header=None if names is not None else "infer",
            names=list(names) if names is not None else None,
            encoding=encoding,
            comment=comment,
            engine="c" if len(sep) == 1 else "python",
            skipinitialspace=False,
            usecols=usecols,
            dtype=str if as_text else None,
        )
    except FileNotFoundError:
        raise DataError(
            "expected an existing file, received a path that does not exist", file=src
        ) from None
    except IsADirectoryError:
        raise DataError("expected a file, received a directory", file=src) from None
    except pd.errors.EmptyDataError:
        raise DataError(
            "expected a header and rating rows, received an empty file", file=src
        ) from None
    except pd.errors.ParserError as exc:
        raise DataError(
            f"expected {sep!r}-separated rows, received {exc}".strip(), file=src
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"expected {encoding} text, received undecodable bytes at byte {exc.start} "
            "(pass encoding=, e.g. 'latin-1')",
            file=src,
        ) from None
    except (
        EOFError,  # a truncated .gz / .bz2 / .xz
        OSError,  # not a gzip file, permission denied, ...
        zlib.error,
        lzma.LZMAError,
        zipfile.BadZipFile,
        RuntimeError,  # an encrypted zip member
        NotImplementedError,  # a zip compression method Python lacks
        ImportError,  # .zst without the zstandard package
        csv.Error,
        re.error,  # a separator of several characters is a regular expression
        UnicodeError,
        ValueError,  # a zip holding several files, ...
    ) as exc:
        raise DataError(
            f"expected a readable {sep!r}-separated file (compression by suffix), "
            f"received {type(exc).__name__}: {exc}"[:400],
            file=src,
        ) from None


def _float_text_ids(text: np.ndarray, role: str, col: str, src: str) -> np.ndarray:
    """Ids of a column that parsed as floats, from its text: integers written ``12`` or
    ``12.0`` become Python ints (exactly, at any size); anything else is an error."""
    out = np.empty(len(text), dtype=object)
    for k, t in enumerate(text.tolist()):
        if not isinstance(t, str):
            out[k] = np.nan  # missing: reported by the missing-value check
            continue
        m = _INT_TEXT.fullmatch(t)
        if m is None:
            raise DataError(
                f"expected integer or string {role} ids, received {t[:80]!r}",
                file=src,
                row=k,
                column=col,
            )
        out[k] = int(m.group(1))
    return out


def _stored_meta(raw: bytes, src: str) -> dict[str, Any]:
    """The recfit metadata of a Parquet file, checked field by field."""
    try:
        d = json.loads(raw)
    except (ValueError, TypeError):
        raise DataError(
            f"expected recfit metadata as a JSON object, received {raw[:80]!r}", file=src
        ) from None
    if not isinstance(d, dict):
        raise DataError(
            f"expected recfit metadata as a JSON object, received {type(d).__name__}", file=src
        )
    name = d.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise DataError(f"expected a text 'name' in recfit metadata, received {name!r}", file=src)
    scale = d.get("rating_scale")
    if scale is not None:
        ok = (
            isinstance(scale, list)
            and len(scale) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
            and all(math.isfinite(v) for v in scale)
            and scale[0] < scale[1]
        )
        if not ok:
            raise DataError(
                f"expected 'rating_scale' [low, high] in recfit metadata, received {scale!r}"[:200],
                file=src,
            )
        d["rating_scale"] = (float(scale[0]), float(scale[1]))
    return d


def _mapping(
    user: str, item: str, rating: str | None, timestamp: str | None, weight: str | None
) -> dict[str, str]:
    m = {"user": user, "item": item}
    for role, col in (("rating", rating), ("timestamp", timestamp), ("weight", weight)):
        if col is not None:
            m[role] = col
    for role, col in m.items():
        if not isinstance(col, str) or not col:
            raise ConfigError(f"expected {role}= to be a column name, received {col!r}")
    if m["user"] == m["item"]:
        raise ConfigError(f"expected different user and item columns, received {user!r} twice")
    return m


def _require_columns(found: list[str], mapping: dict[str, str], source: str | None) -> None:
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


def _frame_column(df: pd.DataFrame, col: str, source: str | None = None) -> np.ndarray:
    labels = [c for c in df.columns if str(c) == col]  # column labels may be integers
    s = df[labels[0]] if len(labels) == 1 else None
    if s is None or isinstance(s, pd.DataFrame):
        n = len(labels) if len(labels) != 1 else (s.shape[1] if s is not None else 0)
        raise DataError(f"expected one column named {col!r}, received {n}", file=source, column=col)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    if isinstance(s.dtype, pd.api.extensions.ExtensionDtype) and s.dtype.kind in "iuf":
        if s.dtype.kind in "iu" and not s.isna().any():
            return s.to_numpy(dtype="uint64" if s.dtype.kind == "u" else "int64")  # exact
        if s.dtype.kind in "iu":
            return s.to_numpy(dtype=object, na_value=np.nan)
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if s.dtype.kind in "iufbM":
        return s.to_numpy()
    return s.to_numpy(dtype=object)


def _arrow_column(col: Any, source: str | None = None, name: str | None = None) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_timestamp(col.type) and col.type.tz is not None:
        col = col.cast(pa.timestamp(col.type.unit))
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        try:
            col = col.cast(pa.large_string())  # validated as UTF-8
        except pa.ArrowInvalid:
            raise DataError(
                "expected text or numbers, received binary values that are not UTF-8",
                file=source,
                column=name,
            ) from None
    t = col.type
    if not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_null(t)
    ):
        raise DataError(
            f"expected a column of integers, floats, text or timestamps, received {t}",
            file=source,
            column=name,
        )
    if pa.types.is_integer(t) and col.null_count:
        return np.asarray(col.to_pylist(), dtype=object)  # exact ints, None where missing
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    if pa.types.is_date(t):
        col = col.cast(pa.timestamp("s"))
    return np.asarray(col.to_numpy())


def _id_arrow(ids: np.ndarray) -> Any:
    import pyarrow as pa

    if ids.dtype.kind in "iu":
        return pa.array(ids, type=pa.int64())
    return pa.array(ids.tolist() if ids.dtype.kind == "O" else ids, type=pa.string())


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _py(v: Any) -> Any:
    """A numpy scalar as the plain Python value (for readable messages)."""
    return v.item() if isinstance(v, np.generic) else v


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
    if miss.any():
        raise DataError(
            f"expected {role} in every row, received an empty value in {int(miss.sum())} rows",
            file=source,
            row=_first(miss),
            column=col,
        )


def _numbers(values: np.ndarray, role: str, col: str, source: str | None) -> np.ndarray:
    """Float values of a numeric column; non-numbers and missing values are errors."""
    _check_missing(values, role, col, source)
    if values.dtype == np.float32:
        return values  # checked as is: no float64 copy of a large column
    is_bool = values.dtype.kind == "b" or (
        values.dtype.kind == "O" and any(isinstance(v, (bool, np.bool_)) for v in values.tolist())
    )
    if is_bool:
        row = (
            0
            if values.dtype.kind == "b"
            else _first(np.asarray([isinstance(v, (bool, np.bool_)) for v in values.tolist()]))
        )
        raise DataError(
            f"expected a numeric {role}, received a boolean {_py(values[row])!r} (convert the "
            "column to 0/1 numbers if that is what it means)",
            file=source,
            row=row,
            column=col,
        )
    if values.dtype.kind in "iuf":
        return values.astype(np.float64, copy=False)
    coerced = _to_float64(values)
    bad = np.isnan(coerced)
    if bad.any():
        row = _first(bad)
        raise DataError(
            f"expected a numeric {role}, received {repr(_py(values[row]))[:80]} "
            f"in {int(bad.sum())} rows",
            file=source,
            row=row,
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


def _ids(
    values: np.ndarray, role: str, col: str, source: str | None
) -> tuple[Vocabulary, np.ndarray]:
    _check_missing(values, f"{role} id", col, source, blank=False)
    if values.dtype.kind == "f":
        frac = ~np.isfinite(values) | (values != np.round(values))
        if frac.any():
            row = _first(frac)
            raise DataError(
                f"expected integer or string {role} ids, received {_py(values[row])!r}",
                file=source,
                row=row,
                column=col,
            )
        big = np.abs(values) > _FLOAT_EXACT
        if big.any():
            row = _first(big)
            raise DataError(
                f"expected float {role} ids within +-2**53 (held exactly), received "
                f"{_py(values[row])!r}; keep such ids as integers or strings",
                file=source,
                row=row,
                column=col,
            )
        values = values.astype(np.int64)
    elif values.dtype.kind == "b":
        raise DataError(
            f"expected integer or string {role} ids, received booleans", file=source, column=col
        )
    elif values.dtype.kind == "M":
        raise DataError(
            f"expected integer or string {role} ids, received dates", file=source, column=col
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
        if kind == "u" and values.size and int(values.max()) > _INT64_MAX:
            row = _first(values > np.uint64(_INT64_MAX))
            raise DataError(
                f"expected timestamps that fit int64, received {_py(values[row])!r}",
                file=source,
                row=row,
                column=col,
            )
        return values.astype(np.int64, copy=False)
    if kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            row = _first(bad)
            raise DataError(
                f"expected integer timestamps (epoch seconds), received {_py(values[row])!r} "
                f"in {int(bad.sum())} rows",
                file=source,
                row=row,
                column=col,
            )
        big = np.abs(values) > _FLOAT_EXACT
        if big.any():
            row = _first(big)
            raise DataError(
                f"expected float timestamps within +-2**53 seconds (held exactly), received "
                f"{_py(values[row])!r} in {int(big.sum())} rows",
                file=source,
                row=row,
                column=col,
            )
        return values.astype(np.int64)
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
        row = _first(exact.notna().to_numpy())
        raise DataError(
            f"expected timestamps that fit int64, received {_py(values[row])!r}",
            file=source,
            row=row,
            column=col,
        )
    num = exact.to_numpy(dtype=np.float64)
    if not np.isnan(num).any():
        return _timestamps(num, col, source)
    if (~np.isnan(num)).any():  # numbers and dates in one column: which unit is meant?
        row = _first(np.isnan(num))
        raise DataError(
            f"expected integer timestamps (epoch seconds) or ISO-8601 dates, not both in one "
            f"column, received {_py(values[_first(~np.isnan(num))])!r} and "
            f"{_py(values[row])!r}",
            file=source,
            row=row,
            column=col,
        )
    dates = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    nat = dates.isna().to_numpy()
    if nat.any():
        bad = np.isnan(num) & nat
        row = _first(bad) if bad.any() else _first(nat)
        raise DataError(
            f"expected integer timestamps (epoch seconds) or ISO-8601 dates, "
            f"received {_py(values[row])!r}",
            file=source,
            row=row,
            column=col,
        )
    return dates.dt.tz_localize(None).to_numpy().astype("datetime64[s]").astype(np.int64)


def _float32(values: np.ndarray, role: str, col: str, source: str | None) -> np.ndarray:
    """Finite values as ``float32``; one that would become infinite or zero is an error."""
    if values.dtype == np.float32:
        return values
    with np.errstate(over="ignore", under="ignore"):
        out = values.astype(np.float32)
    bad = np.isinf(out) | ((out == 0) & (values != 0))
    if bad.any():
        row = _first(bad)
        raise DataError(
            f"expected {role}s that float32 holds (|x| <= 3.4e38, and 0 or |x| >= 1.4e-45), "
            f"received {_py(values[row])!r} (it would become {float(out[row])!r}) in "
            f"{int(bad.sum())} rows",
            file=source,
            row=row,
            column=col,
        )
    return out


def _check_scale(scale: tuple[float, float] | None) -> tuple[float, float] | None:
    if scale is None:
        return None
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ConfigError(f"expected rating_scale=(low, high), received {scale!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"expected rating_scale with finite low < high, received {scale!r}")
    return lo, hi


def _build(
    cols: dict[str, np.ndarray],
    mapping: dict[str, str],
    duplicates: str,
    rating_scale: tuple[float, float] | None,
    name: str,
    source: str | None,
    meta: dict[str, Any],
) -> Interactions:
    if duplicates not in ("error", "last", "mean"):
        raise ConfigError(f"expected duplicates='error', 'last' or 'mean', received {duplicates!r}")
    scale = _check_scale(rating_scale)
    n = len(cols["user"])
    if n == 0:
        raise DataError("expected at least one rating row, received none", file=source)

    users, u = _ids(cols["user"], "user", mapping["user"], source)
    items, i = _ids(cols["item"], "item", mapping["item"], source)

    if "rating" in cols:
        rcol = mapping["rating"]
        r64 = _numbers(cols["rating"], "rating", rcol, source)
        bad = ~np.isfinite(r64)
        if bad.any():
            row = _first(bad)
            raise DataError(
                f"expected finite ratings, received {_py(r64[row])!r} in {int(bad.sum())} rows",
                file=source, row=row, column=rcol,
            )  # fmt: skip
        if scale is not None:
            out = (r64 < scale[0]) | (r64 > scale[1])
            if out.any():
                row = _first(out)
                raise DataError(
                    f"expected ratings in [{scale[0]:g}, {scale[1]:g}], received "
                    f"{r64[row]:g} ({int(out.sum())} rows outside)",
                    file=source, row=row, column=rcol,
                )  # fmt: skip
        r = _float32(r64, "rating", rcol, source)
        del r64
    else:
        r = np.ones(n, dtype=np.float32)

    w: np.ndarray | None = None
    if "weight" in cols:
        wcol = mapping["weight"]
        w64 = _numbers(cols["weight"], "weight", wcol, source)
        bad = ~np.isfinite(w64) | (w64 < 0)
        if bad.any():
            row = _first(bad)
            raise DataError(
                f"expected finite non-negative weights, received {_py(w64[row])!r} "
                f"in {int(bad.sum())} rows",
                file=source, row=row, column=wcol,
            )  # fmt: skip
        w = _float32(w64, "weight", wcol, source)

    ts: np.ndarray | None = None
    if "timestamp" in cols:
        ts = _timestamps(cols["timestamp"], mapping["timestamp"], source)
        if len(ts) and int(ts.max()) - int(ts.min()) > _INT64_MAX:
            row = _first(ts == ts.max())
            raise DataError(
                f"expected timestamps spanning at most 2**63 - 1 seconds, received "
                f"{int(ts.min())} and {int(ts[row])}",
                file=source,
                row=row,
                column=mapping["timestamp"],
            )

    u, i, r, w, ts, n_dup = merge_duplicates(
        u, i, r, w, ts, users, items,
        duplicates=duplicates, columns=(mapping["user"], mapping["item"]), source=source,
        stacklevel=4,
    )  # fmt: skip
    if n_dup:
        meta = {**meta, "duplicates_merged": n_dup}

    offset, origin = (None, 0) if ts is None else encode_time(ts)
    if source is not None:
        meta = {**meta, "source": source}
    return Interactions(
        user=u,
        item=i,
        rating=r,
        users=users,
        items=items,
        weight=w,
        time_offset=offset,
        time_origin=origin,
        rating_scale=scale,
        name=name,
        meta=meta,
    )


def merge_duplicates(
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    w: np.ndarray | None,
    ts: np.ndarray | None,
    users: Vocabulary,
    items: Vocabulary,
    *,
    duplicates: str,
    columns: tuple[str, str] = ("user", "item"),
    source: str | None = None,
    line_offset: int | None = None,
    stacklevel: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, int]:
    """Apply the ``duplicates=`` policy to index arrays: ``(u, i, r, w, ts, n_merged)``.

    Every loader (files, frames and the MovieLens releases) goes through this, so a
    repeated (user, item) pair is never kept silently. ``line_offset`` turns a 0-based
    data row into the file's 1-based line number for the error.

    Raises:
        DataError: a repeated pair under ``duplicates="error"``.
        ConfigError: an unknown policy.
    """
    if duplicates not in ("error", "last", "mean"):
        raise ConfigError(f"expected duplicates='error', 'last' or 'mean', received {duplicates!r}")
    if len(u) < 2:
        return u, i, r, w, ts, 0
    key = u.astype(np.int64) * np.int64(max(1, len(items))) + i
    step = key[1:] - key[:-1]
    if bool((step > 0).all()):  # sorted without repeats: the common case of a release
        return u, i, r, w, ts, 0
    if bool((step >= 0).all()):
        has_dup = True
    else:
        srt = np.sort(key)
        has_dup = bool((srt[1:] == srt[:-1]).any())
        del srt
    del step
    if not has_dup:
        return u, i, r, w, ts, 0
    keep, n_dup, n_pairs = _resolve_duplicates(
        key, u, i, r, w, users, items, columns, duplicates, source, line_offset
    )
    rows, r, w = keep
    u, i, r = u[rows], i[rows], r[rows]
    w = None if w is None else w[rows]
    ts = None if ts is None else ts[rows]
    warnings.warn(
        f"merged {n_dup} duplicate rows of {n_pairs} (user, item) pairs with "
        f"duplicates={duplicates!r}" + (f" in {source}" if source else ""),
        DataWarning,
        stacklevel=stacklevel,
    )
    return u, i, r, w, ts, n_dup


def _resolve_duplicates(
    key: np.ndarray,
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    w: np.ndarray | None,
    users: Vocabulary,
    items: Vocabulary,
    columns: tuple[str, str],
    policy: str,
    source: str | None,
    line_offset: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], int, int]:
    """Rows to keep (and merged ratings/weights for "mean"), duplicate and pair counts."""
    order = np.argsort(key, kind="stable")
    sk = key[order]
    repeat = np.empty(len(sk), dtype=bool)  # this sorted position repeats the previous one
    repeat[0] = False
    np.equal(sk[1:], sk[:-1], out=repeat[1:])
    n_dup = int(repeat.sum())
    is_start = ~repeat
    n_pairs = int((is_start[:-1] & repeat[1:]).sum())
    if policy == "error":
        pos = np.arange(len(sk))
        first_pos = np.maximum.accumulate(np.where(is_start, pos, 0))
        dup_rows = order[repeat]
        firsts = order[first_pos[repeat]]
        shown_order = np.argsort(dup_rows, kind="stable")[:_SHOWN]
        shown = "; ".join(
            f"row {int(dup_rows[j])} (user {users.id([u[dup_rows[j]]]).tolist()[0]!r}, "
            f"item {items.id([i[dup_rows[j]]]).tolist()[0]!r}) repeats row {int(firsts[j])}"
            for j in shown_order
        )
        more = " ..." if n_dup > _SHOWN else ""
        first_row = int(dup_rows[shown_order[0]])
        raise DataError(
            f"expected one rating per (user, item) pair, received {n_dup} duplicate rows "
            f"in {n_pairs} pairs: {shown}{more} (pass duplicates='last' or 'mean' to merge)",
            file=source,
            row=first_row,
            line=None if line_offset is None else first_row + line_offset,
            column=f"{columns[0]},{columns[1]}",
        )
    is_last = np.empty(len(sk), dtype=bool)
    is_last[-1] = True
    np.not_equal(sk[1:], sk[:-1], out=is_last[:-1])
    last_rows = order[is_last]
    if policy == "last":
        return (np.sort(last_rows), r, w), n_dup, n_pairs
    # mean: one value per group, placed at the group's last row
    gid = np.cumsum(is_start) - 1
    cnt = np.bincount(gid).astype(np.float64)
    mean_r = np.bincount(gid, weights=r[order].astype(np.float64)) / cnt
    r2 = r.copy()
    r2[last_rows] = mean_r.astype(np.float32)
    w2 = None
    if w is not None:
        mean_w = np.bincount(gid, weights=w[order].astype(np.float64)) / cnt
        w2 = w.copy()
        w2[last_rows] = mean_w.astype(np.float32)
    return (np.sort(last_rows), r2, w2), n_dup, n_pairs
