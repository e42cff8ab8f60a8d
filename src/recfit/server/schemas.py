"""Request and response models of the HTTP API (pydantic), with their bounds.

Every request model rejects unknown keys; list lengths and ``n`` are bounded so that
one request cannot ask for unbounded work. Ids are raw ids (integers or strings);
items may also be given by title wherever the field says "id or title".

Example:
    >>> RecommendRequest.model_validate({"ratings": [{"item": 50, "rating": 5}]}).n
    10
    >>> from pydantic import ValidationError
    >>> try:
    ...     RecommendRequest.model_validate({"ratings": [], "n": 0})
    ... except ValidationError as exc:
    ...     print(exc.errors()[0]["loc"], exc.errors()[0]["type"])
    ('n',) greater_than_equal
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
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
        description="Predicted rating (model / fold-in), cosine similarity (similar) "
        "or number of training ratings (popular)."
    )
    title: str | None = None


class RecommendResponse(BaseModel):
    """A top-n list for a user (``GET``) or for a set of ratings (``POST``)."""

    user: RawId | None = Field(description="The user asked for; null for POST /recommend.")
    path: Literal["model", "fold_in", "popular"] = Field(
        description="How the list was made: the trained user's row, a fold-in of the "
        "given ratings, or popularity (see reason)."
    )
    reason: str | None = Field(default=None, description="Why the popular path was taken.")
    n: int
    exclude_seen: bool = Field(description="Whether seen (or rated) items were left out.")
    items: list[ScoredItem]


class RatingIn(_Request):
    """One rating of a new user: an item by id or title, and its rating."""

    item: RawId = Field(description="Item id or title.")
    rating: float = Field(description="A rating on the model's scale (e.g. 1-5).")


class RecommendRequest(_Request):
    """``POST /recommend``: recommendations for a new user from a few ratings (fold-in)."""

    ratings: list[RatingIn] = Field(max_length=MAX_RATINGS)
    n: int = Field(default=10, ge=1, le=MAX_N)
    exclude_rated: bool = Field(default=True, description="Leave the rated items out.")


class SimilarResponse(BaseModel):
    """``GET /similar``: the items nearest to one item by cosine similarity."""

    query: RawId = Field(description="The resolved item id.")
    title: str | None = None
    n: int
    neighbours: list[ScoredItem]


class PredictPair(_Request):
    """One (user, item) pair; the item by id or title."""

    user: RawId
    item: RawId = Field(description="Item id or title.")


class PredictRequest(_Request):
    """``POST /predict``: predicted ratings for pairs."""

    pairs: list[PredictPair] = Field(min_length=1, max_length=MAX_PAIRS)
    on_unknown: Literal["error", "null"] = Field(
        default="error",
        description="An unknown user or item: 404 ('error') or a null prediction ('null').",
    )


class Prediction(BaseModel):
    """One predicted rating (clipped into the rating scale; null for an unknown id)."""

    user: RawId
    item: RawId
    title: str | None = None
    prediction: float | None


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
