"""Typed answers of the :class:`~recfit.recommender.Recommender`.

Every result is a small frozen dataclass holding raw ids (never internal indices) that
converts to a pandas DataFrame (``to_frame``) and to JSON-ready dicts (``to_dict``; plain
``int``/``float``/``str``/``None``, lists and dicts only), which is what the HTTP server
returns.

Example:
    >>> rec = Recommendation(user=196, items=(ScoredId(242, 4.5, "Kolya (1996)"),), path="model")
    >>> rec.to_dict()["items"][0]
    {'id': 242, 'score': 4.5, 'title': 'Kolya (1996)'}
    >>> RecommendResult((rec,), n=1, exclude_seen=True).to_frame().columns.tolist()
    ['user', 'rank', 'item', 'score', 'title', 'path', 'reason', 'kind']
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import pandas as pd

__all__ = [
    "ItemMatch",
    "Neighbours",
    "Path",
    "Predictions",
    "RecommendResult",
    "Recommendation",
    "ScoreKind",
    "ScoredId",
    "SimilarResult",
    "finite_or_none",
    "jsonable_id",
]

Path = Literal["model", "fold_in", "popular"]
"""How a recommendation was computed: the trained user's row (``model``), a row folded
in from given ratings (``fold_in``), or the most popular training items (``popular``)."""


ScoreKind = Literal["rating", "score", "popularity"]
"""What a list's scores are: predicted ratings, model scores (e.g. two-tower logits, not
ratings), or training-rating counts (the ``popular`` path)."""


T = TypeVar("T")


class _Answers(Generic[T]):
    """A sequence of answers (length, iteration, indexing) over the tuple ``_rows``."""

    @property
    def _rows(self) -> tuple[T, ...]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[T]:
        return iter(self._rows)

    def __getitem__(self, i: int) -> T:
        return self._rows[i]


def jsonable_id(raw: Any) -> int | str:
    """A raw id as a plain ``int`` or ``str`` (numpy scalars converted).

    Example:
        >>> jsonable_id(np.int64(3)), jsonable_id("a")
        (3, 'a')
    """
    if isinstance(raw, np.generic):
        raw = raw.item()
    if isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, int):
        return raw
    return str(raw)


def finite_or_none(x: float) -> float | None:
    """``x`` as a float, or None when it is NaN or infinite (JSON has no NaN).

    Example:
        >>> finite_or_none(2.5), finite_or_none(float("nan"))
        (2.5, None)
    """
    return None if not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class ScoredId:
    """One ranked entry: a raw id, its score and, for items, its title when known.

    Attributes:
        id: the raw user or item id.
        score: a predicted rating (recommendations), a cosine similarity (neighbours),
            or a training-rating count (the ``popular`` path).
        title: the item's title, when the bundle has one.
    """

    id: int | str
    score: float
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "score", "title"}`` with plain Python values."""
        return {
            "id": jsonable_id(self.id),
            "score": finite_or_none(self.score),
            "title": self.title,
        }


@dataclass(frozen=True)
class Recommendation:
    """The top-n items of one user (or of one set of ratings).

    Attributes:
        user: the raw user id asked for (``None`` for :meth:`Recommender.recommend_for_ratings`).
        items: the recommended items, best first (fewer than ``n`` when the candidates
            run out).
        path: ``"model"``, ``"fold_in"`` or ``"popular"`` (see :data:`Path`).
        reason: why the ``popular`` path was taken; on the ``fold_in`` path of a blend
            whose members cannot all fold in, which member answered (``None`` otherwise).
        kind: what the scores are (:data:`ScoreKind`): ``"rating"``, ``"score"`` or
            ``"popularity"``.
    """

    user: int | str | None
    items: tuple[ScoredId, ...]
    path: Path
    reason: str | None = None
    kind: ScoreKind = "rating"

    @property
    def ids(self) -> list[int | str]:
        """The recommended item ids, best first."""
        return [s.id for s in self.items]

    @property
    def scores(self) -> list[float]:
        """The scores, best first."""
        return [s.score for s in self.items]

    @property
    def titles(self) -> list[str | None]:
        """The titles (``None`` where unknown), best first."""
        return [s.title for s in self.items]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"user", "path", "reason", "kind", "items": [{"id", "score",
        "title"}]}``."""
        return {
            "user": None if self.user is None else jsonable_id(self.user),
            "path": self.path,
            "reason": self.reason,
            "kind": self.kind,
            "items": [s.to_dict() for s in self.items],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per recommended item: user, rank (1-based), item, score, title, path,
        reason, kind."""
        return RecommendResult((self,), n=len(self.items), exclude_seen=False).to_frame()


@dataclass(frozen=True)
class RecommendResult(_Answers[Recommendation]):
    """The answer of :meth:`Recommender.recommend`: one :class:`Recommendation` per user.

    Attributes:
        recommendations: in the order the users were given.
        n: the list length asked for.
        exclude_seen: whether each user's training items were excluded.
    """

    recommendations: tuple[Recommendation, ...]
    n: int
    exclude_seen: bool

    @property
    def _rows(self) -> tuple[Recommendation, ...]:
        return self.recommendations

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"n", "exclude_seen", "recommendations": [...]}``."""
        return {
            "n": self.n,
            "exclude_seen": self.exclude_seen,
            "recommendations": [r.to_dict() for r in self.recommendations],
        }

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (user, rank)."""
        rows = [
            (rec.user, k + 1, s.id, s.score, s.title, rec.path, rec.reason, rec.kind)
            for rec in self.recommendations
            for k, s in enumerate(rec.items)
        ]
        return pd.DataFrame(
            rows, columns=["user", "rank", "item", "score", "title", "path", "reason", "kind"]
        )


@dataclass(frozen=True, eq=False)
class Predictions:
    """The answer of :meth:`Recommender.predictions`: one prediction per (user, item) pair.

    Attributes:
        users: the raw user ids, one per pair.
        items: the raw item ids, one per pair.
        values: ``float32`` predictions (NaN where none could be made).
        kind: ``"rating"`` (original units, clipped into the rating scale when asked) or
            ``"score"`` (a ranking score, never clipped).
        fallback: ``bool`` per pair: the value is the baseline (the global mean plus the
            known side's bias) because the user or item had no training ratings, or is
            not in the vocabulary (Surprise's ``was_impossible``).
        reasons: why each fallback (or NaN) happened; ``None`` for model predictions.

    Example:
        >>> p = Predictions((1,), (2,), np.array([3.5], np.float32), "rating",
        ...                 np.array([True]), ("item 2 has no training ratings",))
        >>> p.to_frame().columns.tolist()
        ['user', 'item', 'prediction', 'kind', 'fallback', 'reason']
        >>> p.to_dict()["predictions"][0]["fallback"]
        True
    """

    users: tuple[int | str, ...]
    items: tuple[int | str, ...]
    values: np.ndarray
    kind: Literal["rating", "score"]
    fallback: np.ndarray
    reasons: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_fallback(self) -> int:
        """How many pairs were answered by the baseline."""
        return int(self.fallback.sum())

    def to_frame(self) -> pd.DataFrame:
        """One row per pair: user, item, prediction, kind, fallback, reason."""
        return pd.DataFrame({
            "user": list(self.users),
            "item": list(self.items),
            "prediction": self.values.astype(np.float32),
            "kind": [self.kind] * len(self.values),
            "fallback": self.fallback.astype(bool),
            "reason": list(self.reasons),
        })  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"kind", "n_fallback", "predictions": [{"user", "item",
        "prediction", "fallback", "reason"}]}`` (NaN as ``None``)."""
        return {
            "kind": self.kind,
            "n_fallback": self.n_fallback,
            "predictions": [
                {
                    "user": jsonable_id(u),
                    "item": jsonable_id(i),
                    "prediction": finite_or_none(float(v)),
                    "fallback": bool(f),
                    "reason": r,
                }
                for u, i, v, f, r in zip(
                    self.users, self.items, self.values, self.fallback, self.reasons, strict=True
                )
            ],
        }


@dataclass(frozen=True)
class Neighbours:
    """The ``n`` nearest neighbours of one item or user by cosine similarity (an
    item-item model's own similarity for its items).

    Attributes:
        query: the raw id asked about.
        title: its title (items only, when known).
        neighbours: best first; the query itself is never among them.
    """

    query: int | str
    neighbours: tuple[ScoredId, ...]
    title: str | None = None

    @property
    def ids(self) -> list[int | str]:
        """The neighbours' ids, best first."""
        return [s.id for s in self.neighbours]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"query", "title", "neighbours": [{"id", "score", "title"}]}``."""
        return {
            "query": jsonable_id(self.query),
            "title": self.title,
            "neighbours": [s.to_dict() for s in self.neighbours],
        }


@dataclass(frozen=True)
class SimilarResult(_Answers[Neighbours]):
    """The answer of ``similar_items`` / ``similar_users``: one :class:`Neighbours` per query.

    Attributes:
        kind: ``"item"`` or ``"user"``.
        results: in the order the queries were given.
        source: which part of the model answered, when not the whole model (a blend's
            member, :class:`~recfit.recommender.blend_adapter.BlendAdapter`); ``None``:
            the model itself.
    """

    kind: Literal["item", "user"]
    results: tuple[Neighbours, ...]
    source: str | None = None

    @property
    def _rows(self) -> tuple[Neighbours, ...]:
        return self.results

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"kind", "source", "results": [...]}``."""
        return {
            "kind": self.kind,
            "source": self.source,
            "results": [r.to_dict() for r in self.results],
        }

    def to_frame(self) -> pd.DataFrame:
        """Long format: query, rank (1-based), neighbour, score, title."""
        rows = [
            (r.query, k + 1, s.id, s.score, s.title)
            for r in self.results
            for k, s in enumerate(r.neighbours)
        ]
        return pd.DataFrame(rows, columns=["query", "rank", "neighbour", "score", "title"])


@dataclass(frozen=True)
class ItemMatch:
    """One answer of :meth:`Recommender.find_items`.

    Attributes:
        id: the raw item id.
        title: its title (``None`` when the bundle has no titles).
        score: how well it matches, in ``[0, 1]`` (1: the id or the exact title).
        how: ``"id"``, ``"exact"``, ``"casefold"`` (case-insensitive title),
            ``"prefix"``, ``"substring"`` or ``"fuzzy"``.
    """

    id: int | str
    title: str | None
    score: float
    how: Literal["id", "exact", "casefold", "prefix", "substring", "fuzzy"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"id", "title", "score", "how"}``."""
        return {
            "id": jsonable_id(self.id),
            "title": self.title,
            "score": float(self.score),
            "how": self.how,
        }
