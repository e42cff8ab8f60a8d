"""Sets of item ids per query in CSR form (:class:`ItemSets`): a user's training items to
exclude, or the relevant items a ranking is scored against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError

__all__ = ["Exclusions", "ItemSets", "as_itemsets", "is_int"]


@dataclass(frozen=True, eq=False)
class ItemSets:
    """One set of item ids per query, stored as CSR arrays (no scipy needed).

    Row ``q`` holds ``indices[indptr[q]:indptr[q + 1]]``; ``values`` (optional, aligned
    with ``indices``) carries a number per (query, item) pair, such as a graded relevance.
    Used for the exclusions of a retrieval call and for the relevant items of the ranking
    metrics. ``Exclusions`` is another name for this class.

    Attributes:
        indptr: ``int64`` array of ``n_queries + 1`` non-decreasing offsets, from 0.
        indices: ``int64`` item ids (or indices).
        values: optional ``float64`` array aligned with ``indices``.

    Example:
        >>> s = ItemSets.from_pairs([1, 0, 1], [7, 3, 5], n_queries=3)
        >>> s.indptr.tolist(), s.indices.tolist()
        ([0, 1, 3, 3], [3, 7, 5])
        >>> [r.tolist() for r in s.to_lists()]
        [[3], [7, 5], []]
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None = None

    def __post_init__(self) -> None:
        indptr = np.asarray(self.indptr)
        indices = np.asarray(self.indices)
        if indptr.ndim != 1 or len(indptr) < 1 or not is_int(indptr):
            raise DataError(
                f"expected indptr as a 1-d integer array of n_queries + 1 offsets, "
                f"received shape {indptr.shape} dtype {indptr.dtype}",
                column="indptr",
            )
        if indices.ndim != 1 or (len(indices) and not is_int(indices)):
            raise DataError(
                f"expected indices as a 1-d integer array, received shape {indices.shape} "
                f"dtype {indices.dtype}",
                column="indices",
            )
        if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
            raise DataError(
                f"expected indptr non-decreasing from 0 to len(indices)={len(indices)}, "
                f"received first {int(indptr[0])}, last {int(indptr[-1])}",
                column="indptr",
            )
        object.__setattr__(self, "indptr", indptr.astype(np.int64, copy=False))
        object.__setattr__(self, "indices", indices.astype(np.int64, copy=False))
        if self.values is not None:
            values = np.asarray(self.values, dtype=np.float64)
            if values.shape != indices.shape:
                raise DataError(
                    f"expected {len(indices)} values aligned with indices, "
                    f"received shape {values.shape}",
                    column="values",
                )
            object.__setattr__(self, "values", values)

    @property
    def n_queries(self) -> int:
        """The number of rows (queries)."""
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        """The number of items in each row, as ``int64``."""
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        """The row (query) of each entry of ``indices``."""
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), self.lengths())

    def to_lists(self) -> list[np.ndarray]:
        """One array of ids per row."""
        return [self.indices[self.indptr[q] : self.indptr[q + 1]] for q in range(self.n_queries)]

    def rows(self, rows: Any) -> ItemSets:
        """The sets of the given rows, in that order (rows may repeat).

        Example:
            >>> s = ItemSets.from_lists([[1, 2], [3], []])
            >>> s.rows([1, 0]).to_lists()[1].tolist()
            [1, 2]
        """
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(r) and (r.min() < 0 or r.max() >= self.n_queries):
            raise DataError(
                f"expected rows in [0, {self.n_queries}), received {int(r.min())}..{int(r.max())}",
                column="rows",
            )
        starts = self.indptr[r]
        lens = self.indptr[r + 1] - starts
        indptr = np.zeros(len(r) + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        take = np.repeat(starts - indptr[:-1], lens) + np.arange(indptr[-1], dtype=np.int64)
        values = None if self.values is None else self.values[take]
        return ItemSets(indptr, self.indices[take], values)

    @classmethod
    def from_pairs(
        cls,
        query_idx: Any,
        item_idx: Any,
        n_queries: int,
        values: Any = None,
    ) -> ItemSets:
        """Group (query, item) pairs by query; order within a query is kept.

        Args:
            query_idx: query (user) index of each pair, in ``[0, n_queries)``.
            item_idx: item id of each pair.
            n_queries: the number of rows; queries without pairs get empty sets.
            values: optional number per pair (such as a rating), kept aligned.

        Example:
            >>> s = ItemSets.from_pairs([0, 0, 2], [4, 1, 4], 3, values=[5.0, 3.0, 4.0])
            >>> s.lengths().tolist(), s.values.tolist()
            ([2, 0, 1], [5.0, 3.0, 4.0])
        """
        q = np.asarray(query_idx).reshape(-1)
        it = np.asarray(item_idx).reshape(-1)
        if len(q) != len(it):
            raise DataError(
                f"expected as many items as queries ({len(q)}), received {len(it)}",
                column="item_idx",
            )
        if len(q) and not (is_int(q) and is_int(it)):
            raise DataError(
                f"expected integer query and item indices, received {q.dtype} and {it.dtype}",
                column="query_idx",
            )
        if n_queries < 0:
            raise ConfigError(f"expected n_queries >= 0, received {n_queries}")
        if len(q) and (q.min() < 0 or q.max() >= n_queries):
            raise DataError(
                f"expected query indices in [0, {n_queries}), received "
                f"{int(q.min())}..{int(q.max())}",
                column="query_idx",
            )
        order = np.argsort(q, kind="stable")
        counts = np.bincount(q, minlength=n_queries) if len(q) else np.zeros(n_queries, int)
        indptr = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        vals = None
        if values is not None:
            v = np.asarray(values, dtype=np.float64).reshape(-1)
            if len(v) != len(q):
                raise DataError(f"expected {len(q)} values, received {len(v)}", column="values")
            vals = v[order]
        return cls(indptr, it.astype(np.int64)[order], vals)

    @classmethod
    def from_lists(cls, lists: Sequence[Any], values: Sequence[Any] | None = None) -> ItemSets:
        """One set per query from a list of id arrays (and optionally value arrays).

        Example:
            >>> ItemSets.from_lists([[3, 1], [], [2]]).indptr.tolist()
            [0, 2, 2, 3]
        """
        arrays = [np.asarray(x).reshape(-1) for x in lists]
        arrays = [a if len(a) else a.astype(np.int64) for a in arrays]  # [] is float64
        lens = np.array([len(a) for a in arrays], dtype=np.int64)
        indptr = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        flat = np.concatenate(arrays) if arrays and indptr[-1] else np.zeros(0, np.int64)
        if not is_int(flat):
            raise DataError(
                f"expected integer item ids in every list, received dtype {flat.dtype}",
                column="lists",
            )
        vals = None
        if values is not None:
            if len(values) != len(arrays):
                raise DataError(
                    f"expected {len(arrays)} value arrays, received {len(values)}",
                    column="values",
                )
            varr = [np.asarray(v, dtype=np.float64).reshape(-1) for v in values]
            vals = np.concatenate(varr) if varr else np.zeros(0)
        return cls(indptr, flat, vals)

    @classmethod
    def from_interactions(cls, data: Interactions, *, with_ratings: bool = False) -> ItemSets:
        """The items of each user (by index) in an :class:`~recfit.data.Interactions`.

        Rows are user indices ``0 .. data.n_users - 1``; ids are item indices. With
        ``with_ratings``, ``values`` holds each rating (for graded relevance).

        Example:
            >>> from recfit.data import Interactions
            >>> d = Interactions.from_arrays(["a", "b", "a"], [1, 2, 2], [4.0, 3.0, 5.0])
            >>> ItemSets.from_interactions(d).to_lists()[0].tolist()
            [0, 1]
        """
        return cls.from_pairs(
            data.user, data.item, data.n_users, data.rating if with_ratings else None
        )


Exclusions = ItemSets


def is_int(a: np.ndarray) -> bool:
    return bool(np.issubdtype(a.dtype, np.integer))


def as_itemsets(exclude: Any, n_queries: int) -> ItemSets | None:
    if exclude is None:
        return None
    sets = exclude if isinstance(exclude, ItemSets) else ItemSets.from_lists(exclude)
    if sets.n_queries != n_queries:
        raise DataError(
            f"expected one exclusion set per query ({n_queries}), received {sets.n_queries}",
            column="exclude",
        )
    return sets
