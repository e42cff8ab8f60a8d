"""The heavy endpoints' work: body parsing, item resolution and the answers of
``POST /recommend``, ``GET /similar``, ``POST /predict`` and ``GET /items``, each
checked against its request's deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from recfit.errors import ConfigError, DataError, RecfitError, UnknownIdError
from recfit.recommender import ItemNotFoundError, Recommender
from recfit.recommender.results import Recommendation, finite_or_none, jsonable_id
from recfit.server.responses import _model_response
from recfit.server.schemas import (
    ItemMatchOut,
    ItemsResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
    SimilarResponse,
)


class _OverBudget(Exception):
    """A heavy request passed its time budget."""


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise _OverBudget


def _recommend_out(rec: Recommendation, n: int, exclude_seen: bool) -> RecommendResponse:
    return RecommendResponse(
        user=rec.user,
        path=rec.path,
        reason=rec.reason,
        kind=rec.kind,
        n=n,
        exclude_seen=exclude_seen,
        items=[
            ScoredItem(id=s.id, score=finite_or_none(s.score), title=s.title) for s in rec.items
        ],
    )


def _resolve_items(
    rec: Recommender, queries: list[Any], deadline: float, *, lenient: bool
) -> list[int | str | None]:
    """Raw item ids of items given by id or title: exact ids in one vectorised lookup,
    then a dictionary lookup per title; ``None`` for an unmatched one when ``lenient``
    (no close-match search), else :class:`ItemNotFoundError` for the first."""
    idx = rec.items.index(queries, unknown="sentinel")
    out: list[int | str | None] = [None] * len(queries)
    known = [i for i in range(len(queries)) if idx[i] >= 0]
    if known:
        ids = rec.items.id(idx[known]).tolist()
        for i, raw in zip(known, ids, strict=True):
            out[i] = raw
    for i in range(len(queries)):
        if idx[i] >= 0:
            continue
        _check_deadline(deadline)
        try:
            pos = rec.titles.resolve(queries[i], hint=not lenient, ids=False)
            out[i] = jsonable_id(rec.items.id([pos])[0])
        except ItemNotFoundError:
            if not lenient:
                raise
    return out


class _BadRequest(Exception):
    """A request body that is not valid JSON for its model (answered 422)."""

    def __init__(self, error: str, detail: list[dict[str, Any]]) -> None:
        super().__init__(error)
        self.error = error
        self.detail = detail


_Model = TypeVar("_Model", bound=BaseModel)


def _parse_body(raw: bytes, content_type: str | None, model: type[_Model]) -> _Model:
    """Parse and validate a JSON request body where the work runs (not on the event loop),
    with the messages FastAPI's own body handling gives."""
    if content_type:
        kind = content_type.split(";")[0].strip().lower()
        if not (
            kind == "application/json"
            or (kind.startswith("application/") and kind.endswith("+json"))
        ):
            raise _BadRequest(
                f"invalid request: body: expected Content-Type application/json, received "
                f"{content_type[:60]!r}",
                [{"loc": ["body"], "msg": "not JSON", "type": "content_type"}],
            )
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _BadRequest(
            f"invalid request: body.{exc.pos}: expected valid JSON (JSON decode error)",
            [{"loc": ["body", str(exc.pos)], "msg": exc.msg, "type": "json_invalid"}],
        ) from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, bytes not UTF-8
        why = "nested too deeply" if isinstance(exc, RecursionError) else "undecodable"
        raise _BadRequest(
            f"invalid request: body: expected valid JSON, received a body {why}",
            [{"loc": ["body"], "msg": why, "type": "json_invalid"}],
        ) from None
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        detail = [
            {
                "loc": ["body", *(str(x) for x in e.get("loc", ()))],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        first = detail[0] if detail else {"loc": ["body"], "msg": "invalid request"}
        raise _BadRequest(
            f"invalid request: {'.'.join(first['loc'])}: {first['msg']}", detail
        ) from None


def _fold_in_work(
    rec: Recommender, deadline: float, raw: bytes, content_type: str | None
) -> Response:
    body = _parse_body(raw, content_type, RecommendRequest)
    items = _resolve_items(rec, [r.item for r in body.ratings], deadline, lenient=False)
    pairs = [(i, r.rating) for i, r in zip(items, body.ratings, strict=True)]
    _check_deadline(deadline)
    res = rec.recommend_for_ratings(pairs, n=body.n, exclude_rated=body.exclude_rated)
    return _model_response(_recommend_out(res, body.n, body.exclude_rated))


def _similar_work(rec: Recommender, deadline: float, item: str, n: int) -> Response:
    item_id = rec.resolve_item(item)
    _check_deadline(deadline)
    found = rec.similar_items([item_id], n=n)
    res = found[0]
    neighbours = [
        ScoredItem(id=x.id, score=finite_or_none(x.score), title=x.title) for x in res.neighbours
    ]
    return _model_response(
        SimilarResponse(
            query=res.query, title=res.title, n=n, source=found.source, neighbours=neighbours
        )
    )


def _predict_work(
    rec: Recommender, deadline: float, raw: bytes, content_type: str | None
) -> Response:
    body = _parse_body(raw, content_type, PredictRequest)
    lenient = body.on_unknown != "error"
    baseline = body.on_unknown == "baseline"
    items = _resolve_items(rec, [p.item for p in body.pairs], deadline, lenient=lenient)
    # under "baseline" an item that matches nothing is an id outside the vocabulary, as in
    # Recommender.predictions: the baseline (mean + the user's bias), marked fallback
    asked = [i for i, x in enumerate(items) if x is not None or baseline]
    preds: list[float | None] = [None] * len(items)
    fallback = [False] * len(items)  # answered by the baseline (never-trained id)
    reasons: list[str | None] = [
        None if x is not None else f"unknown item {p.item!r}"
        for p, x in zip(body.pairs, items, strict=True)
    ]
    _check_deadline(deadline)
    if asked:
        res = rec.predictions(
            [body.pairs[i].user for i in asked],
            [body.pairs[i].item if items[i] is None else items[i] for i in asked],
            on_unknown=body.on_unknown if body.on_unknown != "null" else "nan",
        )
        for k, i in enumerate(asked):
            preds[i] = finite_or_none(float(res.values[k]))
            fallback[i], reasons[i] = bool(res.fallback[k]), res.reasons[k]
    out = [
        Prediction(
            user=p.user,
            item=p.item if item_id is None else item_id,
            title=None if item_id is None else rec.title(item_id),
            prediction=preds[k],
            kind=rec.output_kind,
            fallback=fallback[k],
            reason=reasons[k],
        )
        for k, (p, item_id) in enumerate(zip(body.pairs, items, strict=True))
    ]
    return _model_response(PredictResponse(predictions=out))


def _items_work(rec: Recommender, deadline: float, query: str, n: int) -> Response:
    found = rec.find_items(query, n=n)
    return _model_response(
        ItemsResponse(
            query=query,
            items=[ItemMatchOut(id=m.id, title=m.title, score=m.score, how=m.how) for m in found],
        )
    )


#: The heavy endpoints' work: ``fn(rec, deadline, *args) -> Response``.
_WORK: dict[str, Callable[..., Response]] = {
    "fold_in": _fold_in_work,
    "similar": _similar_work,
    "predict": _predict_work,
    "items": _items_work,
}


def _error_parts(exc: BaseException, budget_s: float) -> tuple[int, str, Any, dict[str, str]]:
    """(status, error, detail, headers) of an exception raised by a request's work."""
    if isinstance(exc, _BadRequest):
        return 422, exc.error, exc.detail, {}
    if isinstance(exc, _OverBudget):
        return (
            503,
            f"expected the request to finish within {budget_s:g} s, received more work "
            "than that under the current load (retry later)",
            {"budget_s": budget_s},
            {"Retry-After": "1"},
        )
    if isinstance(exc, ItemNotFoundError):
        detail = {
            "query": exc.query,
            "ambiguous": exc.ambiguous,
            "matches": [m.to_dict() for m in exc.matches],
        }
        return (409 if exc.ambiguous else 404), str(exc), detail, {}
    if isinstance(exc, RecfitError):
        if isinstance(exc, UnknownIdError):
            status = 404
        elif isinstance(exc, DataError | ConfigError):
            status = 422
        else:
            status = 400
        return status, str(exc), {"type": type(exc).__name__}, {}
    return 500, "internal server error", {"type": type(exc).__name__}, {}
