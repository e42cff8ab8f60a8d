"""The CPU thread policy: free cores from the affinity mask and the runnable count, and
the thread counts set for a block and put back."""

from __future__ import annotations

import os

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
