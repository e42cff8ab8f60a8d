"""The :class:`Recommender`: a trained model plus everything needed to answer with raw ids.

A Recommender holds the model (through its family's
:class:`~recfit.recommender.adapters.ModelAdapter`), the user and item vocabularies,
each user's training items (*seen* items, excluded from recommendations by default),
item popularity, titles, the rating scale and the run's config. It answers
in raw ids, one or many at once, and it saves to / loads from a bundle folder (see
:mod:`recfit.recommender.bundle`).

Unknown ids always get a documented answer: ``recommend`` sends an id absent
from the vocabulary to the ``popular`` path with the reason (or raises
:class:`~recfit.errors.UnknownIdError` with ``on_unknown="error"``); a known user without
training ratings takes the ``popular`` path too (the model never learned them);
``predict`` answers a pair whose user or item had no training ratings with the model's
baseline (global mean plus the known side's bias, marked ``fallback`` by
:meth:`Recommender.predictions`) and raises, answers NaN or the baseline for an id
outside the vocabulary; a new user with a few ratings is *folded in*
(:meth:`Recommender.fold_in`) without retraining.

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> from recfit.models import create_model
    >>> train = Interactions.from_arrays([1, 1, 2, 3], [10, 20, 10, 30], [5.0, 3.0, 4.0, 2.0])
    >>> rec = Recommender(create_model("mf", train, n_factors=2), train.users, train.items, train)
    >>> r = rec.recommend([1, 99], n=2)
    >>> r[0].path, r[0].ids, r[1].path, r[1].ids
    ('model', [30], 'popular', [10, 20])
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recfit._version import __version__
from recfit.data.features import FeatureSpace
from recfit.data.interactions import Interactions
from recfit.data.vocab import Vocabulary
from recfit.errors import BundleError, ConfigError, DataError, RecfitError
from recfit.index import ExactIndex, ItemSets
from recfit.models.base import OutputKind, RatingModel, output_kind
from recfit.models.persist import save_model
from recfit.models.registry import build_model
from recfit.recommender.adapters import AdapterContext, ModelAdapter, adapter_for
from recfit.recommender.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    MetaDoc,
    bundle_path,
    load_arrays_bytes,
    load_model_bytes,
    read_item_info,
    read_vocabulary,
    validate_doc,
    verify_manifest,
    write_bundle_dir,
)
from recfit.recommender.results import (
    ItemMatch,
    Neighbours,
    Predictions,
    Recommendation,
    RecommendResult,
    ScoredId,
    SimilarResult,
    jsonable_id,
)
from recfit.recommender.titles import TitleIndex

__all__ = ["OnUnknown", "Recommender"]

OnUnknown = Literal["popular", "error"]
_INFO_COLUMNS = ("title", "year", "genres")
_REQUIRED = (
    "recommender.json",
    "users.json",
    "items.json",
    "item_info.json",
    "model.safetensors",
    "arrays.safetensors",
)


def _as_list(values: Any) -> list[Any]:
    """One id or many → a list of ids."""
    if isinstance(values, str | bytes | int | float | np.generic) or values is None:
        return [values]
    if isinstance(values, np.ndarray):
        return values.reshape(-1).tolist()
    return list(values)


def _check_n(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"expected {name} as an integer >= 1, received {n!r}")
    return int(n)


def _seen_from(seen: ItemSets | Interactions, n_users: int, n_items: int) -> ItemSets:
    if isinstance(seen, Interactions):
        keep = seen.weights() > 0
        u, i = seen.user[keep], seen.item[keep]
        pairs = np.unique(u.astype(np.int64) * n_items + i)  # sorted, duplicates dropped
        return ItemSets.from_pairs(pairs // n_items, pairs % n_items, n_users)
    if not isinstance(seen, ItemSets):
        raise DataError(
            f"expected seen items as ItemSets or Interactions, received {type(seen).__name__}",
            column="seen",
        )
    if seen.n_queries != n_users:
        raise DataError(
            f"expected one seen-item set per user ({n_users}), received {seen.n_queries}",
            column="seen",
        )
    if len(seen.indices) and (seen.indices.min() < 0 or seen.indices.max() >= n_items):
        raise DataError(
            f"expected seen item indices in [0, {n_items}), received "
            f"{int(seen.indices.min())}..{int(seen.indices.max())}",
            column="seen",
        )
    return seen


def _info_frame(item_info: pd.DataFrame | None, n_items: int) -> pd.DataFrame | None:
    if item_info is None:
        return None
    cols = [c for c in _INFO_COLUMNS if c in item_info.columns]
    if len(item_info) != n_items:
        raise DataError(
            f"expected one item_info row per item ({n_items}), received {len(item_info)}",
            column="item_info",
        )
    return item_info[cols].reset_index(drop=True) if cols else None


def _cell(v: Any) -> Any:
    if isinstance(v, tuple | list | np.ndarray):
        return [str(x) for x in v]
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


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


class Recommender:
    """Answers from a trained model in raw ids; saves to and loads from a bundle.

    Args:
        model: a trained :class:`~recfit.models.RatingModel` (copied to the CPU and put
            in evaluation mode; later training of the original does not change it).
        users: the user vocabulary the model was trained with.
        items: the item vocabulary.
        seen: each user's training items: an :class:`~recfit.index.ItemSets` (row =
            user index, ids = item indices) or the training
            :class:`~recfit.data.Interactions` (rows of weight 0 do not count).
        item_info: one row per item index with any of ``title``, ``year``, ``genres``
            (e.g. ``data.item_features`` of a MovieLens release).
        rating_scale: ``(lo, hi)`` of the ratings; predictions are clipped into it.
        config: the run's :class:`~recfit.config.TrainConfig` (or its dict), kept in
            the bundle.
        popularity: a score per item index for the ``popular`` path (default: the
            number of users who rated the item in training).
        feature_spaces: fitted feature spaces by name, for families with side features.
        features: per side (``"user"``, ``"item"``), feature arrays by name with one
            row per vocabulary index (numeric or bool numpy arrays).
        fold_in_reg: strength of the prior in :meth:`fold_in` (squared rating units).
        min_item_count: items with a smaller popularity are left out of
            recommendations and neighbour lists unless named in ``candidates`` (their
            parameters are still at their initialisation when the count is 0).

    Attributes:
        adapter: the model family's :class:`~recfit.recommender.adapters.ModelAdapter`.
        seen: the training items of each user (``ItemSets`` of item indices).
        popularity: ``float64`` score per item index.
    """

    def __init__(
        self,
        model: RatingModel,
        users: Vocabulary,
        items: Vocabulary,
        seen: ItemSets | Interactions,
        *,
        item_info: pd.DataFrame | None = None,
        rating_scale: tuple[float, float] | Sequence[float] | None = None,
        config: Any = None,
        popularity: np.ndarray | Sequence[float] | None = None,
        feature_spaces: Mapping[str, Any] | None = None,
        features: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        fold_in_reg: float = 0.1,
        min_item_count: float = 1.0,
    ) -> None:
        if not isinstance(model, RatingModel):
            raise ConfigError(f"expected a RatingModel, received {type(model).__name__}")
        self.users, self.items = users, items
        n_users, n_items = len(users), len(items)
        for side, size in (("n_users", n_users), ("n_items", n_items)):
            got = getattr(model, side, size)
            if isinstance(got, int) and got != size:
                raise ConfigError(
                    f"expected a model with {side}={size} (the vocabulary), received {got}"
                )
        self.seen = _seen_from(seen, n_users, n_items)
        if popularity is None:
            pop = np.bincount(self.seen.indices, minlength=n_items).astype(np.float64)
        else:
            pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
            if len(pop) != n_items or not np.isfinite(pop).all():
                raise DataError(
                    f"expected {n_items} finite popularity values, received {len(pop)}",
                    column="popularity",
                )
        self.popularity = pop
        self.cache_n = 100
        """Length of the cached top lists (a longer ``n`` computes and caches longer ones)."""
        self.cache_users = 200_000
        """Most users whose default top list stays cached (least recently used go first)."""
        self._top_lru: OrderedDict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._top_lock = threading.Lock()
        self.item_info = _info_frame(item_info, n_items)
        self.rating_scale: tuple[float, float] | None = (
            None if rating_scale is None else (float(rating_scale[0]), float(rating_scale[1]))
        )
        if hasattr(config, "model_dump"):
            config = config.model_dump(mode="json")
        self.config: dict[str, Any] | None = None if config is None else dict(config)
        self.feature_spaces = dict(feature_spaces or {})
        self.features = {k: dict(v) for k, v in (features or {}).items()}
        if float(fold_in_reg) <= 0:
            raise ConfigError(f"expected fold_in_reg > 0, received {fold_in_reg!r}")
        self.fold_in_reg = float(fold_in_reg)
        self.min_item_count = float(min_item_count)
        # a fresh copy from config + weights: later training of ``model`` changes nothing
        # here, and transient state (e.g. a last batch with autograd history) is not copied
        m = build_model(model.config())
        m.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
        m.eval().requires_grad_(False)
        if hasattr(m, "train_user_count") and not m.has_record and isinstance(seen, Interactions):
            # which users and items were trained, and the baseline for the others
            m.record_training(seen.user, seen.item, seen.rating, seen.weights())
        self.model = m
        ctx = AdapterContext(
            n_users=n_users,
            n_items=n_items,
            trained_users=self.seen.lengths() > 0,
            rating_scale=self.rating_scale,
            feature_spaces=self.feature_spaces,
            features=self.features,
        )
        self.adapter: ModelAdapter = adapter_for(m, ctx)
        self._trained_items = self.popularity >= self.min_item_count
        self._pop_order = np.lexsort((np.arange(n_items), -self.popularity))
        self._titles: TitleIndex | None = None
        self._index_cache: dict[tuple[str, bytes], ExactIndex] = {}

    # ------------------------------------------------------------------ basics
    @property
    def n_users(self) -> int:
        """The number of users in the vocabulary."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """The number of items in the vocabulary."""
        return len(self.items)

    @property
    def family(self) -> str:
        """The model's registry name (``dot``, ``mf``, ``nn`` ...)."""
        return self.adapter.family

    @property
    def output_kind(self) -> OutputKind:
        """What predictions and model scores are: ``"rating"`` (original units) or
        ``"score"`` (a ranking score such as a two-tower logit, never clipped)."""
        return output_kind(self.model)

    @property
    def titles(self) -> TitleIndex:
        """The title index (built on first use)."""
        if self._titles is None:
            titles = None
            if self.item_info is not None and "title" in self.item_info.columns:
                titles = [_cell(t) for t in self.item_info["title"].tolist()]
            self._titles = TitleIndex(self.items, titles)
        return self._titles

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: family, sizes, rating scale, versions.

        Example:
            >>> from recfit.data import Interactions
            >>> from recfit.models import create_model
            >>> d = Interactions.from_arrays([1, 2], [3, 4], [4.0, 5.0])
            >>> Recommender(create_model("dot", d), d.users, d.items, d).info()["n_items"]
            2
        """

        return {
            "model": self.family,
            "output_kind": self.output_kind,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "trained_users": int((self.seen.lengths() > 0).sum()),
            "rating_scale": None if self.rating_scale is None else list(self.rating_scale),
            "has_titles": self.item_info is not None and "title" in self.item_info.columns,
            "supports_fold_in": self.adapter.supports_fold_in,
            "supports_similarity": self.adapter.supports_similarity,
            "recfit_version": __version__,
            "bundle_format_version": BUNDLE_FORMAT_VERSION,
        }

    def __repr__(self) -> str:
        return f"Recommender(model={self.family!r}, users={self.n_users}, items={self.n_items})"

    def _user_index(self, ids: list[Any]) -> np.ndarray:
        return self.users.index(ids, unknown="sentinel").astype(np.int64)

    def _item_index(self, ids: list[Any]) -> np.ndarray:
        """Item indices; unknown ids raise UnknownIdError."""
        return self.items.index(ids, unknown="error").astype(np.int64)

    def _title_of(self, idx: int) -> str | None:
        return self.titles.titles[idx]

    def _scored(self, idx: np.ndarray, scores: np.ndarray) -> tuple[ScoredId, ...]:
        keep = idx >= 0
        idx, scores = idx[keep], scores[keep]
        if not len(idx):
            return ()
        ids = self.items.id(idx)
        return tuple(
            ScoredId(jsonable_id(r), float(s), self._title_of(int(i)))
            for r, s, i in zip(ids, scores, idx, strict=True)
        )

    def title(self, item: Any) -> str | None:
        """The title of a raw item id (``None`` when the bundle has none).

        Raises:
            UnknownIdError: the id is not known.
        """
        return self._title_of(int(self._item_index([item])[0]))

    def seen_items(self, user: Any) -> list[int | str]:
        """The raw ids of a user's training items (empty for an unknown user)."""
        u = int(self._user_index([user])[0])
        if u < 0:
            return []
        idx = self.seen.indices[self.seen.indptr[u] : self.seen.indptr[u + 1]]
        return [jsonable_id(x) for x in self.items.id(idx)]

    # ------------------------------------------------------------------ titles
    def find_items(self, query: Any, n: int = 10) -> list[ItemMatch]:
        """Items matching an id or a title, best first (see :class:`TitleIndex.find`).

        Example:
            >>> from recfit.data import Interactions
            >>> from recfit.models import create_model
            >>> d = Interactions.from_arrays([1, 2], [3, 4], [4.0, 5.0])
            >>> info = pd.DataFrame({"title": ["Alien (1979)", "Aliens (1986)"]})
            >>> rec = Recommender(create_model("dot", d), d.users, d.items, d, item_info=info)
            >>> [(m.id, m.how) for m in rec.find_items("alien")]
            [(3, 'casefold'), (4, 'prefix')]
        """
        return self.titles.find(query, _check_n(n))

    def resolve_item(self, id_or_title: Any) -> int | str:
        """The raw id of an item given by id or title (exact, then case-insensitive).

        Raises:
            ItemNotFoundError: unknown or ambiguous; ``matches`` lists close items.
        """
        return jsonable_id(self.items.id([self.titles.resolve(id_or_title)])[0])

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        users: Any,
        items: Any,
        *,
        on_unknown: Literal["error", "nan", "baseline"] = "error",
        clip: bool = True,
    ) -> np.ndarray:
        """Predictions for (user, item) pairs of raw ids: :meth:`predictions`' values.

        For a rating model these are predicted ratings in the original scale (a user or
        item without training ratings gets the baseline); for a score model
        (``output_kind == "score"``, e.g. two-tower) they are model scores, never clipped.

        Returns:
            ``float32`` array, one prediction per pair.

        Raises:
            UnknownIdError: an unknown id under ``on_unknown="error"``.
            DataError: the sequences have different lengths.
        """
        return self.predictions(users, items, on_unknown=on_unknown, clip=clip).values

    def predictions(
        self,
        users: Any,
        items: Any,
        *,
        on_unknown: Literal["error", "nan", "baseline"] = "error",
        clip: bool = True,
    ) -> Predictions:
        """Predictions for (user, item) pairs of raw ids, with what they are and which
        ones fell back to the baseline.

        ``users`` and ``items`` are one id or aligned sequences; a single id pairs with
        every id on the other side. The numbers are the model's ``forward`` (through
        ``to_rating``) in evaluation mode. For a rating model a pair whose user or item
        had no training rating of positive weight is answered by the baseline (the
        global mean plus the known side's bias) and marked ``fallback``, with the reason;
        ratings are clipped into ``rating_scale`` when ``clip``. A score model's values
        are scores, never clipped.

        Args:
            users: raw user id(s).
            items: raw item id(s).
            on_unknown: for an id absent from the vocabulary, ``"error"`` raises,
                ``"nan"`` answers NaN, ``"baseline"`` answers the baseline (rating
                models; NaN for a score model) marked ``fallback``.
            clip: clip ratings into the rating scale (when known).

        Raises:
            UnknownIdError: an unknown id under ``on_unknown="error"``.
            DataError: the sequences have different lengths.

        Example:
            >>> from recfit.data import Interactions
            >>> from recfit.models import create_model
            >>> d = Interactions.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 3.0, 4.0])
            >>> rec = Recommender(create_model("mf", d, n_factors=2), d.users, d.items, d)
            >>> p = rec.predictions(1, [10, 99], on_unknown="baseline")
            >>> p.kind, p.fallback.tolist(), p.reasons[1]
            ('rating', [False, True], 'unknown item id 99: baseline (mean + user bias)')
        """
        if on_unknown not in ("error", "nan", "baseline"):
            raise ConfigError(
                f"expected on_unknown 'error', 'nan' or 'baseline', received {on_unknown!r}"
            )
        u_ids, i_ids = _as_list(users), _as_list(items)
        if len(u_ids) == 1 and len(i_ids) != 1:
            u_ids = u_ids * len(i_ids)
        elif len(i_ids) == 1 and len(u_ids) != 1:
            i_ids = i_ids * len(u_ids)
        if len(u_ids) != len(i_ids):
            raise DataError(
                f"expected as many items as users ({len(u_ids)}), received {len(i_ids)}",
                column="items",
            )
        policy: Literal["error", "sentinel"] = "error" if on_unknown == "error" else "sentinel"
        u = self.users.index(u_ids, unknown=policy).astype(np.int64)
        i = self.items.index(i_ids, unknown=policy).astype(np.int64)
        kind = self.output_kind
        ok = (u >= 0) & (i >= 0)
        out = np.full(len(u), np.nan, dtype=np.float32)
        fallback = np.zeros(len(u), dtype=bool)
        if ok.any():
            pred, fb = self.adapter.predict(torch.from_numpy(u[ok]), torch.from_numpy(i[ok]))
            out[ok] = pred.cpu().numpy()
            fallback[ok] = fb.cpu().numpy()
        outside = ~ok
        if on_unknown == "baseline" and outside.any() and self.model.has_record:
            base = self.model.baseline(torch.from_numpy(u[outside]), torch.from_numpy(i[outside]))
            out[outside] = base.float().numpy()
            fallback[outside] = True
        if clip and kind == "rating" and self.rating_scale is not None:
            out = np.clip(out, *self.rating_scale).astype(np.float32)
        user_out, item_out = u < 0, i < 0
        if self.model.has_record:
            cu = self.model.train_user_count.cpu().numpy()
            ci = self.model.train_item_count.cpu().numpy()
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

    # ------------------------------------------------------------------ top-n core
    def _allowed(self, candidates: Any, exclude: Any) -> np.ndarray:
        if candidates is None:
            allowed = self._trained_items.copy()
        else:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[self._item_index(_as_list(candidates))] = True
        if exclude is not None:
            ex = self.items.index(_as_list(exclude), unknown="sentinel").astype(np.int64)
            allowed[ex[ex >= 0]] = False
        return allowed

    def _topk(
        self, rows: Tensor, n: int, excl: ItemSets | None, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (scores, item indices, -1 padded) of each row among the allowed items."""
        b = rows.shape[0]
        k = max(1, min(n, int(allowed.sum())))
        scores = np.full((b, n), -np.inf, dtype=np.float32)
        idx = np.full((b, n), -1, dtype=np.int64)
        if b == 0 or not allowed.any():
            return scores, idx
        form = self.adapter.retrieval(rows)
        if form is not None:
            queries, cands, finish = form
            index = self._index("rank", allowed, cands, metric="dot")
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

    def _top_of(
        self, uu: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n of trained users ``uu``. Items a rating model never trained on score
        what :meth:`predictions` answers for them, the baseline (not the untrained
        weights); ties are broken by item position."""
        excl = self.seen.rows(uu) if exclude_seen else None
        cold = self._untrained_items() & allowed
        rows = self.adapter.user_rows(torch.from_numpy(uu))
        scores, idx = self._topk(rows, n, excl, allowed & ~cold)
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

    def _untrained_items(self) -> np.ndarray:
        """Items a rating model with a training record never trained on (all False for
        a score model or a model without the record)."""
        if self.output_kind != "rating" or not self.model.has_record:
            return np.zeros(self.n_items, dtype=bool)
        return np.asarray(self.model.train_item_count.cpu().numpy() <= 0)

    def _top_cached(
        self, uu: np.ndarray, n: int, exclude_seen: bool, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_top_of` through an LRU cache of each user's top ``max(n, cache_n)``.

        The top ``n`` of a longer top list is the top ``n`` (ties are broken by item
        position either way), so a cached list answers every ``n`` up to its length.
        """
        k = max(n, self.cache_n)
        scores = np.empty((len(uu), n), dtype=np.float32)
        idx = np.empty((len(uu), n), dtype=np.int64)
        missing: list[int] = []
        with self._top_lock:
            for j, user in enumerate(uu.tolist()):
                hit = self._top_lru.get((user, exclude_seen))
                if hit is not None and hit[0].shape[0] >= n:
                    self._top_lru.move_to_end((user, exclude_seen))
                    scores[j], idx[j] = hit[0][:n], hit[1][:n]
                else:
                    missing.append(j)
        if missing:
            s_new, i_new = self._top_of(uu[missing], k, exclude_seen, allowed)
            scores[missing], idx[missing] = s_new[:, :n], i_new[:, :n]
            with self._top_lock:
                for j, row in enumerate(missing):
                    self._top_lru[(int(uu[row]), exclude_seen)] = (s_new[j], i_new[j])
        with self._top_lock:
            while len(self._top_lru) > max(0, self.cache_users):
                self._top_lru.popitem(last=False)
        return scores, idx

    def warm(self, *, exclude_seen: bool = True, chunk_size: int = 2048) -> int:
        """Fill the top-list cache for every user with training ratings (up to
        ``cache_users`` of them); returns how many lists were computed.

        Example:
            >>> # Recommender.load("runs/r1").warm()  # before serving
        """
        trained = np.flatnonzero(self.seen.lengths() > 0)[: self.cache_users]
        allowed = self._allowed(None, None)
        for c0 in range(0, len(trained), chunk_size):
            self._top_cached(trained[c0 : c0 + chunk_size], 1, exclude_seen, allowed)
        return len(trained)

    def _index(self, kind: str, allowed: np.ndarray, vectors: Tensor, metric: Any) -> ExactIndex:
        key = (kind, np.packbits(allowed).tobytes())
        index = self._index_cache.get(key)
        if index is None:
            keep = np.flatnonzero(allowed)
            index = ExactIndex(metric=metric)
            index.update_candidates(vectors[torch.from_numpy(keep)], ids=keep)
            if len(self._index_cache) >= 4:
                self._index_cache.pop(next(iter(self._index_cache)))
            self._index_cache[key] = index
        return index

    def _popular(
        self, n: int, allowed: np.ndarray, drop: np.ndarray | None = None
    ) -> tuple[ScoredId, ...]:
        order = self._pop_order[allowed[self._pop_order]]
        if drop is not None and len(drop):
            order = order[~np.isin(order, drop)]
        order = order[:n]
        return self._scored(order, self.popularity[order])

    # ------------------------------------------------------------------ recommend
    def recommend(
        self,
        users: Any,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: Any = None,
        exclude: Any = None,
        on_unknown: OnUnknown = "popular",
    ) -> RecommendResult:
        """The top-``n`` items of each user, by predicted rating.

        Args:
            users: one raw user id or a sequence of them.
            n: list length.
            exclude_seen: leave out each user's training items.
            candidates: restrict to these raw item ids (unknown ids raise); by default
                every item with ``popularity >= min_item_count``.
            exclude: raw item ids never to recommend, for every user (unknown ids are
                ignored).
            on_unknown: for an id absent from the vocabulary, ``"popular"`` answers the
                most popular allowed items (path ``popular``, reason given) and
                ``"error"`` raises. A known user without training ratings always gets
                the popular path, with its reason.

        Returns:
            A :class:`~recfit.recommender.results.RecommendResult`, users in order.
            Scores are what the model outputs (``kind``: predicted ratings, not clipped so
            that they keep their order, or a retrieval model's scores); on the popular
            path they are the items' popularity (``kind == "popularity"``).

        Raises:
            UnknownIdError: an unknown user under ``on_unknown="error"``, or an unknown
                candidate.
        """
        n = _check_n(n)
        if on_unknown not in ("popular", "error"):
            raise ConfigError(f"expected on_unknown 'popular' or 'error', received {on_unknown!r}")
        ids = _as_list(users)
        if on_unknown == "error":
            self.users.index(ids, unknown="error")
        u = self._user_index(ids)
        allowed = self._allowed(candidates, exclude)
        trained = np.zeros(len(u), dtype=bool)
        trained[u >= 0] = self.seen.lengths()[u[u >= 0]] > 0
        model_rows = np.flatnonzero(trained)
        out: list[Recommendation | None] = [None] * len(u)
        if len(model_rows):
            uu = u[model_rows]
            if candidates is None and exclude is None:  # the default list: cacheable
                scores, idx = self._top_cached(uu, n, exclude_seen, allowed)
            else:
                scores, idx = self._top_of(uu, n, exclude_seen, allowed)
            canon = self.users.id(uu)
            for j, r in enumerate(model_rows):
                out[r] = Recommendation(
                    jsonable_id(canon[j]),
                    self._scored(idx[j], scores[j]),
                    "model",
                    kind=self.output_kind,
                )
        for r in np.flatnonzero(~trained):
            if u[r] < 0:
                user, reason = jsonable_id(ids[r]), f"unknown user id {ids[r]!r}"
            else:
                user = jsonable_id(self.users.id([u[r]])[0])
                reason = f"user {user!r} has no training ratings"
            out[r] = Recommendation(
                user, self._popular(n, allowed), "popular", reason, kind="popularity"
            )
        return RecommendResult(tuple(x for x in out if x is not None), n, exclude_seen)

    # ------------------------------------------------------------------ fold-in
    def _ratings(self, ratings: Any, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(ratings, Mapping):
            pairs = list(ratings.items())
        elif isinstance(ratings, pd.DataFrame):
            if not {"item", "rating"} <= set(ratings.columns):
                raise DataError(
                    f"expected columns item and rating, received {list(ratings.columns)}",
                    column="ratings",
                )
            pairs = list(zip(ratings["item"].tolist(), ratings["rating"].tolist(), strict=True))
        else:
            pairs = [tuple(p) for p in ratings]
            bad = [p for p in pairs if len(p) != 2]
            if bad:
                raise DataError(
                    f"expected (item id, rating) pairs, received {bad[0]!r}", column="ratings"
                )
        items = self._item_index([p[0] for p in pairs])
        try:
            r = np.asarray([float(p[1]) for p in pairs], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"expected numeric ratings, received {exc}", column="rating") from None
        if len(np.unique(items)) != len(items):
            raise DataError("expected each item rated once, received duplicates", column="item")
        if not np.isfinite(r).all():
            raise DataError("expected finite ratings, received NaN or infinity", column="rating")
        if self.rating_scale is not None and len(r):
            lo, hi = self.rating_scale
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
        return items, r, w

    def fold_in(self, ratings: Any, *, weights: Any = None, reg: float | None = None) -> Tensor:
        """A user row for a new user from a few ratings, without retraining.

        The model family's adapter does the work; for the dot models it is a
        regularised least-squares solve against the fixed item factors and biases
        (Gauss-Newton through the sigmoid of a ``y_range``), for ``nn`` an L-BFGS descent
        on a fresh user embedding with every weight frozen. Both minimise the squared
        error in rating units plus ``reg`` times a Gaussian prior fitted to the trained
        users (see :class:`~recfit.recommender.adapters.DotAdapter`). Deterministic.

        Args:
            ratings: ``{item id: rating}``, a sequence of ``(item id, rating)`` pairs, or
                a DataFrame with ``item`` and ``rating`` columns (original scale).
            weights: optional weight per rating.
            reg: prior strength (default ``fold_in_reg``).

        Returns:
            The row, usable wherever a trained user's row is (``adapter.score_all``).

        Raises:
            UnknownIdError: an item id is not known.
            DataError: ratings outside the scale, repeated items, bad weights.
            ConfigError: the model family cannot fold in, or no ratings were given.
        """
        items, r, w = self._ratings(ratings, weights)
        if not len(items) or w.sum() <= 0:
            raise ConfigError("expected at least one rating with a positive weight, received none")
        lam = self.fold_in_reg if reg is None else float(reg)
        return self.adapter.fold_in(
            torch.from_numpy(items), torch.from_numpy(r), torch.from_numpy(w), reg=lam
        )

    def recommend_for_ratings(
        self,
        ratings: Any,
        n: int = 10,
        *,
        exclude_rated: bool = True,
        weights: Any = None,
        candidates: Any = None,
        exclude: Any = None,
    ) -> Recommendation:
        """The top-``n`` items for a new user described by a few ratings (fold-in).

        With no ratings, or for a family without fold-in, the answer takes the
        ``popular`` path and says why.

        Example:
            >>> from recfit.data import Interactions
            >>> from recfit.models import create_model
            >>> d = Interactions.from_arrays([1, 1, 2], [3, 4, 5], [4.0, 5.0, 2.0])
            >>> rec = Recommender(create_model("mf", d, n_factors=2), d.users, d.items, d)
            >>> r = rec.recommend_for_ratings({3: 5.0}, n=5)
            >>> r.path, 3 in r.ids, len(r.ids)
            ('fold_in', False, 2)
        """
        n = _check_n(n)
        allowed = self._allowed(candidates, exclude)
        items, _, _ = self._ratings(ratings, weights)
        drop = items if exclude_rated else None
        if not len(items):
            return Recommendation(
                None, self._popular(n, allowed, drop), "popular", "no ratings given", "popularity"
            )
        if not self.adapter.supports_fold_in:
            reason = f"model family {self.family!r} has no fold-in"
            return Recommendation(
                None, self._popular(n, allowed, drop), "popular", reason, "popularity"
            )
        row = self.fold_in(ratings, weights=weights).unsqueeze(0)
        excl = ItemSets.from_lists([items]) if exclude_rated else None
        scores, idx = self._topk(row, n, excl, allowed)
        return Recommendation(
            None, self._scored(idx[0], scores[0]), "fold_in", kind=self.output_kind
        )

    # ------------------------------------------------------------------ similarity
    def _neighbours(
        self, kind: Literal["item", "user"], ids: list[Any], n: int, vectors: Tensor,
        vocab: Vocabulary, allowed: np.ndarray,
    ) -> SimilarResult:  # fmt: skip
        q = vocab.index(ids, unknown="error").astype(np.int64)
        if not allowed.any():
            return SimilarResult(kind, tuple(Neighbours(jsonable_id(x), ()) for x in vocab.id(q)))
        index = self._index(kind, allowed, vectors, metric="cosine")
        k = max(1, min(n, int(allowed.sum())))
        scores, found = index(vectors[torch.from_numpy(q)], k, exclude=[[x] for x in q])
        res = []
        for j, x in enumerate(q):
            keep = found[j] >= 0
            fi, fs = found[j][keep], scores[j][keep]
            if kind == "item":
                neigh = self._scored(fi, fs)
                title = self._title_of(int(x))
            else:
                neigh = tuple(
                    ScoredId(jsonable_id(r), float(s))
                    for r, s in zip(vocab.id(fi), fs, strict=True)
                )
                title = None
            res.append(Neighbours(jsonable_id(vocab.id([x])[0]), neigh, title))
        return SimilarResult(kind, tuple(res))

    def similar_items(self, items: Any, n: int = 10) -> SimilarResult:
        """The ``n`` items nearest to each given item by cosine similarity of the item
        representations (the item itself excluded; items below ``min_item_count`` too).

        Raises:
            UnknownIdError: an item id is not known.
            ConfigError: the model family has no item representations.
        """
        n = _check_n(n)
        return self._neighbours(
            "item", _as_list(items), n, self.adapter.item_vectors(), self.items, self._trained_items
        )

    def similar_users(self, users: Any, n: int = 10) -> SimilarResult:
        """The ``n`` users nearest to each given user by cosine similarity of the user
        representations (the user itself excluded; only users with training ratings).

        Raises:
            UnknownIdError: a user id is not known.
            ConfigError: the model family has no user representations.
        """
        n = _check_n(n)
        return self._neighbours(
            "user", _as_list(users), n, self.adapter.user_vectors(), self.users,
            self.seen.lengths() > 0,
        )  # fmt: skip

    # ------------------------------------------------------------------ batch
    def iter_recommend_all(
        self, n: int = 20, *, chunk_size: int = 1024, exclude_seen: bool = True,
        with_titles: bool = False,
    ) -> Iterator[pd.DataFrame]:  # fmt: skip
        """Recommendations for every user in the vocabulary, one DataFrame per chunk of
        ``chunk_size`` users (columns user, rank, item, score, path[, title]).

        Memory is bounded by the chunk: about ``chunk_size * n_items`` scores at a time.
        Users without training ratings get the popular path.
        """
        n, chunk_size = _check_n(n), _check_n(chunk_size, "chunk_size")
        allowed = self._allowed(None, None)
        trained = self.seen.lengths() > 0
        pop = self._popular(n, allowed)
        pop_idx = self._item_index([s.id for s in pop]) if pop else np.zeros(0, np.int64)
        pop_s = np.asarray([s.score for s in pop], dtype=np.float32)
        for u0 in range(0, self.n_users, chunk_size):
            uu = np.arange(u0, min(self.n_users, u0 + chunk_size), dtype=np.int64)
            scores = np.full((len(uu), n), -np.inf, dtype=np.float32)
            idx = np.full((len(uu), n), -1, dtype=np.int64)
            t = trained[uu]
            if t.any():
                ut = uu[t]
                rows = self.adapter.user_rows(torch.from_numpy(ut))
                excl = self.seen.rows(ut) if exclude_seen else None
                scores[t], idx[t] = self._topk(rows, n, excl, allowed)
            if (~t).any():
                scores[~t, : len(pop_idx)] = pop_s
                idx[~t, : len(pop_idx)] = pop_idx
            valid = idx >= 0
            rank = np.broadcast_to(np.arange(1, n + 1, dtype=np.int32), idx.shape)[valid]
            user_rows = np.repeat(uu[:, None], n, axis=1)[valid]
            frame = pd.DataFrame({
                "user": self.users.id(user_rows),
                "rank": rank,
                "item": self.items.id(idx[valid]),
                "score": scores[valid],
                "path": np.where(trained[user_rows], "model", "popular"),
                "kind": np.where(trained[user_rows], self.output_kind, "popularity"),
            })  # fmt: skip
            if with_titles:
                frame["title"] = self.titles.titles_of(idx[valid])
            yield frame

    def recommend_all(
        self, n: int = 20, out: str | Path = "recommendations.parquet", *,
        chunk_size: int = 1024, exclude_seen: bool = True, with_titles: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Write every user's top-``n`` to a Parquet file, streaming chunk by chunk.

        The file is written to a temporary sibling and renamed when complete.

        Returns:
            ``{"path", "users", "rows", "seconds"}``.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        t0 = time.perf_counter()
        rows = 0
        writer: pq.ParquetWriter | None = None
        try:
            for frame in self.iter_recommend_all(
                n, chunk_size=chunk_size, exclude_seen=exclude_seen, with_titles=with_titles
            ):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += len(frame)
            if writer is not None:
                writer.close()
                writer = None
            tmp.replace(path)
        except BaseException:
            if writer is not None:
                writer.close()
            tmp.unlink(missing_ok=True)
            raise
        return {"path": str(path), "users": self.n_users, "rows": rows,
                "seconds": time.perf_counter() - t0}  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the bundle to the folder ``path`` atomically (see
        :mod:`recfit.recommender.bundle`); an existing bundle there is replaced only once
        the new one is complete.

        Raises:
            BundleError: ``path`` holds other files, a feature array cannot be stored, or
                a weight or setting is NaN or infinite (it would not load).
        """
        from safetensors.numpy import save_file

        for name, t in self.model.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise BundleError(
                    f"expected finite model weights to save, received NaN or inf in {name!r}"
                )

        def write(d: Path) -> None:
            save_model(self.model, d / "model.safetensors")
            (d / "users.json").write_text(self.users.to_json(), "utf-8")
            (d / "items.json").write_text(self.items.to_json(), "utf-8")
            info: dict[str, Any] = {}
            if self.item_info is not None:
                info = {
                    c: [_cell(v) for v in self.item_info[c].tolist()]
                    for c in self.item_info.columns
                }
                if "title" in info:  # titles are text (the loader accepts nothing else)
                    info["title"] = [None if t is None else str(t) for t in info["title"]]
            (d / "item_info.json").write_text(json.dumps({"columns": info}), "utf-8")
            meta = {
                "model": self.family,
                "n_users": self.n_users,
                "n_items": self.n_items,
                "rating_scale": None if self.rating_scale is None else list(self.rating_scale),
                "config": self.config,
                "feature_spaces": {k: v.to_dict() for k, v in self.feature_spaces.items()},
                "fold_in_reg": self.fold_in_reg,
                "min_item_count": self.min_item_count,
            }
            try:
                text = json.dumps(meta, indent=2, default=str, allow_nan=False)
            except ValueError as exc:
                raise BundleError(
                    f"expected finite numbers in the recommender's settings, received: {exc}"
                ) from None
            (d / "recommender.json").write_text(text, "utf-8")
            arrays: dict[str, np.ndarray] = {
                "seen_indptr": self.seen.indptr.astype(np.int64),
                "seen_indices": self.seen.indices.astype(np.int32),
                "popularity": self.popularity.astype(np.float64),
            }
            for side, table in self.features.items():
                for name, arr in table.items():
                    a = np.ascontiguousarray(arr)
                    if a.dtype.kind not in "biuf":
                        raise BundleError(
                            f"expected numeric feature arrays, received {a.dtype} for "
                            f"{side} feature {name!r}"
                        )
                    arrays[f"features/{side}/{name}"] = a
            save_file(arrays, str(d / "arrays.safetensors"))

        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "recfit_version": __version__,
            "model": self.family,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return write_bundle_dir(path, write, manifest)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a bundle folder, or the bundle of a run directory (``RUN/bundle``).

        The bundle is untrusted input (see :mod:`recfit.recommender.bundle`): only its
        own plain files are read, each checked against the manifest's size and sha256,
        every JSON file against its schema and every declared size against the
        tensors' headers before anything is allocated; the loaded model must answer a
        finite score for a probe user.

        Raises:
            BundleError: missing, damaged, altered, inconsistent or from another format
                version; the message names the file and the field.
        """
        folder = bundle_path(path)
        files = verify_manifest(folder, _REQUIRED)
        meta = validate_doc(
            MetaDoc, files.json("recommender.json"), files.where("recommender.json")
        )
        users = read_vocabulary(files, "users.json")
        items = read_vocabulary(files, "items.json")
        for side, vocab, n in (("n_users", users, meta.n_users), ("n_items", items, meta.n_items)):
            if len(vocab) != n:
                raise BundleError(
                    f"expected field {side!r} of {files.where('recommender.json')} to equal the "
                    f"vocabulary's size {len(vocab)}, received {n}"
                )
        if meta.model != files.manifest.model:
            raise BundleError(
                f"expected field 'model' of {files.where('recommender.json')} to equal the "
                f"manifest's {files.manifest.model!r}, received {meta.model!r}"
            )
        item_info = read_item_info(files, len(items))
        model = load_model_bytes(
            files.read("model.safetensors"),
            files.where("model.safetensors"),
            {"n_users": len(users), "n_items": len(items)},
        )
        family = type(model).registry_name
        if family != meta.model:
            raise BundleError(
                f"expected a {meta.model!r} model in {files.where('model.safetensors')!r}, "
                f"received {family!r}"
            )
        arrays = load_arrays_bytes(
            files.read("arrays.safetensors"),
            files.where("arrays.safetensors"),
            {
                "seen_indptr": ("I64", (len(users) + 1,)),
                "seen_indices": ("I32", (None,)),
                "popularity": ("F64", (len(items),)),
            },
            {"features/user/": (len(users),), "features/item/": (len(items),)},
        )
        features: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in arrays.items():
            if key.startswith("features/"):
                _, side, name = key.split("/", 2)
                features.setdefault(side, {})[name] = arr
        spaces = {}
        if meta.feature_spaces:
            for key, value in meta.feature_spaces.items():
                try:
                    spaces[key] = FeatureSpace.from_dict(value)
                except Exception as exc:  # untrusted content: any failure is the bundle's
                    raise BundleError(
                        f"expected a valid feature space at field 'feature_spaces.{key}' of "
                        f"{files.where('recommender.json')}, received: {type(exc).__name__}: "
                        f"{str(exc)[:300]}"
                    ) from None
        try:
            seen = ItemSets(arrays["seen_indptr"], arrays["seen_indices"])
            rec = cls(
                model,
                users,
                items,
                seen,
                item_info=item_info,
                rating_scale=None if meta.rating_scale is None else tuple(meta.rating_scale),
                config=meta.config,
                popularity=arrays["popularity"],
                feature_spaces=spaces,
                features=features,
                fold_in_reg=meta.fold_in_reg,
                min_item_count=meta.min_item_count,
            )
        except RecfitError as exc:
            raise BundleError(
                f"expected a consistent bundle in {str(folder)!r}, received: {exc}"
            ) from exc
        rec._probe(files.where("model.safetensors"))
        return rec

    def _probe(self, where: str) -> None:
        """Score every item for one trained user: the answers must be finite."""
        trained = np.flatnonzero(self.seen.lengths() > 0)
        user = torch.tensor([int(trained[0]) if len(trained) else 0])
        try:
            scores = self.adapter.score_all(self.adapter.user_rows(user))
        except RecfitError as exc:
            raise BundleError(f"expected a model that answers, in {where!r}: {exc}") from exc
        if not bool(torch.isfinite(scores).all()):
            raise BundleError(
                f"expected finite scores from the model in {where!r}, received NaN or inf "
                "(its config or weights are out of range)"
            )
