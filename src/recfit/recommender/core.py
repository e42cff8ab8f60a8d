"""The :class:`Recommender`: a trained model plus everything needed to answer with raw ids.

A Recommender holds the model (through its family's
:class:`~recfit.recommender.adapters.ModelAdapter`), the user and item vocabularies,
each user's training items (*seen* items, excluded from recommendations by default),
item popularity, titles, the rating scale and the run's config. It answers
in raw ids, one or many at once, and it saves to / loads from a bundle folder (see
:mod:`recfit.recommender.bundle`).

The work lives beside it, one concern per module: :mod:`~recfit.recommender.queries`
(known users' lists), :mod:`~recfit.recommender.ranking` (top-n lists, their cache and
indexes), :mod:`~recfit.recommender.predictions` (pairs),
:mod:`~recfit.recommender.newusers` (fold-in), :mod:`~recfit.recommender.similarity`,
:mod:`~recfit.recommender.export` (every user at once), :mod:`~recfit.recommender.inputs`
(checked arguments), :mod:`~recfit.recommender.items` (titles, years, genres),
:mod:`~recfit.recommender.bundle_write` and :mod:`~recfit.recommender.bundle_read`.

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

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from recfit._version import __version__
from recfit.data.interactions import Interactions
from recfit.data.vocab import UsersAndItems, Vocabulary
from recfit.errors import BundleError, ConfigError, RecfitError
from recfit.index import ItemSets
from recfit.models.base import OutputKind, RatingModel, output_kind
from recfit.recommender.adapters import AdapterContext, ModelAdapter, adapter_for
from recfit.recommender.bundle import BUNDLE_FORMAT_VERSION
from recfit.recommender.bundle_read import check_answers, read_bundle
from recfit.recommender.bundle_write import write_bundle
from recfit.recommender.export import iter_all, write_all
from recfit.recommender.inputs import (
    as_list,
    check_model_sizes,
    check_n,
    popularity_of,
    seen_sets,
    serving_copy,
)
from recfit.recommender.items import cell, info_frame
from recfit.recommender.newusers import fold_in_row, new_user_list
from recfit.recommender.predictions import OnUnknownPair, pair_predictions
from recfit.recommender.queries import OnUnknown, user_lists
from recfit.recommender.ranking import Ranker
from recfit.recommender.results import (
    ItemMatch,
    Predictions,
    Recommendation,
    RecommendResult,
    ScoredId,
    SimilarResult,
    jsonable_id,
)
from recfit.recommender.similarity import neighbours
from recfit.recommender.titles import TitleIndex

__all__ = ["OnUnknown", "Recommender"]


class Recommender(UsersAndItems):
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
        self.users, self.items = users, items
        n_users, n_items = len(users), len(items)
        check_model_sizes(model, n_users, n_items)
        self.seen = seen_sets(seen, n_users, n_items)
        self.popularity = popularity_of(popularity, self.seen, n_items)
        self.item_info = info_frame(item_info, n_items)
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
        self.model = m = serving_copy(model, seen)
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
        untrained = np.zeros(n_items, dtype=bool)
        if output_kind(m) == "rating" and m.has_record:  # never trained: scored by the baseline
            untrained = np.asarray(m.train_item_count.cpu().numpy() <= 0)
        self.cache_n = 100
        """Length of the cached top lists (a longer ``n`` computes and caches longer ones)."""
        self.cache_users = 200_000
        """Most users whose default top list stays cached (least recently used go first)."""
        self.ranker = Ranker(
            self.adapter, self.seen, self.popularity, untrained,
            cache_sizes=lambda: (self.cache_n, self.cache_users),
        )  # fmt: skip
        """The top-n machinery (:class:`~recfit.recommender.ranking.Ranker`)."""
        self._titles: TitleIndex | None = None

    # ------------------------------------------------------------------ basics
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
                titles = [cell(t) for t in self.item_info["title"].tolist()]
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

    def scored(self, idx: np.ndarray, scores: np.ndarray) -> tuple[ScoredId, ...]:
        """Item indices and their scores as answers (raw ids, titles); ``-1`` is skipped."""
        keep = idx >= 0
        idx, scores = idx[keep], scores[keep]
        if not len(idx):
            return ()
        ids = self.items.id(idx)
        return tuple(
            ScoredId(jsonable_id(r), float(s), self.titles.titles[int(i)])
            for r, s, i in zip(ids, scores, idx, strict=True)
        )

    def title(self, item: Any) -> str | None:
        """The title of a raw item id (``None`` when the bundle has none).

        Raises:
            UnknownIdError: the id is not known.
        """
        return self.titles.titles[int(self._item_index([item])[0])]

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
        return self.titles.find(query, check_n(n))

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
        on_unknown: OnUnknownPair = "error",
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
        on_unknown: OnUnknownPair = "error",
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
        return pair_predictions(self, users, items, on_unknown, clip)

    # ------------------------------------------------------------------ top-n
    def allowed_items(self, candidates: Any, exclude: Any) -> np.ndarray:
        """Which item indices a list may hold: ``candidates`` (raw ids; unknown ones
        raise) or every item with ``popularity >= min_item_count``, less ``exclude``
        (raw ids; unknown ones are ignored)."""
        if candidates is None:
            allowed = self._trained_items.copy()
        else:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[self._item_index(as_list(candidates))] = True
        if exclude is not None:
            ex = self.items.index(as_list(exclude), unknown="sentinel").astype(np.int64)
            allowed[ex[ex >= 0]] = False
        return allowed

    def _popular(
        self, n: int, allowed: np.ndarray, drop: np.ndarray | None = None
    ) -> tuple[ScoredId, ...]:
        order = self.ranker.popular(n, allowed, drop)
        return self.scored(order, self.popularity[order])

    def warm(self, *, exclude_seen: bool = True, chunk_size: int = 2048) -> int:
        """Fill the top-list cache for every user with training ratings (up to
        ``cache_users`` of them); returns how many lists were computed.

        Example:
            >>> # Recommender.load("runs/r1").warm()  # before serving
        """
        allowed = self.allowed_items(None, None)
        return self.ranker.warm(allowed, exclude_seen=exclude_seen, chunk_size=chunk_size)

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
            Scores are what the model outputs (``kind``: predicted ratings, ranked on the
            model's own output and then clipped into ``rating_scale``, so the order is the
            unclipped one; or a retrieval model's scores); on the popular
            path they are the items' popularity (``kind == "popularity"``).

        Raises:
            UnknownIdError: an unknown user under ``on_unknown="error"``, or an unknown
                candidate.
        """
        return user_lists(
            self, users, n, exclude_seen=exclude_seen, candidates=candidates, exclude=exclude,
            on_unknown=on_unknown,
        )  # fmt: skip

    # ------------------------------------------------------------------ fold-in
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
        return fold_in_row(self, ratings, weights, reg)

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
        return new_user_list(
            self, ratings, n, exclude_rated=exclude_rated, weights=weights,
            candidates=candidates, exclude=exclude,
        )  # fmt: skip

    # ------------------------------------------------------------------ similarity
    def similar_items(self, items: Any, n: int = 10) -> SimilarResult:
        """The ``n`` items nearest to each given item by cosine similarity of the item
        representations (the item itself excluded; items below ``min_item_count`` too).

        Raises:
            UnknownIdError: an item id is not known.
            ConfigError: the model family has no item representations.
        """
        return neighbours(self, "item", items, n)

    def similar_users(self, users: Any, n: int = 10) -> SimilarResult:
        """The ``n`` users nearest to each given user by cosine similarity of the user
        representations (the user itself excluded; only users with training ratings).

        Raises:
            UnknownIdError: a user id is not known.
            ConfigError: the model family has no user representations.
        """
        return neighbours(self, "user", users, n)

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
        return iter_all(
            self, n, chunk_size=chunk_size, exclude_seen=exclude_seen, with_titles=with_titles
        )

    def recommend_all(
        self, n: int = 20, out: str | Path = "recommendations.parquet", *,
        chunk_size: int = 1024, exclude_seen: bool = True, with_titles: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Write every user's top-``n`` to a Parquet file, streaming chunk by chunk.

        The file is written to a temporary sibling and renamed when complete.

        Returns:
            ``{"path", "users", "rows", "seconds"}``.
        """
        check_n(n)  # before the file is touched
        check_n(chunk_size, "chunk_size")
        frames = self.iter_recommend_all(
            n, chunk_size=chunk_size, exclude_seen=exclude_seen, with_titles=with_titles
        )
        return write_all(self, out, frames)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the bundle to the folder ``path`` atomically (see
        :mod:`recfit.recommender.bundle`); an existing bundle there is replaced only once
        the new one is complete.

        Raises:
            BundleError: ``path`` holds other files, a feature array cannot be stored, or
                a weight or setting is NaN or infinite (it would not load).
        """
        return write_bundle(self, path)

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
        c = read_bundle(path)
        try:
            rec = cls(c.model, c.users, c.items, c.seen, **c.options)
        except RecfitError as exc:
            raise BundleError(
                f"expected a consistent bundle in {str(c.folder)!r}, received: {exc}"
            ) from exc
        check_answers(rec.adapter, rec.seen, c.model_file)
        return rec
