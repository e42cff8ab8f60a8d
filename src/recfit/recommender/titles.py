"""Items by id or by title: exact, then case-insensitive, then ranked close matches.

Titles are compared after normalisation: case folded, punctuation dropped, and
MovieLens' trailing articles moved to the front (``"Godfather, The (1972)"`` matches
``"the godfather"``). A query that is a known item id resolves to that item first; ids
match exactly (see :meth:`~recfit.data.Vocabulary.index`: ``"050"`` or ``50.0`` is not
item 50). Exact and normalised titles are dictionary lookups; close matches are ranked by
difflib only over the few items that share the most character trigrams with the query
(an index built once), so one lookup costs about the same on ml-100k and ml-25m.

Example:
    >>> from recfit.data import Vocabulary
    >>> cat = TitleIndex(Vocabulary([1, 2, 3]), ["Star Wars (1977)", "Godfather, The (1972)",
    ...                                           "Star Trek: Generations (1994)"])
    >>> cat.resolve("the godfather")  # the item's index (its id is 2)
    1
    >>> [m.id for m in cat.find("star", n=2)]
    [1, 3]
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from recfit.data.vocab import Vocabulary
from recfit.errors import DataError, ItemNotFoundError
from recfit.recommender.results import ItemMatch, jsonable_id

__all__ = ["ItemNotFoundError", "TitleIndex", "normalise_title"]

_ARTICLE = re.compile(
    r"^(?P<body>.*), (?P<art>the|a|an|les|la|le|il|el|der|die|das)(?P<rest>( \(.*\))?)$"
)
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_PUNCT = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")
#: Most items that difflib compares with one query (the best by shared trigrams).
FUZZY_CANDIDATES = 200
#: Longest normalised query compared by difflib (characters); the rest is ignored there.
MAX_TITLE_QUERY = 500


def _trigrams(text: str) -> set[str]:
    padded = f"  {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def normalise_title(title: str) -> str:
    """The comparison form of a title.

    Example:
        >>> normalise_title("Godfather, The (1972)")
        'the godfather 1972'
    """
    t = _SPACE.sub(" ", title.strip()).casefold()
    m = _ARTICLE.match(t)
    if m:
        t = f"{m['art']} {m['body']}{m['rest']}"
    return _SPACE.sub(" ", _PUNCT.sub(" ", t)).strip()


def _describe(matches: Sequence[ItemMatch]) -> str:
    return "; ".join(f"{m.title!r} (id {jsonable_id(m.id)!r})" for m in matches)


class TitleIndex:
    """Look items up by id or title.

    Args:
        items: the item vocabulary.
        titles: one title per item index (``None`` where unknown), or ``None`` for no
            titles at all (then only ids resolve).
    """

    def __init__(self, items: Vocabulary, titles: Sequence[str | None] | None) -> None:
        self.items = items
        n = len(items)
        self.titles: list[str | None] = [None] * n if titles is None else list(titles)
        if len(self.titles) != n:
            raise DataError(
                f"expected one title per item ({n}), received {len(self.titles)}", column="title"
            )
        for i, t in enumerate(self.titles):
            if t is not None and not isinstance(t, str):
                raise DataError(
                    f"expected titles as text or None, received {type(t).__name__} {t!r:.60} "
                    f"at item index {i}",
                    column="title",
                )
        self._exact: dict[str, list[int]] = {}
        self._fold: dict[str, list[int]] = {}
        self._norm: list[str] = []
        self._bare: list[str] = []
        self._normal: dict[str, list[int]] = {}  # normalised title, with or without year
        grams: dict[str, list[int]] = {}
        for i, t in enumerate(self.titles):
            if t is None:
                self._norm.append("")
                self._bare.append("")
                continue
            self._exact.setdefault(t, []).append(i)
            self._fold.setdefault(t.strip().casefold(), []).append(i)
            norm = normalise_title(t)
            bare = normalise_title(_YEAR.sub("", t))
            self._norm.append(norm)
            self._bare.append(bare)
            for key in {norm, bare} - {""}:
                self._normal.setdefault(key, []).append(i)
            for g in _trigrams(bare):
                grams.setdefault(g, []).append(i)
        self._grams = {g: np.asarray(v, dtype=np.int64) for g, v in grams.items()}

    def _fuzzy_candidates(self, q: str) -> list[int]:
        """Up to :data:`FUZZY_CANDIDATES` item indices sharing the most trigrams with ``q``
        (in item order)."""
        posts = [self._grams[g] for g in _trigrams(q) if g in self._grams]
        if not posts:
            return []
        counts = np.bincount(np.concatenate(posts), minlength=len(self.titles))
        hit = np.flatnonzero(counts)
        if len(hit) > FUZZY_CANDIDATES:
            order = np.argsort(-counts[hit], kind="stable")[:FUZZY_CANDIDATES]
            hit = np.sort(hit[order])
        return [int(i) for i in hit]

    def _match(self, i: int, score: float, how: Any) -> ItemMatch:
        return ItemMatch(jsonable_id(self.items.id([i])[0]), self.titles[i], score, how)

    def _known_id(self, query: Any) -> int | None:
        if isinstance(query, bool | np.bool_):
            return None
        idx = self.items.index([query], unknown="sentinel")
        return int(idx[0]) if idx[0] >= 0 else None

    @staticmethod
    def _text(query: Any) -> str | None:
        """The title text of a query: strings and integers only (never a bool or float)."""
        if isinstance(query, str):
            return query
        if isinstance(query, int | np.integer) and not isinstance(query, bool | np.bool_):
            return str(int(query))
        return None

    def find(self, query: Any, n: int = 10) -> list[ItemMatch]:
        """Up to ``n`` items matching ``query`` (an id or a title), best first.

        The id (if ``query`` is one) scores 1.0, an exact title 1.0, a case-insensitive
        title 0.99, a title without its year or with the article moved 0.97, a title
        starting with the query 0.9, containing it 0.8, and anything else the difflib
        similarity of the normalised titles times 0.75, blended with the share of query
        words found (only matches scoring at least 0.3 are kept). Ties keep item order.
        The difflib step runs only over the :data:`FUZZY_CANDIDATES` items that share the
        most character trigrams with the query.
        """
        out: dict[int, ItemMatch] = {}

        def put(i: int, score: float, how: Any) -> None:
            if i not in out or out[i].score < score:
                out[i] = self._match(i, score, how)

        known = self._known_id(query)
        if known is not None:
            put(known, 1.0, "id")
        text = self._text(query)
        if text is None:
            return [m for _, m in sorted(out.items())][: max(0, n)]
        for i in self._exact.get(text, []):
            put(i, 1.0, "exact")
        for i in self._fold.get(text.strip().casefold(), []):
            put(i, 0.99, "casefold")
        q = normalise_title(text)
        if q:
            for i in self._normal.get(q, []):
                put(i, 0.97, "casefold")
            spaced = f" {q}"
            for i, (norm, bare) in enumerate(zip(self._norm, self._bare, strict=True)):
                if not norm or i in out:
                    continue
                if norm.startswith(q) or bare.startswith(q):
                    put(i, 0.9, "prefix")
                elif spaced in f" {norm}":
                    put(i, 0.8, "substring")
            q = q[:MAX_TITLE_QUERY]
            q_words = set(q.split())
            matcher = difflib.SequenceMatcher(autojunk=False)
            matcher.set_seq2(q)
            for i in self._fuzzy_candidates(q):
                if i in out:
                    continue
                bare = self._bare[i]
                share = len(q_words & set(self._norm[i].split())) / len(q_words)
                matcher.set_seq1(bare)
                if share == 0 and matcher.real_quick_ratio() < 0.5:
                    continue
                ratio = matcher.ratio() if matcher.quick_ratio() >= 0.4 else 0.0
                score = 0.75 * max(ratio, 0.5 * ratio + 0.5 * share)
                if score >= 0.3:
                    put(i, score, "fuzzy")
        ranked = sorted(out.items(), key=lambda kv: (-kv[1].score, kv[0]))
        return [m for _, m in ranked[: max(0, n)]]

    def resolve(self, query: Any, *, hint: bool = True, ids: bool = True) -> int:
        """The item index of ``query``: a known id, else a unique exact title, else a unique
        case-insensitive (or normalised) title. Every step is a dictionary lookup; only
        the error's hint (``hint=True``) ranks close matches with :meth:`find`.
        ``ids=False`` skips the id lookup (for a caller that has looked the ids up already).

        Raises:
            ItemNotFoundError: nothing matches, or several items do; the message and
                ``matches`` list the closest items (none when ``hint`` is off).
        """
        known = self._known_id(query) if ids else None
        if known is not None:
            return known
        text = self._text(query)
        if text is None:
            raise ItemNotFoundError(
                f"expected a known item id (an integer or a string) or title, received "
                f"{type(query).__name__} {query!r}",
                query=repr(query),
                matches=[],
                ambiguous=False,
            )
        for how, table, key in (
            ("exact", self._exact, text),
            ("casefold", self._fold, text.strip().casefold()),
        ):
            hits = table.get(key, [])
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                matches = [self._match(i, 1.0, how) for i in hits]
                raise ItemNotFoundError(
                    f"expected one item titled {text!r}, received {len(hits)}: "
                    f"{_describe(matches)} (give the id instead)",
                    query=text,
                    matches=matches,
                    ambiguous=True,
                )
        q = normalise_title(text)
        hits = self._normal.get(q, []) if q else []
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            matches = [self._match(i, 0.97, "casefold") for i in hits]
            raise ItemNotFoundError(
                f"expected one item matching {text!r}, received {len(hits)}: "
                f"{_describe(matches)} (give the id or the full title)",
                query=text,
                matches=matches,
                ambiguous=True,
            )
        close = self.find(text, n=5) if hint else []
        shown = f"; closest: {_describe(close)}" if close else ""
        raise ItemNotFoundError(
            f"expected a known item id or title, received {text!r}{shown}",
            query=text,
            matches=close,
            ambiguous=False,
        )

    def titles_of(self, idx: np.ndarray) -> list[str | None]:
        """Titles of item indices (``None`` where unknown)."""
        return [self.titles[int(i)] for i in idx]
