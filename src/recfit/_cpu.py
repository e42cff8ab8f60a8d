"""The CPU thread policy: how many threads PyTorch, numba and the BLAS may use.

One rule for every place recfit computes on the CPU (the Learner's fits and predictions,
the compiled kernels, EASE's LAPACK, iALS and BPR): use the cores that are **free now**,
never more threads than that, and let one runtime's threads at a time do the parallel work.

* :func:`free_cores` counts the usable cores (``os.sched_getaffinity``) minus the other
  work running on them *now*: the runnable tasks the kernel reports (``/proc/loadavg``'s
  fourth field, sampled a few times over a few milliseconds, this process's reading thread
  not counted). The one-minute load average lags by a minute both ways (a busy machine
  looks quiet for the first minute, a quiet one busy for the next), so it is only the
  fallback where the instantaneous count cannot be read. It is asked again at each fit.
* :func:`limit_threads` sets PyTorch's, numba's and the BLAS/OpenMP libraries' thread
  counts for a block (threadpoolctl for the BLAS) and puts them back after it.
* OpenMP's wait policy (``OMP_WAIT_POLICY``) is read once, when PyTorch loads its OpenMP
  runtime at ``import torch``; after that only the thread counts can be changed. With one
  thread PyTorch runs no parallel region at all, so on a busy machine (one free core) no
  OpenMP thread is left spinning; numba's OpenMP pool is used only by the compiled kernels
  (PyTorch has one thread meanwhile).
* numba's OpenMP layer binds to the OpenMP runtime PyTorch loaded (the same ``libgomp.so.1``),
  and the start of numba's pool (its first thread call in a process) sets the calling
  thread's OpenMP count, which is then PyTorch's count too, to numba's pool size.
  :func:`limit_threads` therefore starts numba's pool first, importing numba if it is not
  loaded yet, and sets PyTorch's count after it, whenever it differs then (not by the count
  read before): a process that had set one thread itself (``torch.set_num_threads(1)``)
  otherwise ran its first fit on two whatever the policy said (the accuracy grid's first
  part of a PyTorch-trained family: FM on ml-100k, 366 s against 10 s for the next part at
  a load of 6). Started inside the block instead (numba imported there, by a kernel's first
  call), the pool would reset PyTorch's count, and leave numba's at its pool size, for the
  rest of the block. Importing numba costs about 0.1 s and 50 MiB once per process, and
  only where nothing loaded it before (a Learner does, to know whether its kernels can run);
  starting its pool about 1 ms.

Why it matters: a parallel region with more threads than free cores waits, at every
barrier, for a thread the scheduler has parked behind other work, and spinning waiters
burn the cores the parked thread needs. On the shared 2-core machine (other work: a load
average of about 7), the default ml-1m fit forced to two threads took 26.0 s, and 142.8 s
with two spinning processes added (5.5×); with this policy (one thread there) 5.2 s and
8.1 s (``benchmarks/bench_contention.py``).

Example:
    >>> free_cores(cores=4, running=1.0)
    3
    >>> free_cores(cores=2, running=5.0)
    1
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from threadpoolctl import threadpool_limits

__all__ = [
    "Threads",
    "active",
    "cpu_cores",
    "free_cores",
    "limit_threads",
    "running_now",
]

LOADAVG = "/proc/loadavg"
SAMPLES = 5
"""Readings of the runnable count that :func:`running_now` takes (their median)."""
SAMPLE_INTERVAL = 0.002
"""Seconds between two readings."""


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask; ``os.cpu_count`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _read_running() -> int | None:
    """Runnable tasks on the machine now, this reading thread included (``None``: unknown)."""
    try:
        with open(LOADAVG, encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def running_now(
    read: Callable[[], int | None] | None = None,
    samples: int = SAMPLES,
    interval: float = SAMPLE_INTERVAL,
) -> float | None:
    """Other runnable tasks now: the median of ``samples`` readings (``read``, default
    ``/proc/loadavg``) minus this reader (``None`` where the count cannot be read)."""
    read = _read_running if read is None else read
    got: list[int] = []
    for i in range(samples):
        n = read()
        if n is None:
            return None
        got.append(n)
        if i + 1 < samples:
            time.sleep(interval)
    return max(0.0, statistics.median(got) - 1.0)


def free_cores(*, cores: int | None = None, running: float | None = None) -> int:
    """Cores free for this process now: ``cores`` (default :func:`cpu_cores`) minus the
    other runnable tasks (default :func:`running_now`; where unknown, the one-minute load
    average beyond one), rounded, at least 1 and at most ``cores``.

    Example:
        >>> free_cores(cores=2, running=0.0), free_cores(cores=2, running=1.0)
        (2, 1)
    """
    n = cpu_cores() if cores is None else int(cores)
    busy = running_now() if running is None else float(running)
    if busy is None:
        try:
            busy = max(0.0, os.getloadavg()[0] - 1.0)
        except OSError:  # pragma: no cover - no load average
            busy = 0.0
    return max(1, min(n, math.floor(n - busy + 0.5)))


@dataclass(frozen=True)
class Threads:
    """Thread counts for one block of work: PyTorch's intra-op pool, numba's parallel
    kernels and the BLAS/OpenMP libraries threadpoolctl finds."""

    torch: int
    numba: int
    blas: int

    @classmethod
    def all(cls, n: int) -> Threads:
        """``n`` threads for every runtime (only one of them computes at a time)."""
        return cls(n, n, n)


_ACTIVE: list[Threads] = []


def active() -> Threads | None:
    """The counts of the innermost :func:`limit_threads` block of this process, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


def _numba() -> Any:
    """numba, imported if it is installed and not loaded yet (``None`` where it cannot be)."""
    numba = sys.modules.get("numba")
    if numba is None and importlib.util.find_spec("numba") is not None:
        with contextlib.suppress(ImportError):
            numba = importlib.import_module("numba")
    return numba


def _numba_threads(n: int | None, numba: Any) -> int | None:
    """Set numba's thread count (this thread's) to ``n`` capped at its pool, starting the
    pool if it has not started; return the old count (``None`` without numba)."""
    if numba is None or not hasattr(numba, "set_num_threads"):
        return None
    old = int(numba.get_num_threads())
    if n is not None:
        numba.set_num_threads(max(1, min(int(n), int(numba.config.NUMBA_NUM_THREADS))))
    return old


@contextlib.contextmanager
def limit_threads(threads: Threads | int) -> Iterator[Threads]:
    """Run the block with these thread counts (an ``int``: the same for all), then put
    every runtime's previous count back.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with limit_threads(1) as t:
        ...     torch.get_num_threads(), t.numba
        (1, 1)
        >>> torch.get_num_threads() == before
        True
    """
    import torch  # not at module level: wait_policy_env must be able to run before it

    t = Threads.all(threads) if isinstance(threads, int) else threads
    old_torch = torch.get_num_threads()
    numba = _numba()  # its pool starts here, not in the block: the start sets PyTorch's count
    old_numba = _numba_threads(t.numba, numba)
    if torch.get_num_threads() != t.torch:
        torch.set_num_threads(t.torch)
    _ACTIVE.append(t)
    try:
        with threadpool_limits(limits=t.blas, user_api="blas"):
            yield t
    finally:
        _ACTIVE.pop()
        _numba_threads(old_numba, numba)
        if torch.get_num_threads() != old_torch:
            torch.set_num_threads(old_torch)
