"""Parquet files of ratings, read and written with pyarrow.

A file written by :func:`write_parquet` keeps the data's name and rating scale in its
metadata; :func:`read_parquet` restores them and checks every value as
:func:`recfit.data.io.from_frame` does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recfit.data import columns
from recfit.data.columns import ReadOptions
from recfit.data.interactions import Interactions
from recfit.errors import DataError

__all__ = ["read_parquet", "write_parquet"]

_META_KEY = b"recfit"
_FORMAT = 1


def read_parquet(
    path: str | Path,
    *,
    name: str | None = None,
    **options: Unpack[ReadOptions],
) -> Interactions:
    """Ratings from a Parquet file (read with pyarrow, converted straight to numpy).

    A file written by :func:`write_parquet` restores its name and rating scale, and its
    ``timestamp`` and ``weight`` columns are used when present unless other columns are
    named.

    Args:
        path: the file.
        name: the data's name (default: the stored name, else the file name).
        options: the column and value options of :func:`recfit.data.io.from_frame`.

    Raises:
        DataError: the file is missing or not Parquet, or a value is invalid.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.parquet")
        >>> write_parquet(Interactions.from_arrays([1, 2], [5, 5], [4.0, 2.0]), p)
        >>> read_parquet(p).rating.tolist()
        [4.0, 2.0]
    """
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
    opts = columns.read_options(options, "read_parquet")  # this call's own dict: ours to fill in
    if stored:
        if opts.get("timestamp") is None and "timestamp" in found:
            opts["timestamp"] = "timestamp"
        if opts.get("weight") is None and "weight" in found:
            opts["weight"] = "weight"
        if opts.get("rating_scale") is None:
            opts["rating_scale"] = stored.get("rating_scale")
    mapping = columns.implicit_mapping(found, columns.column_mapping(opts), opts)
    columns.require_columns(found, mapping, src)
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
        name = stored.get("name") or columns.source_stem(Path(path))
    return columns.from_columns(cols, mapping, opts, name=name, source=src)


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


def _arrow_column(col: Any, source: str | None = None, name: str | None = None) -> np.ndarray:
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
    if ids.dtype.kind in "iu":
        return pa.array(ids, type=pa.int64())
    return pa.array(ids.tolist() if ids.dtype.kind == "O" else ids, type=pa.string())
