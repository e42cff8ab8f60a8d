"""Connection limits for uvicorn: a request-header timeout and the uvicorn settings.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` seconds, but
it waits forever for the headers of a request (a client may open a connection and send
nothing, or a byte a minute). :class:`GuardedH11Protocol` is uvicorn's h11 protocol with
one addition: a connection that has not sent a complete request head within
``header_timeout_s`` (from its opening, or from the end of its previous response) is
closed. The body has its own deadline (:class:`~recfit.server.app.BodyTimeout`).

Example:
    >>> from fastapi import FastAPI
    >>> cfg = serve_config(FastAPI(), port=0, header_timeout_s=5)
    >>> cfg.http is GuardedH11Protocol, cfg.timeout_keep_alive, cfg.header_timeout_s
    (True, 5, 5.0)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from recfit.errors import ConfigError

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEP_ALIVE_S",
    "HEADER_TIMEOUT_ENV",
    "GuardedH11Protocol",
    "serve_config",
]

#: Seconds a connection has to send a complete request head.
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: Seconds an idle keep-alive connection stays open.
DEFAULT_KEEP_ALIVE_S = 5
#: The environment variable worker processes read their header timeout from.
HEADER_TIMEOUT_ENV = "RECFIT_SERVE_HEADER_TIMEOUT"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection slow to send its request head.

    The timeout comes from the uvicorn config's ``header_timeout_s`` attribute (set by
    :func:`serve_config`), else ``RECFIT_SERVE_HEADER_TIMEOUT`` (for worker processes),
    else :data:`DEFAULT_HEADER_TIMEOUT_S`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = kwargs.get("config", args[0] if args else None)
        value = getattr(config, "header_timeout_s", None)
        if value is None:
            value = os.environ.get(HEADER_TIMEOUT_ENV) or DEFAULT_HEADER_TIMEOUT_S
        self.header_timeout_s = float(value)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle: Any = None

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        cycle = self.cycle
        waiting = cycle is None or (cycle is self._head_cycle and cycle.response_complete)
        if waiting and not self.transport.is_closing():
            # no request head since the timer was armed, and none in progress
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def serve_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S,
    log_level: str = "info",
    **kwargs: Any,
) -> uvicorn.Config:
    """A uvicorn config with recfit's connection limits.

    Args:
        app: the ASGI app (or an import string with ``factory=True``).
        host: interface to listen on.
        port: TCP port.
        header_timeout_s: seconds for a complete request head (else the connection closes).
        keep_alive_s: seconds an idle keep-alive connection stays open.
        log_level: uvicorn's log level.
        **kwargs: other ``uvicorn.Config`` arguments (``workers``, ``factory`` ...).

    Raises:
        ConfigError: a timeout is not positive.
    """
    for name, value in (("header_timeout_s", header_timeout_s), ("keep_alive_s", keep_alive_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"expected {name} > 0, received {value!r}")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=GuardedH11Protocol,
        ws="none",
        lifespan="on",
        timeout_keep_alive=int(keep_alive_s),
        log_level=log_level,
        **kwargs,
    )
    config.header_timeout_s = float(header_timeout_s)  # type: ignore[attr-defined]
    return config
