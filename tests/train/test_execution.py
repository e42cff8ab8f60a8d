"""The Learner's CPU threads follow the thread policy, asked again at each fit, and never
exceed it; the row-wise kernel compiled ahead is the one a fit runs (same weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numba
import numpy as np
import pytest
import torch

from recfit._cpu import Threads, cpu_cores
from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.models import BiasedMF
from recfit.train import Callback, Learner, execution, kernels
from recfit.train.execution import SMALL_BATCH, Execution, thread_count, thread_split

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")

CPU = torch.device("cpu")


def _data(n: int = 600) -> Interactions:
    rng = np.random.default_rng(0)
    return Interactions.from_arrays(
        rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(1, 6, n).astype(float)
    )


class ThreadSpy(Callback):
    """Records PyTorch's and numba's thread counts at every batch of a fit."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()

    def after_batch(self) -> None:
        self.seen.add((torch.get_num_threads(), numba.get_num_threads()))


def test_thread_count_follows_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    model = BiasedMF(40, 30, 8)
    monkeypatch.setattr(execution, "cpu_cores", lambda: 4)
    monkeypatch.setattr(execution, "free_cores", lambda: 3)
    assert thread_count(Execution(), model, SMALL_BATCH, CPU) == 3
    monkeypatch.setattr(execution, "free_cores", lambda: 1)  # asked again: now busy
    assert thread_count(Execution(), model, SMALL_BATCH, CPU) == 1
    assert thread_count(Execution(), model, 64, CPU) == 1  # small model, small batches
    assert thread_count(Execution(num_threads=8), model, 64, CPU) == 4  # at most the cores


def test_thread_split_gives_the_threads_to_the_runtime_that_computes() -> None:
    assert thread_split(3, compiled=True) == Threads(torch=1, numba=3, blas=1)
    assert thread_split(3, compiled=False) == Threads(3, 3, 3)


@pytest.mark.parametrize("compiled", [True, False])
def test_a_fit_never_uses_more_threads_than_the_policy(
    monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    before = (torch.get_num_threads(), numba.get_num_threads())
    d = _data()
    free = [1, min(2, cpu_cores())]
    monkeypatch.setattr(execution, "free_cores", lambda: free[0])
    spy = ThreadSpy()
    learn = Learner(
        BiasedMF(40, 30, 8, global_mean=3.0), d, bs=SMALL_BATCH, progress=False, callbacks=[spy],
        execution=Execution(row_wise=True, compiled=compiled),
    )  # fmt: skip
    learn.fit_one_cycle(1, 0.02)
    assert learn.compiled is compiled
    want = thread_split(1, compiled)
    assert spy.seen == {(want.torch, want.numba)}
    # the next fit asks again: the machine got quiet
    free[0] = free[1]
    spy.seen.clear()
    learn.fit_one_cycle(1, 0.02)
    want = thread_split(free[1], compiled)
    assert spy.seen == {(want.torch, want.numba)}
    assert max(want.torch, want.numba) <= free[1]
    assert (torch.get_num_threads(), numba.get_num_threads()) == before


def test_kernel_compiled_ahead_is_the_one_the_fit_runs() -> None:
    t = kernels.compile_ahead()
    assert t is not None and t is kernels.compile_ahead()
    t.join()
    step = kernels._kernels()["step"]
    ahead = set(step.signatures)
    learn = Learner(
        BiasedMF(40, 30, 8, global_mean=3.0), _data(), bs=64, progress=False,
        execution=Execution(row_wise=True, compiled=True),
    )  # fmt: skip
    learn.fit_one_cycle(1, 0.02)
    assert learn.compiled and set(step.signatures) == ahead  # nothing compiled in the fit


CHILD = """
import json, sys
import numpy as np
from recfit.data import Interactions
from recfit.models import BiasedMF
from recfit.train import Learner, kernels
from recfit.train.execution import Execution
ahead = sys.argv[1] == "1"
if ahead:
    kernels.compile_ahead()
rng = np.random.default_rng(0)
d = Interactions.from_arrays(
    rng.integers(0, 40, 600), rng.integers(0, 30, 600), rng.integers(1, 6, 600).astype(float)
)
learn = Learner(BiasedMF(40, 30, 8, global_mean=3.0), d, bs=64, progress=False,
                execution=Execution(row_wise=True, compiled=True, num_threads=1))
learn.fit_one_cycle(2, 0.02)
sig = kernels._kernels()["step"].signatures
print(json.dumps({"w": [p.detach().numpy().ravel().tolist() for p in learn.model.parameters()],
                  "n_sigs": len(sig)}))
"""


def test_compiled_ahead_gives_the_same_weights(tmp_path: object) -> None:
    """Fresh processes, each with an empty kernel cache: compiled ahead or in the fit."""
    out = []
    for ahead in ("1", "0"):
        env = {**os.environ, "RECFIT_CACHE_DIR": str(tmp_path) + "/" + ahead}
        env.pop("NUMBA_CACHE_DIR", None)
        res = subprocess.run(
            [sys.executable, "-c", CHILD, ahead], env=env, check=True, capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert out[0]["w"] == out[1]["w"]
    assert out[0]["n_sigs"] == out[1]["n_sigs"] == 1


def test_the_rating_task_compiles_ahead_only_for_a_fit_that_may_run_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from recfit.tasks.rating import RatingTask

    started: list[int] = []
    monkeypatch.setattr(kernels, "compile_ahead", lambda: started.append(1))

    def warms(data: Interactions | None = None, **cfg: Any) -> bool:
        started.clear()
        RatingTask().warm_up(RatingConfig(**{"dataset": "ml-1m", "device": "cpu", **cfg}), data)
        return bool(started)

    assert warms()
    assert warms(model="mf", opt="adam")
    assert not warms(model="nn")
    assert not warms(opt="sgd")
    # too small for the row-wise path: the dense path (svdpp or dot), no row-wise kernel
    assert not warms(dataset="ml-100k", budget=0) and not warms(dataset="ml-100k", model="dot")
    assert not warms(dataset="ml-100k", model="svdpp")
    assert warms(dataset="ml-100k")  # auto's search may tune dot or mf up to 256 factors
    assert warms(dataset="ml-100k", n_factors=100)  # 2,625 rows x 101 >= SPARSE_MIN_PARAMS
    assert warms(dataset="ratings.csv")  # a file's size is known only once it is read
    small = Interactions.from_arrays(np.arange(10), np.arange(10), np.ones(10))
    assert not warms(small, dataset="ratings.csv") and warms(small, n_factors=20_000)
