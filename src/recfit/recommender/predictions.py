"""Predictions for (user, item) pairs of raw ids, with what they are and which ones fell
back to the baseline (see :meth:`recfit.recommender.Recommender.predictions`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from recfit.errors import ConfigError, DataError
from recfit.models.base import clip_ratings
from recfit.recommender.inputs import as_list
from recfit.recommender.results import Predictions, jsonable_id

if TYPE_CHECKING:
    from recfit.recommender.core import Recommender

__all__ = ["OnUnknownPair", "pair_predictions"]

OnUnknownPair = Literal["error", "nan", "baseline"]


def _reason(
    uid: Any, iid: Any, u_oov: bool, i_oov: bool, user_out: bool, item_out: bool, fallback: bool
) -> str:
    """Why a pair was not answered by the model."""
    what = []
    if user_out:
        what.append(
            f"unknown user id {uid!r}" if u_oov else f"user {uid!r} has no training ratings"
        )
    if item_out:
        what.append(
            f"unknown item id {iid!r}" if i_oov else f"item {iid!r} has no training ratings"
        )
    if not fallback:
        return "; ".join(what) + ": no prediction"
    if user_out and item_out:
        return "; ".join(what) + ": baseline (global mean)"
    side = "item bias" if user_out else "user bias"
    return "; ".join(what) + f": baseline (mean + {side})"


def _pairs(users: Any, items: Any) -> tuple[list[Any], list[Any]]:
    """Aligned id lists; a single id pairs with every id on the other side."""
    u_ids, i_ids = as_list(users), as_list(items)
    if len(u_ids) == 1 and len(i_ids) != 1:
        u_ids = u_ids * len(i_ids)
    elif len(i_ids) == 1 and len(u_ids) != 1:
        i_ids = i_ids * len(u_ids)
    if len(u_ids) != len(i_ids):
        raise DataError(
            f"expected as many items as users ({len(u_ids)}), received {len(i_ids)}",
            column="items",
        )
    return u_ids, i_ids


def pair_predictions(
    rec: Recommender, users: Any, items: Any, on_unknown: OnUnknownPair, clip: bool
) -> Predictions:
    """What :meth:`Recommender.predictions` answers (see there)."""
    if on_unknown not in ("error", "nan", "baseline"):
        raise ConfigError(
            f"expected on_unknown 'error', 'nan' or 'baseline', received {on_unknown!r}"
        )
    u_ids, i_ids = _pairs(users, items)
    policy: Literal["error", "sentinel"] = "error" if on_unknown == "error" else "sentinel"
    u = rec.users.index(u_ids, unknown=policy).astype(np.int64)
    i = rec.items.index(i_ids, unknown=policy).astype(np.int64)
    kind = rec.output_kind
    model = rec.model
    ok = (u >= 0) & (i >= 0)
    out = np.full(len(u), np.nan, dtype=np.float32)
    fallback = np.zeros(len(u), dtype=bool)
    if ok.any():
        pred, fb = rec.adapter.predict(torch.from_numpy(u[ok]), torch.from_numpy(i[ok]))
        out[ok] = pred.cpu().numpy()
        fallback[ok] = fb.cpu().numpy()
    outside = ~ok
    if on_unknown == "baseline" and outside.any() and model.has_record:
        base = model.baseline(torch.from_numpy(u[outside]), torch.from_numpy(i[outside]))
        out[outside] = base.float().numpy()
        fallback[outside] = True
    if clip:
        out = clip_ratings(out, rec.rating_scale, kind)
    user_out, item_out = u < 0, i < 0
    if model.has_record:
        cu = model.train_user_count.cpu().numpy()
        ci = model.train_item_count.cpu().numpy()
        user_out |= (u >= 0) & (cu[np.maximum(u, 0)] <= 0)
        item_out |= (i >= 0) & (ci[np.maximum(i, 0)] <= 0)
    reasons = tuple(
        None
        if not (user_out[k] or item_out[k])
        else _reason(
            u_ids[k],
            i_ids[k],
            u[k] < 0,
            i[k] < 0,
            bool(user_out[k]),
            bool(item_out[k]),
            bool(fallback[k]),
        )
        for k in range(len(u))
    )
    return Predictions(
        tuple(jsonable_id(x) for x in u_ids),
        tuple(jsonable_id(x) for x in i_ids),
        out,
        kind,
        fallback,
        reasons,
    )
