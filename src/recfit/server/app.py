"""The HTTP API and web page over a :class:`~recfit.recommender.Recommender` (FastAPI).

Endpoints (the OpenAPI schema at ``/openapi.json``; no Swagger page, which would need a CDN):

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
or title 404 (an ambiguous title 409, with the candidates in ``detail``), a bad value or a
malformed body 422 (JSON nested too deeply included), a request body over
``max_body_bytes`` 413, a body not received within ``body_timeout_s`` 408. Ids match
exactly: JSON ids are integers or strings (``true`` or ``50.0`` is a 422), and ``"050"``
is not item 50 (see :meth:`~recfit.data.Vocabulary.index`).

Work is bounded per request: the heavy endpoints (``POST /predict``, ``POST /recommend``,
``GET /similar``, ``GET /items``) run in a pool of ``work_threads`` threads; at most
``work_queue`` more wait, later ones get 429 (with ``Retry-After``) before their body is
parsed, and a request that has not finished within ``request_budget_s`` gets 503. Cheap
endpoints (``/health``, a cached ``GET /recommend``) answer on the event loop and are
never queued behind heavy work. :func:`serve_config` adds the connection timeouts
(request headers, idle keep-alive) for uvicorn.

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
import logging
import math
import multiprocessing
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from recfit._fs import read_plain_file
from recfit._version import __version__
from recfit.errors import ConfigError, RecfitError
from recfit.recommender import Recommender
from recfit.server.errors import _install_error_handlers
from recfit.server.limits import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    BodySizeLimit,
    BodyTimeout,
    QueryUTF8,
)
from recfit.server.pool import (
    DEFAULT_REQUEST_BUDGET_S,
    DEFAULT_WORK_QUEUE,
    DEFAULT_WORK_THREADS,
    HEAVY_ROUTES,
    Admission,
    WorkPool,
)
from recfit.server.responses import SafeJSONResponse, _error
from recfit.server.schemas import (
    MAX_N,
    MAX_QUERY_CHARS,
    ErrorResponse,
    HealthResponse,
    ItemsResponse,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarResponse,
)
from recfit.server.transport import HEADER_TIMEOUT_ENV
from recfit.server.work import _recommend_out

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_REQUEST_BUDGET_S",
    "DEFAULT_WORK_QUEUE",
    "DEFAULT_WORK_THREADS",
    "ENV_SETTINGS",
    "HEAVY_ROUTES",
    "STATIC_DIR",
    "Admission",
    "BodySizeLimit",
    "BodyTimeout",
    "QueryUTF8",
    "WorkPool",
    "app_from_env",
    "create_app",
    "env_for",
]

log = logging.getLogger("recfit.server")

#: The web page's files.
STATIC_DIR = Path(__file__).resolve().parent / "static"

_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown id or title."},
    408: {"model": ErrorResponse, "description": "Request body not received in time."},
    409: {"model": ErrorResponse, "description": "A title matches several items."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid parameters or body."},
    429: {"model": ErrorResponse, "description": "Too many heavy requests; retry later."},
    503: {"model": ErrorResponse, "description": "The request ran past its time budget."},
}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that parses its JSON body itself."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _with_request_schemas(app: FastAPI) -> None:
    """Add the request models' schemas to the app's OpenAPI components."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain()
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, RecommendRequest):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in js.pop("$defs", {}).items():
                    comps.setdefault(name, sub)
                comps[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _text(description: str) -> Any:
    """A required text query parameter (an id or a title)."""
    return Query(min_length=1, max_length=MAX_QUERY_CHARS, description=description)


def _n(description: str) -> Any:
    """A list length query parameter."""
    return Query(ge=1, le=MAX_N, description=description)


_FOLD_IN_DOC = """The top-n items for a new user described by a few ratings (fold-in, no
retraining). Items may be given by id or title. No ratings: popular items."""
_PREDICT_DOC = """Predicted ratings (original scale, clipped) or, for a retrieval model, scores
(never clipped) for (user, item) pairs; ``fallback`` marks baseline answers. Exact ids
are looked up first, then titles; with ``on_unknown: "null"`` an unmatched title
gets a null prediction without a close-match search."""


def _post_work(
    app: FastAPI, pool: WorkPool, path: str, kind: str, request_model: type[BaseModel],
    response_model: type[BaseModel], name: str, doc: str,
) -> None:  # fmt: skip
    """A POST endpoint whose JSON body is parsed and answered in the work pool."""

    async def endpoint(request: Request) -> Response:
        return await pool.run(kind, await request.body(), request.headers.get("content-type"))

    endpoint.__name__ = endpoint.__qualname__ = name
    endpoint.__doc__ = doc
    app.post(
        path,
        response_model=response_model,
        tags=["queries"],
        openapi_extra=_json_body(request_model),
        name=name,
    )(endpoint)


def _warm_up(rec: Recommender) -> None:
    """Build the lazy indexes and the per-user top lists once, before requests arrive."""
    _ = rec.titles
    try:
        rec.warm()  # every known user's default top list, computed in batches
        if rec.n_items and rec.adapter.supports_similarity:
            rec.similar_items(rec.items.id([0]).tolist(), n=1)
    except RecfitError as exc:  # a capability the family lacks: answered per request
        log.info("warm-up skipped a step: %s", exc)


def _positive(name: str, value: Any, *, integer: bool = True, zero: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok and integer:
        ok = isinstance(value, int)
    if ok:
        ok = value >= 0 if zero else value > 0
        ok = ok and math.isfinite(value)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(
            f"expected {name} as {kind} {'>= 0' if zero else '> 0'}, received {value!r}"
        )


def create_app(
    recommender: Recommender,
    *,
    report_path: str | Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    title: str = "recfit",
    warm_up: bool = True,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    work_threads: int = DEFAULT_WORK_THREADS,
    work_queue: int = DEFAULT_WORK_QUEUE,
    request_budget_s: float = DEFAULT_REQUEST_BUDGET_S,
    work_processes: bool = False,
) -> FastAPI:
    """The FastAPI application serving ``recommender``.

    Args:
        recommender: the loaded :class:`~recfit.recommender.Recommender`.
        report_path: the run's ``report.html``, served at ``/report`` (404 without it).
        max_body_bytes: larger request bodies get 413.
        title: the API's title in the OpenAPI schema.
        warm_up: build the title and retrieval indexes before serving.
        body_timeout_s: a request body not complete this long after its headers gets 408.
        work_threads: threads running the heavy endpoints.
        work_queue: heavy requests that may wait for a thread; more get 429.
        request_budget_s: a heavy request unfinished after this long (waiting included)
            gets 503.
        work_processes: run the heavy work in ``work_threads`` forked processes instead
            of threads, so that it never holds the interpreter lock that the event loop
            (``/health``) needs (``recfit serve`` does this on Linux).

    Returns:
        The application; run it with ``uvicorn.Server(serve_config(app))`` or test it with
        ``fastapi.testclient.TestClient``.

    Raises:
        ConfigError: a limit is not positive.
    """
    _positive("max_body_bytes", max_body_bytes)
    _positive("body_timeout_s", body_timeout_s, integer=False)
    _positive("work_threads", work_threads)
    _positive("work_queue", work_queue, zero=True)
    _positive("request_budget_s", request_budget_s, integer=False)
    rec = recommender
    report = None if report_path is None else Path(report_path)
    pool = WorkPool(rec, work_threads, work_queue, request_budget_s, processes=work_processes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.start()
        yield
        pool.shutdown()

    app = FastAPI(
        title=f"{title} API",
        version=__version__,
        description=(
            "Recommendations, similar items, predicted ratings and title search over a "
            "trained recfit model. Errors are JSON `{error, detail}`."
        ),
        responses=_ERRORS,
        docs_url=None,
        redoc_url=None,
        default_response_class=SafeJSONResponse,
        lifespan=lifespan,
    )
    app.state.recommender = rec
    app.state.report_path = report
    app.state.pool = pool
    app.add_middleware(QueryUTF8)
    app.add_middleware(Admission, pool=pool)
    app.add_middleware(BodyTimeout, timeout_s=float(body_timeout_s))
    app.add_middleware(BodySizeLimit, max_bytes=int(max_body_bytes))
    _install_error_handlers(app)
    _with_request_schemas(app)
    if warm_up:
        _warm_up(rec)
    info = rec.info()

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    async def health() -> HealthResponse:
        """The service is up; what model it serves (answered on the event loop)."""
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
        user: Annotated[str, _text("Raw user id.")],
        n: Annotated[int, _n("List length.")] = 10,
        exclude_seen: Annotated[
            bool, Query(description="Leave out the user's training items.")
        ] = True,
        on_unknown: Annotated[
            Literal["popular", "error"],
            Query(description="An unknown user: popular items (with the reason) or 404."),
        ] = "popular",
    ) -> RecommendResponse:
        """The top-n items of a known user (seen items excluded by default).

        The user id matches exactly: ``196`` is user 196, ``0196`` or ``196.0`` is an
        unknown user. Known users' lists are computed at start-up (``Recommender.warm``),
        so this runs on the event loop without a thread hop; an uncached list takes
        ~1-2 ms.
        """
        res = rec.recommend(user, n=n, exclude_seen=exclude_seen, on_unknown=on_unknown)
        return _recommend_out(res[0], n, exclude_seen)

    _post_work(app, pool, "/recommend", "fold_in", RecommendRequest, RecommendResponse,
               "recommend_new_user", _FOLD_IN_DOC)  # fmt: skip

    @app.get("/similar", response_model=SimilarResponse, tags=["queries"])
    async def similar(
        item: Annotated[str, _text("Item id or title.")],
        n: Annotated[int, _n("Number of neighbours.")] = 10,
    ) -> Response:
        """The items most similar to an item (cosine over item representations)."""
        return await pool.run("similar", item, n)

    _post_work(app, pool, "/predict", "predict", PredictRequest, PredictResponse, "predict",
               _PREDICT_DOC)  # fmt: skip

    @app.get("/items", response_model=ItemsResponse, tags=["queries"])
    async def items(
        query: Annotated[str, _text("A title or an id.")],
        n: Annotated[int, _n("Most results.")] = 10,
    ) -> Response:
        """Items whose title matches the query (or whose id is it), best first."""
        return await pool.run("items", query, n)

    @app.get("/report", include_in_schema=False)
    def show_report() -> Response:
        if report is None:
            return _error(404, "expected a run report, received none (no report path was given)")
        try:  # a plain file inside the run folder only: never a symbolic link or a device
            body = read_plain_file(report.parent, report.name, max_bytes=256 << 20)
        except RecfitError as exc:
            return _error(404, f"expected a run report, received none ({exc})")
        return Response(
            body, media_type="text/html", headers={"Content-Security-Policy": _PAGE_CSP}
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


def _flag(value: str) -> bool:
    return value == "1"


#: ``create_app`` keyword → (environment variable, parser), for :func:`app_from_env`.
ENV_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "report_path": ("RECFIT_SERVE_REPORT", str),
    "max_body_bytes": ("RECFIT_SERVE_MAX_BODY", int),
    "body_timeout_s": ("RECFIT_SERVE_BODY_TIMEOUT", float),
    "work_threads": ("RECFIT_SERVE_WORK_THREADS", int),
    "work_queue": ("RECFIT_SERVE_WORK_QUEUE", int),
    "request_budget_s": ("RECFIT_SERVE_REQUEST_BUDGET", float),
    "work_processes": ("RECFIT_SERVE_WORK_PROCESSES", _flag),
}


def env_for(
    run: str | Path,
    torch_threads: int | None = None,
    header_timeout_s: float | None = None,
    **settings: Any,
) -> dict[str, str]:
    """The environment that makes :func:`app_from_env` build ``create_app(Recommender.load(
    run), **settings)`` with ``torch_threads`` threads, and the workers' connections close
    after ``header_timeout_s`` without a request head (``None`` values are left out).

    Example:
        >>> env_for("runs/r1", work_threads=4, report_path=None)["RECFIT_SERVE_WORK_THREADS"]
        '4'
    """
    env = {"RECFIT_SERVE_RUN": str(Path(run).resolve())}
    if torch_threads is not None:
        env["RECFIT_SERVE_TORCH_THREADS"] = str(int(torch_threads))
    if header_timeout_s is not None:
        env[HEADER_TIMEOUT_ENV] = str(float(header_timeout_s))
    for key, value in settings.items():
        if key not in ENV_SETTINGS:
            raise ConfigError(f"expected a setting among {sorted(ENV_SETTINGS)}, received {key!r}")
        if value is not None:
            env[ENV_SETTINGS[key][0]] = (
                ("1" if value else "0") if isinstance(value, bool) else str(value)
            )
    return env


def app_from_env() -> FastAPI:
    """The app of ``RECFIT_SERVE_RUN`` (a run directory or bundle), for uvicorn workers.

    ``recfit serve --workers N`` starts N processes that each call this factory
    (``uvicorn.run("recfit.server.app:app_from_env", factory=True, workers=N)``) with the
    environment of :func:`env_for`. Optional: ``RECFIT_SERVE_TORCH_THREADS`` and the
    variables of :data:`ENV_SETTINGS` (``RECFIT_SERVE_REPORT``: report.html path,
    ``RECFIT_SERVE_MAX_BODY``: bytes, ``RECFIT_SERVE_BODY_TIMEOUT`` and
    ``RECFIT_SERVE_REQUEST_BUDGET``: seconds, ``RECFIT_SERVE_WORK_THREADS``,
    ``RECFIT_SERVE_WORK_QUEUE``, ``RECFIT_SERVE_WORK_PROCESSES``: ``1`` for heavy work
    in forked processes, where the platform can fork).

    Raises:
        ConfigError: ``RECFIT_SERVE_RUN`` is not set.
    """
    run = os.environ.get("RECFIT_SERVE_RUN")
    if not run:
        raise ConfigError("expected RECFIT_SERVE_RUN (a run directory or bundle), received none")
    threads = os.environ.get("RECFIT_SERVE_TORCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    settings = {
        key: parse(os.environ[var])
        for key, (var, parse) in ENV_SETTINGS.items()
        if os.environ.get(var)
    }
    if "fork" not in multiprocessing.get_all_start_methods():
        settings["work_processes"] = False
    return create_app(Recommender.load(run), **settings)
