"""Bounded work per request, admission (429), the time budget (503), a /health that
heavy requests cannot starve, and the header and body timeouts of slow clients."""

from __future__ import annotations

import difflib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recfit.data import Interactions, Vocabulary
from recfit.models import create_model
from recfit.recommender import Recommender, TitleIndex
from recfit.recommender import titles as titles_module
from recfit.server import create_app
from recfit.server.schemas import MAX_PAIRS


def _rec(n_items: int = 300) -> Recommender:
    users = [u % 40 for u in range(n_items * 2)]
    items = [i % n_items for i in range(n_items * 2)]
    d = Interactions.from_arrays(users, items, [float(1 + i % 5) for i in range(n_items * 2)])
    info = pd.DataFrame({"title": [f"Movie number {i} ({1950 + i % 60})" for i in range(n_items)]})
    return Recommender(
        create_model("dot", d, n_factors=4, seed=0), d.users, d.items, d, item_info=info
    )


@pytest.fixture(scope="module")
def rec() -> Recommender:
    return _rec()


def _err(resp: Any) -> dict:
    body = resp.json()
    assert set(body) == {"error", "detail"} and body["error"], body
    return body


def test_unmatched_titles_with_on_unknown_null_run_no_close_match_search(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 unmatched titles cost 1,000 dictionary lookups, not 1,000 fuzzy searches."""
    calls = {"find": 0}
    real_find = TitleIndex.find

    def counting_find(self: TitleIndex, query: Any, n: int = 10) -> Any:
        calls["find"] += 1
        return real_find(self, query, n)

    monkeypatch.setattr(TitleIndex, "find", counting_find)
    pairs = [{"user": 1, "item": f"no such film {i:04d} xx"} for i in range(MAX_PAIRS)]
    with TestClient(create_app(rec, warm_up=False)) as client:
        resp = client.post("/predict", json={"pairs": pairs, "on_unknown": "null"})
        assert resp.status_code == 200
        assert all(p["prediction"] is None for p in resp.json()["predictions"])
        assert calls["find"] == 0
        resp = client.post("/predict", json={"pairs": pairs})  # 404 with close matches
        assert resp.status_code == 404 and "no such film 0000" in _err(resp)["error"]
        assert calls["find"] == 1


def test_fuzzy_title_search_compares_a_capped_number_of_titles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = 3000
    index = TitleIndex(Vocabulary(range(n)), [f"Movie number {i} (1999)" for i in range(n)])
    calls = {"ratio": 0}
    real_ratio = difflib.SequenceMatcher.ratio

    def counting_ratio(self: difflib.SequenceMatcher) -> float:  # type: ignore[type-arg]
        calls["ratio"] += 1
        return real_ratio(self)

    monkeypatch.setattr(difflib.SequenceMatcher, "ratio", counting_ratio)
    found = index.find("movei numbr 1234", n=5)
    assert 0 < calls["ratio"] <= titles_module.FUZZY_CANDIDATES
    assert found and found[0].id == 1234


@pytest.fixture()
def gate(rec: Recommender, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """GET /items blocks on this event (at most 20 s) so that the pool stays busy."""
    release = threading.Event()
    started = threading.Event()
    real = rec.find_items

    def blocking(query: Any, n: int = 10) -> Any:
        started.set()
        release.wait(20)
        return real(query, n)

    monkeypatch.setattr(rec, "find_items", blocking)
    release.started = started  # type: ignore[attr-defined]
    yield release
    release.set()


def test_a_full_pool_answers_429_and_health_still_answers(
    rec: Recommender, gate: threading.Event, serve: Any
) -> None:
    app = create_app(rec, warm_up=False, work_threads=1, work_queue=0)
    with serve(app) as url, ThreadPoolExecutor(1) as bg:
        slow = bg.submit(httpx.get, f"{url}/items", params={"query": "movie"}, timeout=60)
        assert gate.started.wait(30)  # type: ignore[attr-defined]
        with httpx.Client(base_url=url, timeout=30) as http:
            resp = http.post("/predict", json={"pairs": [{"user": 1, "item": 2}]})
            assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
            _err(resp)
            t0 = time.monotonic()
            assert http.get("/health").status_code == 200
            assert time.monotonic() - t0 < 10  # answered while the only worker is busy
            assert http.get("/recommend", params={"user": 1}).status_code == 200
            gate.set()
            assert slow.result(60).status_code == 200
            assert (
                http.post("/predict", json={"pairs": [{"user": 1, "item": 2}]}).status_code == 200
            )


def test_a_request_past_its_budget_gets_503(rec: Recommender, gate: threading.Event) -> None:
    app = create_app(rec, warm_up=False, request_budget_s=0.3)
    with TestClient(app) as client:
        resp = client.get("/items", params={"query": "movie"})
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert _err(resp)["detail"] == {"budget_s": 0.3}
        gate.set()


@pytest.mark.parametrize(
    "bad",
    [
        {"body_timeout_s": 0},
        {"work_threads": 0},
        {"work_queue": -1},
        {"request_budget_s": float("nan")},
        {"work_threads": True},
    ],
)
def test_create_app_rejects_bad_limits(rec: Recommender, bad: dict) -> None:
    from recfit.errors import ConfigError

    with pytest.raises(ConfigError):
        create_app(rec, warm_up=False, **bad)


# ------------------------------------------------------------------ slow clients
def _read_until_closed(sock: socket.socket, limit_s: float = 20.0) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (or ``limit_s`` passes)."""
    sock.settimeout(0.5)
    got = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


@pytest.fixture(scope="module")
def strict_url(serve: Any) -> Iterator[str]:
    app = create_app(_rec(50), warm_up=False, body_timeout_s=1.0)
    with serve(app, header_timeout_s=1.0, keep_alive_s=1) as url:
        yield url


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_a_body_that_never_comes_gets_408_and_the_connection_closes(strict_url: str) -> None:
    with _connect(strict_url) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        got, closed = _read_until_closed(s)
    assert closed and got.startswith(b"HTTP/1.1 408"), got[:200]
    assert b"expected the request body within 1 s" in got


def test_slow_request_heads_and_silent_connections_are_closed(strict_url: str) -> None:
    with _connect(strict_url) as silent, _connect(strict_url) as partial:
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # never finished
        assert _read_until_closed(silent)[1]
        assert _read_until_closed(partial)[1]


def test_many_stalled_bodies_are_all_closed(strict_url: str) -> None:
    socks = [_connect(strict_url) for _ in range(50)]
    try:
        for s in socks:
            s.sendall(b"POST /recommend HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        closed = [_read_until_closed(s)[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(closed)
    with httpx.Client(base_url=strict_url, timeout=30) as http:  # and the server still answers
        assert http.get("/health").status_code == 200


def test_a_stalled_body_holds_no_work_slot(rec: Recommender, serve: Any) -> None:
    """Admission happens once the body is in: slow uploads cannot fill the pool."""
    app = create_app(rec, warm_up=False, work_threads=1, work_queue=0, body_timeout_s=30)
    with serve(app) as url, _connect(url) as stalled:
        stalled.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=30) as http:
            resp = http.post("/predict", json={"pairs": [{"user": 1, "item": 2}]})
            assert resp.status_code == 200, resp.text
