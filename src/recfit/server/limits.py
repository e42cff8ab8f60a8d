"""ASGI middlewares that bound a request before any work: body size (413), body
time (408) and query-string encoding (422)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recfit.server.responses import _send_error

#: Largest accepted request body (bytes): room for MAX_PAIRS pairs with long titles.
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: Seconds a client has to send a whole request body once its headers are in.
DEFAULT_BODY_TIMEOUT_S = 15.0


class _BodyCut(Exception):
    """Raised inside ``receive`` when a middleware stops reading a request body."""


async def _app_until_cut(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, was_cut: Callable[[], bool]
) -> bool:
    """Run ``app`` with a ``receive`` that may raise :class:`_BodyCut`; once the body was
    cut the app's own answer (to a partial body) is dropped. True when the body was cut
    before the app started to answer: the caller answers then."""
    started = False

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if was_cut():  # the app answered its own error to the cut body: ours wins
            return
        started = True
        await send(message)

    with contextlib.suppress(_BodyCut):
        await app(scope, receive, guarded_send)
    return was_cut() and not started


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

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _BodyCut
            return message

        if await _app_until_cut(self.app, scope, limited_receive, send, lambda: too_large):
            await self._refuse(send, seen)


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

        async def timed_receive() -> Message:
            nonlocal complete, late, received
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                late = True
                raise _BodyCut from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        if await _app_until_cut(self.app, scope, timed_receive, send, lambda: late):
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
