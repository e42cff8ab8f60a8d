"""Raw id ↔ internal index maps.

An *id* is what the data calls a user or item (an integer or a string); an *index*
is recfit's contiguous ``int32`` position ``0 .. len(vocab) - 1``. Indices follow
the sorted order of the ids, so the same set of ids always gets the same indices.
"""

from __future__ import annotations

import datetime
import json
import numbers
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import pandas as pd

from recfit.errors import ConfigError, DataError, UnknownIdError

__all__ = ["UnknownPolicy", "UsersAndItems", "Vocabulary"]

UnknownPolicy = Literal["error", "sentinel"]

_MAX_SHOWN = 5
_ONE_ID = (str, bytes, bytearray, memoryview)  # iterable, yet one id (text, bytes)


class Vocabulary:
    """A bijection between raw ids and indices, with a policy for unknown ids.

    Args:
        ids: distinct raw ids (integers or strings). They are sorted.
        name: what the ids are ("user", "item"); used in messages.
        unknown: what :meth:`index` does with an id it does not know:
            ``"error"`` raises :class:`~recfit.errors.UnknownIdError`;
            ``"sentinel"`` returns ``sentinel`` for it.
        sentinel: the index returned for unknown ids under ``"sentinel"``.

    Example:
        >>> v = Vocabulary(["b", "a", "c"], name="user")
        >>> v.index(["c", "a"]).tolist()
        [2, 0]
        >>> v.id([1]).tolist()
        ['b']
        >>> v.index(["z"], unknown="sentinel").tolist()
        [-1]
    """

    def __init__(
        self,
        ids: Iterable[Any] | np.ndarray,
        *,
        name: str = "id",
        unknown: UnknownPolicy = "error",
        sentinel: int = -1,
    ) -> None:
        arr = _as_id_array(_to_array(ids), name)
        arr = np.sort(arr, kind="stable")
        if len(arr) > 1 and bool((arr[1:] == arr[:-1]).any()):
            dup = arr[1:][arr[1:] == arr[:-1]][:_MAX_SHOWN].tolist()
            raise DataError(f"expected distinct {name} ids, received duplicates {dup}")
        if unknown not in ("error", "sentinel"):
            raise ConfigError(f"expected unknown='error' or 'sentinel', received {unknown!r}")
        self._ids = arr
        self.name = name
        self.unknown: UnknownPolicy = unknown
        self.sentinel = int(sentinel)
        self._lookup: pd.Index | None = None

    @classmethod
    def encode(
        cls, values: Iterable[Any] | np.ndarray, *, name: str = "id"
    ) -> tuple[Vocabulary, np.ndarray]:
        """Build the vocabulary of ``values`` and return it with their ``int32`` indices.

        Example:
            >>> v, idx = Vocabulary.encode([30, 10, 30, 20], name="item")
            >>> v.ids.tolist(), idx.tolist()
            ([10, 20, 30], [2, 0, 2, 1])
        """
        arr = _as_id_array(_to_array(values), name)
        codes, uniques = pd.factorize(arr, sort=True)
        vocab = cls.__new__(cls)
        vocab._ids = _as_id_array(np.asarray(uniques), name)
        vocab.name = name
        vocab.unknown = "error"
        vocab.sentinel = -1
        vocab._lookup = None
        return vocab, codes.astype(np.int32, copy=False)

    @property
    def ids(self) -> np.ndarray:
        """The raw ids in index order (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    @property
    def kind(self) -> Literal["int", "str"]:
        """``"int"`` for integer ids, ``"str"`` for string ids."""
        return "int" if self._ids.dtype.kind in "iu" else "str"

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: object) -> bool:
        return bool(self._index_of(_query_array([raw_id]))[0] >= 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:
        return hash((len(self._ids), self.kind))

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[:3].tolist())
        more = ", ..." if len(self) > 3 else ""
        return f"Vocabulary(name={self.name!r}, size={len(self)}, ids=[{head}{more}])"

    def _index_of(self, raw: np.ndarray) -> np.ndarray:
        """Positions of query ids (-1 where unknown); ids match exactly (see :meth:`index`)."""
        if self._lookup is None:
            # object dtype: pandas' Arrow strings would refuse ids that are not valid UTF-8
            self._lookup = pd.Index(self._ids, dtype=self._ids.dtype)
        out = np.full(len(raw), -1, dtype=np.int64)
        if self.kind == "int":
            keys, ok = _int_queries(raw)
        else:
            keys, ok = _str_queries(raw)
        if ok.any():
            out[ok] = self._lookup.get_indexer(pd.Index(keys[ok], dtype=keys.dtype))
        return out

    def index(
        self, ids: Iterable[Any] | np.ndarray, *, unknown: UnknownPolicy | None = None
    ) -> np.ndarray:
        """Indices (``int32``) of raw ``ids``; unknown ids follow the policy.

        Ids match exactly, never through a float or a lenient parse. An integer
        vocabulary matches Python or NumPy integers (not ``bool``) and the canonical
        decimal string of an integer (``"50"``, ``"-3"``: what a URL or a CSV column
        carries), but never ``"050"``, ``" 50 "``, ``"+50"``, ``"5e1"``, ``50.0`` or
        ``True``; integers outside int64 match nothing. A string vocabulary matches
        strings exactly and integers through their canonical decimal string (``196``
        finds ``"196"``); floats, booleans and other objects match nothing.

        Example:
            >>> v = Vocabulary([50, 9007199254740993])
            >>> v.index(["50", 9007199254740993], unknown="sentinel").tolist()
            [0, 1]
            >>> v.index(["050", " 50 ", "5e1", 50.0, True], unknown="sentinel").tolist()
            [-1, -1, -1, -1, -1]

        Raises:
            UnknownIdError: under the ``"error"`` policy, naming the unknown ids.
        """
        policy = self.unknown if unknown is None else unknown
        raw = _query_array(ids)
        pos = self._index_of(raw)
        missing = pos < 0
        if missing.any():
            if policy == "error":
                bad = raw[missing][:_MAX_SHOWN].tolist()
                raise UnknownIdError(
                    f"expected known {self.name} ids, received {int(missing.sum())} unknown: "
                    f"{bad}{' ...' if missing.sum() > _MAX_SHOWN else ''}"
                )
            if policy != "sentinel":
                raise ConfigError(f"expected unknown='error' or 'sentinel', received {policy!r}")
            pos[missing] = self.sentinel
        return pos.astype(np.int32)

    def id(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Raw ids at ``indices``.

        Raises:
            ConfigError: an index is outside ``0 .. len - 1``.
        """
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ConfigError(
                f"expected {self.name} indices in [0, {len(self) - 1}], "
                f"received min {int(idx.min())}, max {int(idx.max())}"
            )
        out: np.ndarray = self._ids[idx]
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (ids, kind, name, policy)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "unknown": self.unknown,
            "sentinel": self.sentinel,
            "ids": self._ids.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`to_dict`.

        Raises:
            DataError: a field is missing or has the wrong type.
        """
        try:
            kind = d["kind"]
            raw = d["ids"]
            if kind == "int":
                ids = np.asarray(raw, dtype=np.int64)
            elif kind == "str":
                ids = np.asarray([str(x) for x in raw], dtype=object)
            else:
                raise DataError(f"expected vocabulary kind 'int' or 'str', received {kind!r}")
            return cls(
                ids,
                name=str(d.get("name", "id")),
                unknown=d.get("unknown", "error"),
                sentinel=int(d.get("sentinel", -1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(
                f"expected a vocabulary dict with 'kind' and 'ids', received {exc!r}"
            ) from exc

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Inverse of :meth:`to_json`."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"expected vocabulary JSON, received invalid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise DataError(f"expected a JSON object, received {type(d).__name__}")
        return cls.from_dict(d)


class UsersAndItems:
    """What holds a user and an item :class:`Vocabulary` (ratings, a recommender) gets
    their sizes from them.

    Example:
        >>> class Pair(UsersAndItems):
        ...     def __init__(self) -> None:
        ...         self.users, self.items = Vocabulary(["a"]), Vocabulary([1, 2])
        >>> Pair().n_users, Pair().n_items
        (1, 2)
    """

    users: Vocabulary
    items: Vocabulary

    @property
    def n_users(self) -> int:
        """The number of users in the vocabulary."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """The number of items in the vocabulary."""
        return len(self.items)


def _to_array(values: Any) -> np.ndarray:
    """An array of ``values``; Python sequences go through ``object`` so strings keep every
    character (NumPy's fixed-width strings would drop trailing NULs)."""
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, _ONE_ID) or not hasattr(values, "__iter__"):
        values = [values]
    out = np.empty(len(vals := list(values)), dtype=object)
    out[:] = vals
    ints = _int_ids(vals)
    return out if ints is None else ints


def _int_ids(vals: list[Any]) -> np.ndarray | None:
    """``int64`` ids when every value is a Python or NumPy integer (not ``bool``), those
    beyond int64 kept exactly as their decimal text; ``None`` otherwise (or when empty)."""
    if not vals or not all(map(_is_int, vals)):
        return None
    return _exact_ints(vals)


def _is_int(v: Any) -> bool:
    """A Python or NumPy integer: not a ``bool``, nor a ``timedelta64`` (NumPy makes it an
    integer subclass)."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.timedelta64)


def _exact_ints(vals: list[Any]) -> np.ndarray:
    """Integers as ``int64``, or as their decimal text when one is beyond int64."""
    if int(min(vals)) >= _INT64_MIN and int(max(vals)) <= _INT64_MAX:
        return np.asarray(vals, dtype=np.int64)
    return np.asarray([str(int(v)) for v in vals], dtype=object)


def _as_id_array(arr: np.ndarray, name: str = "id") -> np.ndarray:
    """Normalise ids to int64 (integers) or an object array of str (anything else).

    No ids at all make an empty array (``object``, of string kind, unless the array's
    dtype is numeric). A 0-d array is one id.

    The same kinds are refused whether they come as a typed array or as Python or NumPy
    scalars in an ``object`` array; numbers (floats, ``Decimal``, ``Fraction``) are ids
    only when integral (floats within +-2**53, where they are exact).

    Raises:
        DataError: naming the ``name`` ids (its ``column`` is ``name``): an array of more than one
            dimension, missing values, booleans, bytes, dates or times, time spans, complex
            numbers, nested values (lists, tuples, sets, dicts, arrays), fractional or
            inexact float ids.
    """
    what = "ids" if name == "id" else f"{name} ids"
    try:
        return _checked_ids(arr, what)
    except DataError as exc:
        if name != "id":
            exc.column = name  # the message names it already ("user ids")
        raise


def _checked_ids(arr: np.ndarray, what: str) -> np.ndarray:
    """:func:`_as_id_array`; its errors name the ids by ``what`` only."""
    if arr.ndim != 1:
        if arr.ndim:
            raise DataError(
                f"expected a 1-d sequence of {what}, received an array of shape {arr.shape}"
            )
        arr = arr.reshape(1)
    kind = arr.dtype.kind
    if kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
        return arr.astype(str).astype(object)  # beyond int64: exact decimal text
    if kind in "iu":
        return arr.astype(np.int64, copy=False)
    if kind == "f":
        if arr.size and not np.isfinite(arr).all():
            raise DataError(f"expected integer or string {what}, received NaN or infinite values")
        if arr.size and not (arr == np.round(arr)).all():
            raise DataError(f"expected integer or string {what}, received fractional numbers")
        if arr.size and float(np.abs(arr).max()) > _FLOAT_EXACT:
            raise DataError(
                f"expected float {what} within +-2**53 (held exactly), received "
                f"{float(np.abs(arr).max()):g}; keep such ids as integers or strings"
            )
        return arr.astype(np.int64)
    if kind == "O":
        return _object_ids(arr, what)
    if kind in _REFUSED_KINDS:
        raise DataError(f"expected integer or string {what}, received {_REFUSED_KINDS[kind]}")
    return arr.astype(str).astype(object)


# array kinds that are no ids (bytes, like bytes objects, because their text is not defined)
_REFUSED_KINDS = {
    "b": "booleans",
    "S": "bytes",
    "c": "complex numbers",
    "M": "dates or times",
    "m": "time spans",
    "V": "structured records",
}
_NESTED = (list, tuple, set, frozenset, dict, np.ndarray)
# the same kinds as Python or NumPy scalars in an object array (a bool is an int: first)
_REFUSED_TYPES: tuple[tuple[tuple[type, ...], str], ...] = (
    ((bytes, bytearray, memoryview), _REFUSED_KINDS["S"]),
    ((bool, np.bool_), _REFUSED_KINDS["b"]),
    ((complex, np.complexfloating), _REFUSED_KINDS["c"]),
    ((datetime.date, datetime.time, np.datetime64), _REFUSED_KINDS["M"]),
    ((datetime.timedelta, np.timedelta64), _REFUSED_KINDS["m"]),
    ((np.void,), _REFUSED_KINDS["V"]),
    (_NESTED, "nested values"),
)
_NUMBERS = (int, float, np.integer, np.floating, Decimal, numbers.Rational)


def _object_ids(arr: np.ndarray, what: str) -> np.ndarray:
    """:func:`_as_id_array` of an ``object`` array: integers, integral floats, or text."""
    vals = arr.tolist()
    if not vals:
        return np.empty(0, dtype=object)
    ints = _int_ids(vals)
    if ints is not None:
        return ints
    types = set(map(type, vals))
    try:
        missing = bool(pd.isna(arr).any())
    except ArithmeticError:  # pandas' check of a signalling Decimal NaN raises
        missing = True
    if missing:
        raise DataError(f"expected integer or string {what}, received missing values")
    for refused, received in _REFUSED_TYPES:
        if any(issubclass(t, refused) for t in types):
            raise DataError(f"expected integer or string {what}, received {received}")
    if all(issubclass(t, _NUMBERS) for t in types):
        # numbers only (ints, floats, decimals mixed): as a float column, exact or an error
        exact = [_integral(v) for v in vals]
        if any(x is None for x in exact):
            raise DataError(
                f"expected integer or string {what}, received fractional, infinite or "
                "inexact number ids (floats hold integers exactly only within +-2**53)"
            )
        return _exact_ints(exact)
    text = [str(v) for v in vals]
    if not all(issubclass(t, str) for t in types):
        try:
            distinct = len(set(vals))
        except TypeError:
            raise DataError(
                f"expected integer or string {what}, received unhashable values"
            ) from None
        if len(set(text)) != distinct:
            raise DataError(
                f"expected {what} whose text is distinct, received different values with the "
                "same text (e.g. 1 and '1'); use one type per id column"
            )
    return np.asarray(text, dtype=object)


def _integral(v: Any) -> int | None:
    """The integer a number id stands for, or ``None`` (fractional, infinite, a float
    beyond +-2**53)."""
    if _is_int(v):
        return int(v)
    if isinstance(v, float | np.floating):
        f = float(v)
        return int(f) if f.is_integer() and abs(f) <= _FLOAT_EXACT else None
    if isinstance(v, Decimal):
        return int(v) if v.is_finite() and v == v.to_integral_value() else None
    if isinstance(v, numbers.Rational):
        return int(v.numerator) if v.denominator == 1 else None
    return None


_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_FLOAT_EXACT = float(2**53)  # every integer up to this is held exactly by a float64
_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")


def _query_array(ids: Any) -> np.ndarray:
    """Query ids as a 1-d array without converting them: NumPy arrays keep their dtype,
    anything else becomes an ``object`` array of the values as given."""
    if isinstance(ids, np.ndarray):
        return ids.reshape(-1)
    if isinstance(ids, _ONE_ID) or not hasattr(ids, "__iter__"):
        ids = [ids]
    vals = list(ids)
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out


def _exact_int(v: Any) -> int | None:
    """The integer a query id stands for in an integer vocabulary, or ``None``.

    Accepted: ``int`` and NumPy integers (not ``bool``) inside int64, and strings that
    are the canonical decimal form of such an integer. Everything else (floats, padded
    or signed-plus strings, exponents, leading zeros, booleans) is no id.
    """
    if _is_int(v):
        x = int(v)
    elif isinstance(v, str):
        if not _CANONICAL_INT.fullmatch(v) or v == "-0":
            return None
        x = int(v)
    else:
        return None
    return x if _INT64_MIN <= x <= _INT64_MAX else None


def _int_queries(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 keys, which keys are valid) of query ids against an integer vocabulary."""
    if raw.dtype.kind == "i":
        return raw.astype(np.int64, copy=False), np.ones(len(raw), dtype=bool)
    if raw.dtype.kind == "u":
        ok = raw <= np.uint64(_INT64_MAX)
        return np.where(ok, raw, 0).astype(np.int64), np.asarray(ok, dtype=bool)
    keys = np.zeros(len(raw), dtype=np.int64)
    if raw.dtype.kind not in "OUS":  # floats, booleans, datetimes: never an id
        return keys, np.zeros(len(raw), dtype=bool)
    return _convert_each(raw, _exact_int, keys)


def _exact_str(v: Any) -> str | None:
    """The string a query id stands for in a string vocabulary, or ``None``."""
    if isinstance(v, str):
        return str(v)
    if _is_int(v):
        return str(int(v))
    return None


def _str_queries(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(object keys, which keys are valid) of query ids against a string vocabulary."""
    keys = np.empty(len(raw), dtype=object)
    if raw.dtype.kind not in "iuOUS":
        return keys, np.zeros(len(raw), dtype=bool)
    return _convert_each(raw, _exact_str, keys)


def _convert_each(
    raw: np.ndarray, convert: Callable[[Any], Any], keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``keys[i] = convert(raw[i])`` where that is not ``None``; (keys, which were)."""
    ok = np.zeros(len(raw), dtype=bool)
    for i, v in enumerate(raw.tolist()):
        x = convert(v)
        if x is not None:
            keys[i] = x
            ok[i] = True
    return keys, ok
