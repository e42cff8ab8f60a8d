"""The HTTP server: a FastAPI app over a :class:`~recfit.recommender.Recommender`.

* :func:`create_app` — the application (endpoints, error handlers, body-size limit,
  the web page at ``/`` and the run report at ``/report``).
* :mod:`~recfit.server.schemas` — the request and response models.
* :func:`~recfit.server.transport.serve_config` — a uvicorn config with the connection
  timeouts (request head, idle keep-alive).

Run it with ``recfit serve RUN`` or
``uvicorn.Server(serve_config(create_app(Recommender.load(RUN)))).run()``.
Needs the ``serve`` extra (``fastapi``, ``uvicorn``).
"""

from recfit.server.app import (
    DEFAULT_MAX_BODY_BYTES,
    STATIC_DIR,
    BodySizeLimit,
    BodyTimeout,
    WorkPool,
    create_app,
)
from recfit.server.transport import GuardedH11Protocol, serve_config

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "STATIC_DIR",
    "BodySizeLimit",
    "BodyTimeout",
    "GuardedH11Protocol",
    "WorkPool",
    "create_app",
    "serve_config",
]
