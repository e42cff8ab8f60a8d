"""Request and response models of the HTTP API (pydantic), with their bounds.

Every request model rejects unknown keys; list lengths, string lengths and ``n`` are
bounded so that one request cannot ask for unbounded work; numbers and flags are strict
(``"5"`` or ``true`` is no rating, ``true`` no ``n``). Ids are raw ids: JSON
integers or strings, taken as given (strict: ``true``, ``50.0`` or ``null`` is no id, and
a string is never parsed into a number here); a string must be valid Unicode (no lone
surrogate) and at most :data:`MAX_ID_CHARS` characters. Items may also be given by
title wherever the field says "id or title".

Example:
    >>> RecommendRequest.model_validate({"ratings": [{"item": 50, "rating": 5}]}).n
    10
    >>> from pydantic import ValidationError
    >>> try:
    ...     RecommendRequest.model_validate({"ratings": [], "n": 0})
    ... except ValidationError as exc:
    ...     print(exc.errors()[0]["loc"], exc.errors()[0]["type"])
    ('n',) greater_than_equal
    >>> try:
    ...     PredictPair.model_validate({"user": True, "item": 50})
    ... except ValidationError as exc:
    ...     print(exc.errors()[0]["loc"], exc.errors()[0]["msg"])
    ('user',) Value error, expected an id as an integer or a string, received bool True
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

__all__ = [
    "MAX_ID_CHARS",
    "MAX_N",
    "MAX_PAIRS",
    "MAX_QUERY_CHARS",
    "MAX_RATINGS",
    "ErrorResponse",
    "HealthResponse",
    "ItemMatchOut",
    "ItemsResponse",
    "PredictPair",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "RatingIn",
    "RecommendRequest",
    "RecommendResponse",
    "ScoredItem",
    "SimilarResponse",
]

#: Largest list length a request may ask for.
MAX_N = 100
#: Most ratings in one ``POST /recommend``.
MAX_RATINGS = 500
#: Most pairs in one ``POST /predict``.
MAX_PAIRS = 1000
#: Longest title query or id string.
MAX_QUERY_CHARS = 200

RawId = int | str


#: Longest id or title string in a request body.
MAX_ID_CHARS = 500


def _request_id(value: Any) -> int | str:
    """An id exactly as sent: a JSON integer or a valid, bounded string; nothing else."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(
            f"expected an id as an integer or a string, received {type(value).__name__} {shown}"
        )
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            raise ValueError(
                f"expected an id of at most {MAX_ID_CHARS} characters, received {len(value)}"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"expected valid Unicode text, received a lone surrogate at position {exc.start}"
            ) from None
    return value


#: An id (or title) in a request: validated by :func:`_request_id` (strict, exact).
RequestId = Annotated[
    int | str,
    PlainValidator(_request_id),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": MAX_ID_CHARS}]}),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    """Every 4xx (and the rare 5xx) answer: a short ``error`` and a ``detail``."""

    error: str = Field(description="What went wrong, in one sentence.")
    detail: Any = Field(
        default=None, description="Specifics: the offending fields, close matches..."
    )


class HealthResponse(BaseModel):
    """``GET /health``: the service is up, and what it serves."""

    status: Literal["ok"] = "ok"
    model: str
    n_users: int
    n_items: int
    trained_users: int
    rating_scale: list[float] | None
    has_titles: bool
    supports_fold_in: bool
    supports_similarity: bool
    report: bool = Field(description="Whether GET /report has a report to show.")
    recfit_version: str


class ScoredItem(BaseModel):
    """One item of a list: raw id, score and title (``null`` when unknown)."""

    id: RawId
    score: float | None = Field(
        description="Predicted rating or, for a retrieval model, score (model / fold-in; "
        "see kind), cosine similarity (similar) or number of training ratings (popular)."
    )
    title: str | None = None


class RecommendResponse(BaseModel):
    """A top-n list for a user (``GET``) or for a set of ratings (``POST``)."""

    user: RawId | None = Field(description="The user asked for; null for POST /recommend.")
    path: Literal["model", "fold_in", "popular"] = Field(
        description="How the list was made: the trained user's row, a fold-in of the "
        "given ratings, or popularity (see reason)."
    )
    reason: str | None = Field(
        default=None,
        description="Why the popular path was taken; on the fold_in path of a blend whose "
        "members cannot all fold in, which member answered.",
    )
    kind: Literal["rating", "score", "popularity"] = Field(
        default="rating",
        description="What the item scores are: predicted ratings, model scores (not "
        "ratings, never clipped) or training-rating counts.",
    )
    n: int
    exclude_seen: bool = Field(description="Whether seen (or rated) items were left out.")
    items: list[ScoredItem]


class RatingIn(_Request):
    """One rating of a new user: an item by id or title, and its rating."""

    item: RequestId = Field(description="Item id or title.")
    rating: float = Field(
        strict=True, description="A rating on the model's scale (e.g. 1-5); a JSON number."
    )


class RecommendRequest(_Request):
    """``POST /recommend``: recommendations for a new user from a few ratings (fold-in)."""

    ratings: list[RatingIn] = Field(max_length=MAX_RATINGS)
    n: int = Field(default=10, ge=1, le=MAX_N, strict=True)
    exclude_rated: bool = Field(default=True, strict=True, description="Leave the rated items out.")


class SimilarResponse(BaseModel):
    """``GET /similar``: the items nearest to one item by cosine similarity."""

    query: RawId = Field(description="The resolved item id.")
    title: str | None = None
    n: int
    source: str | None = Field(
        default=None,
        description="Which part of the model answered when not the whole model (a blend's "
        "member with item vectors); null: the model itself.",
    )
    neighbours: list[ScoredItem]


class PredictPair(_Request):
    """One (user, item) pair; the item by id or title."""

    user: RequestId
    item: RequestId = Field(description="Item id or title.")


class PredictRequest(_Request):
    """``POST /predict``: predicted ratings for pairs."""

    pairs: list[PredictPair] = Field(min_length=1, max_length=MAX_PAIRS)
    on_unknown: Literal["error", "null", "baseline"] = Field(
        default="error",
        description="An id outside the vocabulary: 404 ('error'), a null prediction "
        "('null'), or the baseline marked fallback ('baseline': the global mean plus the "
        "known side's bias, as Recommender.predictions).",
    )


class Prediction(BaseModel):
    """One prediction: a rating (clipped into the rating scale) or a retrieval model's
    score (never clipped); null for an unknown id."""

    user: RawId
    item: RawId
    title: str | None = None
    prediction: float | None
    kind: Literal["rating", "score"] = Field(
        default="rating", description="What the prediction is: a rating or a model score."
    )
    fallback: bool = Field(
        default=False,
        description="The prediction is the baseline (global mean plus the known side's "
        "bias): the user or item had no training ratings.",
    )
    reason: str | None = Field(default=None, description="Why it fell back (or is null).")


class PredictResponse(BaseModel):
    """The predictions, in the order of the pairs."""

    predictions: list[Prediction]


class ItemMatchOut(BaseModel):
    """One search hit."""

    id: RawId
    title: str | None
    score: float = Field(description="Match quality in [0, 1].")
    how: Literal["id", "exact", "casefold", "prefix", "substring", "fuzzy"]


class ItemsResponse(BaseModel):
    """``GET /items``: items matching a title query (or an id), best first."""

    query: str
    items: list[ItemMatchOut]
