"""Nearest items and users by cosine similarity of the model's representations (see
:meth:`recfit.recommender.Recommender.similar_items`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

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
    if kind == "item":
        vectors, vocab, allowed = (
            rec.adapter.item_vectors(),
            rec.items,
            rec.allowed_items(None, None),
        )
    else:
        vectors, vocab, allowed = rec.adapter.user_vectors(), rec.users, rec.seen.lengths() > 0
    q = vocab.index(as_list(ids), unknown="error").astype(np.int64)
    if not allowed.any():
        return SimilarResult(kind, tuple(Neighbours(jsonable_id(x), ()) for x in vocab.id(q)))
    index = rec.ranker.index(kind, allowed, vectors, metric="cosine")
    k = max(1, min(n, int(allowed.sum())))
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
    return SimilarResult(kind, tuple(res))
