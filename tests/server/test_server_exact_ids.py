"""Ids match exactly over HTTP and in the Python API: never through a float, never through
a lenient parse; ids outside int64, lone surrogates and deep JSON are 4xx, never 5xx."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recfit.data import Interactions
from recfit.errors import UnknownIdError
from recfit.models import create_model
from recfit.recommender import Recommender
from recfit.server import create_app

BIG = 9007199254740992  # 2**53: BIG + 1 is the first integer a float64 cannot hold


@pytest.fixture(scope="module")
def rec() -> Recommender:
    users = [BIG, BIG + 1, 1, 1, BIG, BIG + 1, 7]
    items = [50, 51, 50, 52, 53, 54, 51]
    d = Interactions.from_arrays(users, items, [4.0, 5.0, 3.0, 2.0, 1.0, 4.0, 3.0])
    info = pd.DataFrame({"title": ["Fifty", "Fifty-one", "Two", "Three", "Four"]})
    model = create_model("dot", d, n_factors=4, seed=0)
    return Recommender(model, d.users, d.items, d, item_info=info)


@pytest.fixture(scope="module")
def client(rec: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(rec), raise_server_exceptions=False) as c:
        yield c


def _err(resp: object) -> dict:
    body = resp.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "detail"} and isinstance(body["error"], str), body
    return body


def test_get_recommend_answers_for_the_user_asked_above_2_to_53(client: TestClient) -> None:
    for user in (BIG, BIG + 1):
        body = client.get("/recommend", params={"user": str(user), "n": 3}).json()
        assert body["user"] == user and body["path"] == "model"


def test_predict_mixed_int_and_string_ids_resolve_exactly(
    client: TestClient, rec: Recommender
) -> None:
    want = rec.predict([BIG + 1, BIG], [50, 50])
    assert want[0] != want[1]  # the two users are told apart by the model
    pairs = [{"user": BIG + 1, "item": 50}, {"user": "ghost", "item": 50}]
    body = client.post("/predict", json={"pairs": pairs, "on_unknown": "null"}).json()
    got = body["predictions"]
    assert got[0]["user"] == BIG + 1
    np.testing.assert_allclose(got[0]["prediction"], want[0], rtol=1e-6)
    assert got[1]["prediction"] is None
    pairs = [{"user": str(BIG + 1), "item": "Fifty"}, {"user": BIG, "item": 50}]
    got = client.post("/predict", json={"pairs": pairs}).json()["predictions"]
    np.testing.assert_allclose([p["prediction"] for p in got], want, rtol=1e-6)


@pytest.mark.parametrize("value", [True, False, 50.0, None, [50], {"id": 50}])
def test_json_ids_that_are_not_integers_or_strings_get_422(
    client: TestClient, value: object
) -> None:
    for payload in (
        {"pairs": [{"user": value, "item": 50}]},
        {"pairs": [{"user": 1, "item": value}]},
        {"ratings": [{"item": value, "rating": 4}]},
    ):
        path = "/predict" if "pairs" in payload else "/recommend"
        resp = client.post(path, json=payload)
        assert resp.status_code == 422, (payload, resp.text)
        assert "expected an id as an integer or a string" in _err(resp)["error"]


@pytest.mark.parametrize("item", ["5e1", "050", " 50 ", "+50", "50.0", "0x32"])
def test_lenient_spellings_of_an_id_are_not_that_id(client: TestClient, item: str) -> None:
    resp = client.post("/predict", json={"pairs": [{"user": 1, "item": item}]})
    assert resp.status_code == 404, resp.text
    assert item in _err(resp)["error"]
    body = client.post(
        "/predict", json={"pairs": [{"user": 1, "item": item}], "on_unknown": "null"}
    ).json()
    assert body["predictions"][0]["prediction"] is None
    assert body["predictions"][0]["item"] == item
    resp = client.post("/recommend", json={"ratings": [{"item": item, "rating": 4}]})
    assert resp.status_code == 404, resp.text
    resp = client.get("/similar", params={"item": item})
    assert resp.status_code == 404, resp.text
    resp = client.get("/recommend", params={"user": item.replace("5", "1"), "on_unknown": "error"})
    assert resp.status_code == 404, resp.text


@pytest.mark.parametrize("big", [2**63, 2**64 + 1, -(2**63) - 1, 10**40])
def test_ids_outside_int64_are_unknown_not_500(client: TestClient, big: int) -> None:
    resp = client.post("/predict", json={"pairs": [{"user": big, "item": 50}]})
    assert resp.status_code == 404, resp.text
    resp = client.post("/predict", json={"pairs": [{"user": 1, "item": big}]})
    assert resp.status_code == 404, resp.text
    body = client.post(
        "/predict",
        json={"pairs": [{"user": big, "item": 50}, {"user": 1, "item": big}], "on_unknown": "null"},
    ).json()
    assert [p["prediction"] for p in body["predictions"]] == [None, None]
    assert body["predictions"][0]["user"] == big and body["predictions"][1]["item"] == big
    resp = client.post("/recommend", json={"ratings": [{"item": big, "rating": 4}]})
    assert resp.status_code == 404, resp.text
    resp = client.get("/recommend", params={"user": str(big), "on_unknown": "error"})
    assert resp.status_code == 404, resp.text


def test_lone_surrogate_ids_get_422(client: TestClient) -> None:
    raw = json.dumps({"pairs": [{"user": 1, "item": "\ud800"}]}).encode()  # "\\ud800" escape
    for extra in (b"", b', "on_unknown": "null"'):
        body = raw[:-1] + extra + b"}"
        resp = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 422, resp.text
        assert "surrogate" in _err(resp)["error"]
    raw = json.dumps({"ratings": [{"item": "\udfff x", "rating": 3}]}).encode()
    resp = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 422 and "surrogate" in _err(resp)["error"]


@pytest.mark.parametrize("depth", [50, 5000, 100_000])
def test_deeply_nested_json_gets_422(client: TestClient, depth: int) -> None:
    body = b'{"pairs": ' + b"[" * depth + b"]" * depth + b"}"
    resp = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert resp.status_code in (413, 422), resp.text
    _err(resp)
    if len(body) <= 256 * 1024:
        assert resp.status_code == 422


def test_python_api_matches_exactly(rec: Recommender) -> None:
    assert rec.recommend([str(BIG + 1)], n=2)[0].user == BIG + 1  # the canonical string
    for bad in ("050", " 50 ", "5e1", 50.0, True):
        with pytest.raises(UnknownIdError):
            rec.predict(1, bad)
    for bad in ("01", " 1", "1e0", 1.0, True):
        assert rec.recommend([bad], n=2)[0].path == "popular"
    assert rec.resolve_item("50") == 50 and rec.resolve_item(50) == 50
    with pytest.raises(UnknownIdError):
        rec.resolve_item(True)
    with pytest.raises(UnknownIdError):
        rec.resolve_item(50.0)


def test_pipelined_request_behind_a_huge_id_is_answered(rec: Recommender, serve: Any) -> None:
    """A request with an id >= 2**63 is a 404 and keeps the connection: the request
    pipelined behind it on the same connection gets its answer."""
    first = json.dumps({"pairs": [{"user": 2**63, "item": 50}]}).encode()
    request = (
        b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(first), first)
    )
    request += b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with serve(create_app(rec, warm_up=False)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(request)
            reply = b""
            for _ in range(100):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 404"), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 200" in reply, reply
    assert b'"status":"ok"' in reply


@pytest.mark.parametrize(
    "payload",
    [
        {"ratings": [{"item": 50, "rating": True}]},
        {"ratings": [{"item": 50, "rating": "5"}]},
        {"ratings": [], "n": True},
        {"ratings": [], "n": 5.0},
        {"ratings": [], "n": "5"},
        {"ratings": [], "exclude_rated": 1},
    ],
)
def test_numbers_and_flags_in_bodies_are_strict(client: TestClient, payload: dict) -> None:
    resp = client.post("/recommend", json=payload)
    assert resp.status_code == 422, resp.text
    _err(resp)


@pytest.mark.parametrize(
    "path", ["/items?query=%ED%A0%80", "/recommend?user=%FF", "/similar?item=a%C0"]
)
def test_undecodable_query_strings_get_422(client: TestClient, path: str) -> None:
    """Not answered for the replacement characters Starlette would decode them to."""
    resp = client.get(path)
    assert resp.status_code == 422, resp.text
    assert "UTF-8" in _err(resp)["error"]
