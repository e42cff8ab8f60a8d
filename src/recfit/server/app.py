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

import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
import os
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recfit._fs import read_plain_file
from recfit.errors import ConfigError, DataError, RecfitError, UnknownIdError
from recfit.recommender import ItemNotFoundError, Recommender
from recfit.recommender.results import Recommendation, finite_or_none, jsonable_id
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

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_REQUEST_BUDGET_S",
    "DEFAULT_WORK_QUEUE",
    "DEFAULT_WORK_THREADS",
    "HEAVY_ROUTES",
    "STATIC_DIR",
    "Admission",
    "BodySizeLimit",
    "BodyTimeout",
    "QueryUTF8",
    "WorkPool",
    "app_from_env",
    "create_app",
]

log = logging.getLogger("recfit.server")

#: Largest accepted request body (bytes): room for MAX_PAIRS pairs with long titles.
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: Seconds a client has to send a whole request body once its headers are in.
DEFAULT_BODY_TIMEOUT_S = 15.0
#: Threads that run the heavy endpoints.
DEFAULT_WORK_THREADS = 2
#: Heavy requests that may wait for a thread; more get 429.
DEFAULT_WORK_QUEUE = 16
#: Seconds a heavy request may take, waiting included, before it gets 503.
DEFAULT_REQUEST_BUDGET_S = 10.0
#: Seconds a heavy request waits for a free slot (body unread) before its 429.
ADMISSION_WAIT_S = 0.5
#: The (method, path) pairs that run in the work pool.
HEAVY_ROUTES = frozenset(
    {("POST", "/predict"), ("POST", "/recommend"), ("GET", "/similar"), ("GET", "/items")}
)
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


def _dumps(content: Any) -> bytes:
    """JSON bytes that are always valid UTF-8 (lone surrogates escaped, never a crash)."""
    return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


class SafeJSONResponse(JSONResponse):
    """A JSON response rendered with ASCII escapes (any Python string can be sent)."""

    def render(self, content: Any) -> bytes:
        return _dumps(content)


def _model_response(model: BaseModel) -> Response:
    """A response model as JSON bytes, built where the work ran (not on the event loop)."""
    try:
        body = model.model_dump_json().encode()
    except (ValueError, UnicodeError):  # e.g. a lone surrogate in a bundle's title
        body = _dumps(model.model_dump(mode="json"))
    return Response(body, media_type="application/json")


def _error(status: int, error: str, detail: Any = None, **headers: str) -> Response:
    return SafeJSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _send_error(send: Send, status: int, error: str, detail: Any, close: bool) -> None:
    body = _dumps({"error": error, "detail": detail})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status in (429, 503):
        headers.append((b"retry-after", b"1"))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
        await _send_error(
            send,
            413,
            f"expected a request body of at most {self.max_bytes} bytes, "
            f"received {'more' if received is None else received}",
            {"max_bytes": self.max_bytes},
            close=True,
        )

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


class _BodyLate(Exception):
    """Raised inside ``receive`` when the body has not arrived by its deadline."""


class BodyTimeout:
    """ASGI middleware: answer 408 (and close) when a request body is not complete within
    ``timeout_s`` of its headers, however slowly it trickles in.

    Args:
        app: the wrapped ASGI application.
        timeout_s: seconds for the whole body.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = float(timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout_s
        complete = False
        late = False
        received = 0
        started = False

        async def timed_receive() -> Message:
            nonlocal complete, late, received
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                late = True
                raise _BodyLate from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if late:
                return
            started = True
            await send(message)

        with contextlib.suppress(_BodyLate):
            await self.app(scope, timed_receive, guarded_send)
        if late and not started:
            await _send_error(
                send,
                408,
                f"expected the request body within {self.timeout_s:g} s, received {received} bytes",
                {"body_timeout_s": self.timeout_s},
                close=True,
            )


class QueryUTF8:
    """ASGI middleware: answer 422 to a query string whose escapes are not UTF-8.

    Starlette would decode ``%ED%A0%80`` to replacement characters and answer for
    another string than the one sent; this refuses it instead.

    Args:
        app: the wrapped ASGI application.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            try:
                urllib.parse.unquote_to_bytes(scope["query_string"]).decode("utf-8")
            except UnicodeDecodeError as exc:
                await _send_error(
                    send,
                    422,
                    "invalid request: query: expected UTF-8 text, received undecodable "
                    f"bytes at position {exc.start}",
                    [{"loc": ["query"], "msg": "undecodable bytes", "type": "string_unicode"}],
                    close=False,
                )
                return
        await self.app(scope, receive, send)


class _OverBudget(Exception):
    """A heavy request passed its time budget."""


class WorkPool:
    """Where heavy requests run: threads of this process, or forked worker processes
    (which share no interpreter lock with the event loop), with admission and a time
    budget.

    Args:
        recommender: what the work runs on.
        threads: workers (threads, or processes when ``processes``).
        queue: admitted requests that may wait beyond the running ones.
        budget_s: seconds a request may take from admission, waiting included.
        processes: run the work in ``threads`` forked processes (Linux and macOS only);
            each inherits the recommender at the fork.
    """

    def __init__(
        self,
        recommender: Recommender,
        threads: int,
        queue: int,
        budget_s: float,
        *,
        processes: bool = False,
    ) -> None:
        if processes:
            import torch

            if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]  # not across a fork
                log.warning("CUDA is in use: heavy work runs in threads, not processes")
                processes = False
        self.rec = recommender
        self.threads = int(threads)
        self.capacity = int(threads) + int(queue)
        self.budget_s = float(budget_s)
        self.processes = bool(processes)
        self.admitted = 0  # read and written on the event loop only
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self._key = id(self)
        if self.processes:
            _FORKED[self._key] = recommender

    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                if self.processes:
                    ctx = multiprocessing.get_context("fork")
                    self._executor = ProcessPoolExecutor(
                        self.threads, mp_context=ctx, initializer=_child_init
                    )
                else:
                    self._executor = ThreadPoolExecutor(
                        self.threads, thread_name_prefix="recfit-work"
                    )
            return self._executor

    def start(self) -> None:
        """Start the workers now (forks before any request thread exists)."""
        if self.processes:
            self.executor().submit(int).result(60)

    def shutdown(self) -> None:
        """Stop the workers (processes are waited for: a running request is bounded by
        the budget)."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=self.processes, cancel_futures=True)
                self._executor = None
        _FORKED.pop(self._key, None)

    async def run(self, kind: str, *args: Any) -> Response:
        """The answer of one heavy request (``kind`` names its work); ``_OverBudget``
        past the budget (a request still waiting is dropped; a running one stops at its
        next check)."""
        deadline = time.monotonic() + self.budget_s
        job: Future[Any]
        if self.processes:
            job = self.executor().submit(
                _child_call, self._key, kind, deadline, self.budget_s, args
            )
        else:
            job = self.executor().submit(_WORK[kind], self.rec, deadline, *args)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(job), self.budget_s)
        except TimeoutError:
            raise _OverBudget from None
        if isinstance(result, Response):
            return result
        status, body, headers = result
        return Response(body, status_code=status, headers=headers, media_type="application/json")


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise _OverBudget


class Admission:
    """ASGI middleware: admit at most ``pool.capacity`` heavy requests at a time.

    A heavy request (:data:`HEAVY_ROUTES`) is admitted only once its whole body has
    arrived (so that slow clients, bounded by :class:`BodyTimeout`, never hold a slot).
    When the pool is full it first waits up to :data:`ADMISSION_WAIT_S` for a slot
    (which also slows down clients that retry at once), then, still full, gets 429 with
    ``Retry-After``, its body read but never parsed (so that the connection stays usable).

    Args:
        app: the wrapped ASGI application.
        pool: the work pool whose capacity bounds the admitted requests.
    """

    def __init__(self, app: ASGIApp, pool: WorkPool) -> None:
        self.app = app
        self.pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) not in HEAVY_ROUTES:
            await self.app(scope, receive, send)
            return
        pool = self.pool
        for _ in range(int(ADMISSION_WAIT_S / 0.05)):  # full: wait a little for a slot
            if pool.admitted < pool.capacity:
                break
            await asyncio.sleep(0.05)
        chunks: list[bytes] = []
        for _ in range(1_000_000):  # the whole body first; bounded by the size limit
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if pool.admitted >= pool.capacity:
            await _send_error(
                send,
                429,
                f"expected at most {pool.capacity} heavy requests at a time, received more "
                "(retry later)",
                {"capacity": pool.capacity},
                close=False,
            )
            return
        pool.admitted += 1
        try:
            await self.app(scope, replay, send)
        finally:
            pool.admitted -= 1


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
        status = exc.status_code
        if status == 404 and text == "Not Found":
            text = f"expected a known path, received {request.url.path!r}"
        elif status == 405:
            text = f"expected another method for {request.url.path!r}, received {request.method}"
        elif status == 400 and text == "There was an error parsing the body":
            cause = exc.__cause__
            why = "nested too deeply" if isinstance(cause, RecursionError) else "undecodable"
            return _error(
                422,
                f"invalid request: body: expected valid JSON, received a body {why}",
                [{"loc": ["body"], "msg": why, "type": "json_invalid"}],
            )
        return _error(status, text, None)

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

    async def on_work_error(request: Request, exc: Exception) -> Response:
        pool = cast(WorkPool, request.app.state.pool)
        status, error, detail, headers = _error_parts(exc, pool.budget_s)
        return _error(status, error, detail, **headers)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error", {"type": type(exc).__name__})

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ItemNotFoundError, on_not_found)
    app.add_exception_handler(RecfitError, on_recfit)
    app.add_exception_handler(_OverBudget, on_work_error)
    app.add_exception_handler(_BadRequest, on_work_error)
    app.add_exception_handler(Exception, on_crash)


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
    res = rec.similar_items([item_id], n=n)[0]
    neighbours = [
        ScoredItem(id=x.id, score=finite_or_none(x.score), title=x.title) for x in res.neighbours
    ]
    return _model_response(
        SimilarResponse(query=res.query, title=res.title, n=n, neighbours=neighbours)
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
#: The recommenders of the apps in this process, by key: what a forked worker inherits.
_FORKED: dict[int, Recommender] = {}


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


def _child_init() -> None:
    """A forked worker: the parent handles signals, the worker ends when the parent does
    (Linux: the kernel sends it SIGTERM); torch runs on one thread."""
    import signal
    import sys

    import torch

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    torch.set_num_threads(1)


def _child_call(
    key: int, kind: str, deadline: float, budget_s: float, args: tuple[Any, ...]
) -> tuple[int, bytes, dict[str, str]]:
    """Run one request's work in a forked worker; errors become their JSON answers."""
    try:
        resp = _WORK[kind](_FORKED[key], deadline, *args)
        return resp.status_code, bytes(resp.body), {}
    except Exception as exc:  # answered like the app's handlers would
        status, error, detail, headers = _error_parts(exc, budget_s)
        if status >= 500:
            log.exception("unhandled error in a work process (%s)", kind)
        return status, _dumps({"error": error, "detail": detail}), headers


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
    from recfit._version import __version__

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

        The user id matches exactly: ``196`` is user 196, ``0196`` or ``196.0`` is an
        unknown user. Known users' lists are computed at start-up (``Recommender.warm``),
        so this runs on the event loop without a thread hop; an uncached list takes
        ~1-2 ms.
        """
        res = rec.recommend(user, n=n, exclude_seen=exclude_seen, on_unknown=on_unknown)
        return _recommend_out(res[0], n, exclude_seen)

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        tags=["queries"],
        openapi_extra=_json_body(RecommendRequest),
    )
    async def recommend_new_user(request: Request) -> Response:
        """The top-n items for a new user described by a few ratings (fold-in, no
        retraining). Items may be given by id or title. No ratings: popular items."""

        return await pool.run("fold_in", await request.body(), request.headers.get("content-type"))

    @app.get("/similar", response_model=SimilarResponse, tags=["queries"])
    async def similar(
        item: Annotated[
            str,
            Query(min_length=1, max_length=MAX_QUERY_CHARS, description="Item id or title."),
        ],
        n: Annotated[int, Query(ge=1, le=MAX_N, description="Number of neighbours.")] = 10,
    ) -> Response:
        """The items most similar to an item (cosine over item representations)."""

        return await pool.run("similar", item, n)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        tags=["queries"],
        openapi_extra=_json_body(PredictRequest),
    )
    async def predict(request: Request) -> Response:
        """Predicted ratings (original scale, clipped) or, for a retrieval model, scores
        (never clipped) for (user, item) pairs; ``fallback`` marks baseline answers. Exact ids
        are looked up first, then titles; with ``on_unknown: "null"`` an unmatched title
        gets a null prediction without a close-match search."""

        return await pool.run("predict", await request.body(), request.headers.get("content-type"))

    @app.get("/items", response_model=ItemsResponse, tags=["queries"])
    async def items(
        query: Annotated[
            str,
            Query(min_length=1, max_length=MAX_QUERY_CHARS, description="A title or an id."),
        ],
        n: Annotated[int, Query(ge=1, le=MAX_N, description="Most results.")] = 10,
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


def app_from_env() -> FastAPI:
    """The app of ``RECFIT_SERVE_RUN`` (a run directory or bundle), for uvicorn workers.

    ``recfit serve --workers N`` starts N processes that each call this factory
    (``uvicorn.run("recfit.server.app:app_from_env", factory=True, workers=N)``).
    Optional: ``RECFIT_SERVE_REPORT`` (report.html path), ``RECFIT_SERVE_MAX_BODY``
    (bytes), ``RECFIT_SERVE_TORCH_THREADS``, ``RECFIT_SERVE_BODY_TIMEOUT`` (seconds),
    ``RECFIT_SERVE_WORK_THREADS``, ``RECFIT_SERVE_WORK_QUEUE``,
    ``RECFIT_SERVE_REQUEST_BUDGET`` (seconds), ``RECFIT_SERVE_WORK_PROCESSES`` (``1``:
    heavy work in forked processes).

    Raises:
        ConfigError: ``RECFIT_SERVE_RUN`` is not set.
    """
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
        body_timeout_s=float(os.environ.get("RECFIT_SERVE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_S)),
        work_threads=int(os.environ.get("RECFIT_SERVE_WORK_THREADS", DEFAULT_WORK_THREADS)),
        work_queue=int(os.environ.get("RECFIT_SERVE_WORK_QUEUE", DEFAULT_WORK_QUEUE)),
        request_budget_s=float(
            os.environ.get("RECFIT_SERVE_REQUEST_BUDGET", DEFAULT_REQUEST_BUDGET_S)
        ),
        work_processes=os.environ.get("RECFIT_SERVE_WORK_PROCESSES") == "1"
        and "fork" in multiprocessing.get_all_start_methods(),
    )
