"""Hypothesis over the HTTP API: arbitrary JSON bodies, query strings and ids (huge
integers, floats, booleans, lone surrogates, nested values). For every request: no 5xx, a
JSON ``{error, detail}`` body on every 4xx, and a 200 answers for exactly the id asked."""

from __future__ import annotations

import json
import re
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.models import create_model
from recfit.recommender import Recommender
from recfit.server import create_app

BIG = 2**53
USERS = [BIG, BIG + 1, 1, 2, 3, 50, -7]
ITEMS = [50, 51, BIG + 1, 7, 8, 0]
TITLES = ["Fifty (1999)", "Fifty-one (1999)", "Big One (2001)", "Seven", "Eight", "Zero, The"]
_CANONICAL = re.compile(r"-?(?:0|[1-9][0-9]*)")

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def rec() -> Recommender:
    rng = np.random.default_rng(0)
    users = [USERS[i % len(USERS)] for i in range(60)]
    items = [ITEMS[(i * 5 + i // 7) % len(ITEMS)] for i in range(60)]
    frame = pd.DataFrame({"u": users, "i": items}).drop_duplicates()
    ratings = rng.integers(1, 6, len(frame)).astype(float)
    d = Interactions.from_arrays(frame["u"].tolist(), frame["i"].tolist(), ratings)
    order = [ITEMS.index(int(x)) for x in d.items.ids]
    info = pd.DataFrame({"title": [TITLES[j] for j in order]})
    model = create_model("dot", d, n_factors=4, seed=0)
    return Recommender(model, d.users, d.items, d, item_info=info)


@pytest.fixture(scope="module")
def client(rec: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(rec), raise_server_exceptions=False) as c:
        yield c


def _exact(value: Any, known: list[int]) -> int | None:
    """The id a value names exactly, by the documented rule (or None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in known else None
    if isinstance(value, str) and _CANONICAL.fullmatch(value) and value != "-0":
        return int(value) if int(value) in known else None
    return None


def _check(resp: Any) -> Any:
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    body = resp.json()
    if resp.status_code >= 400:
        assert isinstance(body, dict) and set(body) == {"error", "detail"}, body
        assert isinstance(body["error"], str) and body["error"]
    return body


surrogates = st.sampled_from(["\ud800", "a\udfffb", "\udbff\udc00x"[0]])
texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["050", " 50 ", "5e1", "+50", "50.0", "-0", "0x32", str(BIG + 1), str(2**63)]),
    st.integers(-(2**70), 2**70).map(str),
    surrogates,
)
ids = st.one_of(
    st.sampled_from(USERS + ITEMS),
    st.integers(-(2**70), 2**70),
    texts,
    st.sampled_from(TITLES),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | texts,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _post(client: TestClient, path: str, payload: Any) -> Any:
    raw = json.dumps(payload).encode()  # lone surrogates travel as \\ud800 escapes
    return client.post(path, content=raw, headers={"content-type": "application/json"})


@FUZZ
@given(
    st.lists(st.tuples(ids, ids), min_size=1, max_size=6),
    st.sampled_from(["error", "null"]),
)
def test_predict_fuzz(client: TestClient, rec: Recommender, pairs: list, on_unknown: str) -> None:
    payload = {"pairs": [{"user": u, "item": i} for u, i in pairs], "on_unknown": on_unknown}
    resp = _post(client, "/predict", payload)
    body = _check(resp)
    if resp.status_code != 200:
        return
    known_users = [int(x) for x in rec.users.ids]
    known_items = [int(x) for x in rec.items.ids]
    for (u, i), got in zip(pairs, body["predictions"], strict=True):
        assert got["user"] == u
        user = _exact(u, known_users)
        item = _exact(i, known_items)
        if item is not None:
            assert got["item"] == item  # an exact id wins over any title
        if got["prediction"] is None:
            assert on_unknown == "null"
            continue
        assert user is not None, (u, got)
        want = rec.predict([user], [got["item"]])[0]
        assert got["prediction"] == pytest.approx(float(want), rel=1e-6)
        if item is None:  # matched by title: the title must be that item's
            assert isinstance(i, str) and got["title"] is not None


@FUZZ
@given(st.lists(st.tuples(ids, st.one_of(st.floats(), st.integers(-3, 9), ids)), max_size=5), ids)
def test_fold_in_fuzz(client: TestClient, ratings: list, n: Any) -> None:
    payload = {"ratings": [{"item": i, "rating": r} for i, r in ratings], "n": n}
    _check(_post(client, "/recommend", payload))


@FUZZ
@given(json_values, st.sampled_from(["/predict", "/recommend"]))
def test_any_json_body_fuzz(client: TestClient, payload: Any, path: str) -> None:
    resp = _post(client, path, payload)
    _check(resp)


@FUZZ
@given(st.binary(max_size=40), st.sampled_from(["user", "item", "query", "n", "on_unknown"]))
def test_any_query_string_fuzz(client: TestClient, raw: bytes, key: str) -> None:
    q = urllib.parse.quote_from_bytes(raw)
    for path in ("/recommend", "/similar", "/items"):
        main = {"/recommend": "user", "/similar": "item", "/items": "query"}[path]
        query = f"{main}={q}" if key == main else f"{main}=1&{key}={q}"
        _check(client.get(f"{path}?{query}"))


@FUZZ
@given(
    st.one_of(
        st.sampled_from(USERS),
        st.integers(-(2**70), 2**70),
        texts.filter(lambda t: t.isprintable() and "\ud800" not in t),
    )
)
def test_get_recommend_answers_for_the_exact_user(
    client: TestClient, rec: Recommender, user: Any
) -> None:
    text = str(user)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    resp = client.get("/recommend", params={"user": text, "n": 3})
    body = _check(resp)
    if resp.status_code != 200:
        assert not text or len(text) > 200 or resp.status_code == 422
        return
    exact = _exact(text, [int(x) for x in rec.users.ids])
    if exact is None:
        assert body["path"] == "popular" and body["user"] == text
    else:
        assert body["user"] == exact
        assert [x["id"] for x in body["items"]] == rec.recommend([exact], n=3)[0].ids


# ------------------------------------------------------------------ a real server
@pytest.fixture(scope="module")
def live(rec: Recommender, serve: Any) -> Iterator[tuple[str, int]]:
    app = create_app(rec, warm_up=False, body_timeout_s=2.0)
    with serve(app, header_timeout_s=2.0) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def _request(payload: Any, path: str) -> bytes:
    raw = json.dumps(payload).encode()
    return (
        b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(raw), raw)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(json_values, st.sampled_from(["/predict", "/recommend"])), min_size=1, max_size=4
    )
)
def test_pipelined_bad_requests_all_get_answers(live: tuple[str, int], reqs: list) -> None:
    """Requests pipelined on one connection each get a non-5xx answer, in order."""
    data = b"".join(_request(p, path) for p, path in reqs)
    data += b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with socket.create_connection(live, timeout=30) as s:
        s.sendall(data)
        reply = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]
    assert len(statuses) == len(reqs) + 1, reply[:500]
    assert all(s < 500 for s in statuses) and statuses[-1] == 200, statuses
