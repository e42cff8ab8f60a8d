"""New users: a few ratings folded into a user row without retraining, and the top-n
for that row (see :meth:`recfit.recommender.Recommender.recommend_for_ratings`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recfit.data.vocab import Vocabulary
from recfit.errors import ConfigError, DataError
from recfit.index import ItemSets
from recfit.models.base import clip_ratings
from recfit.recommender.inputs import check_n
from recfit.recommender.results import Recommendation

if TYPE_CHECKING:
    from recfit.recommender.core import Recommender

__all__ = ["fold_in_row", "new_user_list", "parse_ratings"]


def _pairs_of(ratings: Any) -> list[tuple[Any, ...]]:
    if isinstance(ratings, Mapping):
        return list(ratings.items())
    if isinstance(ratings, pd.DataFrame):
        if not {"item", "rating"} <= set(ratings.columns):
            raise DataError(
                f"expected columns item and rating, received {list(ratings.columns)}",
                column="ratings",
            )
        return list(zip(ratings["item"].tolist(), ratings["rating"].tolist(), strict=True))
    pairs = [tuple(p) for p in ratings]
    bad = [p for p in pairs if len(p) != 2]
    if bad:
        raise DataError(f"expected (item id, rating) pairs, received {bad[0]!r}", column="ratings")
    return pairs


def parse_ratings(
    ratings: Any,
    weights: Any,
    items: Vocabulary,
    rating_scale: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A new user's ratings as ``(item indices, ratings, weights)``.

    Args:
        ratings: ``{item id: rating}``, ``(item id, rating)`` pairs, or a DataFrame with
            ``item`` and ``rating`` columns.
        weights: one weight per rating, or ``None`` (all 1).
        items: the item vocabulary.
        rating_scale: ``(lo, hi)``: ratings outside it are refused.

    Raises:
        UnknownIdError: an item id is not known.
        DataError: ratings outside the scale or not finite, repeated items, bad weights.
    """
    pairs = _pairs_of(ratings)
    idx = items.index([p[0] for p in pairs], unknown="error").astype(np.int64)
    try:
        r = np.asarray([float(p[1]) for p in pairs], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"expected numeric ratings, received {exc}", column="rating") from None
    if len(np.unique(idx)) != len(idx):
        raise DataError("expected each item rated once, received duplicates", column="item")
    if not np.isfinite(r).all():
        raise DataError("expected finite ratings, received NaN or infinity", column="rating")
    if rating_scale is not None and len(r):
        lo, hi = rating_scale
        if r.min() < lo or r.max() > hi:
            raise DataError(
                f"expected ratings in [{lo:g}, {hi:g}], received {r.min():g}..{r.max():g}",
                column="rating",
            )
    w = np.ones(len(r)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != r.shape or not np.isfinite(w).all() or (w < 0).any():
        raise DataError(
            f"expected {len(r)} finite non-negative weights, received {w.shape}",
            column="weight",
        )
    return idx, r, w


def _row(
    rec: Recommender, items: np.ndarray, r: np.ndarray, w: np.ndarray, reg: float | None
) -> Tensor:
    if not len(items) or w.sum() <= 0:
        raise ConfigError("expected at least one rating with a positive weight, received none")
    lam = rec.fold_in_reg if reg is None else float(reg)
    return rec.adapter.fold_in(
        torch.from_numpy(items), torch.from_numpy(r), torch.from_numpy(w), reg=lam
    )


def fold_in_row(rec: Recommender, ratings: Any, weights: Any, reg: float | None) -> Tensor:
    """What :meth:`Recommender.fold_in` answers (see there)."""
    items, r, w = parse_ratings(ratings, weights, rec.items, rec.rating_scale)
    return _row(rec, items, r, w, reg)


def new_user_list(
    rec: Recommender, ratings: Any, n: int, *, exclude_rated: bool, weights: Any,
    candidates: Any, exclude: Any,
) -> Recommendation:  # fmt: skip
    """What :meth:`Recommender.recommend_for_ratings` answers (see there)."""
    n = check_n(n)
    allowed = rec.allowed_items(candidates, exclude)
    items, r, w = parse_ratings(ratings, weights, rec.items, rec.rating_scale)
    drop = items if exclude_rated else None
    reason = None
    if not len(items):
        reason = "no ratings given"
    elif not rec.adapter.supports_fold_in:
        reason = f"model family {rec.family!r} has no fold-in"
    if reason is not None:
        return Recommendation(None, rec._popular(n, allowed, drop), "popular", reason, "popularity")
    row = _row(rec, items, r, w, None).unsqueeze(0)
    excl = ItemSets.from_lists([items]) if exclude_rated else None
    scores, idx = rec.ranker.topk(row, n, excl, allowed)
    found = rec.scored(idx[0], clip_ratings(scores[0], rec.rating_scale, rec.output_kind))
    return Recommendation(None, found, "fold_in", rec.adapter.source("fold_in"), rec.output_kind)
