"""Heavy work in forked processes (``recfit serve``'s default on Linux) answers exactly
what the thread pool answers, errors included, and /health stays on the event loop."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from recfit.recommender import Recommender
from recfit.server import create_app

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork"
)

REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/predict", {"json": {"pairs": [{"user": 1, "item": 2}, {"user": 2, "item": 9}]}}),
    ("POST", "/predict", {"json": {"pairs": [{"user": 1, "item": "nope"}], "on_unknown": "null"}}),
    ("POST", "/predict", {"json": {"pairs": [{"user": 1, "item": "Synthetic Movie 9"}]}}),
    ("POST", "/predict", {"json": {"pairs": [{"user": 4242, "item": 2}]}}),
    ("POST", "/predict", {"json": {"pairs": [{"user": True, "item": 2}]}}),
    (
        "POST",
        "/predict",
        {"content": b'{"pairs": [', "headers": {"content-type": "application/json"}},
    ),
    ("POST", "/predict", {"content": b'{"pairs": []}', "headers": {"content-type": "text/plain"}}),
    ("POST", "/recommend", {"json": {"ratings": [{"item": 3, "rating": 5}], "n": 5}}),
    ("POST", "/recommend", {"json": {"ratings": [{"item": 3, "rating": 9}]}}),
    ("POST", "/recommend", {"json": {"ratings": [{"item": "qqqq zzzz", "rating": 4}]}}),
    ("POST", "/recommend", {"json": {"ratings": [], "user": 1}}),
    ("GET", "/similar", {"params": {"item": 5, "n": 4}}),
    ("GET", "/similar", {"params": {"item": "qqqq zzzz"}}),
    ("GET", "/items", {"params": {"query": "synthetic movie 1", "n": 3}}),
]


@pytest.fixture(scope="module")
def urls(synth_rec: Recommender, serve: Any) -> Iterator[tuple[str, str]]:
    threads = create_app(synth_rec, warm_up=False)
    procs = create_app(synth_rec, warm_up=False, work_processes=True)
    with serve(threads) as a, serve(procs) as b:
        yield a, b


@pytest.mark.parametrize(("method", "path", "kw"), REQUESTS)
def test_processes_answer_like_threads(
    urls: tuple[str, str], method: str, path: str, kw: dict[str, Any]
) -> None:
    got = []
    for url in urls:
        with httpx.Client(base_url=url, timeout=60) as http:
            resp = http.request(method, path, **kw)
            got.append((resp.status_code, resp.json()))
    assert got[0] == got[1]
    assert got[0][0] < 500


def test_health_answers_while_processes_work(urls: tuple[str, str]) -> None:
    with httpx.Client(base_url=urls[1], timeout=60) as http:
        assert http.get("/health").json()["status"] == "ok"
