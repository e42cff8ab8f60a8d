"""The HTTP server: a FastAPI app over a :class:`~recfit.recommender.Recommender`.

* :func:`create_app` — the application (endpoints, error handlers, body-size limit,
  the web page at ``/`` and the run report at ``/report``).
* :mod:`~recfit.server.schemas` — the request and response models.

Run it with ``recfit serve RUN`` or ``uvicorn.run(create_app(Recommender.load(RUN)))``.
Needs the ``serve`` extra (``fastapi``, ``uvicorn``).
"""

from recfit.server.app import DEFAULT_MAX_BODY_BYTES, STATIC_DIR, BodySizeLimit, create_app

__all__ = ["DEFAULT_MAX_BODY_BYTES", "STATIC_DIR", "BodySizeLimit", "create_app"]
