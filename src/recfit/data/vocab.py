"""Raw id ↔ internal index maps.

An *id* is what the data calls a user or item (an integer or a string); an *index*
is recfit's contiguous ``int32`` position ``0 .. len(vocab) - 1``. Indices follow
the sorted order of the ids, so the same set of ids always gets the same indices.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from recfit.errors import ConfigError, DataError, UnknownIdError

__all__ = ["UnknownPolicy", "Vocabulary"]

UnknownPolicy = Literal["error", "sentinel"]

_MAX_SHOWN = 5


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
        arr = _as_id_array(_to_array(ids))
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
        arr = _as_id_array(_to_array(values))
        codes, uniques = pd.factorize(arr, sort=True)
        vocab = cls.__new__(cls)
        vocab._ids = _as_id_array(np.asarray(uniques))
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
        return bool(self._index_of(np.asarray([raw_id]))[0] >= 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:
        return hash((len(self._ids), self.kind))

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[:3].tolist())
        more = ", ..." if len(self) > 3 else ""
        return f"Vocabulary(name={self.name!r}, size={len(self)}, ids=[{head}{more}])"

    def _index_of(self, raw: np.ndarray) -> np.ndarray:
        if self._lookup is None:
            self._lookup = pd.Index(self._ids)
        if raw.dtype.kind in "iu" and self.kind == "str":
            raw = raw.astype(str)
        elif raw.dtype.kind not in "iu" and self.kind == "int":
            raw = _coerce_to_int(raw)
        return np.asarray(self._lookup.get_indexer(pd.Index(raw)), dtype=np.int64)

    def index(
        self, ids: Iterable[Any] | np.ndarray, *, unknown: UnknownPolicy | None = None
    ) -> np.ndarray:
        """Indices (``int32``) of raw ``ids``; unknown ids follow the policy.

        Raises:
            UnknownIdError: under the ``"error"`` policy, naming the unknown ids.
        """
        policy = self.unknown if unknown is None else unknown
        raw = _to_array(ids)
        if raw.ndim == 0:
            raw = raw.reshape(1)
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


def _to_array(values: Any) -> np.ndarray:
    """An array of ``values``; Python sequences go through ``object`` so strings keep every
    character (NumPy's fixed-width strings would drop trailing NULs)."""
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        values = [values]
    out = np.empty(len(vals := list(values)), dtype=object)
    out[:] = vals
    if vals and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        return out.astype(np.int64)
    return out


def _as_id_array(arr: np.ndarray) -> np.ndarray:
    """Normalise ids to int64 (integers) or an object array of str (anything else)."""
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        raise DataError("expected integer or string ids, received booleans")
    if arr.dtype.kind == "f":
        if arr.size and not np.isfinite(arr).all():
            raise DataError("expected integer or string ids, received NaN or infinite values")
        if arr.size and not (arr == np.round(arr)).all():
            raise DataError("expected integer or string ids, received fractional numbers")
        return arr.astype(np.int64)
    if arr.dtype.kind == "O":
        vals = arr.tolist()
        if vals and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
            return np.asarray(vals, dtype=np.int64)
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in vals):
            raise DataError("expected integer or string ids, received missing values")
        return np.asarray([str(v) for v in vals], dtype=object)
    return arr.astype(str).astype(object)


def _coerce_to_int(raw: np.ndarray) -> np.ndarray:
    """Query ids for an integer vocabulary: numeric strings become ints, others never match."""
    out = np.full(len(raw), np.iinfo(np.int64).min, dtype=np.int64)
    for i, v in enumerate(raw.tolist()):
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(f) and f == int(f) and _INT64_MIN < int(f) <= _INT64_MAX:
            out[i] = int(f)  # numbers outside int64 are no id: they never match
    return out


_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
