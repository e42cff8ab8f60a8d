"""Nearest items and users by cosine similarity of the model's representations, or by
an item-item model's own similarities (see
:meth:`recfit.recommender.Recommender.similar_items`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from recfit.errors import ConfigError
from recfit.recommender.inputs import as_list, check_n
from recfit.recommender.results import Neighbours, ScoredId, SimilarResult, jsonable_id

if TYPE_CHECKING:
    from recfit.recommender.core import Recommender

__all__ = ["neighbours"]


def neighbours(rec: Recommender, kind: Literal["item", "user"], ids: Any, n: Any) -> SimilarResult:
    """The ``n`` nearest of each id among the eligible ones (the id itself excluded):
    items with ``popularity >= min_item_count``, users with training ratings.

    Raises:
        UnknownIdError: an id is not known.
        ConfigError: ``n`` is not >= 1, or the family has no such representations.
    """
    n = check_n(n)
    vectors: torch.Tensor | None
    if kind == "item":  # an item-item model answers from its own similarities
        vectors, vocab, allowed = (
            None if rec.adapter.direct_item_similarity else rec.adapter.item_vectors(),
            rec.items,
            rec.allowed_items(None, None),
        )
    else:
        vectors, vocab, allowed = rec.adapter.user_vectors(), rec.users, rec.seen.lengths() > 0
    q = vocab.index(as_list(ids), unknown="error").astype(np.int64)
    source = rec.adapter.source("similar")
    if not allowed.any():
        empty = tuple(Neighbours(jsonable_id(x), ()) for x in vocab.id(q))
        return SimilarResult(kind, empty, source)
    k = max(1, min(n, int(allowed.sum())))
    if vectors is None:
        sim = rec.adapter.item_similarity(torch.from_numpy(q))
        scores, found = _top_similar(sim, q, allowed, k)
    else:
        index = rec.ranker.index(kind, allowed, vectors, metric="cosine")
        scores, found = index(vectors[torch.from_numpy(q)], k, exclude=[[x] for x in q])
    res = []
    for j, x in enumerate(q):
        keep = found[j] >= 0
        fi, fs = found[j][keep], scores[j][keep]
        if kind == "item":
            neigh = rec.scored(fi, fs)
            title = rec.titles.titles[int(x)]
        else:
            neigh = tuple(
                ScoredId(jsonable_id(r), float(s)) for r, s in zip(vocab.id(fi), fs, strict=True)
            )
            title = None
        res.append(Neighbours(jsonable_id(vocab.id([x])[0]), neigh, title))
    return SimilarResult(kind, tuple(res), source)


def _top_similar(
    sim: torch.Tensor | None, q: np.ndarray, allowed: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar allowed items of each row of ``sim`` (the query item itself
    left out, ties by index); ``-1`` pads rows with fewer allowed items."""
    if sim is None:  # pragma: no cover - an adapter that says it has them has them
        raise ConfigError("expected item similarities from the adapter, received none")
    s = sim.float().clone()
    s[:, torch.from_numpy(~allowed)] = -math.inf
    s[torch.arange(len(q)), torch.from_numpy(q)] = -math.inf
    order = np.lexsort((np.broadcast_to(np.arange(s.shape[1]), s.shape), -s.numpy()), axis=1)
    found = order[:, :k].astype(np.int64)
    scores = np.take_along_axis(s.numpy(), found, 1)
    found[np.isneginf(scores)] = -1
    return scores, found
