"""Every endpoint and each kind of bad input over a real uvicorn server on 127.0.0.1,
with a model trained on ml-100k (1 epoch)."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from recfit.recommender import Recommender

STAR_WARS = "Star Wars (1977)"


@pytest.fixture(scope="module")
def http(live_url: str) -> httpx.Client:
    with httpx.Client(base_url=live_url, timeout=30) as c:
        yield c


def _err(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error", "detail"} and body["error"], body
    return body


def test_health(http: httpx.Client) -> None:
    body = http.get("/health").json()
    assert body == body | {"status": "ok", "model": "svdpp", "n_users": 943, "n_items": 1682}
    assert body["report"] is True and body["rating_scale"] == [1.0, 5.0]


def test_get_recommend(http: httpx.Client, ml_rec: Recommender) -> None:
    body = http.get("/recommend", params={"user": "196", "n": 10}).json()
    assert body["user"] == 196 and body["path"] == "model" and body["exclude_seen"] is True
    ids = [x["id"] for x in body["items"]]
    assert len(ids) == 10 and not set(ids) & set(ml_rec.seen_items(196))
    assert all(x["title"] for x in body["items"])
    assert ids == ml_rec.recommend(196, n=10)[0].ids


def test_get_recommend_bad_input(http: httpx.Client) -> None:
    assert http.get("/recommend", params={"user": 196, "n": 0}).status_code == 422
    assert http.get("/recommend", params={"user": 196, "n": 1000}).status_code == 422
    assert http.get("/recommend").status_code == 422
    resp = http.get("/recommend", params={"user": 99999, "on_unknown": "error"})
    assert resp.status_code == 404 and "99999" in _err(resp)["error"]
    body = http.get("/recommend", params={"user": 99999, "n": 3}).json()
    assert body["path"] == "popular" and next(x["title"] for x in body["items"]) == STAR_WARS


def test_post_recommend_fold_in(http: httpx.Client, ml_rec: Recommender) -> None:
    ratings = [
        {"item": STAR_WARS, "rating": 5},
        {"item": "Return of the Jedi (1983)", "rating": 5},
        {"item": 174, "rating": 5},  # Raiders of the Lost Ark
        {"item": "the godfather", "rating": 2},
    ]
    body = http.post("/recommend", json={"ratings": ratings, "n": 10}).json()
    assert body["path"] == "fold_in" and len(body["items"]) == 10
    ids = [x["id"] for x in body["items"]]
    assert not {50, 181, 174, 127} & set(ids)
    want = ml_rec.recommend_for_ratings({50: 5, 181: 5, 174: 5, 127: 2}, n=10)
    assert ids == want.ids


def test_post_recommend_bad_input(http: httpx.Client) -> None:
    resp = http.post("/recommend", json={"ratings": [{"item": "Star Warz 9", "rating": 5}]})
    assert resp.status_code == 404
    assert any(m["title"] == STAR_WARS for m in _err(resp)["detail"]["matches"])
    resp = http.post("/recommend", json={"ratings": [{"item": 50, "rating": 0}]})
    assert resp.status_code == 422 and "rating" in _err(resp)["error"]
    resp = http.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422 and "JSON" in _err(resp)["error"]
    big = b'{"ratings": [' + b'{"item": 50, "rating": 5},' * 20000 + b"]}"
    resp = http.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and _err(resp)["detail"]["max_bytes"] < len(big)


def test_oversized_body_without_length(live_url: str) -> None:
    """A chunked body is counted as it arrives and refused past the limit."""
    host, port = live_url.removeprefix("http://").split(":")
    chunk = b'{"item": 50, "rating": 5},' * 1000
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(20):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server may close the connection once it has answered
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_similar(http: httpx.Client, ml_rec: Recommender) -> None:
    a = http.get("/similar", params={"item": STAR_WARS, "n": 10}).json()
    b = http.get("/similar", params={"item": "50", "n": 10}).json()
    assert a == b and a["query"] == 50 and a["title"] == STAR_WARS
    ids = [x["id"] for x in a["neighbours"]]
    assert len(ids) == 10 and 50 not in ids
    assert ids == ml_rec.similar_items(50, n=10)[0].ids
    resp = http.get("/similar", params={"item": "Not A Movie At All"})
    assert resp.status_code == 404
    _err(resp)


def test_predict(http: httpx.Client, ml_rec: Recommender) -> None:
    pairs = [{"user": 196, "item": 242}, {"user": "186", "item": STAR_WARS}]
    body = http.post("/predict", json={"pairs": pairs}).json()
    got = [p["prediction"] for p in body["predictions"]]
    np.testing.assert_allclose(got, ml_rec.predict([196, 186], [242, 50]), rtol=1e-6)
    assert body["predictions"][0]["title"] == "Kolya (1996)"
    resp = http.post("/predict", json={"pairs": [{"user": 0, "item": 242}]})
    assert resp.status_code == 404
    _err(resp)
    assert http.post("/predict", json={"pairs": []}).status_code == 422


def test_items(http: httpx.Client) -> None:
    body = http.get("/items", params={"query": "star wars", "n": 5}).json()
    assert body["items"][0]["title"] == STAR_WARS and len(body["items"]) <= 5
    assert http.get("/items", params={"query": ""}).status_code == 422


def test_report_page_docs(http: httpx.Client) -> None:
    rep = http.get("/report")
    assert rep.status_code == 200 and "text/html" in rep.headers["content-type"]
    assert "<h2>Metrics</h2>" in rep.text and "data:image/png;base64," in rep.text
    page = http.get("/")
    assert page.status_code == 200 and 'id="search"' in page.text
    assert http.get("/docs").status_code == 404
    assert "/recommend" in http.get("/openapi.json").json()["paths"]


def test_concurrent_requests_agree(live_url: str, ml_rec: Recommender) -> None:
    users = [int(u) for u in ml_rec.users.id(np.arange(40))]

    def ask(u: int) -> list[int]:
        with httpx.Client(base_url=live_url, timeout=60) as c:
            r = c.get("/recommend", params={"user": u, "n": 10})
            assert r.status_code == 200
            return [x["id"] for x in r.json()["items"]]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, users))
    assert got == [r.ids for r in ml_rec.recommend(users, n=10)]
