"""Top-n lists of a Recommender: the model's scores ranked among the allowed items
(through an exact index where the family has a retrieval form, by blocks of scores
otherwise), each trained user's default list in an LRU cache, and the popular list."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recfit.index import ExactIndex, ItemSets
from recfit.recommender.adapters import ModelAdapter

__all__ = ["Ranker"]

TopN = tuple[np.ndarray, np.ndarray]
"""``(scores float32 [rows, n], item indices int64 [rows, n])``, ``-1`` padded."""


class Ranker:
    """Ranks items for rows of a model.

    Args:
        adapter: the model family's adapter.
        seen: each user's training items.
        popularity: a score per item index (the popular list's order).
        untrained: items a rating model never trained on: they score the baseline that
            ``predict`` answers, not their untrained weights.
        cache_sizes: the current ``(length of the cached top lists, most users whose
            default list stays cached)``; a longer ``n`` computes and caches longer lists,
            least recently used users go first.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        seen: ItemSets,
        popularity: np.ndarray,
        untrained: np.ndarray,
        cache_sizes: Callable[[], tuple[int, int]] = lambda: (100, 200_000),
    ) -> None:
        self.adapter, self.seen, self.popularity = adapter, seen, popularity
        self.untrained = untrained
        self.n_items = len(popularity)
        self.cache_sizes = cache_sizes
        self._lru: OrderedDict[tuple[int, bool], TopN] = OrderedDict()
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, bytes], ExactIndex] = {}
        self._pop_order = np.lexsort((np.arange(self.n_items), -popularity))

    def topk(self, rows: Tensor, n: int, excl: ItemSets | None, allowed: np.ndarray) -> TopN:
        """Top-n of each row among the allowed items, ``excl[row]`` left out."""
        b = rows.shape[0]
        k = max(1, min(n, int(allowed.sum())))
        scores = np.full((b, n), -np.inf, dtype=np.float32)
        idx = np.full((b, n), -1, dtype=np.int64)
        if b == 0 or not allowed.any():
            return scores, idx
        form = self.adapter.retrieval(rows)
        if form is not None:
            queries, cands, finish = form
            index = self.index("rank", allowed, cands, metric="dot")
            dots, ids = index(queries, k, exclude=excl)
            s = finish(rows, torch.from_numpy(dots)).numpy()
            s[ids < 0] = -np.inf
            scores[:, :k], idx[:, :k] = s, ids
            return scores, idx
        per = max(1, (1 << 22) // max(1, self.n_items))
        blocked = torch.from_numpy(~allowed)
        for r0 in range(0, b, per):
            r1 = min(b, r0 + per)
            s_all = self.adapter.score_all(rows[r0:r1]).float().clone()
            s_all[:, blocked] = -math.inf
            if excl is not None:
                part = excl.rows(np.arange(r0, r1))
                s_all[torch.from_numpy(part.row_ids()), torch.from_numpy(part.indices)] = -math.inf
            v, p = torch.topk(s_all, k, dim=1)
            v_np, p_np = v.numpy(), p.numpy()
            p_np[np.isneginf(v_np)] = -1
            scores[r0:r1, :k], idx[r0:r1, :k] = v_np, p_np
        return scores, idx

    def top_of(self, uu: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray) -> TopN:
        """Top-n of trained users ``uu``. Items a rating model never trained on score
        what ``predictions`` answers for them, the baseline (not the untrained
        weights); ties are broken by item position."""
        excl = self.seen.rows(uu) if exclude_seen else None
        cold = self.untrained & allowed
        rows = self.adapter.user_rows(torch.from_numpy(uu))
        scores, idx = self.topk(rows, n, excl, allowed & ~cold)
        if not cold.any() or len(uu) == 0:
            return scores, idx
        cold_idx = np.flatnonzero(cold)
        with torch.no_grad():
            base, _ = self.adapter.predict(
                torch.from_numpy(uu), torch.full((len(uu),), int(cold_idx[0]), dtype=torch.long)
            )  # the same for every never-trained item: mean + the user's bias
        base_np = base.float().cpu().numpy()
        for r in range(len(uu)):
            c = cold_idx
            if excl is not None:
                c = c[~np.isin(c, excl.rows(np.array([r])).indices)]
            c = c[:n]
            keep = idx[r] >= 0
            s_all = np.concatenate([scores[r][keep], np.full(len(c), base_np[r], np.float32)])
            i_all = np.concatenate([idx[r][keep], c])
            order = np.lexsort((i_all, -s_all))[:n]
            scores[r], idx[r] = -np.inf, -1
            scores[r, : len(order)], idx[r, : len(order)] = s_all[order], i_all[order]
        return scores, idx

    def top_cached(self, uu: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray) -> TopN:
        """:meth:`top_of` through an LRU cache of each user's top ``max(n, cache_n)``.

        The top ``n`` of a longer top list is the top ``n`` (ties are broken by item
        position either way), so a cached list answers every ``n`` up to its length.
        """
        cache_n, cache_users = self.cache_sizes()
        k = max(n, cache_n)
        scores = np.empty((len(uu), n), dtype=np.float32)
        idx = np.empty((len(uu), n), dtype=np.int64)
        missing: list[int] = []
        with self._lock:
            for j, user in enumerate(uu.tolist()):
                hit = self._lru.get((user, exclude_seen))
                if hit is not None and hit[0].shape[0] >= n:
                    self._lru.move_to_end((user, exclude_seen))
                    scores[j], idx[j] = hit[0][:n], hit[1][:n]
                else:
                    missing.append(j)
        if missing:
            s_new, i_new = self.top_of(uu[missing], k, exclude_seen, allowed)
            scores[missing], idx[missing] = s_new[:, :n], i_new[:, :n]
            with self._lock:
                for j, row in enumerate(missing):
                    self._lru[(int(uu[row]), exclude_seen)] = (s_new[j], i_new[j])
        with self._lock:
            while len(self._lru) > max(0, cache_users):
                self._lru.popitem(last=False)
        return scores, idx

    def warm(self, allowed: np.ndarray, *, exclude_seen: bool, chunk_size: int) -> int:
        """Fill the cache for every user with training ratings (up to ``cache_users``);
        returns how many lists were computed."""
        trained = np.flatnonzero(self.seen.lengths() > 0)[: self.cache_sizes()[1]]
        for c0 in range(0, len(trained), chunk_size):
            self.top_cached(trained[c0 : c0 + chunk_size], 1, exclude_seen, allowed)
        return len(trained)

    def index(self, kind: str, allowed: np.ndarray, vectors: Tensor, metric: Any) -> ExactIndex:
        """An exact index over the allowed rows of ``vectors`` (the last four are kept)."""
        key = (kind, np.packbits(allowed).tobytes())
        index = self._indexes.get(key)
        if index is None:
            keep = np.flatnonzero(allowed)
            index = ExactIndex(metric=metric)
            index.update_candidates(vectors[torch.from_numpy(keep)], ids=keep)
            if len(self._indexes) >= 4:
                self._indexes.pop(next(iter(self._indexes)))
            self._indexes[key] = index
        return index

    def popular(self, n: int, allowed: np.ndarray, drop: np.ndarray | None = None) -> np.ndarray:
        """The ``n`` most popular allowed item indices (ties by position), ``drop`` left out."""
        order: np.ndarray = self._pop_order[allowed[self._pop_order]]
        if drop is not None and len(drop):
            order = order[~np.isin(order, drop)]
        return order[:n]
