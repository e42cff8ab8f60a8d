"""JSON responses that are always valid UTF-8, and the JSON error answer every error uses."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import Send


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
