"""Server fixtures: a tiny ml-100k run (1 epoch), a synthetic recommender, a live server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import uvicorn
from fastapi import FastAPI

from recfit.config import RatingConfig
from recfit.data.synthetic import synthetic
from recfit.recommender import Recommender
from recfit.report import build_report
from recfit.runs import recommender_of, train_run
from recfit.server import create_app, serve_config


@contextmanager
def serve_in_thread(app: FastAPI, **limits: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 (an ephemeral port) in a thread, with
    recfit's connection limits (``serve_config``; ``limits`` override them); yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(serve_config(app, port=port, log_level="warning", **limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="session")
def ml_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of a 1-epoch DotBias on ml-100k, with its report.html."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("server") / "run"
    cfg = RatingConfig(
        dataset="ml-100k", data_dir=str(data_dir), epochs=1, n_factors=32, seed=0, budget=0
    )  # budget 0: auto by size (svdpp here), no search
    train_run(cfg, out, progress=False)
    build_report(out)
    return out


@pytest.fixture(scope="session")
def ml_rec(ml_run: Path) -> Recommender:
    """The ml-100k run's Recommender, loaded from its bundle."""
    return Recommender.load(ml_run)


@pytest.fixture(scope="session")
def live_url(ml_rec: Recommender, ml_run: Path) -> Iterator[str]:
    """The base URL of a real uvicorn server over the ml-100k run (loopback)."""
    app = create_app(ml_rec, report_path=ml_run / "report.html")
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="session")
def synth_rec() -> Recommender:
    """A small synthetic recommender with titles, trained for a few epochs (no real data)."""
    data = synthetic(4000, 80, 60, with_features=True, seed=3)
    cfg = RatingConfig(model="dot", epochs=3, n_factors=8, bs=128, lr=1e-2, seed=0)
    return recommender_of(train_run(cfg, data=data, progress=False))


@pytest.fixture(scope="session")
def serve() -> Any:
    """:func:`serve_in_thread`, for tests that start their own server."""
    return serve_in_thread
