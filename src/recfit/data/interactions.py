"""Interactions: ratings as compact columnar arrays with their vocabularies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from recfit.data.checks import check_ratings, check_weights, fail_at, to_float32
from recfit.data.vocab import UsersAndItems, Vocabulary
from recfit.errors import ConfigError, DataError

__all__ = ["Interactions"]

_ADOPT: ContextVar[bool] = ContextVar("recfit_interactions_adopt", default=False)
"""While set, a new object takes its ``rating`` and ``weight`` arrays as they are (they
are new arrays nobody else holds) instead of copying them."""


@contextmanager
def _adopting(adopt: bool = True) -> Iterator[None]:
    token = _ADOPT.set(adopt)
    try:
        yield
    finally:
        _ADOPT.reset(token)


@dataclass(frozen=True, eq=False)
class Interactions(UsersAndItems):
    """Ratings of users for items, one row per (user, item) pair.

    Arrays are aligned and compact: ``user`` and ``item`` are ``int32`` indices into
    ``users`` and ``items``; ``rating`` is ``float32`` in the data's own units;
    ``timestamp`` (optional) is ``int64`` seconds; ``weight`` (optional) is ``float32``,
    and ``None`` means every row weighs 1. Timestamps are stored as ``int32`` offsets
    from ``time_origin`` where the span allows, so the core arrays cost 16 bytes per
    rating.

    Feature tables, when present, have one row per vocabulary index (row ``i``
    describes ``users.id([i])``), so ``user_features.iloc[user]`` aligns with rows.

    Build one with :meth:`from_arrays` (raw ids) or :func:`recfit.data.from_frame`.

    The object owns its ``rating`` and ``weight`` arrays: it copies the ones it is given
    (the caller's own array, a DataFrame's column), so writing to those later changes
    neither the rows nor :meth:`prediction_scale`. Its own arrays are not to be written
    in place.

    Example:
        >>> d = Interactions.from_arrays(["u1", "u2", "u1"], [10, 10, 20], [4.0, 3.0, 5.0])
        >>> len(d), d.n_users, d.n_items
        (3, 2, 2)
        >>> d.user.tolist(), d.item.tolist()
        ([0, 1, 0], [0, 0, 1])
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    users: Vocabulary
    items: Vocabulary
    weight: np.ndarray | None = None
    time_offset: np.ndarray | None = None
    time_origin: int = 0
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    rating_scale: tuple[float, float] | None = None
    name: str = "ratings"
    meta: dict[str, Any] = field(default_factory=dict)
    _scale: tuple[float, float] | None = field(init=False, repr=False, compare=False)
    """:meth:`prediction_scale`, computed once at construction (``replace`` and
    :meth:`take` build a new object, so they compute their own)."""

    def __post_init__(self) -> None:
        if not _ADOPT.get():  # copies of arrays the caller may still hold and write
            object.__setattr__(self, "rating", np.array(self.rating, copy=True))
            if self.weight is not None:
                object.__setattr__(self, "weight", np.array(self.weight, copy=True))
        n = len(self.user)
        for col, arr, dtype in (
            ("user", self.user, np.int32),
            ("item", self.item, np.int32),
            ("rating", self.rating, np.float32),
        ):
            if arr.dtype != dtype or arr.ndim != 1:
                raise DataError(
                    f"expected a 1-d {np.dtype(dtype).name} array, "
                    f"received {arr.ndim}-d {arr.dtype}",
                    column=col,
                )
            if len(arr) != n:
                raise DataError(f"expected {n} rows, received {len(arr)}", column=col)
        for col, opt in (("weight", self.weight), ("timestamp", self.time_offset)):
            if opt is not None and len(opt) != n:
                raise DataError(f"expected {n} rows, received {len(opt)}", column=col)
        if self.weight is not None and self.weight.dtype != np.float32:
            raise DataError(
                f"expected float32 weights, received {self.weight.dtype}", column="weight"
            )
        for side, table, vocab in (
            ("user", self.user_features, self.users),
            ("item", self.item_features, self.items),
        ):
            if table is not None and len(table) != len(vocab):
                raise DataError(
                    f"expected one {side} feature row per {side} ({len(vocab)}), "
                    f"received {len(table)}"
                )
        object.__setattr__(self, "_scale", self._find_scale())

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_arrays(
        cls,
        user_ids: Any,
        item_ids: Any,
        rating: Any,
        *,
        timestamp: Any = None,
        weight: Any = None,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        rating_scale: tuple[float, float] | None = None,
        name: str = "ratings",
    ) -> Interactions:
        """Build from raw ids; vocabularies are built unless given.

        With a given vocabulary, an unknown id raises :class:`UnknownIdError`.
        Values are checked: ratings must be finite (and inside ``rating_scale``),
        weights finite and non-negative. Ids that are no 1-d sequence, or (for a
        vocabulary built here) missing, boolean, bytes or nested ids, raise
        :class:`DataError` naming the column. No rows at all make an empty object.
        """
        if users is None:
            users, u = Vocabulary.encode(user_ids, name="user")
        else:
            u = users.index(_lookup_ids(user_ids, "user"))
        if items is None:
            items, i = Vocabulary.encode(item_ids, name="item")
        else:
            i = items.index(_lookup_ids(item_ids, "item"))
        r = _owned(to_float32(_numeric(rating, "rating"), "rating"), rating)
        check_ratings(r, rating_scale)
        w = None
        if weight is not None:
            w = _owned(to_float32(_numeric(weight, "weight"), "weight"), weight)
            check_weights(w)
        return cls.from_indices(
            u, i, r, users, items,
            weight=w, timestamp=timestamp, rating_scale=rating_scale, name=name, copy=False,
        )  # fmt: skip

    @classmethod
    def from_indices(
        cls,
        user: np.ndarray,
        item: np.ndarray,
        rating: np.ndarray,
        users: Vocabulary,
        items: Vocabulary,
        *,
        weight: np.ndarray | None = None,
        timestamp: Any = None,
        user_features: pd.DataFrame | None = None,
        item_features: pd.DataFrame | None = None,
        rating_scale: tuple[float, float] | None = None,
        name: str = "ratings",
        meta: dict[str, Any] | None = None,
        copy: bool = True,
    ) -> Interactions:
        """Build from checked index arrays and their vocabularies; ``timestamp`` (epoch
        seconds) is stored as offsets from its minimum (see :func:`encode_time`).

        ``copy=False`` hands ``rating`` and ``weight`` over as they are, for a caller
        that made them and keeps no reference (a file loader): no copy of a large column.

        Example:
            >>> users, items = Vocabulary(["a", "b"]), Vocabulary([7])
            >>> d = Interactions.from_indices(np.array([0, 1], np.int32), np.zeros(2, np.int32),
            ...                               np.ones(2, np.float32), users, items,
            ...                               timestamp=[100, 160])
            >>> d.timestamp.tolist(), d.time_origin
            ([100, 160], 100)
        """
        offset, origin = (None, 0) if timestamp is None else encode_time(np.asarray(timestamp))
        with _adopting(not copy):
            return cls(
                user=user,
                item=item,
                rating=rating,
                users=users,
                items=items,
                weight=weight,
                time_offset=offset,
                time_origin=origin,
                user_features=user_features,
                item_features=item_features,
                rating_scale=rating_scale,
                name=name,
                meta={} if meta is None else meta,
            )

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.user)

    def __repr__(self) -> str:
        return (
            f"Interactions(name={self.name!r}, ratings={len(self)}, users={self.n_users}, "
            f"items={self.n_items})"
        )

    @property
    def timestamp(self) -> np.ndarray | None:
        """``int64`` timestamps, or ``None`` when the data has none."""
        if self.time_offset is None:
            return None
        return self.time_offset.astype(np.int64) + np.int64(self.time_origin)

    @property
    def has_weights(self) -> bool:
        """Whether rows carry their own weights."""
        return self.weight is not None

    def weights(self) -> np.ndarray:
        """Row weights as ``float32``; ones when the data has none."""
        if self.weight is None:
            return np.ones(len(self), dtype=np.float32)
        return self.weight

    def prediction_scale(self) -> tuple[float, float] | None:
        """The range a rating predicted by a model trained on these rows is clipped
        into: the declared ``rating_scale``, else the lowest and highest rating of
        positive weight (``None`` when no row has a positive weight, or when they all
        have one value: implicit feedback, where predictions are scores).

        Computed once, when the object is built, and stored: every prediction and
        evaluation asks for it. The object owns its rating and weight arrays (it copies
        the caller's) and never writes them in place (a new set of rows is a new object:
        :meth:`take`, :meth:`with_weights`), so it stays right.

        Example:
            >>> Interactions.from_arrays([0, 1], [0, 0], [2.0, 4.5]).prediction_scale()
            (2.0, 4.5)
        """
        return self._scale

    def _find_scale(self) -> tuple[float, float] | None:
        if self.rating_scale is not None:
            return (float(self.rating_scale[0]), float(self.rating_scale[1]))
        r = self.rating if self.weight is None else self.rating[self.weight > 0]
        if not len(r):
            return None
        lo, hi = float(r.min()), float(r.max())
        return None if lo == hi else (lo, hi)

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-rating arrays."""
        arrays = (self.user, self.item, self.rating, self.weight, self.time_offset)
        return sum(a.nbytes for a in arrays if a is not None)

    def take(self, rows: np.ndarray) -> Interactions:
        """The rows at ``rows`` (positions or a boolean mask), sharing vocabularies.

        Example:
            >>> d = Interactions.from_arrays([1, 2, 3], [1, 1, 2], [1.0, 2.0, 3.0])
            >>> d.take(np.array([2, 0])).rating.tolist()
            [3.0, 1.0]
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if len(rows) != len(self):
                raise ConfigError(f"expected a mask of length {len(self)}, received {len(rows)}")
        elif rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise ConfigError(
                f"expected row positions in [0, {len(self) - 1}], "
                f"received min {int(rows.min())}, max {int(rows.max())}"
            )
        with _adopting():  # indexing by positions or a mask makes new arrays
            return replace(
                self,
                user=self.user[rows],
                item=self.item[rows],
                rating=self.rating[rows],
                weight=None if self.weight is None else self.weight[rows],
                time_offset=None if self.time_offset is None else self.time_offset[rows],
                meta=dict(self.meta),
            )

    def with_weights(self, weight: np.ndarray | None) -> Interactions:
        """A copy whose rows carry ``weight`` (``None`` removes weights); it shares the
        ratings (both objects only read them) and copies ``weight`` where the caller's
        array would be shared."""
        w = None
        if weight is not None:
            w = _owned(to_float32(_numeric(weight, "weight"), "weight"), weight)
            check_weights(w)
        with _adopting():
            return replace(self, weight=w)

    def to_frame(self, *, raw_ids: bool = True) -> pd.DataFrame:
        """Rows as a DataFrame (raw ids by default, indices with ``raw_ids=False``)."""
        cols: dict[str, Any] = {
            "user": self.users.id(self.user) if raw_ids else self.user,
            "item": self.items.id(self.item) if raw_ids else self.item,
            "rating": self.rating,
        }
        ts = self.timestamp
        if ts is not None:
            cols["timestamp"] = ts
        if self.weight is not None:
            cols["weight"] = self.weight
        return pd.DataFrame(cols)

    def summary(self) -> dict[str, Any]:
        """Counts, density, rating histogram and activity quantiles."""
        n = len(self)
        w = self.weights()
        per_user = np.bincount(self.user, minlength=self.n_users)
        per_item = np.bincount(self.item, minlength=self.n_items)
        values, counts = np.unique(self.rating, return_counts=True)
        q = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
        ts = self.timestamp
        out: dict[str, Any] = {
            "name": self.name,
            "ratings": n,
            "users": self.n_users,
            "items": self.n_items,
            "users_with_ratings": int((per_user > 0).sum()),
            "items_with_ratings": int((per_item > 0).sum()),
            "density": n / max(1, self.n_users * self.n_items),
            "rating_mean": float(np.average(self.rating, weights=w))
            if w.sum() > 0
            else float("nan"),
            "rating_min": float(self.rating.min()) if n else float("nan"),
            "rating_max": float(self.rating.max()) if n else float("nan"),
            "rating_histogram": {
                _fmt(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)
            },
            "user_activity_quantiles": {
                f"q{int(p * 100)}": float(np.quantile(per_user, p)) for p in q
            }
            if self.n_users
            else {},
            "item_popularity_quantiles": {
                f"q{int(p * 100)}": float(np.quantile(per_item, p)) for p in q
            }
            if self.n_items
            else {},
            "weighted": self.has_weights,
            "bytes_per_rating": self.nbytes / max(1, n),
        }
        if self.meta.get("implicit"):
            out["implicit"] = "no rating column: each row is a positive of value 1"
        if ts is not None and n:
            out["time_min"] = int(ts.min())
            out["time_max"] = int(ts.max())
        if self.user_features is not None:
            out["user_features"] = list(map(str, self.user_features.columns))
        if self.item_features is not None:
            out["item_features"] = list(map(str, self.item_features.columns))
        return out


def _lookup_ids(ids: Any, column: str) -> Any:
    """Raw ids to look up in a given vocabulary: an array of one dimension (or none: one
    id), else the values as given (ragged nesting, text), each its own id: NumPy's text
    conversion would turn bytes beside text into text (``[b"a", "b"]`` → ``["a", "b"]``),
    and a ``bytearray`` into its byte values."""
    if isinstance(ids, bytearray | memoryview):
        return [ids]
    try:
        arr = np.asarray(ids)
    except ValueError:  # ragged nesting, bytes that are not ASCII beside text
        return ids
    if arr.ndim > 1:
        raise DataError(
            f"expected a 1-d sequence of {column} ids, received an array of shape {arr.shape}",
            column=column,
        )
    return ids if arr.dtype.kind in "US" and not isinstance(ids, np.ndarray) else arr


def _owned(new: np.ndarray, given: Any) -> np.ndarray:
    """``new`` (converted from the caller's ``given``), copied unless the conversion made
    it: ``given`` itself, or a view (of a Series, a tensor, another array), is copied."""
    return new.copy() if new is given or not new.flags.owndata else new


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _numeric(values: Any, column: str) -> np.ndarray:
    """``values`` as a numeric array; the first value that is no number is an error."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return arr
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        bad = np.zeros(len(arr), dtype=bool)
        for k, v in enumerate(arr.tolist()):
            try:
                float(v)
            except (TypeError, ValueError):
                bad[k] = True
        fail_at(bad, lambda row: f"expected numbers, received {arr[row]!r}", column=column)
        raise DataError(f"expected numbers, received dtype {arr.dtype}", column=column) from None


def encode_time(ts: np.ndarray) -> tuple[np.ndarray, int]:
    """Timestamps as (offsets, origin): ``int32`` offsets when the span fits, else ``int64``."""
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[s]").astype(np.int64)
    if ts.dtype.kind not in "iu":
        if (
            ts.dtype.kind == "f"
            and np.isfinite(ts).all()
            and (ts == np.round(ts)).all()
            and (not ts.size or float(np.abs(ts).max()) <= 2.0**53)
        ):
            ts = ts.astype(np.int64)  # exact: every integer float up to 2**53
        else:
            raise DataError(
                f"expected integer timestamps (floats only within +-2**53), received dtype "
                f"{ts.dtype}",
                column="timestamp",
            )
    if ts.dtype.kind == "u" and ts.size and int(ts.max()) > np.iinfo(np.int64).max:
        row = int(np.argmax(ts))
        raise DataError(
            f"expected timestamps that fit int64, received {int(ts[row])}",
            row=row,
            column="timestamp",
        )
    ts = ts.astype(np.int64, copy=False)
    if not len(ts):
        return np.zeros(0, dtype=np.int32), 0
    origin = int(ts.min())
    span = int(ts.max()) - origin
    if span > np.iinfo(np.int64).max:
        row = int(np.argmax(ts))
        raise DataError(
            f"expected timestamps spanning at most 2**63 - 1 seconds, received {origin} "
            f"and {int(ts[row])}",
            row=row,
            column="timestamp",
        )
    offsets = ts - origin
    if span <= np.iinfo(np.int32).max:
        return offsets.astype(np.int32), origin
    return offsets, origin
