"""The app's exception handlers: every error answered as JSON ``{error, detail}``."""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from recfit.errors import RecfitError
from recfit.server.pool import WorkPool
from recfit.server.responses import _error
from recfit.server.work import _BadRequest, _error_parts, _OverBudget

log = logging.getLogger("recfit.server")


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

    async def on_recfit(request: Request, exc: Exception) -> Response:
        # one status rule for errors raised on the event loop and inside a request's work
        pool = cast(WorkPool, request.app.state.pool)
        status, error, detail, headers = _error_parts(exc, pool.budget_s)
        return _error(status, error, detail, **headers)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error", {"type": type(exc).__name__})

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RecfitError, on_recfit)  # ItemNotFoundError included
    app.add_exception_handler(_OverBudget, on_recfit)
    app.add_exception_handler(_BadRequest, on_recfit)
    app.add_exception_handler(Exception, on_crash)
