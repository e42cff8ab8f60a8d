"""Compiled CPU kernels (numba) for the row-wise training step of the dot models.

One call of :func:`row_step` does, for one batch, what the PyTorch path of
:class:`recfit.train.sparse.RowOptimizer` does in about forty tensor operations: the
forward pass (``mu + b_u + b_i + p_u · q_i``, optionally squashed into ``y_range``), the
weighted MSE loss and L2 row penalty, the hand-written gradient of every looked-up row,
the sum over repeated rows, and the row's update (AdamW or row-wise Adagrad) with exact
lazy decoupled weight decay. Each touched row is read and written once per side by one
thread, with the rows a few slots ahead prefetched; no intermediate tensors.

Threads: a call runs on ``n`` threads (the calling one and ``n - 1`` workers kept for
the process), each on its share of the batch's distinct users, then of its items, with
barriers in between; idle workers sleep, and a waiting thread yields its core after a
short spin, so a busy machine costs little.

Determinism: the sum of a row's gradient runs over the batch in batch order, and every
row is owned by one thread, so the weights are the same for any thread count. Only the
reported loss (a float64 reduction) may differ in its last bits between thread counts.

The kernels are compiled on first use and cached on disk under the user's cache directory
(:func:`numba_cache_dir`), never beside the installed package; importing this module does
not import numba (:func:`available` does, once). :func:`ensure_compiled` compiles (or loads)
them ahead of a fit so that the compile time is not counted as training time.
"""

from __future__ import annotations

import contextlib
import mmap
import queue
import sys
import threading
import time
import warnings
from functools import cache
from typing import Any

import numpy as np

from recfit import _compile_ahead
from recfit._fs import numba_cache_dir
from recfit.errors import RecfitWarning

HUGE_PAGE = 2 << 20
"""Size of a transparent huge page on x86-64 and arm64 Linux."""

__all__ = [
    "RowStepBuffers",
    "available",
    "compile_ahead",
    "compile_in_child",
    "ensure_compiled",
    "huge_zeros",
    "numba_cache_dir",
    "permutation",
    "row_step",
    "take",
]


@cache
def available() -> bool:
    """Whether numba imports (the compiled kernels can run).

    Example:
        >>> isinstance(available(), bool)
        True
    """
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return True


@cache
def _kernels() -> dict[str, Any]:
    import numba

    config: Any = numba.config  # typed loosely: numba's config module has no stubs
    # the kernel module points numba's cache at numba_cache_dir() for its own import
    from recfit.train import _kernels_numba

    return {
        "step": _kernels_numba.step_part,
        "permutation": _kernels_numba.permutation_part,
        "take": _kernels_numba.take_part,
        "set_threads": numba.set_num_threads,
        "get_threads": numba.get_num_threads,
        "max_threads": config.NUMBA_NUM_THREADS,
    }


def ensure_compiled(
    warm_step: Any = None, columns: dict[str, Any] | None = None, shuffle: bool = False
) -> float:
    """Compile (or load from the cache) every kernel a fit will use; returns the seconds.

    Call it before a fit's timer starts. ``warm_step`` (a callable) runs the row-wise step
    once on an empty batch of the fit's own arrays (so the same specialisation, and no
    change to any weight or state); ``shuffle`` also warms :func:`permutation` and
    :func:`take` for the dtypes of ``columns`` (a large epoch's shuffle). Once compiled,
    each call costs microseconds. Waits for :func:`compile_ahead`'s work first, and warns
    (:class:`~recfit.errors.RecfitWarning`) when its separate process failed.

    Example:
        >>> ensure_compiled() >= 0.0
        True
    """
    t0 = time.perf_counter()
    if not available():
        return 0.0
    for t in _AHEAD:  # compile_ahead's work: waited for, counted as compile time
        t.join()
    while _AHEAD_PROBLEMS:
        warnings.warn(
            "expected the row-wise kernel compiled in a separate process, received "
            f"{_AHEAD_PROBLEMS.pop(0)}; compiled it in this process instead",
            RecfitWarning,
            stacklevel=2,
        )
    _kernels()
    if warm_step is not None:
        warm_step()
    if shuffle:
        permutation(1, 0)
        ix = np.zeros(1, np.int64)
        for v in (columns or {}).values():
            a = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
            take(a[:1], ix)
    return time.perf_counter() - t0


_AHEAD: list[threading.Thread] = []
_AHEAD_LOCK = threading.Lock()
_AHEAD_PROBLEMS: list[str] = []


def _compile_step(strict: bool = False) -> None:
    """Compile (or load) the row-wise step for the arrays every fit passes (int64 rows,
    float32 ratings, weights, tables and state, float64 decay logs), without running it.
    A failure is swallowed (a head start only: the fit compiles what it needs) unless
    ``strict``."""
    import numba

    typeof: Any = numba.typeof  # numba has no stubs

    f32, f64, i64 = np.float32, np.float64, np.int64
    v32, v64, vi = np.empty(1, f32), np.empty(1, f64), np.empty(1, i64)
    m32, mi = np.empty((1, 2), f32), np.empty((1, 1), i64)
    args = (
        0, vi, vi, vi, v32, v32, 1.0, m32, v32, m32, v32, (1.0, 1.0, 1.0, 1.0), 1.0,
        m32, m32, v64, m32, m32, v64, v32, 1.0, 1.0, v32, v32, vi, vi,
        mi, mi, mi, mi, vi, mi, m32, m32,
    )  # fmt: skip
    try:
        _kernels()["step"].compile(tuple(typeof(a) for a in args))
    except Exception:
        if strict:
            raise


def _load_after(child: Any) -> None:
    """Import the kernels while ``child`` (a process from :mod:`recfit._compile_ahead`)
    compiles the step, wait for it, then load the step from the cache it filled, or
    compile it here when it failed (the reason goes to :func:`ensure_compiled`)."""
    with contextlib.suppress(Exception):
        _kernels()
    problem = _compile_ahead.outcome(child)
    if problem is not None:
        _AHEAD_PROBLEMS.append(problem)
    _compile_step()


def compile_in_child() -> int:
    """What the separate process of :mod:`recfit._compile_ahead` runs: compile the row-wise
    step into the cache and leave the marker; the exit status (1 with the error on
    stderr)."""
    try:
        t0 = time.perf_counter()
        folder = numba_cache_dir()
        if folder is None:
            raise RuntimeError("no writable cache folder")
        _compile_step(strict=True)
        _compile_ahead.write_marker(folder, time.perf_counter() - t0)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def compile_ahead() -> threading.Thread | None:
    """Start compiling (or loading from the cache) the row-wise step in the background, so
    that it overlaps the data loading before a fit; :func:`ensure_compiled` waits for it.
    Compiles the very specialisation a fit uses, so the results are the same.

    When ``recfit train`` started the compile in a separate process before its imports
    (:mod:`recfit._compile_ahead`: the cache was cold), the thread imports the kernels,
    waits for that process and loads the kernel from the cache it filled (compiling it
    when the process failed); otherwise the thread compiles (or loads) it. A child
    started here would not pay off: its start-up and the load after it cost about as much
    as the few tenths of a second of data loading it would overlap. ``None`` without
    numba; a second call returns the first thread.

    Example:
        >>> compile_ahead() is compile_ahead()
        True
    """
    if not available():
        return None
    with _AHEAD_LOCK:
        if not _AHEAD:
            child = _compile_ahead.running()
            t = threading.Thread(
                target=_compile_step if child is None else _load_after,
                args=() if child is None else (child,),
                name="recfit-compile",
                daemon=True,
            )
            t.start()
            _AHEAD.append(t)
        return _AHEAD[0]


def huge_zeros(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """A zeroed array whose memory the kernel may back with transparent huge pages.

    Random row access into tables of tens of megabytes misses the TLB on almost every
    row with 4 KB pages; 2 MB pages (``madvise(MADV_HUGEPAGE)``, Linux) make the
    row-wise step about 15 % faster on ml-25m-sized tables. Elsewhere, or for arrays
    under 2 MB, a plain ``np.zeros``.

    Example:
        >>> huge_zeros((3, 2)).sum(), huge_zeros((3, 2)).shape
        (np.float32(0.0), (3, 2))
    """
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < HUGE_PAGE or advise is None or not sys.platform.startswith("linux"):
        return np.zeros(shape, dt)
    mm = mmap.mmap(-1, nbytes + HUGE_PAGE)  # anonymous memory is zero-filled
    mm.madvise(advise)
    raw = np.frombuffer(mm, dtype=np.uint8)
    off = (-raw.ctypes.data) % HUGE_PAGE
    out: np.ndarray = raw[off : off + nbytes].view(dt).reshape(shape)
    return out


def permutation(n: int, seed: int) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` (int64) from ``seed``, on every thread.

    The Rao-Sandelius method: each position draws a bucket of about 8,192 positions, the
    buckets are laid out in order and shuffled one by one in cache; random numbers are a
    hash of the seed and a counter, so the same seed gives the same permutation whatever
    the number of threads. About 10× faster than ``torch.randperm`` for 25 M rows.

    Example:
        >>> p = permutation(10, seed=3)
        >>> sorted(p.tolist()) == list(range(10)), (p == permutation(10, seed=3)).all()
        (True, np.True_)
    """
    out = np.empty(n, np.int64)
    if n:
        kern = _kernels()
        n_buckets = max(1, n // 8192)
        counts = np.empty((min(64, n_buckets), n_buckets), np.int64)
        args = (n, seed & (2**63 - 1), counts, np.empty(n_buckets + 1, np.int64), out)
        parts = _threads(kern)
        _WORKERS.run(kern["permutation"], parts, np.zeros(2, np.int64), (parts, *args))
    return out


def take(src: np.ndarray, perm: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``src[perm]`` gathered on every thread (1-D arrays), into ``out`` when given.

    Example:
        >>> take(np.array([5.0, 6.0, 7.0]), np.array([2, 0])).tolist()
        [7.0, 5.0]
    """
    if out is None:
        out = np.empty(perm.shape[0], src.dtype)
    kern = _kernels()
    parts = _threads(kern) if perm.shape[0] >= 1 << 16 else 1
    _WORKERS.run(kern["take"], parts, np.zeros(2, np.int64), (parts, src, perm, out))
    return out


class RowStepBuffers:
    """Scratch arrays reused across the steps of one optimiser (sized by the batch).

    ``slot`` arrays (one int64 per table row, all ``-1`` between steps) map a row to its
    position among the batch's unique rows.
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int) -> None:
        self.slots = (np.full(n_users, -1, np.int64), np.full(n_items, -1, np.int64))
        self.k = n_factors
        self.cap = 0
        self.counts = np.zeros(2, np.int64)
        self.sync = np.zeros(2, np.int64)
        self.bounds = np.zeros((2, 2), np.int64)
        """Each side's distinct rows cut into one range per thread (``(2, threads + 1)``)."""
        self._alloc(1)

    def _alloc(self, n: int) -> None:
        self.cap = n
        self.dx = np.empty(n, np.float32)
        self.uniq = np.empty((2, n), np.int64)
        self.start = np.empty((2, n + 1), np.int64)
        self.order = np.empty((2, n), np.int64)
        self.row_slot = np.empty((2, n), np.int64)
        self.saved = np.empty((n, self.k + 1), np.float32)
        self.grad = np.empty((2 * n, self.k + 1), np.float32)

    def ensure(self, n: int) -> None:
        """Grow to hold a batch of ``n`` ratings."""
        if n > self.cap:
            self._alloc(n)

    def cut(self, parts: int) -> None:
        """Size ``bounds`` for ``parts`` threads."""
        if self.bounds.shape[1] != parts + 1:
            self.bounds = np.zeros((2, parts + 1), np.int64)


def row_step(
    batch: dict[str, np.ndarray],
    w_tot: float,
    tables: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    state: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    row_decay: tuple[np.ndarray, np.ndarray],
    model: tuple[float, float, float, bool],
    reg: float,
    consts: np.ndarray,
    decay: tuple[float, float],
    out: np.ndarray,
    buf: RowStepBuffers,
    threads: int | None = None,
) -> tuple[float, float]:
    """One fused row-wise step on a batch; returns ``(Σ loss, Σ penalty)``.

    Args:
        batch: ``user``, ``item`` (int64), ``rating``, ``weight`` (float32) arrays.
        w_tot: the total weight that normalises the loss (Σw of the batch).
        tables: ``((user_factors, user_bias), (item_factors, item_bias))``, updated in place.
        state: the optimiser's per-row state ``((a_users, b_users), (a_items, b_items))``:
            AdamW's two moments, ``(rows, k + 1)`` each; row-wise Adagrad's accumulators
            ``(rows, 2)`` (factors, bias) as ``b`` (``a`` unused).
        row_decay: the log of the decay product each row has received (float64).
        model: ``(mu, lo, span, squash)``: global mean, ``y_range`` low end and width,
            and whether the output goes through the scaled sigmoid.
        reg: weight of the per-row L2 penalty.
        consts: float32 ``[keep, beta1, beta2, step size, 1/sqrt(bias correction 2), eps,
            rule]`` with ``keep = 1 - lr·wd`` and ``rule`` 0 (AdamW) or 1 (row-wise
            Adagrad, step size ``lr``).
        decay: the global log decay before and after this step.
        out: receives the batch's predictions.
        buf: scratch arrays of this optimiser.
        threads: CPU threads (``None``: all numba threads).

    Both sums are weighted by ``w / w_tot`` (so they are the batch's mean loss and mean
    penalty); the gradient is that of their sum.
    """
    kern = _kernels()
    users, items = batch["user"], batch["item"]
    buf.ensure(users.shape[0])
    (uf, ub), (itf, ib) = tables
    mu, lo, span, squash = model
    sums = _WORKERS.run(
        kern["step"], _parts(kern, threads, buf), buf.sync,
        (
            users, items, batch["rating"], batch["weight"], float(w_tot), uf, ub, itf, ib,
            (float(mu), float(lo), float(span), 1.0 if squash else 0.0), float(reg),
            state[0][0], state[0][1], row_decay[0], state[1][0], state[1][1], row_decay[1],
            consts, float(decay[0]), float(decay[1]), out, buf.dx, buf.slots[0], buf.slots[1],
            buf.uniq, buf.start, buf.order, buf.row_slot, buf.counts, buf.bounds, buf.saved,
            buf.grad,
        ),
    )  # fmt: skip
    loss = pen = 0.0
    for part_loss, part_pen in sums:  # in part order: the same sums for the same threads
        loss += part_loss
        pen += part_pen
    return loss, pen


def _parts(kern: dict[str, Any], threads: int | None, buf: RowStepBuffers) -> int:
    """The threads of one kernel call: ``threads``, else numba's count for this thread
    (which the thread policy sets), at most numba's pool; sizes ``buf.bounds``."""
    if threads is not None:
        kern["set_threads"](max(1, min(int(threads), kern["max_threads"])))
    parts = _threads(kern)
    buf.cut(parts)
    return parts


def _threads(kern: dict[str, Any]) -> int:
    """numba's thread count for this thread (the thread policy sets it), at most its pool."""
    return max(1, min(int(kern["get_threads"]()), int(kern["max_threads"])))


class _Workers:
    """Threads that run the other parts of a kernel call beside the calling thread.

    A call's parts run at once, one per thread, and meet at barriers inside the kernel
    (spinning briefly, then yielding the core), so the kernels are plain compiled
    functions: no parallel region for numba to type and lower (seconds of compile time).
    Idle workers block on their queue; one call at a time (a lock).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queues: list[queue.SimpleQueue[Any]] = []
        self.done: queue.SimpleQueue[tuple[int, bool, Any]] = queue.SimpleQueue()

    def _work(self, jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            fn, c, sync, args = jobs.get()
            try:
                self.done.put((c, True, fn(c, sync, *args)))
            except BaseException as exc:
                sync[1] = 1  # the other parts stop waiting at the barriers
                self.done.put((c, False, exc))

    def run(self, fn: Any, parts: int, sync: np.ndarray, args: tuple[Any, ...]) -> list[Any]:
        """``[fn(c, sync, *args) for c in range(parts)]``, run at once on ``parts`` threads
        (this one runs part 0)."""
        sync[:] = 0
        if parts == 1:
            return [fn(0, sync, *args)]
        with self.lock:
            while len(self.queues) < parts - 1:
                jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
                name = f"recfit-kernel-{len(self.queues) + 1}"
                threading.Thread(target=self._work, args=(jobs,), name=name, daemon=True).start()
                self.queues.append(jobs)
            for c in range(1, parts):
                self.queues[c - 1].put((fn, c, sync, args))
            out: list[Any] = [None] * parts
            error: BaseException | None = None
            try:
                out[0] = fn(0, sync, *args)
            except BaseException as exc:
                sync[1] = 1
                error = exc
            for _ in range(1, parts):
                c, ok, res = self.done.get()
                out[c] = res
                if not ok and error is None:
                    error = res
            if error is not None:
                raise error
            return out


_WORKERS = _Workers()
