"""The HTTP API and web page over a :class:`~recfit.recommender.Recommender` (FastAPI).

Endpoints (OpenAPI docs at ``/docs``, schema at ``/openapi.json``):

==========================  ================================================================
``GET /health``             the service is up; model family, sizes, capabilities
``GET /recommend``          top-n of a known user (``user``, ``n``, ``exclude_seen``,
                            ``on_unknown``); an unknown user gets the popular path or 404
``POST /recommend``         top-n for a new user from a few ratings (fold-in)
``GET /similar``            items nearest to an item given by id or title
``POST /predict``           predicted ratings for (user, item) pairs
``GET /items``              title search (exact, case-insensitive, prefix, fuzzy)
``GET /report``             the run's ``report.html``, when there is one
``GET /``                   the web page (search, similar movies, rate, recommend)
==========================  ================================================================

Every error is JSON ``{"error": ..., "detail": ...}`` with a 4xx status: an unknown id
or title 404 (an ambiguous title 409, with the candidates in ``detail``), a bad value 422,
a malformed body 422, a request body over ``max_body_bytes`` 413. Endpoints are plain
``def`` functions, so inference runs in the thread pool and never blocks the event loop;
the ``serve`` command limits torch to a few threads so concurrent requests do not
oversubscribe the CPU.

Example:
    >>> from fastapi.testclient import TestClient
    >>> from recfit.data import Interactions
    >>> from recfit.models import create_model
    >>> from recfit.recommender import Recommender
    >>> d = Interactions.from_arrays([1, 1, 2], [3, 4, 3], [4.0, 5.0, 2.0])
    >>> client = TestClient(create_app(Recommender(create_model("dot", d), d.users, d.items, d)))
    >>> client.get("/recommend", params={"user": 2, "n": 5}).json()["items"][0]["id"]
    4
    >>> client.get("/recommend", params={"user": 2, "n": 0}).status_code
    422
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recfit.errors import ConfigError, DataError, RecfitError, UnknownIdError
from recfit.recommender import ItemNotFoundError, Recommender
from recfit.recommender.results import Recommendation
from recfit.server.schemas import (
    MAX_N,
    MAX_QUERY_CHARS,
    ErrorResponse,
    HealthResponse,
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

__all__ = ["DEFAULT_MAX_BODY_BYTES", "STATIC_DIR", "BodySizeLimit", "app_from_env", "create_app"]

log = logging.getLogger("recfit.server")

#: Largest accepted request body (bytes): room for MAX_PAIRS pairs with long titles.
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: The web page's files.
STATIC_DIR = Path(__file__).resolve().parent / "static"

_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown id or title."},
    409: {"model": ErrorResponse, "description": "A title matches several items."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid parameters or body."},
}


def _error(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class _BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes the limit."""


class BodySizeLimit:
    """ASGI middleware: answer 413 to any request whose body exceeds ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before the body is read; a
    body streamed without one is counted as it arrives and refused once it passes.

    Args:
        app: the wrapped ASGI application.
        max_bytes: the largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _refuse(self, send: Send, received: int | None) -> None:
        body = json.dumps(
            {
                "error": f"expected a request body of at most {self.max_bytes} bytes, "
                f"received {'more' if received is None else received}",
                "detail": {"max_bytes": self.max_bytes},
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, None)
                    return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        seen = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:  # the app answered its own error to the cut body: ours wins
                return
            started = True
            await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if too_large and not started:
            await self._refuse(send, seen)


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        out.append(
            {
                "loc": [str(x) for x in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
        )
    return out


def _install_error_handlers(app: FastAPI) -> None:
    async def on_validation(request: Request, exc: Exception) -> Response:
        detail = _validation_detail(cast(RequestValidationError, exc))
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"])
        if first.get("type") == "json_invalid":
            return _error(
                422, f"invalid request: {where}: expected valid JSON ({first['msg']})", detail
            )
        return _error(422, f"invalid request: {where}: {first['msg']}", detail)

    async def on_http(request: Request, exc: Exception) -> Response:
        exc = cast(StarletteHTTPException, exc)
        text = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and text == "Not Found":
            text = f"expected a known path, received {request.url.path!r}"
        elif exc.status_code == 405:
            text = f"expected another method for {request.url.path!r}, received {request.method}"
        return _error(exc.status_code, text, None)

    async def on_not_found(request: Request, exc: Exception) -> Response:
        exc = cast(ItemNotFoundError, exc)
        detail = {
            "query": exc.query,
            "ambiguous": exc.ambiguous,
            "matches": [m.to_dict() for m in exc.matches],
        }
        return _error(409 if exc.ambiguous else 404, str(exc), detail)

    async def on_recfit(request: Request, exc: Exception) -> Response:
        if isinstance(exc, UnknownIdError):
            status = 404
        elif isinstance(exc, DataError | ConfigError):
            status = 422
        else:
            status = 400
        return _error(status, str(exc), {"type": type(exc).__name__})

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error", {"type": type(exc).__name__})

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ItemNotFoundError, on_not_found)
    app.add_exception_handler(RecfitError, on_recfit)
    app.add_exception_handler(Exception, on_crash)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _recommend_out(rec: Recommendation, n: int, exclude_seen: bool) -> RecommendResponse:
    return RecommendResponse(
        user=rec.user,
        path=rec.path,
        reason=rec.reason,
        n=n,
        exclude_seen=exclude_seen,
        items=[ScoredItem(id=s.id, score=_finite(s.score), title=s.title) for s in rec.items],
    )


def _warm_up(rec: Recommender) -> None:
    """Build the lazy indexes and the per-user top lists once, before requests arrive."""
    _ = rec.titles
    try:
        rec.warm()  # every known user's default top list, computed in batches
        if rec.n_items and rec.adapter.supports_similarity:
            rec.similar_items(rec.items.id([0]).tolist(), n=1)
    except RecfitError as exc:  # a capability the family lacks: answered per request
        log.info("warm-up skipped a step: %s", exc)


def create_app(
    recommender: Recommender,
    *,
    report_path: str | Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    title: str = "recfit",
    warm_up: bool = True,
) -> FastAPI:
    """The FastAPI application serving ``recommender``.

    Args:
        recommender: the loaded :class:`~recfit.recommender.Recommender`.
        report_path: the run's ``report.html``, served at ``/report`` (404 without it).
        max_body_bytes: larger request bodies get 413.
        title: the API's title in the OpenAPI docs.
        warm_up: build the title and retrieval indexes before serving.

    Returns:
        The application; run it with ``uvicorn.run(app)`` or test it with
        ``fastapi.testclient.TestClient``.

    Raises:
        ConfigError: ``max_body_bytes`` is not positive.
    """
    if isinstance(max_body_bytes, bool) or int(max_body_bytes) < 1:
        raise ConfigError(f"expected max_body_bytes >= 1, received {max_body_bytes!r}")
    rec = recommender
    report = None if report_path is None else Path(report_path)
    from recfit import __version__

    app = FastAPI(
        title=f"{title} API",
        version=__version__,
        description=(
            "Recommendations, similar items, predicted ratings and title search over a "
            "trained recfit model. Errors are JSON `{error, detail}`."
        ),
        responses=_ERRORS,
    )
    app.state.recommender = rec
    app.state.report_path = report
    app.add_middleware(BodySizeLimit, max_bytes=int(max_body_bytes))
    _install_error_handlers(app)
    if warm_up:
        _warm_up(rec)

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    def health() -> HealthResponse:
        """The service is up; what model it serves."""
        info = rec.info()
        return HealthResponse(
            model=info["model"],
            n_users=info["n_users"],
            n_items=info["n_items"],
            trained_users=info["trained_users"],
            rating_scale=info["rating_scale"],
            has_titles=info["has_titles"],
            supports_fold_in=info["supports_fold_in"],
            supports_similarity=info["supports_similarity"],
            report=report is not None and report.is_file(),
            recfit_version=info["recfit_version"],
        )

    @app.get("/recommend", response_model=RecommendResponse, tags=["queries"])
    async def recommend(
        user: Annotated[
            str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="Raw user id.")
        ],
        n: Annotated[int, Query(ge=1, le=MAX_N, description="List length.")] = 10,
        exclude_seen: Annotated[
            bool, Query(description="Leave out the user's training items.")
        ] = True,
        on_unknown: Annotated[
            Literal["popular", "error"],
            Query(description="An unknown user: popular items (with the reason) or 404."),
        ] = "popular",
    ) -> RecommendResponse:
        """The top-n items of a known user (seen items excluded by default).

        Known users' lists are computed at start-up (``Recommender.warm``), so this runs on
        the event loop without a thread hop; an uncached list takes ~1-2 ms.
        """
        res = rec.recommend(user, n=n, exclude_seen=exclude_seen, on_unknown=on_unknown)
        return _recommend_out(res[0], n, exclude_seen)

    @app.post("/recommend", response_model=RecommendResponse, tags=["queries"])
    def recommend_new_user(body: RecommendRequest) -> RecommendResponse:
        """The top-n items for a new user described by a few ratings (fold-in, no
        retraining). Items may be given by id or title. No ratings: popular items."""
        pairs = [(rec.resolve_item(r.item), r.rating) for r in body.ratings]
        res = rec.recommend_for_ratings(pairs, n=body.n, exclude_rated=body.exclude_rated)
        return _recommend_out(res, body.n, body.exclude_rated)

    @app.get("/similar", response_model=SimilarResponse, tags=["queries"])
    def similar(
        item: Annotated[
            str,
            Query(min_length=1, max_length=MAX_QUERY_CHARS, description="Item id or title."),
        ],
        n: Annotated[int, Query(ge=1, le=MAX_N, description="Number of neighbours.")] = 10,
    ) -> SimilarResponse:
        """The items most similar to an item (cosine over item representations)."""
        item_id = rec.resolve_item(item)
        res = rec.similar_items([item_id], n=n)[0]
        return SimilarResponse(
            query=res.query,
            title=res.title,
            n=n,
            neighbours=[
                ScoredItem(id=s.id, score=_finite(s.score), title=s.title) for s in res.neighbours
            ],
        )

    @app.post("/predict", response_model=PredictResponse, tags=["queries"])
    def predict(body: PredictRequest) -> PredictResponse:
        """Predicted ratings (original scale, clipped) for (user, item) pairs."""
        lenient = body.on_unknown == "null"
        items: list[Any] = []
        for p in body.pairs:
            try:
                items.append(rec.resolve_item(p.item))
            except ItemNotFoundError:
                if not lenient:
                    raise
                items.append(None)
        users = [p.user for p in body.pairs]
        known = [i for i, x in enumerate(items) if x is not None]
        preds: list[float | None] = [None] * len(items)
        if known:
            values = rec.predict(
                [users[i] for i in known],
                [items[i] for i in known],
                on_unknown="nan" if lenient else "error",
            )
            for i, v in zip(known, values.tolist(), strict=True):
                preds[i] = _finite(v)
        out = []
        for p, item_id, value in zip(body.pairs, items, preds, strict=True):
            shown = p.item if item_id is None else item_id
            out.append(
                Prediction(
                    user=p.user,
                    item=shown,
                    title=None if item_id is None else rec.title(item_id),
                    prediction=value,
                )
            )
        return PredictResponse(predictions=out)

    @app.get("/items", response_model=ItemsResponse, tags=["queries"])
    def items(
        query: Annotated[
            str,
            Query(min_length=1, max_length=MAX_QUERY_CHARS, description="A title or an id."),
        ],
        n: Annotated[int, Query(ge=1, le=MAX_N, description="Most results.")] = 10,
    ) -> ItemsResponse:
        """Items whose title matches the query (or whose id is it), best first."""
        found = rec.find_items(query, n=n)
        return ItemsResponse(
            query=query,
            items=[ItemMatchOut(id=m.id, title=m.title, score=m.score, how=m.how) for m in found],
        )

    @app.get("/report", include_in_schema=False)
    def show_report() -> Response:
        if report is None or not report.is_file():
            where = "no report path was given" if report is None else f"{report} is missing"
            return _error(404, f"expected a run report, received none ({where})")
        return FileResponse(
            report, media_type="text/html", headers={"Content-Security-Policy": _PAGE_CSP}
        )

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": _PAGE_CSP},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def app_from_env() -> FastAPI:
    """The app of ``RECFIT_SERVE_RUN`` (a run directory or bundle), for uvicorn workers.

    ``recfit serve --workers N`` starts N processes that each call this factory
    (``uvicorn.run("recfit.server.app:app_from_env", factory=True, workers=N)``).
    Optional: ``RECFIT_SERVE_REPORT`` (report.html path), ``RECFIT_SERVE_MAX_BODY``
    (bytes), ``RECFIT_SERVE_TORCH_THREADS``.

    Raises:
        ConfigError: ``RECFIT_SERVE_RUN`` is not set.
    """
    import os

    import torch

    run = os.environ.get("RECFIT_SERVE_RUN")
    if not run:
        raise ConfigError("expected RECFIT_SERVE_RUN (a run directory or bundle), received none")
    threads = os.environ.get("RECFIT_SERVE_TORCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    return create_app(
        Recommender.load(run),
        report_path=os.environ.get("RECFIT_SERVE_REPORT") or None,
        max_body_bytes=int(os.environ.get("RECFIT_SERVE_MAX_BODY", DEFAULT_MAX_BODY_BYTES)),
    )
