"""Approximate top-k retrieval with faiss (optional dependency), the interface of
:class:`~recfit.index.ExactIndex`."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from recfit.errors import ConfigError, DataError
from recfit.index import inputs
from recfit.index.exact import ExactIndex
from recfit.index.inputs import Metric
from recfit.index.itemsets import as_itemsets

__all__ = ["ApproximateIndex"]


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
    t = inputs.as_matrix(x, name)
    inputs.check_finite(t, name)
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
        inputs.check_metric(metric)
        if kind not in ("hnsw", "ivf"):
            raise ConfigError(f"expected kind in ('hnsw', 'ivf'), received {kind!r}")
        inputs.check_positive(
            m=m, ef_construction=ef_construction, ef_search=ef_search, nprobe=nprobe,
            query_chunk_size=query_chunk_size, nlist=nlist,
        )  # fmt: skip
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
        self._idmap: inputs.IdMap | None = None

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
        self._idmap = inputs.IdMap(inputs.check_ids(ids, n), n)

    def __call__(self, queries: Any, k: int, exclude: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top ``k`` of each query; see :meth:`ExactIndex.__call__`."""
        if self.index_ is None or self._idmap is None:
            raise ConfigError(
                "expected candidates set by update_candidates() before querying, received none"
            )
        inputs.check_positive(k=k)
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
        sets = as_itemsets(exclude, nq)
        excl = None if sets is None else inputs.exclusion_positions(sets, self._idmap)
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
