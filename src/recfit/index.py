"""Top-k retrieval over a whole catalogue: exact (chunked) and approximate (faiss).

Both indexes follow the keras-rs shape: build one, give it the candidate embeddings with
:meth:`ExactIndex.update_candidates`, then call it with query embeddings to get
``(scores, ids)``, each an ``(n_queries, k)`` numpy array, best first.

Conventions shared by both indexes:

* **Scores.** ``metric="dot"`` scores a candidate by the dot product with the query;
  ``metric="cosine"`` by the cosine similarity (a zero vector scores 0 against anything).
* **Ties.** Ties are broken deterministically: higher score first, then the candidate
  that came first in :meth:`~ExactIndex.update_candidates` (lower position).
* **Exclusions.** ``exclude`` names, for each query, candidate *ids* that must never be
  returned (typically the user's training items). It is an
  :class:`ItemSets` (CSR: ``indptr``, ``indices``; ``Exclusions`` is the same class) or a
  list of one id array per query. Ids that are not candidates are ignored.
* **Padding.** When fewer than ``k`` candidates remain for a query (a catalogue smaller
  than ``k``, or too many exclusions), the trailing entries have id ``-1`` and score
  ``-inf``. Candidate ids must therefore be non-negative.
* **Inputs.** Embeddings and queries may be numpy arrays or torch tensors (CPU or CUDA);
  the exact index computes on the device its candidates live on and returns numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from recfit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from recfit.data.interactions import Interactions

__all__ = [
    "ApproximateIndex",
    "ExactIndex",
    "Exclusions",
    "ItemSets",
    "Metric",
]

Metric = Literal["dot", "cosine"]
_METRICS = ("dot", "cosine")


# --------------------------------------------------------------------------- item sets
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
        if indptr.ndim != 1 or len(indptr) < 1 or not _is_int(indptr):
            raise DataError(
                f"expected indptr as a 1-d integer array of n_queries + 1 offsets, "
                f"received shape {indptr.shape} dtype {indptr.dtype}",
                column="indptr",
            )
        if indices.ndim != 1 or (len(indices) and not _is_int(indices)):
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
        if len(q) and not (_is_int(q) and _is_int(it)):
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
        if not _is_int(flat):
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


def _is_int(a: np.ndarray) -> bool:
    return bool(np.issubdtype(a.dtype, np.integer))


def _as_itemsets(exclude: Any, n_queries: int) -> ItemSets | None:
    if exclude is None:
        return None
    sets = exclude if isinstance(exclude, ItemSets) else ItemSets.from_lists(exclude)
    if sets.n_queries != n_queries:
        raise DataError(
            f"expected one exclusion set per query ({n_queries}), received {sets.n_queries}",
            column="exclude",
        )
    return sets


# --------------------------------------------------------------------------- helpers
def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise ConfigError(f"expected metric in {_METRICS}, received {metric!r}")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"expected {name} as an integer >= 1, received {value!r}")


def _as_matrix(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A 2-d float32 tensor (no copy when already one), on ``device`` if given."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.asarray(x)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise DataError(f"expected numeric {name}, received dtype {a.dtype}", column=name)
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim != 2:
        raise DataError(
            f"expected {name} as a 2-d (rows, dim) array, received shape {tuple(t.shape)}",
            column=name,
        )
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    if device is not None and t.device != device:
        t = t.to(device)
    return t


def _check_finite(t: torch.Tensor, name: str, block: int = 1 << 20) -> None:
    """Raise unless every value is finite; checks row blocks to bound the temporaries."""
    rows = max(1, block // max(1, t.shape[1]))
    for r0 in range(0, t.shape[0], rows):
        if not bool(torch.isfinite(t[r0 : r0 + rows]).all()):
            raise DataError(f"expected finite {name}, received NaN or infinite values", column=name)


def _normalise(t: torch.Tensor) -> torch.Tensor:
    norm: torch.Tensor = t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return t / norm


def _check_ids(ids: Any, n: int) -> np.ndarray | None:
    if ids is None:
        return None
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids).reshape(-1)
    if len(a) != n:
        raise DataError(f"expected {n} candidate ids, received {len(a)}", column="ids")
    if n and not _is_int(a):
        raise DataError(f"expected integer candidate ids, received {a.dtype}", column="ids")
    a = a.astype(np.int64)
    if n and a.min() < 0:
        raise DataError(
            f"expected non-negative candidate ids (-1 marks padding), received {int(a.min())}",
            column="ids",
        )
    if len(np.unique(a)) != n:
        raise DataError("expected unique candidate ids, received duplicates", column="ids")
    if np.array_equal(a, np.arange(n)):
        return None
    return a


class _IdMap:
    """Maps candidate ids to positions (identity when ids are ``0..n-1``)."""

    def __init__(self, ids: np.ndarray | None, n: int) -> None:
        self.ids = ids
        self.n = n
        if ids is not None:
            self._order = np.argsort(ids, kind="stable")
            self._sorted = ids[self._order]

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found mask) of the given ids."""
        if self.ids is None:
            found = (ids >= 0) & (ids < self.n)
            return np.where(found, ids, 0), found
        j = np.searchsorted(self._sorted, ids)
        j = np.minimum(j, max(self.n - 1, 0))
        found = self._sorted[j] == ids if self.n else np.zeros(len(ids), bool)
        return self._order[j], found

    def to_ids(self, pos: np.ndarray) -> np.ndarray:
        out = pos.astype(np.int64, copy=True)
        if self.ids is not None:
            valid = out >= 0
            out[valid] = self.ids[out[valid]]
        return out


def _exclusion_positions(sets: ItemSets, idmap: _IdMap) -> ItemSets:
    """The exclusion sets as candidate positions, unknown ids dropped."""
    pos, found = idmap.positions(sets.indices)
    if found.all():
        return ItemSets(sets.indptr, pos)
    rows = sets.row_ids()[found]
    counts = np.bincount(rows, minlength=sets.n_queries)
    indptr = np.zeros(sets.n_queries + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return ItemSets(indptr, pos[found])


def _canonical(s: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order the columns ``idx`` of each row of ``s`` by (score desc, column asc)."""
    idx, _ = torch.sort(idx, dim=1)
    vals = torch.gather(s, 1, idx)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(idx, 1, order)


def _chunk_topk(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``min(k, cols)`` of each row, ordered by (score desc, column asc), exactly.

    ``torch.topk`` picks arbitrarily among values tied with the k-th largest. Taking
    ``k + 1`` values shows where that can matter: if the k-th and (k+1)-th are equal, a
    tie crosses the cut and that row is redone so that the lowest columns win.
    """
    c = s.shape[1]
    kk = min(k, c)
    if kk == c:
        vals, idx = torch.sort(s, dim=1, descending=True, stable=True)
        return vals, idx
    _, idx = torch.topk(s, kk + 1, dim=1, largest=True, sorted=False)
    vals, idx = _canonical(s, idx)
    bad = vals[:, kk - 1] == vals[:, kk]
    vals, idx = vals[:, :kk].contiguous(), idx[:, :kk].contiguous()
    if bool(bad.any()):
        rows = bad.nonzero().squeeze(1)
        sb, tb = s[rows], vals[rows, kk - 1 :]
        gt = sb > tb
        eq = sb == tb
        need = kk - gt.sum(dim=1, keepdim=True)
        sel = gt | (eq & (eq.cumsum(dim=1) <= need))
        v_b, i_b = _canonical(sb, sel.nonzero()[:, 1].view(len(rows), kk))
        vals[rows], idx[rows] = v_b, i_b
    return vals, idx


# --------------------------------------------------------------------------- exact index
class ExactIndex:
    """Exact top-k retrieval by brute force, chunked so memory stays bounded.

    Scores are computed block by block: ``query_chunk_size`` queries against
    ``chunk_size`` candidates at a time, with a running top-k merged across candidate
    chunks, so the working memory is about ``query_chunk_size * chunk_size * 4`` bytes
    (plus the candidates themselves) whatever the catalogue size. The result is exactly
    the full ranking's top k, ties broken by candidate position.

    Args:
        metric: ``"dot"`` (dot product) or ``"cosine"`` (cosine similarity).
        chunk_size: candidates scored per block.
        query_chunk_size: queries scored per block.
        device: where candidates are kept and scores computed; by default the device of
            the embeddings given to :meth:`update_candidates` (CPU for numpy arrays).

    Example:
        >>> import numpy as np
        >>> index = ExactIndex()
        >>> index.update_candidates(np.eye(3, dtype=np.float32), ids=[10, 11, 12])
        >>> scores, ids = index(np.array([[0.0, 1.0, 0.5]]), k=2)
        >>> ids.tolist(), scores.tolist()
        ([[11, 12]], [[1.0, 0.5]])
        >>> index(np.array([[0.0, 1.0, 0.5]]), k=4, exclude=[[11]])[1].tolist()
        [[12, 10, -1, -1]]
    """

    def __init__(
        self,
        metric: Metric = "dot",
        chunk_size: int = 32768,
        query_chunk_size: int = 1024,
        device: str | torch.device | None = None,
    ) -> None:
        _check_metric(metric)
        _check_positive("chunk_size", chunk_size)
        _check_positive("query_chunk_size", query_chunk_size)
        self.metric: Metric = metric
        self.chunk_size = int(chunk_size)
        self.query_chunk_size = int(query_chunk_size)
        self.device = None if device is None else torch.device(device)
        self.embeddings_: torch.Tensor | None = None
        self._idmap: _IdMap | None = None

    @property
    def n_candidates(self) -> int:
        """The number of candidates (0 before :meth:`update_candidates`)."""
        return 0 if self.embeddings_ is None else int(self.embeddings_.shape[0])

    @property
    def ids_(self) -> np.ndarray:
        """The candidate ids, in position order."""
        if self._idmap is None:
            return np.zeros(0, dtype=np.int64)
        if self._idmap.ids is None:
            return np.arange(self._idmap.n, dtype=np.int64)
        return self._idmap.ids

    def update_candidates(self, embeddings: Any, ids: Any = None) -> None:
        """Replace the candidates.

        Args:
            embeddings: ``(n_candidates, dim)`` array or tensor; kept as float32 on
                ``device``.
            ids: unique non-negative integer id of each candidate; by default its
                position ``0 .. n_candidates - 1``.

        Raises:
            DataError: a shape, a non-finite value or an id is wrong.
        """
        e = _as_matrix(embeddings, "embeddings", self.device)
        _check_finite(e, "embeddings")
        if self.metric == "cosine":
            e = _normalise(e)
        self.embeddings_ = e.contiguous()
        self._idmap = _IdMap(_check_ids(ids, e.shape[0]), e.shape[0])

    def __call__(self, queries: Any, k: int, exclude: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` candidates of each query.

        Args:
            queries: ``(n_queries, dim)`` array or tensor.
            k: the number of results per query.
            exclude: per-query candidate ids never to return: an :class:`ItemSets` /
                ``Exclusions`` with ``n_queries`` rows, or a list of ``n_queries`` id
                arrays. Ids that are not candidates are ignored.

        Returns:
            ``(scores, ids)``: float32 and int64 arrays of shape ``(n_queries, k)``, best
            first; padded with score ``-inf`` and id ``-1`` where fewer than ``k``
            candidates remain.

        Raises:
            ConfigError: ``k`` < 1, or no candidates were given.
            DataError: a shape, a non-finite value or the exclusions are wrong.
        """
        if self.embeddings_ is None or self._idmap is None:
            raise ConfigError(
                "expected candidates set by update_candidates() before querying, received none"
            )
        _check_positive("k", k)
        cand = self.embeddings_
        dev = cand.device
        q_all = _as_matrix(queries, "queries")
        if q_all.shape[1] != cand.shape[1]:
            raise DataError(
                f"expected queries of dimension {cand.shape[1]}, received {q_all.shape[1]}",
                column="queries",
            )
        nq, nc = q_all.shape[0], cand.shape[0]
        sets = _as_itemsets(exclude, nq)
        excl = None if sets is None else _exclusion_positions(sets, self._idmap)
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_p = np.full((nq, k), -1, dtype=np.int64)
        with torch.inference_mode():
            for q0 in range(0, nq, self.query_chunk_size):
                q1 = min(nq, q0 + self.query_chunk_size)
                qc = q_all[q0:q1].to(dev)
                _check_finite(qc, "queries")
                if self.metric == "cosine":
                    qc = _normalise(qc)
                rows = cols = None
                if excl is not None:
                    a, b = int(excl.indptr[q0]), int(excl.indptr[q1])
                    if b > a:
                        lens = np.diff(excl.indptr[q0 : q1 + 1])
                        rows = torch.from_numpy(
                            np.repeat(np.arange(q1 - q0, dtype=np.int64), lens)
                        ).to(dev)
                        cols = torch.from_numpy(excl.indices[a:b]).to(dev)
                best_s = torch.empty((q1 - q0, 0), device=dev)
                best_p = torch.empty((q1 - q0, 0), dtype=torch.int64, device=dev)
                for c0 in range(0, nc, self.chunk_size):
                    c1 = min(nc, c0 + self.chunk_size)
                    s = qc @ cand[c0:c1].T
                    if rows is not None and cols is not None:
                        if c0 == 0 and c1 == nc:
                            s[rows, cols] = -math.inf
                        else:
                            m = (cols >= c0) & (cols < c1)
                            s[rows[m], cols[m] - c0] = -math.inf
                    v, p = _chunk_topk(s, k)
                    del s  # free the block before the next one is allocated
                    if best_s.shape[1] == 0:
                        best_s, best_p = v, p + c0
                    else:
                        cat_s = torch.cat([best_s, v], dim=1)
                        cat_p = torch.cat([best_p, p + c0], dim=1)
                        cat_s, order = torch.sort(cat_s, dim=1, descending=True, stable=True)
                        best_s = cat_s[:, :k]
                        best_p = torch.gather(cat_p, 1, order[:, :k])
                width = best_s.shape[1]
                out_s[q0:q1, :width] = best_s.cpu().numpy()
                out_p[q0:q1, :width] = best_p.cpu().numpy()
        out_p[np.isneginf(out_s)] = -1
        return out_s, self._idmap.to_ids(out_p)


# --------------------------------------------------------------------------- approximate
def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "expected the optional dependency faiss for ApproximateIndex "
            "(install it with `pip install 'recfit[ann]'` or `pip install faiss-cpu`), "
            f"received ImportError: {exc}"
        ) from exc
    return faiss


def _to_numpy32(x: Any, name: str) -> np.ndarray:
    t = _as_matrix(x, name)
    _check_finite(t, name)
    return np.ascontiguousarray(t.cpu().numpy(), dtype=np.float32)


class ApproximateIndex:
    """Approximate top-k retrieval with faiss (HNSW graph or IVF lists), same interface.

    Needs the optional dependency ``faiss-cpu`` (``pip install 'recfit[ann]'``); without
    it the constructor raises :class:`~recfit.errors.ConfigError` saying so. Exclusions
    are applied by asking faiss for ``k`` plus the query's number of exclusions and
    dropping the excluded ones, so excluded candidates never appear. Results are
    re-ordered by (score desc, position asc); padding is id ``-1`` and score ``-inf``.
    Use :meth:`recall_against` to measure what the approximation costs.

    Args:
        metric: ``"dot"`` or ``"cosine"``.
        kind: ``"hnsw"`` (``IndexHNSWFlat``) or ``"ivf"`` (``IndexIVFFlat``).
        m: HNSW neighbours per node.
        ef_construction: HNSW build breadth.
        ef_search: HNSW search breadth (raised to the number of results asked for).
        nlist: IVF lists; by default about ``sqrt(n_candidates)`` (at least 39 training
            points per list).
        nprobe: IVF lists visited per query.
        query_chunk_size: queries searched per call to faiss.
        seed: seed of the IVF k-means.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> cands = rng.normal(size=(500, 8)).astype(np.float32)
        >>> ann = ApproximateIndex(metric="cosine")
        >>> ann.update_candidates(cands)
        >>> scores, ids = ann(cands[:2], k=3, exclude=[[0], [1]])
        >>> bool((ids[:, 0] != np.array([0, 1])).all())
        True
    """

    def __init__(
        self,
        metric: Metric = "dot",
        kind: Literal["hnsw", "ivf"] = "hnsw",
        *,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 256,
        nlist: int | None = None,
        nprobe: int = 16,
        query_chunk_size: int = 4096,
        seed: int = 0,
    ) -> None:
        _check_metric(metric)
        if kind not in ("hnsw", "ivf"):
            raise ConfigError(f"expected kind in ('hnsw', 'ivf'), received {kind!r}")
        for name, value in (
            ("m", m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
            ("nprobe", nprobe),
            ("query_chunk_size", query_chunk_size),
        ):
            _check_positive(name, value)
        if nlist is not None:
            _check_positive("nlist", nlist)
        self._faiss = _import_faiss()
        self.metric: Metric = metric
        self.kind = kind
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.query_chunk_size = query_chunk_size
        self.seed = seed
        self.index_: Any = None
        self._idmap: _IdMap | None = None

    @property
    def n_candidates(self) -> int:
        """The number of candidates (0 before :meth:`update_candidates`)."""
        return 0 if self._idmap is None else self._idmap.n

    def update_candidates(self, embeddings: Any, ids: Any = None) -> None:
        """Build the faiss index over the candidates (see :meth:`ExactIndex.update_candidates`)."""
        faiss = self._faiss
        e = _to_numpy32(embeddings, "embeddings")
        n, d = e.shape
        if self.metric == "cosine":
            e = e.copy()
            faiss.normalize_L2(e)
        ip = faiss.METRIC_INNER_PRODUCT
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.m, ip)
            index.hnsw.efConstruction = self.ef_construction
        else:
            nlist = self.nlist or max(1, min(round(math.sqrt(n)), n // 39))
            if nlist > max(n, 1):
                raise ConfigError(f"expected nlist <= n_candidates ({n}), received {nlist}")
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
            index.cp.seed = self.seed
            if n:
                index.train(e)
            index.nprobe = min(self.nprobe, nlist)
            self._quantizer = quantizer  # faiss does not own it from Python
        if n:
            index.add(e)
        self.index_ = index
        self._idmap = _IdMap(_check_ids(ids, n), n)

    def __call__(self, queries: Any, k: int, exclude: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top ``k`` of each query; see :meth:`ExactIndex.__call__`."""
        if self.index_ is None or self._idmap is None:
            raise ConfigError(
                "expected candidates set by update_candidates() before querying, received none"
            )
        _check_positive("k", k)
        q_all = _to_numpy32(queries, "queries")
        if q_all.shape[1] != self.index_.d:
            raise DataError(
                f"expected queries of dimension {self.index_.d}, received {q_all.shape[1]}",
                column="queries",
            )
        if self.metric == "cosine":
            q_all = q_all.copy()
            self._faiss.normalize_L2(q_all)
        nq, n = q_all.shape[0], self._idmap.n
        sets = _as_itemsets(exclude, nq)
        excl = None if sets is None else _exclusion_positions(sets, self._idmap)
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_p = np.full((nq, k), -1, dtype=np.int64)
        if n == 0:
            return out_s, out_p
        for q0 in range(0, nq, self.query_chunk_size):
            q1 = min(nq, q0 + self.query_chunk_size)
            extra = 0
            if excl is not None:
                extra = int(np.diff(excl.indptr[q0 : q1 + 1]).max(initial=0))
            kk = min(n, k + extra)
            if self.kind == "hnsw":
                self.index_.hnsw.efSearch = max(self.ef_search, kk)
            d_, i_ = self.index_.search(q_all[q0:q1], kk)
            s = d_.astype(np.float32)
            p = i_.astype(np.int64)
            invalid = p < 0
            if excl is not None:
                a, b = int(excl.indptr[q0]), int(excl.indptr[q1])
                if b > a:
                    lens = np.diff(excl.indptr[q0 : q1 + 1])
                    ex_keys = np.repeat(np.arange(q1 - q0, dtype=np.int64), lens) * n
                    ex_keys += excl.indices[a:b]
                    keys = np.arange(q1 - q0, dtype=np.int64)[:, None] * n + p
                    invalid |= np.isin(keys, ex_keys)
            s[invalid] = -np.inf
            p[invalid] = n  # sorts after every real position
            rows = np.repeat(np.arange(q1 - q0), kk)
            order = np.lexsort((p.reshape(-1), -s.reshape(-1), rows)).reshape(q1 - q0, kk)
            order -= np.arange(q1 - q0, dtype=np.int64)[:, None] * kk
            s = np.take_along_axis(s, order, 1)[:, :k]
            p = np.take_along_axis(p, order, 1)[:, :k]
            out_s[q0:q1, : s.shape[1]] = s
            out_p[q0:q1, : p.shape[1]] = p
        out_p[np.isneginf(out_s) | (out_p >= n)] = -1
        out_s[out_p < 0] = -np.inf
        return out_s, self._idmap.to_ids(out_p)

    def recall_against(self, exact: ExactIndex, queries: Any, k: int, exclude: Any = None) -> float:
        """Mean share of the exact top ``k`` that this index also returns.

        Recall of query ``q`` is ``|A_q ∩ E_q| / |E_q|`` where ``E_q`` are the valid ids of
        ``exact``'s answer and ``A_q`` this index's; queries with an empty ``E_q`` are
        left out; the result is the mean over the others (1.0 when there are none).
        ``exact`` must hold the same candidates.

        Example:
            >>> import numpy as np
            >>> x = np.random.default_rng(1).normal(size=(300, 4)).astype(np.float32)
            >>> ex, ann = ExactIndex(), ApproximateIndex(ef_search=300)
            >>> ex.update_candidates(x); ann.update_candidates(x)
            >>> ann.recall_against(ex, x[:20], k=5)
            1.0
        """
        _, a_ids = self(queries, k, exclude)
        _, e_ids = exact(queries, k, exclude)
        return _recall_of(a_ids, e_ids)


def _recall_of(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    nq = exact_ids.shape[0]
    big = int(max(approx_ids.max(initial=0), exact_ids.max(initial=0))) + 2
    row = np.arange(nq, dtype=np.int64)[:, None] * big
    a_keys = (row + approx_ids)[approx_ids >= 0]
    e_valid = exact_ids >= 0
    hit = np.isin(row + exact_ids, a_keys) & e_valid
    n_e = e_valid.sum(1)
    keep = n_e > 0
    if not keep.any():
        return 1.0
    return float((hit.sum(1)[keep] / n_e[keep]).mean())
