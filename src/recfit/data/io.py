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
import csv
import lzma
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Unpack

import numpy as np
import pandas as pd

from recfit.data.columns import (
    ReadOptions,
    column_mapping,
    from_columns,
    implicit_mapping,
    read_options,
    require_columns,
    source_stem,
)
from recfit.data.duplicates import DuplicatePolicy
from recfit.data.interactions import Interactions
from recfit.data.parquet import read_parquet, write_parquet
from recfit.errors import ConfigError, DataError

__all__ = [
    "DuplicatePolicy",
    "from_frame",
    "load",
    "read_csv",
    "read_parquet",
    "write_parquet",
]

_INT_TEXT = re.compile(r"\s*([+-]?\d{1,40})(?:\.0*)?\s*")


# ---------------------------------------------------------------------- public API
def from_frame(
    df: pd.DataFrame,
    *,
    name: str = "ratings",
    source: str | None = None,
    **options: Unpack[ReadOptions],
) -> Interactions:
    """Ratings from a DataFrame, one row per rating.

    Args:
        df: the table.
        user: column of raw user ids (strings or integers).
        item: column of raw item ids (strings or integers).
        rating: column of numeric ratings (or counts, plays, durations); ``None`` for
            implicit data (every row a positive of value 1).
        timestamp: optional column of integer epoch seconds, or ``datetime64`` values
            (converted to seconds), or ISO-8601 strings.
        weight: optional column of finite non-negative row weights.
        duplicates: what to do with repeated (user, item) pairs (see the module docs).
        rating_scale: ``(low, high)``; ratings outside it are an error.
        implicit_if_missing: a frame without the ``rating`` column is implicit data
            (every row a positive of value 1, ``meta["implicit"]``) instead of an error.
        name: the data's name.
        source: where the frame came from, used in error messages.

    The column and value options (``user`` ... ``rating_scale``) are the same for every
    reader (:class:`~recfit.data.columns.ReadOptions`); a misspelt one is a ConfigError.

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
    opts = read_options(options, "from_frame")
    found = [str(c) for c in df.columns]
    mapping = implicit_mapping(found, column_mapping(opts), opts)
    require_columns(found, mapping, source)
    cols = {role: _frame_column(df, col, source) for role, col in mapping.items()}
    return from_columns(cols, mapping, opts, name=name, source=source)


def read_csv(
    path: str | Path,
    *,
    name: str | None = None,
    sep: str = ",",
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    comment: str | None = None,
    **options: Unpack[ReadOptions],
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
    mapping = column_mapping(read_options(options, "read_csv"))
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
    return from_frame(df, name=name if name is not None else source_stem(p), source=src, **options)


def load(
    source: str | Path | pd.DataFrame,
    *,
    name: str | None = None,
    **options: Unpack[ReadOptions],
) -> Interactions:
    """Ratings from a DataFrame or a file chosen by its suffix.

    ``.csv`` (comma), ``.tsv`` (tab) — optionally compressed (``.gz``, ``.bz2``,
    ``.zip``, ``.xz``, ``.zst``) — and ``.parquet`` / ``.pq``. ``options`` as for
    :func:`from_frame`.

    Raises:
        DataError: the suffix is not one of those, or reading fails.

    Example:
        >>> load(pd.DataFrame({"user": [1], "item": [2], "rating": [3.0]})).n_items
        1
    """
    read_options(options, "load")
    if isinstance(source, pd.DataFrame):
        return from_frame(source, name=name or "ratings", **options)
    p = Path(source)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".csv":
        return read_csv(p, sep=",", name=name, **options)
    if kind == ".tsv":
        return read_csv(p, sep="\t", name=name, **options)
    if kind in (".parquet", ".pq"):
        return read_parquet(p, name=name, **options)
    raise DataError(
        f"expected a .csv, .tsv, .parquet or .pq file, received suffix {kind or '(none)'!r}",
        file=str(source),
    )


# ---------------------------------------------------------------------- helpers
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
