"""Where heavy requests run: the bounded :class:`WorkPool` (threads or forked worker
processes, with a time budget) and the :class:`Admission` middleware in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import signal
import sys
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import torch
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recfit.recommender import Recommender
from recfit.server.responses import _dumps, _send_error
from recfit.server.work import _WORK, _error_parts, _OverBudget

log = logging.getLogger("recfit.server")

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
#: The recommenders of the apps in this process, by key: what a forked worker inherits.
_FORKED: dict[int, Recommender] = {}


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
        if processes and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            # CUDA does not survive a fork
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


def _child_init() -> None:
    """A forked worker: the parent handles signals, the worker ends when the parent does
    (Linux: the kernel sends it SIGTERM); torch runs on one thread."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
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
