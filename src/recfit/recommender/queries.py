"""Known users' top-n lists (see :meth:`recfit.recommender.Recommender.recommend`):
trained users from the model (their default lists cached), the others, and ids outside
the vocabulary, from the popular list with the reason."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from recfit.errors import ConfigError
from recfit.models.base import clip_ratings
from recfit.recommender.inputs import as_list, check_n
from recfit.recommender.results import Recommendation, RecommendResult, jsonable_id

if TYPE_CHECKING:
    from recfit.recommender.core import Recommender

__all__ = ["OnUnknown", "user_lists"]

OnUnknown = Literal["popular", "error"]


def user_lists(
    rec: Recommender, users: Any, n: int, *, exclude_seen: bool, candidates: Any,
    exclude: Any, on_unknown: OnUnknown,
) -> RecommendResult:  # fmt: skip
    """What :meth:`Recommender.recommend` answers (see there)."""
    n = check_n(n)
    if on_unknown not in ("popular", "error"):
        raise ConfigError(f"expected on_unknown 'popular' or 'error', received {on_unknown!r}")
    ids = as_list(users)
    if on_unknown == "error":
        rec.users.index(ids, unknown="error")
    u = rec.users.index(ids, unknown="sentinel").astype(np.int64)
    allowed = rec.allowed_items(candidates, exclude)
    trained = np.zeros(len(u), dtype=bool)
    trained[u >= 0] = rec.seen.lengths()[u[u >= 0]] > 0
    model_rows = np.flatnonzero(trained)
    out: list[Recommendation | None] = [None] * len(u)
    if len(model_rows):
        uu = u[model_rows]
        if candidates is None and exclude is None:  # the default list: cacheable
            scores, idx = rec.ranker.top_cached(uu, n, exclude_seen, allowed)
        else:
            scores, idx = rec.ranker.top_of(uu, n, exclude_seen, allowed)
        canon = rec.users.id(uu)
        for j, r in enumerate(model_rows):
            out[r] = Recommendation(
                jsonable_id(canon[j]),
                rec.scored(idx[j], clip_ratings(scores[j], rec.rating_scale, rec.output_kind)),
                "model",
                kind=rec.output_kind,
            )
    for r in np.flatnonzero(~trained):
        if u[r] < 0:
            user, reason = jsonable_id(ids[r]), f"unknown user id {ids[r]!r}"
        else:
            user = jsonable_id(rec.users.id([u[r]])[0])
            reason = f"user {user!r} has no training ratings"
        out[r] = Recommendation(user, rec._popular(n, allowed), "popular", reason, "popularity")
    return RecommendResult(tuple(x for x in out if x is not None), n, exclude_seen)
