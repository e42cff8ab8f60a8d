"""Shared fixtures: tiny synthetic data and the location of the shared MovieLens copies."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from recfit.data import Interactions
from recfit.train.callbacks import Callback

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_datasets() -> Path | None:
    """The folder holding ml-100k and ml-1m, or None when it is not there."""
    env = os.environ.get("RECFIT_DATA_DIR")
    for cand in (Path(env) if env else None, _SHARED):
        if cand is not None and (cand / "ml-100k" / "u.data").exists():
            return cand
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared MovieLens folder; tests that need it are skipped without it."""
    d = shared_datasets()
    if d is None:
        pytest.skip("shared MovieLens datasets not found (set RECFIT_DATA_DIR)")
    return d


@pytest.fixture
def tiny() -> Interactions:
    """A small dense-ish rating set with a known low-rank structure (seeded)."""
    rng = np.random.default_rng(0)
    n_users, n_items, k = 30, 20, 3
    pu = rng.normal(size=(n_users, k))
    qi = rng.normal(size=(n_items, k))
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    keep = rng.random(users.shape) < 0.6
    u, i = users[keep], items[keep]
    r = np.clip(np.round(3 + (pu[u] * qi[i]).sum(1)), 1, 5)
    ts = 1_000_000 + rng.integers(0, 10_000, size=len(u))
    return Interactions.from_arrays(u + 100, i + 1000, r, timestamp=ts, rating_scale=(1, 5))


@contextlib.contextmanager
def _serve_process(run: Path, timeout: float = 90.0) -> Iterator[str]:
    """``recfit serve RUN`` in a subprocess on a free loopback port; yields its URL once
    /health answers, and stops it on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "recfit", "serve", str(run), "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                httpx.get(url + "/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "recfit serve did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def serve_process() -> Callable[..., AbstractContextManager[str]]:
    """Start ``recfit serve`` on a run in a real process: ``with serve_process(run) as url``."""
    return _serve_process


@pytest.fixture
def low_rank() -> Interactions:
    """40 users x 30 items, half the pairs rated: biases plus a rank-2 term plus noise,
    clipped to 1-5 (seeded)."""
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    p, q = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    keep = rng.random(users.shape) < 0.5
    u, i = users[keep], items[keep]
    r = np.clip(3 + bu[u] + bi[i] + (p[u] * q[i]).sum(1) + rng.normal(0, 0.3, len(u)), 1, 5)
    return Interactions.from_arrays(u, i, r, rating_scale=(1, 5))


def _baseline_rmse(train: Interactions, valid: Interactions) -> float:
    import torch

    from recfit.models import create_model, family
    from recfit.train.batches import TensorData

    base = create_model("baseline", train)
    family("baseline").closed_form(base, train)  # type: ignore[misc]
    with torch.no_grad():
        pred = base(TensorData.from_interactions(valid).columns).numpy()
    return float(np.sqrt(np.mean((pred - valid.rating) ** 2)))


@pytest.fixture
def baseline_rmse() -> Callable[[Interactions, Interactions], float]:
    """The RMSE on ``valid`` of BaselineOnly fitted on ``train``: the bar a model must clear."""
    return _baseline_rmse


@pytest.fixture
def ratings_csv(tmp_path: Path, tiny: Interactions) -> Path:
    """``tiny`` written as a CSV with columns user, item, rating."""
    p = tmp_path / "r.csv"
    tiny.to_frame().to_csv(p, index=False)
    return p


def _run_fresh(code: str, env: dict[str, str]) -> Any:
    """Run ``code`` in a fresh Python process whose cache settings are only those in ``env``
    (``RECFIT_CACHE_DIR``, ``NUMBA_CACHE_DIR``; the rest of the environment is inherited);
    it must succeed, and the JSON on its last output line is returned."""
    keep = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "RECFIT_CACHE_DIR")}
    res = subprocess.run(
        [sys.executable, "-c", code], env={**keep, **env}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


@pytest.fixture
def run_fresh() -> Callable[[str, dict[str, str]], Any]:
    """``run_fresh(code, env)``: ``code`` in a fresh process with only ``env``'s cache
    settings; the JSON of its last output line (see :func:`_run_fresh`)."""
    return _run_fresh


@pytest.fixture
def kernel_epochs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets one entry per epoch run as one compiled kernel
    (:func:`recfit.train.dense_epoch.fit_epoch`), counted from here on."""
    from recfit.train import dense_epoch

    calls: list[int] = []
    run = dense_epoch.fit_epoch

    def counted(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return run(*a, **kw)

    monkeypatch.setattr(dense_epoch, "fit_epoch", counted)
    return calls


class _Crash(Callback):
    """Raises ``RuntimeError("crash")`` after global step ``at``, as a killed process would
    stop between checkpoints."""

    def __init__(self, at: int) -> None:
        self.at = at

    def after_batch(self) -> None:
        if self.learn.train_iter == self.at:
            raise RuntimeError("crash")


@pytest.fixture
def crash_at() -> Callable[[int], Callback]:
    """``crash_at(step)``: a callback that raises ``RuntimeError("crash")`` after that
    global step (a simulated kill; the test resumes from what was saved)."""
    return _Crash
