"""The CPU thread policy: free cores from the affinity mask and the runnable count, and
the thread counts set for a block and put back."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import pytest
import torch
from threadpoolctl import threadpool_info

from recfit import _cpu
from recfit._cpu import Threads, active, free_cores, limit_threads, running_now


@pytest.mark.parametrize(
    ("cores", "running", "free"),
    [(4, 0.0, 4), (4, 0.4, 4), (4, 0.6, 3), (4, 2.0, 2), (4, 10.0, 1), (2, 2.0, 1), (1, 0.0, 1)],
)
def test_free_cores_is_the_cores_minus_the_other_runnable_tasks(
    cores: int, running: float, free: int
) -> None:
    assert free_cores(cores=cores, running=running) == free


def test_free_cores_reads_the_affinity_mask_and_the_runnable_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(_cpu, "running_now", lambda: 2.0)
    assert free_cores() == 4
    monkeypatch.setattr(_cpu, "running_now", lambda: 9.0)  # a busy machine: one thread
    assert free_cores() == 1


def test_without_the_runnable_count_the_load_average_beyond_one_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(_cpu, "_read_running", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 1.0, 1.0))
    assert free_cores() == 2


def test_running_now_is_the_median_reading_less_the_reader() -> None:
    readings = iter([3, 9, 3])
    assert running_now(lambda: next(readings), samples=3, interval=0.0) == 2.0
    assert running_now(lambda: None, samples=3, interval=0.0) is None
    assert running_now(lambda: 1, samples=1) == 0.0


def test_running_now_reads_the_machine() -> None:
    got = running_now(samples=1)
    assert got is None or got >= 0.0


def test_limit_threads_sets_every_runtime_and_puts_them_back() -> None:
    before = (torch.get_num_threads(), numba.get_num_threads())
    with limit_threads(Threads(torch=1, numba=1, blas=1)) as t:
        assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1)
        assert active() == t
        blas = [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]
        assert all(n == 1 for n in blas)
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    assert active() is None


class _PoolStartsAtFirstCall:
    """Stands in for numba: its first thread call starts the pool, and the start sets the
    caller's OpenMP count, PyTorch's too (numba's OpenMP layer binds to PyTorch's runtime)."""

    def __init__(self) -> None:
        self.started = False
        self.threads = 2
        self.config = type("config", (), {"NUMBA_NUM_THREADS": 2})

    def _start(self) -> None:
        if not self.started:
            self.started = True
            torch.set_num_threads(2)

    def get_num_threads(self) -> int:
        self._start()
        return self.threads

    def set_num_threads(self, n: int) -> None:
        self._start()
        self.threads = n


def test_limit_threads_sets_pytorch_after_numba_starts_its_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    fake = _PoolStartsAtFirstCall()
    monkeypatch.setitem(sys.modules, "numba", fake)
    try:
        torch.set_num_threads(1)  # the process asked for one thread, as the policy does
        with limit_threads(1):
            assert (torch.get_num_threads(), fake.threads) == (1, 1)
        assert (torch.get_num_threads(), fake.threads) == (1, 2)
    finally:
        torch.set_num_threads(before)


def test_limit_threads_holds_in_a_process_that_starts_numbas_pool_in_it() -> None:
    """The real runtimes, in a fresh process (numba's pool starts once per process)."""
    code = (
        "import torch, numba\n"
        "torch.set_num_threads(1)\n"
        "from recfit._cpu import limit_threads\n"
        "with limit_threads(1):\n"
        "    inside = torch.get_num_threads()\n"
        "print(inside, torch.get_num_threads())\n"
    )
    assert _run_with_two_numba_threads(code) == ["1", "1"]


def test_limit_threads_holds_when_numba_first_runs_a_parallel_kernel_in_the_block() -> None:
    """A fresh process that has not imported numba: a kernel imported and run inside the
    block (its first parallel call would start numba's pool, which sets PyTorch's count)
    leaves PyTorch's count and numba's at the block's, and both are put back after."""
    code = (
        "import sys, torch\n"
        "torch.set_num_threads(2)\n"
        "from recfit._cpu import limit_threads\n"
        "assert 'numba' not in sys.modules\n"
        "with limit_threads(1):\n"
        "    import numba, numpy as np\n"
        "    @numba.njit(parallel=True)\n"
        "    def total(x):\n"
        "        s = 0.0\n"
        "        for i in numba.prange(len(x)):\n"
        "            s += x[i]\n"
        "        return s\n"
        "    assert total(np.ones(1000)) == 1000.0\n"
        "    inside = (torch.get_num_threads(), numba.get_num_threads())\n"
        "print(*inside, torch.get_num_threads(), numba.get_num_threads())\n"
    )
    assert _run_with_two_numba_threads(code) == ["1", "1", "2", "2"]


def _run_with_two_numba_threads(code: str) -> list[str]:
    """``code`` run in a fresh Python process whose numba pool has two threads: the words
    it printed (it must succeed)."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()
