"""Fitted per-feature state and the vectorised column encoders a :class:`FeatureSpace` uses."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recfit.data.features import specs as sp
from recfit.errors import ConfigError, DataError

_MAX_SHOWN = 5
_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")


# ----------------------------------------------------------------------------- state


@dataclass
class _State:
    edges: np.ndarray | None = None
    scale: float = 1.0
    offset: float = 0.0
    vocabulary: np.ndarray | None = None
    width: int = 1
    _lookup: pd.Index | None = field(default=None, repr=False)
    _arrow: pa.Array | None = field(default=None, repr=False)

    def arrow_vocab(self) -> pa.Array:
        if self._arrow is None:
            vocab = self.vocabulary if self.vocabulary is not None else np.array([], object)
            self._arrow = pa.array(vocab, type=pa.large_string())
        return self._arrow

    def lookup(self) -> pd.Index:
        if self._lookup is None:
            vocab = self.vocabulary if self.vocabulary is not None else np.array([], object)
            self._lookup = pd.Index(vocab)
        return self._lookup

    def to_dict(self, spec: sp.FeatureSpec) -> dict[str, Any]:
        if isinstance(spec, sp.FloatDiscretized):
            assert self.edges is not None  # set by adapt / from_dict
            return {"edges": [float(x) for x in self.edges]}
        if isinstance(spec, sp.FloatRescaled):
            return {"scale": self.scale, "offset": self.offset}
        if isinstance(spec, sp.Crossed):
            return {}
        assert self.vocabulary is not None
        vocab = [int(x) if isinstance(spec, sp.IntCategorical) else str(x) for x in self.vocabulary]
        d: dict[str, Any] = {"vocabulary": vocab}
        if isinstance(spec, (sp.Text, sp.MultiCategorical)):
            d["width"] = self.width
        return d

    @classmethod
    def from_dict(cls, name: str, spec: sp.FeatureSpec, d: object) -> _State:
        try:
            if not isinstance(d, Mapping):
                raise TypeError(f"a state object, received {d!r}")
            if isinstance(spec, sp.FloatDiscretized):
                edges = np.asarray([float(x) for x in d["edges"]], dtype=np.float64)
                if edges.size and not (np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)):
                    raise ValueError("edges must be finite and increasing")
                return cls(edges=edges)
            if isinstance(spec, sp.FloatRescaled):
                return cls(scale=float(d["scale"]), offset=float(d["offset"]))
            if isinstance(spec, sp.Crossed):
                return cls()
            raw = list(d["vocabulary"])
            if isinstance(spec, sp.IntCategorical):
                if not all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
                    raise TypeError("integer vocabulary expected")
                vocab = np.asarray(raw, dtype=np.int64)
            else:
                if not all(isinstance(x, str) for x in raw):
                    raise TypeError("string vocabulary expected")
                vocab = np.asarray(raw, dtype=object)
            width = 1
            if isinstance(spec, (sp.Text, sp.MultiCategorical)):
                width = d["width"]
                if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                    raise ValueError(f"width must be a positive integer, got {width!r}")
            return cls(vocabulary=vocab, width=width)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"expected a valid fitted state for {spec.kind} feature {name!r}, "
                f"received an invalid one: {exc!r}"
            ) from exc


# ----------------------------------------------------------------------------- helpers

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array (wraps modulo 2**64)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def _hash_cross(columns: Sequence[np.ndarray], dim: int) -> np.ndarray:
    n = len(columns[0])
    h = _mix64(np.full(n, len(columns), dtype=np.uint64))
    for col in columns:
        h = _mix64(h ^ _mix64(col.astype(np.int64).view(np.uint64)))
    return (h % np.uint64(dim)).astype(np.int64)


def _stable_bucket(values: np.ndarray, n: int) -> np.ndarray:
    """``stable_hash(value) % n`` for ints (splitmix64) or strings (blake2b of UTF-8)."""
    if values.dtype.kind in "iu":
        return (_mix64(values.astype(np.int64).view(np.uint64)) % np.uint64(n)).astype(np.int64)
    codes, uniques = pd.factorize(values)
    hashed = np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(str(u).encode("utf-8"), digest_size=8).digest(), "little"
            )
            % n
            for u in uniques
        ),
        dtype=np.int64,
        count=len(uniques),
    )
    return hashed[codes]


def _learn_vocab(values: np.ndarray, max_tokens: int | None) -> np.ndarray:
    """Distinct values, most frequent first, ties by value ascending; at most max_tokens."""
    if len(values) == 0:
        return values[:0]
    codes, uniques = pd.factorize(values)
    counts = np.bincount(codes, minlength=len(uniques))
    table = pd.DataFrame({"v": np.asarray(uniques), "c": counts})
    table = table.sort_values(["c", "v"], ascending=[False, True], kind="mergesort")
    out = table["v"].to_numpy()
    if values.dtype.kind not in "iu":
        out = out.astype(object)
    return out[:max_tokens] if max_tokens is not None else out


def _lookup(values: np.ndarray, state: _State, num_oov: int, column: str, first: int) -> np.ndarray:
    """Vocabulary index (offset by ``first``) of each value; OOV per the layout."""
    pos = np.asarray(state.lookup().get_indexer(values), dtype=np.int64)  # type: ignore[arg-type]
    out = pos + first
    oov = pos < 0
    if oov.any():
        if num_oov == 0:
            bad = values[oov][:_MAX_SHOWN].tolist()
            raise DataError(
                f"expected values seen by adapt() (num_oov_indices=0), received "
                f"{int(oov.sum())} unknown: {bad}",
                column=column,
            )
        out[oov] = 1 if num_oov == 1 else 1 + _stable_bucket(values[oov], num_oov)
    return out


def _float_values(series: pd.Series, column: str) -> np.ndarray:
    try:
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"expected numeric values, received dtype {series.dtype} ({exc})", column=column
        ) from exc


def _int_values(series: pd.Series, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(non-missing values as int64, missing mask)."""
    missing = np.asarray(series.isna().to_numpy(), dtype=bool)
    present = series[~missing]
    if pd.api.types.is_bool_dtype(present.dtype) or pd.api.types.is_integer_dtype(present.dtype):
        return present.to_numpy(dtype=np.int64), missing
    num = pd.to_numeric(present, errors="coerce")
    as_float = num.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
    if bad.any():
        row = int(np.flatnonzero(~missing)[np.flatnonzero(bad)[0]])
        raise DataError(
            f"expected integer values, received {series.iloc[row]!r}", row=row, column=column
        )
    if pd.api.types.is_integer_dtype(num.dtype):
        return num.to_numpy(dtype=np.int64), missing
    return as_float.astype(np.int64), missing


def _str_values(series: pd.Series, prefix: int | None) -> tuple[np.ndarray, np.ndarray]:
    missing = np.asarray(series.isna().to_numpy(), dtype=bool)
    present = series[~missing].astype(str)
    if prefix is not None:
        present = present.str[:prefix]
    return present.to_numpy(dtype=object), missing


_LARGE_STR = pa.large_string()


def _arrow_strings(series: pd.Series) -> pa.Array:
    """A large_string arrow array of ``series``; missing values become nulls."""
    try:
        arr = pa.array(series, type=_LARGE_STR, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        missing = series.isna().to_numpy()
        text = series.astype(object).astype(str).to_numpy(dtype=object)
        text[missing] = None
        arr = pa.array(text, type=_LARGE_STR, from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _flatten(lists: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(row of each element, elements) of a list array, nulls and empty strings dropped."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    rows = np.asarray(pc.list_parent_indices(lists).to_numpy(), dtype=np.int64)
    flat = pc.list_flatten(lists).cast(_LARGE_STR)
    keep = pc.fill_null(pc.not_equal(flat, ""), False)
    if pc.all(keep).as_py() is False:
        rows = rows[np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)]
        flat = pc.filter(flat, keep)
    return rows, flat


def _explode(cells: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """(row of each element, element as str) for a series of list-like cells (slow path)."""
    flat = cells.reset_index(drop=True).explode()
    keep = np.asarray(flat.notna().to_numpy(), dtype=bool)
    rows = np.asarray(flat.index.to_numpy(), dtype=np.int64)[keep]
    tokens = flat[keep].astype(str).to_numpy(dtype=object)
    nonempty = tokens != ""
    return rows[nonempty], pa.array(tokens[nonempty], type=_LARGE_STR)


def _text_tokens(series: pd.Series, standardize: str | None) -> tuple[np.ndarray, pa.Array]:
    """Standardise with arrow compute (Unicode lowercase, delete ``string.punctuation``),
    then split on runs of Unicode whitespace."""
    arr = _arrow_strings(series)
    if standardize in ("lower", "lower_and_strip_punctuation"):
        arr = pc.utf8_lower(arr)
    if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
        arr = pc.replace_substring_regex(arr, _PUNCT.pattern, "")
    return _flatten(pc.utf8_split_whitespace(arr))


def _multi_tokens(series: pd.Series, separator: str | None) -> tuple[np.ndarray, pa.Array]:
    s = series.astype(object)
    if separator is None:
        if not any(isinstance(v, str) for v in s):  # arrow would split a str into chars
            try:  # fast path: every cell a list-like of strings (or missing)
                return _flatten(pa.array(s, type=pa.large_list(_LARGE_STR), from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        return _explode(s)
    split = s.str.split(separator, regex=False)
    return _explode(split.where(split.notna(), s))


def _sequence_tokens(
    spec: sp.Text | sp.MultiCategorical, series: pd.Series
) -> tuple[np.ndarray, pa.Array]:
    if isinstance(spec, sp.Text):
        return _text_tokens(series, spec.standardize)
    return _multi_tokens(series, spec.separator)


def _learn_token_vocab(tokens: pa.Array, max_tokens: int | None) -> np.ndarray:
    """Distinct tokens, most frequent first, ties by token; at most max_tokens."""
    counts = pc.value_counts(tokens)
    table = pd.DataFrame(
        {
            "v": np.asarray(counts.field("values").to_pylist(), dtype=object),
            "c": counts.field("counts").to_numpy(),
        }
    )
    table = table.sort_values(["c", "v"], ascending=[False, True], kind="mergesort")
    out = table["v"].to_numpy().astype(object)
    return out[:max_tokens] if max_tokens is not None else out


def _lookup_tokens(tokens: pa.Array, state: _State) -> np.ndarray:
    """Token ids: 1 for unknown, 2 + vocabulary position otherwise."""
    pos = pc.fill_null(pc.index_in(tokens, value_set=state.arrow_vocab()), -1)
    return np.asarray(pos.to_numpy(), dtype=np.int64) + 2 if len(tokens) else np.zeros(0, np.int64)


def _encode_sequences(
    rows: np.ndarray, codes: np.ndarray, n: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter per-row codes (rows sorted ascending) into padded (n, width) ids + mask."""
    pos = np.arange(len(rows), dtype=np.int64) - np.searchsorted(rows, rows, side="left")
    keep = pos < width
    ids = np.zeros((n, width), dtype=np.int64)
    ids[rows[keep], pos[keep]] = codes[keep]
    lengths = np.minimum(np.bincount(rows, minlength=n), width)
    mask = np.arange(width)[None, :] < lengths[:, None]
    return ids, mask
