"""Exact top-k retrieval, chunked over the candidates, on the device they live on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from recfit.errors import ConfigError, DataError
from recfit.index.inputs import (
    IdMap,
    Metric,
    as_matrix,
    check_finite,
    check_ids,
    check_metric,
    check_positive,
    exclusion_positions,
    normalise,
)
from recfit.index.itemsets import as_itemsets

__all__ = ["ExactIndex", "top_k_of_scores"]


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


def top_k_of_scores(scores: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` columns of each row of a score matrix, as :class:`ExactIndex` ranks.

    Ordered by score (descending), ties by column (ascending), exactly; a score of
    ``-inf`` (an excluded item) is never returned: such places, and the columns beyond
    the matrix's width, are padding (score ``-inf``, column ``-1``).

    Args:
        scores: ``(n_rows, n_columns)`` array or tensor, no NaN.
        k: the number of columns per row.

    Returns:
        ``(scores, columns)``: float32 and int64 arrays of shape ``(n_rows, k)``.

    Example:
        >>> import numpy as np
        >>> s = np.array([[0.5, 2.0, 2.0, -np.inf]], dtype=np.float32)
        >>> top_k_of_scores(s, 4)[1].tolist()
        [[1, 2, 0, -1]]
    """
    check_positive(k=k)
    s = torch.as_tensor(scores).float()
    if s.ndim != 2:
        raise DataError(f"expected a 2-d score matrix, received shape {tuple(s.shape)}")
    if bool(torch.isnan(s).any()):
        raise DataError("expected scores without NaN, received NaN", column="scores")
    n = s.shape[0]
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    out_p = np.full((n, k), -1, dtype=np.int64)
    if s.shape[1]:
        with torch.inference_mode():
            v, p = _chunk_topk(s, k)
        out_s[:, : v.shape[1]] = v.cpu().numpy()
        out_p[:, : p.shape[1]] = p.cpu().numpy()
    out_p[np.isneginf(out_s)] = -1
    return out_s, out_p


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
        check_metric(metric)
        check_positive(chunk_size=chunk_size, query_chunk_size=query_chunk_size)
        self.metric: Metric = metric
        self.chunk_size = int(chunk_size)
        self.query_chunk_size = int(query_chunk_size)
        self.device = None if device is None else torch.device(device)
        self.embeddings_: torch.Tensor | None = None
        self._idmap: IdMap | None = None

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
        e = as_matrix(embeddings, "embeddings", self.device)
        check_finite(e, "embeddings")
        if self.metric == "cosine":
            e = normalise(e)
        self.embeddings_ = e.contiguous()
        self._idmap = IdMap(check_ids(ids, e.shape[0]), e.shape[0])

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
        check_positive(k=k)
        cand = self.embeddings_
        dev = cand.device
        q_all = as_matrix(queries, "queries")
        if q_all.shape[1] != cand.shape[1]:
            raise DataError(
                f"expected queries of dimension {cand.shape[1]}, received {q_all.shape[1]}",
                column="queries",
            )
        nq, nc = q_all.shape[0], cand.shape[0]
        sets = as_itemsets(exclude, nq)
        excl = None if sets is None else exclusion_positions(sets, self._idmap)
        out_s = np.full((nq, k), -np.inf, dtype=np.float32)
        out_p = np.full((nq, k), -1, dtype=np.int64)
        with torch.inference_mode():
            for q0 in range(0, nq, self.query_chunk_size):
                q1 = min(nq, q0 + self.query_chunk_size)
                qc = q_all[q0:q1].to(dev)
                check_finite(qc, "queries")
                if self.metric == "cosine":
                    qc = normalise(qc)
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
