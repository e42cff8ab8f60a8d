"""Feature preprocessing: a :class:`FeatureSpace` of typed feature specs.

In the spirit of keras' ``FeatureSpace``, done natively with numpy and pandas: every
transformation is vectorised over whole columns. A space is a mapping from feature
name to a *spec* (a frozen, JSON-serialisable dataclass). :meth:`FeatureSpace.adapt`
learns vocabularies, bin edges and scales from the frame it is given (pass the
training split only); :meth:`FeatureSpace.transform` turns a frame into a dict of
numpy arrays that a model can embed.

Index layout (the same for every index-valued kind, so that ``nn.Embedding(...,
padding_idx=0)`` works everywhere):

* ``0``: padding (sequences) or a missing value (``None``/``NaN``/``pd.NA``).
* ``1 .. num_oov_indices``: out-of-vocabulary values (with more than one OOV index,
  a value goes to ``1 + stable_hash(value) % num_oov_indices``).
* ``num_oov_indices + 1 ..``: the learned vocabulary, most frequent first, ties by
  value ascending.

Discretised floats use ``0`` for a missing value and ``1 .. n_bins`` for the bins;
crosses use ``0 .. crossing_dim - 1`` (no reserved index). Rescaled floats are
``float32`` with missing values mapped to ``0.0`` (the learned mean when the scale and
offset are learned).

Text and multi-valued features give a padded ``int64`` array of shape ``(n, width)``
under the feature name and a boolean array of the same shape under ``name + "_mask"``
(``True`` where a token is). ``width`` is ``max_length`` or, when that is ``None``, the
longest row seen by :meth:`~FeatureSpace.adapt` (at least 1); longer rows are
truncated to their first ``width`` tokens.

Example:
    >>> import pandas as pd
    >>> users = pd.DataFrame({"age": [20, 30, 40, 50], "job": ["a", "b", "a", "c"]})
    >>> space = FeatureSpace({"age": FloatDiscretized(num_bins=2), "job": StringCategorical()})
    >>> out = space.adapt(users).transform(users)
    >>> out["age"].tolist(), out["job"].tolist()
    ([1, 1, 2, 2], [2, 3, 2, 4])
    >>> space.cardinalities()
    {'age': 3, 'job': 5}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recfit.errors import ConfigError, DataError

__all__ = [
    "Crossed",
    "FeatureInfo",
    "FeatureSpace",
    "FeatureSpec",
    "FloatDiscretized",
    "FloatRescaled",
    "IntCategorical",
    "MultiCategorical",
    "StringCategorical",
    "Text",
    "movielens_item_space",
    "movielens_user_space",
    "space_for_table",
]

_F32_MAX = float(np.finfo(np.float32).max)

_FORMAT = "recfit.FeatureSpace"
_VERSION = 1
_MAX_SHOWN = 5
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")


# ----------------------------------------------------------------------------- specs


def _check_int(
    kind: str, param: str, value: object, minimum: int, *, optional: bool = False
) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        want = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise ConfigError(f"expected {param} {want} in {kind}, received {value!r}")


def _check_column(kind: str, column: object) -> None:
    if column is not None and (not isinstance(column, str) or not column):
        raise ConfigError(f"expected column a non-empty str or None in {kind}, received {column!r}")


@dataclass(frozen=True)
class FloatDiscretized:
    """A number cut into ``num_bins`` bins at quantiles of the training data.

    Output: ``int64`` bin index, ``0`` for a missing value, ``1 .. n_bins`` otherwise
    (``n_bins <= num_bins``: repeated quantiles are merged). A value equal to an
    edge goes to the bin above it; values beyond the training range go to the first
    or last bin.

    Args:
        num_bins: how many bins to aim for (>= 1).
        column: the source column; ``None`` means the feature's own name.
    """

    num_bins: int = 10
    column: str | None = None
    kind: ClassVar[str] = "float_discretized"

    def __post_init__(self) -> None:
        _check_int("FloatDiscretized", "num_bins", self.num_bins, 1)
        _check_column("FloatDiscretized", self.column)


@dataclass(frozen=True)
class FloatRescaled:
    """A number mapped to ``value * scale + offset`` as ``float32``.

    Parameters left ``None`` are learned by ``adapt``: ``scale = 1 / std`` (1 when the
    standard deviation is 0) and ``offset = -mean * scale``, so that learned values
    come out standardised. Missing values become ``0.0``.

    Args:
        scale: the multiplier, or ``None`` to learn it.
        offset: the added constant, or ``None`` to learn it.
        column: the source column; ``None`` means the feature's own name.
    """

    scale: float | None = None
    offset: float | None = None
    column: str | None = None
    kind: ClassVar[str] = "float_rescaled"

    def __post_init__(self) -> None:
        for param in ("scale", "offset"):
            v = getattr(self, param)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                raise ConfigError(f"expected {param} a number or None, received {v!r}")
            if not np.isfinite(float(v)):
                raise ConfigError(f"expected a finite {param}, received {v!r}")
            object.__setattr__(self, param, float(v))
        _check_column("FloatRescaled", self.column)


@dataclass(frozen=True)
class IntCategorical:
    """Integer codes looked up in a vocabulary learned by frequency.

    Output: ``int64``: ``0`` missing, ``1 .. num_oov_indices`` unknown values, then the
    vocabulary (most frequent first, ties by value). With ``num_oov_indices=0`` an
    unknown value raises :class:`~recfit.errors.DataError`.

    Args:
        max_tokens: keep at most this many learned values (``None``: all).
        num_oov_indices: indices shared by values not in the vocabulary (>= 0).
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    num_oov_indices: int = 1
    column: str | None = None
    kind: ClassVar[str] = "int_categorical"

    def __post_init__(self) -> None:
        _check_int("IntCategorical", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("IntCategorical", "num_oov_indices", self.num_oov_indices, 0)
        _check_column("IntCategorical", self.column)


@dataclass(frozen=True)
class StringCategorical:
    """Strings looked up in a vocabulary learned by frequency.

    Same index layout as :class:`IntCategorical`. Non-string values are converted with
    ``str``. With ``prefix`` only the first ``prefix`` characters count (a zip code's
    region, for example).

    Args:
        max_tokens: keep at most this many learned values (``None``: all).
        num_oov_indices: indices shared by values not in the vocabulary (>= 0).
        prefix: use only the first ``prefix`` characters of each value.
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    num_oov_indices: int = 1
    prefix: int | None = None
    column: str | None = None
    kind: ClassVar[str] = "string_categorical"

    def __post_init__(self) -> None:
        _check_int("StringCategorical", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("StringCategorical", "num_oov_indices", self.num_oov_indices, 0)
        _check_int("StringCategorical", "prefix", self.prefix, 1, optional=True)
        _check_column("StringCategorical", self.column)


@dataclass(frozen=True)
class Crossed:
    """The cross of other single-valued features of the space, hashed into buckets.

    The components' *output indices* (after discretisation or lookup) are combined with
    a fixed 64-bit mixing function (splitmix64; the same on every machine and run, unlike
    Python's salted ``hash``) and reduced modulo ``crossing_dim``. Output: ``int64`` in
    ``0 .. crossing_dim - 1``.

    Args:
        features: names of at least two features of the same space, each a
            :class:`FloatDiscretized`, :class:`IntCategorical` or :class:`StringCategorical`.
        crossing_dim: number of hash buckets (>= 1).
    """

    features: tuple[str, ...]
    crossing_dim: int
    kind: ClassVar[str] = "crossed"

    def __post_init__(self) -> None:
        feats = self.features
        if isinstance(feats, str) or not isinstance(feats, (tuple, list)):
            raise ConfigError(f"expected features a tuple of feature names, received {feats!r}")
        feats = tuple(feats)
        if len(feats) < 2 or len(set(feats)) != len(feats):
            raise ConfigError(
                f"expected at least two distinct feature names in Crossed, received {feats!r}"
            )
        if not all(isinstance(f, str) and f for f in feats):
            raise ConfigError(f"expected feature names as str in Crossed, received {feats!r}")
        object.__setattr__(self, "features", feats)
        _check_int("Crossed", "crossing_dim", self.crossing_dim, 1)


@dataclass(frozen=True)
class Text:
    """Free text: standardised, split on whitespace, looked up in a token vocabulary.

    Output: ``int64`` ``(n, width)`` token ids, ``0`` padding, ``1`` unknown token,
    ``2 ..`` the vocabulary (most frequent first, ties by token), plus a boolean mask.

    Args:
        max_tokens: keep at most this many learned tokens (``None``: all).
        max_length: padded width; ``None`` learns the longest training row.
        standardize: ``"lower_and_strip_punctuation"`` (lowercase, then delete the
            characters of ``string.punctuation``), ``"lower"``, ``"strip_punctuation"``,
            or ``None`` (as is).
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    max_length: int | None = None
    standardize: str | None = "lower_and_strip_punctuation"
    column: str | None = None
    kind: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        _check_int("Text", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("Text", "max_length", self.max_length, 1, optional=True)
        if self.standardize is not None and self.standardize not in _STANDARDIZE:
            raise ConfigError(
                f"expected standardize one of {[*_STANDARDIZE, None]}, "
                f"received {self.standardize!r}"
            )
        _check_column("Text", self.column)


@dataclass(frozen=True)
class MultiCategorical:
    """A column whose cells hold several values (a tuple or list of strings, e.g. genres).

    Output like :class:`Text`: padded ``int64`` ids (``0`` padding, ``1`` unknown,
    ``2 ..`` vocabulary) plus a boolean mask. Values are converted with ``str``; a
    missing cell or missing element counts as no value. A plain string cell is one
    value, or is split on ``separator`` when that is given; empty strings count as no value.

    Args:
        max_tokens: keep at most this many learned values (``None``: all).
        max_length: padded width; ``None`` learns the longest training row.
        separator: split string cells on it (``"|"`` for raw MovieLens genres).
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    max_length: int | None = None
    separator: str | None = None
    column: str | None = None
    kind: ClassVar[str] = "multi_categorical"

    def __post_init__(self) -> None:
        _check_int("MultiCategorical", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("MultiCategorical", "max_length", self.max_length, 1, optional=True)
        if self.separator is not None and (
            not isinstance(self.separator, str) or not self.separator
        ):
            raise ConfigError(
                f"expected separator a non-empty str or None, received {self.separator!r}"
            )
        _check_column("MultiCategorical", self.column)


FeatureSpec = (
    FloatDiscretized
    | FloatRescaled
    | IntCategorical
    | StringCategorical
    | Crossed
    | Text
    | MultiCategorical
)
_SPECS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        FloatDiscretized,
        FloatRescaled,
        IntCategorical,
        StringCategorical,
        Crossed,
        Text,
        MultiCategorical,
    )
}
_CROSSABLE = (FloatDiscretized, IntCategorical, StringCategorical)


def _spec_to_dict(spec: FeatureSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": spec.kind}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        d[f.name] = list(v) if isinstance(v, tuple) else v
    return d


def _spec_from_dict(name: str, d: object) -> FeatureSpec:
    if not isinstance(d, Mapping):
        raise ConfigError(f"expected a spec object for feature {name!r}, received {d!r}")
    kind = d.get("kind")
    if kind not in _SPECS:
        raise ConfigError(
            f"expected kind one of {sorted(_SPECS)} for feature {name!r}, received {kind!r}"
        )
    cls = _SPECS[kind]
    allowed = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k != "kind"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"expected keys among {sorted(allowed)} for a {kind} spec, received unknown "
            f"keys {unknown} (feature {name!r})"
        )
    try:
        spec: FeatureSpec = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"expected a complete {kind} spec for feature {name!r}: {exc}") from exc
    return spec


# ----------------------------------------------------------------------------- info


@dataclass(frozen=True)
class FeatureInfo:
    """What a model needs to know to embed one transformed feature.

    Attributes:
        name: the feature's name (its key in ``transform``'s output).
        kind: the spec's kind (``"text"``, ``"string_categorical"``, ...).
        dtype: ``"int64"`` for indices, ``"float32"`` for rescaled numbers.
        cardinality: number of distinct indices including padding and OOV (the size
            of an embedding table); ``None`` for a float feature.
        width: 1 for a scalar feature (shape ``(n,)``), the padded length for text
            and multi-valued features (shape ``(n, width)``).
        masked: whether ``name + "_mask"`` comes with it.
        padding_index: the index meaning "padding or missing" (0), or ``None``.
        num_oov_indices: how many indices out-of-vocabulary values share.
    """

    name: str
    kind: str
    dtype: Literal["int64", "float32"]
    cardinality: int | None
    width: int = 1
    masked: bool = False
    padding_index: int | None = 0
    num_oov_indices: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


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

    def to_dict(self, spec: FeatureSpec) -> dict[str, Any]:
        if isinstance(spec, FloatDiscretized):
            assert self.edges is not None  # set by adapt / from_dict
            return {"edges": [float(x) for x in self.edges]}
        if isinstance(spec, FloatRescaled):
            return {"scale": self.scale, "offset": self.offset}
        if isinstance(spec, Crossed):
            return {}
        assert self.vocabulary is not None
        vocab = [int(x) if isinstance(spec, IntCategorical) else str(x) for x in self.vocabulary]
        d: dict[str, Any] = {"vocabulary": vocab}
        if isinstance(spec, (Text, MultiCategorical)):
            d["width"] = self.width
        return d

    @classmethod
    def from_dict(cls, name: str, spec: FeatureSpec, d: object) -> _State:
        try:
            if not isinstance(d, Mapping):
                raise TypeError(f"a state object, received {d!r}")
            if isinstance(spec, FloatDiscretized):
                edges = np.asarray([float(x) for x in d["edges"]], dtype=np.float64)
                if edges.size and not (np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)):
                    raise ValueError("edges must be finite and increasing")
                return cls(edges=edges)
            if isinstance(spec, FloatRescaled):
                return cls(scale=float(d["scale"]), offset=float(d["offset"]))
            if isinstance(spec, Crossed):
                return cls()
            raw = list(d["vocabulary"])
            if isinstance(spec, IntCategorical):
                if not all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
                    raise TypeError("integer vocabulary expected")
                vocab = np.asarray(raw, dtype=np.int64)
            else:
                if not all(isinstance(x, str) for x in raw):
                    raise TypeError("string vocabulary expected")
                vocab = np.asarray(raw, dtype=object)
            width = 1
            if isinstance(spec, (Text, MultiCategorical)):
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
    spec: Text | MultiCategorical, series: pd.Series
) -> tuple[np.ndarray, pa.Array]:
    if isinstance(spec, Text):
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


# ----------------------------------------------------------------------------- space


class FeatureSpace:
    """Named feature specs, adapted on training data, transforming frames to arrays.

    Each feature reads the column of its own name (or the spec's ``column``), except
    :class:`Crossed`, which reads other features' outputs. Output keys follow the
    order of ``features``; text and multi-valued features add ``name + "_mask"``.

    Args:
        features: feature name → spec.

    Raises:
        ConfigError: a spec is not one of the kinds, a cross names a missing or
            unsuitable feature, or two output keys would collide.

    Example:
        >>> import pandas as pd
        >>> items = pd.DataFrame({"genres": [("Drama",), ("Comedy", "Drama"), ()]})
        >>> space = FeatureSpace({"genres": MultiCategorical()}).adapt(items)
        >>> out = space.transform(items)
        >>> out["genres"].tolist(), out["genres_mask"].tolist()
        ([[2, 0], [3, 2], [0, 0]], [[True, False], [True, True], [False, False]])
        >>> FeatureSpace.from_json(space.to_json()).transform(items)["genres"].tolist()
        [[2, 0], [3, 2], [0, 0]]
    """

    def __init__(self, features: Mapping[str, FeatureSpec]) -> None:
        if not isinstance(features, Mapping) or not features:
            raise ConfigError(
                f"expected a non-empty mapping of feature name to spec, received {features!r}"
            )
        specs: dict[str, FeatureSpec] = {}
        for name, spec in features.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"expected feature names as non-empty str, received {name!r}")
            if not isinstance(spec, tuple(_SPECS.values())):
                raise ConfigError(
                    f"expected a feature spec ({', '.join(c.__name__ for c in _SPECS.values())}) "
                    f"for feature {name!r}, received {spec!r}"
                )
            specs[name] = spec
        keys: set[str] = set()
        for name, spec in specs.items():
            out = [name, f"{name}_mask"] if isinstance(spec, (Text, MultiCategorical)) else [name]
            for key in out:
                if key in keys or (key != name and key in specs):
                    raise ConfigError(
                        f"expected distinct output keys, received {key!r} twice (feature {name!r})"
                    )
                keys.add(key)
            if isinstance(spec, Crossed):
                for comp in spec.features:
                    if comp not in specs or not isinstance(specs[comp], _CROSSABLE):
                        got = type(specs[comp]).__name__ if comp in specs else "no such feature"
                        raise ConfigError(
                            f"expected crossed feature {name!r} to name FloatDiscretized, "
                            f"IntCategorical or StringCategorical features of this space, "
                            f"received {comp!r} ({got})"
                        )
        self._specs = specs
        self._state: dict[str, _State] | None = None

    # -- introspection
    @property
    def features(self) -> Mapping[str, FeatureSpec]:
        """The specs by name (read-only)."""
        return MappingProxyType(self._specs)

    @property
    def fitted(self) -> bool:
        """Whether :meth:`adapt` (or loading a fitted space) has run."""
        return self._state is not None

    @property
    def columns(self) -> list[str]:
        """The input columns that :meth:`adapt` and :meth:`transform` read."""
        cols: list[str] = []
        for name, spec in self._specs.items():
            if not isinstance(spec, Crossed):
                col = spec.column or name
                if col not in cols:
                    cols.append(col)
        return cols

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __repr__(self) -> str:
        kinds = ", ".join(f"{n}={s.kind}" for n, s in self._specs.items())
        return f"FeatureSpace({kinds}; fitted={self.fitted})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpace) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # -- checks
    def _frame(self, frame: object, where: str) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(
                f"expected a pandas DataFrame in {where}, received {type(frame).__name__}"
            )
        arrived = list(frame.columns)
        for name, spec in self._specs.items():
            if isinstance(spec, Crossed):
                continue
            col = spec.column or name
            if col not in frame.columns:
                raise DataError(
                    f"expected column {col!r} for feature {name!r} in {where}, "
                    f"received columns {arrived}",
                    column=col,
                )
        return frame

    def _require_fitted(self, what: str) -> dict[str, _State]:
        if self._state is None:
            raise ConfigError(
                f"expected a fitted FeatureSpace before {what} (call adapt() on the training "
                f"split first), received an unfitted one"
            )
        return self._state

    # -- learning
    def adapt(self, frame: pd.DataFrame) -> FeatureSpace:
        """Learn vocabularies, bin edges, scales and widths from ``frame``.

        Pass the training split only: values first seen later map to OOV indices.
        Calling it again replaces what was learned.

        Returns:
            ``self``, fitted.

        Raises:
            DataError: ``frame`` is not a DataFrame, lacks a column, or holds values of
                the wrong type for a spec.

        Example:
            >>> import pandas as pd
            >>> s = FeatureSpace({"x": FloatRescaled()}).adapt(pd.DataFrame({"x": [1.0, 3.0]}))
            >>> s.transform(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))["x"].tolist()
            [-1.0, 0.0, 1.0]
        """
        frame = self._frame(frame, "adapt()")
        state: dict[str, _State] = {}
        for name, spec in self._specs.items():
            if isinstance(spec, Crossed):
                state[name] = _State()
                continue
            col = spec.column or name
            series = frame[col]
            if isinstance(spec, FloatDiscretized):
                x = _float_values(series, col)
                x = x[~np.isnan(x)]
                if x.size:
                    qs = np.quantile(x, np.linspace(0.0, 1.0, spec.num_bins + 1)[1:-1])
                    edges = np.unique(qs[np.isfinite(qs)])
                else:
                    edges = np.empty(0, dtype=np.float64)
                state[name] = _State(edges=edges.astype(np.float64))
            elif isinstance(spec, FloatRescaled):
                x = _float_values(series, col)
                x = x[np.isfinite(x)]
                with np.errstate(over="ignore", invalid="ignore"):
                    mean = float(x.mean()) if x.size else 0.0
                    std = float(x.std()) if x.size else 0.0
                ok = 0.0 < std < np.inf
                scale = spec.scale if spec.scale is not None else (1.0 / std if ok else 1.0)
                if not np.isfinite(mean):
                    mean = 0.0
                offset = spec.offset if spec.offset is not None else -mean * scale
                state[name] = _State(scale=float(scale), offset=float(offset))
            elif isinstance(spec, IntCategorical):
                vals, _ = _int_values(series, col)
                state[name] = _State(vocabulary=_learn_vocab(vals, spec.max_tokens))
            elif isinstance(spec, StringCategorical):
                svals, _ = _str_values(series, spec.prefix)
                state[name] = _State(vocabulary=_learn_vocab(svals, spec.max_tokens))
            else:
                rows, tokens = _sequence_tokens(spec, series)
                longest = int(np.bincount(rows).max()) if rows.size else 0
                width = spec.max_length if spec.max_length is not None else max(1, longest)
                state[name] = _State(
                    vocabulary=_learn_token_vocab(tokens, spec.max_tokens), width=width
                )
        self._state = state
        return self

    # -- applying
    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Arrays for every feature of ``frame``, row-aligned with it.

        Returns:
            name → ``int64`` indices of shape ``(n,)`` or ``(n, width)``, or ``float32``
            values of shape ``(n,)``; ``name + "_mask"`` (bool, ``(n, width)``) for text
            and multi-valued features.

        Raises:
            ConfigError: the space is not fitted.
            DataError: ``frame`` lacks a column or holds values of the wrong type, or an
                unknown value meets ``num_oov_indices=0``.
        """
        state = self._require_fitted("transform()")
        frame = self._frame(frame, "transform()")
        n = len(frame)
        out: dict[str, np.ndarray] = {}
        for name, spec in self._specs.items():
            st = state[name]
            if isinstance(spec, Crossed):
                continue
            col = spec.column or name
            series = frame[col]
            if isinstance(spec, FloatDiscretized):
                x = _float_values(series, col)
                ok = ~np.isnan(x)
                idx = np.zeros(n, dtype=np.int64)
                assert st.edges is not None
                idx[ok] = np.searchsorted(st.edges, x[ok], side="right") + 1
                out[name] = idx
            elif isinstance(spec, FloatRescaled):
                x = _float_values(series, col)
                with np.errstate(over="ignore", invalid="ignore"):
                    y = np.where(np.isnan(x), 0.0, x * st.scale + st.offset)
                # a near-constant training column has a huge learned scale: keep the
                # values finite in float32 rather than overflow to inf
                out[name] = np.clip(y, -_F32_MAX, _F32_MAX).astype(np.float32)
            elif isinstance(spec, (IntCategorical, StringCategorical)):
                if isinstance(spec, IntCategorical):
                    vals, missing = _int_values(series, col)
                else:
                    vals, missing = _str_values(series, spec.prefix)
                idx = np.zeros(n, dtype=np.int64)
                idx[~missing] = _lookup(
                    vals, st, spec.num_oov_indices, col, spec.num_oov_indices + 1
                )
                out[name] = idx
            else:
                rows, tokens = _sequence_tokens(spec, series)
                codes = _lookup_tokens(tokens, st)
                ids, mask = _encode_sequences(rows, codes, n, st.width)
                out[name] = ids
                out[f"{name}_mask"] = mask
        for name, spec in self._specs.items():
            if isinstance(spec, Crossed):
                out[name] = _hash_cross([out[c] for c in spec.features], spec.crossing_dim)
        order: list[str] = []
        for name, spec in self._specs.items():
            order.append(name)
            if isinstance(spec, (Text, MultiCategorical)):
                order.append(f"{name}_mask")
        return {k: out[k] for k in order}

    def adapt_transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """:meth:`adapt` on ``frame``, then :meth:`transform` it."""
        return self.adapt(frame).transform(frame)

    # -- sizes
    def output_info(self) -> dict[str, FeatureInfo]:
        """Per feature: kind, dtype, cardinality (incl. padding and OOV), width, mask.

        Raises:
            ConfigError: the space is not fitted.
        """
        state = self._require_fitted("output_info()")
        info: dict[str, FeatureInfo] = {}
        for name, spec in self._specs.items():
            st = state[name]
            if isinstance(spec, FloatDiscretized):
                assert st.edges is not None
                info[name] = FeatureInfo(name, spec.kind, "int64", len(st.edges) + 2)
            elif isinstance(spec, FloatRescaled):
                info[name] = FeatureInfo(name, spec.kind, "float32", None, padding_index=None)
            elif isinstance(spec, Crossed):
                info[name] = FeatureInfo(
                    name, spec.kind, "int64", spec.crossing_dim, padding_index=None
                )
            else:
                assert st.vocabulary is not None
                if isinstance(spec, (IntCategorical, StringCategorical)):
                    oov = spec.num_oov_indices
                    info[name] = FeatureInfo(
                        name, spec.kind, "int64", 1 + oov + len(st.vocabulary), num_oov_indices=oov
                    )
                else:
                    info[name] = FeatureInfo(
                        name,
                        spec.kind,
                        "int64",
                        2 + len(st.vocabulary),
                        width=st.width,
                        masked=True,
                        num_oov_indices=1,
                    )
        return info

    def cardinalities(self) -> dict[str, int]:
        """Embedding-table sizes of the index-valued features (rescaled floats left out).

        Raises:
            ConfigError: the space is not fitted.
        """
        return {
            k: v.cardinality for k, v in self.output_info().items() if v.cardinality is not None
        }

    def vocabulary(self, name: str) -> list[Any]:
        """The learned vocabulary of a categorical, text or multi-valued feature.

        Element ``j`` has index ``j + num_oov_indices + 1`` (``j + 2`` for sequences).

        Raises:
            ConfigError: unknown name, a kind without vocabulary, or not fitted.
        """
        state = self._require_fitted("vocabulary()")
        if name not in self._specs:
            raise ConfigError(f"expected a feature of {list(self._specs)}, received {name!r}")
        voc = state[name].vocabulary
        if voc is None:
            raise ConfigError(
                f"expected a feature with a vocabulary, received {name!r} "
                f"({self._specs[name].kind})"
            )
        return list(voc.tolist())

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: format, version, specs, and the fitted state (or None)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "features": {n: _spec_to_dict(s) for n, s in self._specs.items()},
            "state": None
            if self._state is None
            else {n: self._state[n].to_dict(s) for n, s in self._specs.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpace:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: wrong format or version, an unknown kind or key, or a damaged state.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a FeatureSpace dict, received {type(d).__name__}")
        unknown = sorted(set(d) - {"format", "version", "features", "state"})
        if unknown:
            raise ConfigError(
                f"expected keys format, version, features, state, received unknown keys {unknown}"
            )
        if d.get("format") != _FORMAT:
            raise ConfigError(f"expected format {_FORMAT!r}, received {d.get('format')!r}")
        if d.get("version") != _VERSION:
            raise ConfigError(
                f"expected FeatureSpace format version {_VERSION}, received {d.get('version')!r}"
            )
        feats = d.get("features")
        if not isinstance(feats, Mapping):
            raise ConfigError(f"expected 'features' to be an object, received {feats!r}")
        space = cls({name: _spec_from_dict(name, spec) for name, spec in feats.items()})
        raw_state = d.get("state")
        if raw_state is not None:
            if not isinstance(raw_state, Mapping) or set(raw_state) != set(space._specs):
                raise ConfigError(
                    f"expected a state for each of {sorted(space._specs)}, received "
                    f"{sorted(raw_state) if isinstance(raw_state, Mapping) else raw_state!r}"
                )
            space._state = {
                n: _State.from_dict(n, s, raw_state[n]) for n, s in space._specs.items()
            }
        return space

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialise to strict JSON (floats written exactly, no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpace:
        """Inverse of :meth:`to_json`.

        Raises:
            ConfigError: invalid JSON or an invalid description.
        """
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"expected FeatureSpace JSON, received invalid JSON: {exc}") from exc
        return cls.from_dict(d)


# ----------------------------------------------------------------------------- ready-made

_ML_USER = ("ml-100k", "ml-1m")


def movielens_user_space(
    name: str, *, zip_prefix: int = 1, age_bins: int = 10, crossing_dim: int = 64
) -> FeatureSpace:
    """An (unfitted) space for the user table of a MovieLens release.

    Columns read: ``age``, ``gender``, ``occupation``, ``zip``. Features: ``age``
    (ml-100k: years discretised into ``age_bins`` quantile bins; ml-1m: its age code as
    a category), ``gender``, ``occupation``, ``zip_prefix`` (the first ``zip_prefix``
    characters of the zip code: 1 for the region digit, 3 for the sectional centre)
    and ``gender_x_age`` (gender × age hashed into ``crossing_dim`` buckets).

    Raises:
        ConfigError: a release without user features.

    Example:
        >>> sorted(movielens_user_space("ml-1m").features)
        ['age', 'gender', 'gender_x_age', 'occupation', 'zip_prefix']
    """
    if name not in _ML_USER:
        raise ConfigError(
            f"expected a MovieLens release with user features {_ML_USER}, received {name!r}"
        )
    age: FeatureSpec = (
        FloatDiscretized(num_bins=age_bins) if name == "ml-100k" else IntCategorical()
    )
    return FeatureSpace(
        {
            "age": age,
            "gender": StringCategorical(),
            "occupation": StringCategorical(),
            "zip_prefix": StringCategorical(prefix=zip_prefix, column="zip"),
            "gender_x_age": Crossed(("gender", "age"), crossing_dim=crossing_dim),
        }
    )


def movielens_item_space(
    name: str, *, title_tokens: int = 10_000, title_length: int = 16, year_bins: int = 10
) -> FeatureSpace:
    """An (unfitted) space for the item table of a MovieLens release.

    Columns read: ``title`` (text, at most ``title_tokens`` tokens, padded to
    ``title_length``), ``year`` (release year in ``year_bins`` quantile bins; missing
    years get index 0) and ``genres`` (tuples of genre names, multi-valued).

    Raises:
        ConfigError: ``name`` is not a MovieLens release name (``"ml-..."``).

    Example:
        >>> movielens_item_space("ml-100k").features["genres"]
        MultiCategorical(max_tokens=None, max_length=None, separator=None, column=None)
    """
    if not isinstance(name, str) or not name.startswith("ml-"):
        raise ConfigError(f"expected a MovieLens release name such as 'ml-100k', received {name!r}")
    return FeatureSpace(
        {
            "title": Text(max_tokens=title_tokens, max_length=title_length),
            "year": FloatDiscretized(num_bins=year_bins),
            "genres": MultiCategorical(),
        }
    )


def _is_listlike(v: object) -> bool:
    return isinstance(v, (list, tuple, set, frozenset, np.ndarray))


def space_for_table(
    df: pd.DataFrame,
    *,
    exclude: Sequence[str] = (),
    num_bins: int = 10,
    numeric: Literal["discretized", "rescaled"] = "discretized",
    max_int_categories: int = 20,
    text_min_tokens: float = 3.0,
) -> FeatureSpace:
    """Infer a default (unfitted) space for a feature table, one feature per column.

    Rules, in order, for each column not in ``exclude``:

    1. boolean → :class:`IntCategorical`;
    2. integer with at most ``max_int_categories`` distinct values → :class:`IntCategorical`
       (codes such as ml-1m's age or occupation);
    3. other integer or float → :class:`FloatDiscretized` (``num_bins``), or
       :class:`FloatRescaled` with ``numeric="rescaled"``;
    4. pandas ``category`` → :class:`StringCategorical`;
    5. string/object whose every non-missing cell is a list, tuple, set or array →
       :class:`MultiCategorical`;
    6. other string/object: :class:`Text` when the cells hold on average at least
       ``text_min_tokens`` whitespace-separated words, else :class:`StringCategorical`.

    An id column is not special: leave it out with ``exclude``. No crosses are inferred.

    Raises:
        DataError: a column mixes list-like and scalar cells, or has an unsupported dtype
            (dates: convert them to numbers first).
        ConfigError: a bad parameter or an ``exclude`` name that is not a column.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"age": [21, 35, 52], "city": ["Oslo", "Rome", "Oslo"],
        ...                   "tags": [("a",), ("a", "b"), ()], "score": [0.1, 0.7, 0.4]})
        >>> {k: v.kind for k, v in space_for_table(t).features.items()}
        {'age': 'int_categorical', 'city': 'string_categorical', 'tags': 'multi_categorical', 'score': 'float_discretized'}
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, received {type(df).__name__}")
    if numeric not in ("discretized", "rescaled"):
        raise ConfigError(f"expected numeric 'discretized' or 'rescaled', received {numeric!r}")
    _check_int("space_for_table", "num_bins", num_bins, 1)
    _check_int("space_for_table", "max_int_categories", max_int_categories, 0)
    missing = [c for c in exclude if c not in df.columns]
    if missing:
        raise ConfigError(
            f"expected exclude to name columns of {list(df.columns)}, received {missing}"
        )
    specs: dict[str, FeatureSpec] = {}
    for col in df.columns:
        if col in exclude:
            continue
        if not isinstance(col, str):
            raise DataError(f"expected str column names, received {col!r}", column=str(col))
        s = df[col]
        dtype = s.dtype
        num: FeatureSpec = (
            FloatDiscretized(num_bins=num_bins) if numeric == "discretized" else FloatRescaled()
        )
        if pd.api.types.is_bool_dtype(dtype):
            specs[col] = IntCategorical()
        elif pd.api.types.is_integer_dtype(dtype):
            few = s.nunique(dropna=True) <= max_int_categories
            specs[col] = IntCategorical() if few else num
        elif pd.api.types.is_float_dtype(dtype):
            specs[col] = num
        elif isinstance(dtype, pd.CategoricalDtype):
            specs[col] = StringCategorical()
        elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            present = s.dropna()
            listlike = np.fromiter(
                (_is_listlike(v) for v in present), dtype=bool, count=len(present)
            )
            if listlike.size and listlike.all():
                specs[col] = MultiCategorical()
            elif listlike.any():
                positions = np.flatnonzero(s.notna().to_numpy())
                raise DataError(
                    "expected all list-like or all scalar cells, received both",
                    row=int(positions[np.flatnonzero(~listlike)[0]]),
                    column=col,
                )
            else:
                words = present.astype(str).str.count(r"\S+")
                mean_words = float(words.mean()) if len(words) else 0.0
                specs[col] = Text() if mean_words >= text_min_tokens else StringCategorical()
        else:
            raise DataError(
                f"expected a numeric, boolean, string, category or list-valued column, "
                f"received dtype {dtype}",
                column=col,
            )
    if not specs:
        raise ConfigError(f"expected at least one usable column, received {list(df.columns)}")
    return FeatureSpace(specs)
