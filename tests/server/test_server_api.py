"""Fine-grained API tests through TestClient on a small synthetic model (no real data)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.errors import BundleError, ConfigError
from recfit.models import create_model
from recfit.recommender import Recommender
from recfit.server import create_app
from recfit.server.schemas import MAX_N, MAX_PAIRS


@pytest.fixture(scope="module")
def client(synth_rec: Recommender) -> Iterator[TestClient]:
    app = create_app(synth_rec, max_body_bytes=4096)

    @app.get("/boom/bundle")
    def boom_bundle() -> None:
        raise BundleError("expected an intact bundle, received a damaged one")

    @app.get("/boom/crash")
    def boom_crash() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _error_shape(resp: object) -> dict:
    body = resp.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and body["error"]
    return body


def test_health(client: TestClient, synth_rec: Recommender) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["n_users"] == synth_rec.n_users and body["n_items"] == synth_rec.n_items
    assert body["has_titles"] is True and body["report"] is False


def test_recommend_known_user_matches_python_api(
    client: TestClient, synth_rec: Recommender
) -> None:
    user = int(synth_rec.users.id([0])[0])
    body = client.get("/recommend", params={"user": user, "n": 7}).json()
    want = synth_rec.recommend(user, n=7)[0]
    assert body["path"] == "model" and body["user"] == user
    assert [x["id"] for x in body["items"]] == want.ids
    assert [x["title"] for x in body["items"]] == want.titles
    assert not set(want.ids) & set(synth_rec.seen_items(user))
    np.testing.assert_allclose([x["score"] for x in body["items"]], want.scores, rtol=1e-6)


def test_recommend_include_seen(client: TestClient, synth_rec: Recommender) -> None:
    user = int(synth_rec.users.id([0])[0])
    body = client.get("/recommend", params={"user": user, "n": 60, "exclude_seen": False}).json()
    assert body["exclude_seen"] is False
    assert set(synth_rec.seen_items(user)) <= {x["id"] for x in body["items"]}


def test_recommend_unknown_user(client: TestClient) -> None:
    body = client.get("/recommend", params={"user": "ghost", "n": 3}).json()
    assert body["path"] == "popular" and "ghost" in body["reason"]
    assert len(body["items"]) == 3
    resp = client.get("/recommend", params={"user": "ghost", "on_unknown": "error"})
    assert resp.status_code == 404
    assert "ghost" in _error_shape(resp)["error"]


@pytest.mark.parametrize(
    "params",
    [
        {"user": 1, "n": 0},
        {"user": 1, "n": MAX_N + 1},
        {"user": 1, "n": "ten"},
        {"user": 1, "exclude_seen": "maybe"},
        {"user": 1, "on_unknown": "guess"},
        {"n": 5},
        {"user": ""},
        {"user": "x" * 500},
    ],
)
def test_recommend_bad_params_422(client: TestClient, params: dict) -> None:
    resp = client.get("/recommend", params=params)
    assert resp.status_code == 422
    body = _error_shape(resp)
    assert body["error"].startswith("invalid request: query.")
    assert body["detail"][0]["loc"][0] == "query"


def test_post_recommend_fold_in_by_id_and_title(client: TestClient, synth_rec: Recommender) -> None:
    t = synth_rec.title(3)
    body = client.post(
        "/recommend", json={"ratings": [{"item": t, "rating": 5}, {"item": 7, "rating": 1}], "n": 5}
    ).json()
    assert body["path"] == "fold_in" and body["user"] is None
    ids = [x["id"] for x in body["items"]]
    assert len(ids) == 5 and not {3, 7} & set(ids)
    want = synth_rec.recommend_for_ratings({3: 5.0, 7: 1.0}, n=5)
    assert ids == want.ids


def test_post_recommend_no_ratings_is_popular(client: TestClient) -> None:
    body = client.post("/recommend", json={"ratings": []}).json()
    assert body["path"] == "popular" and body["reason"] == "no ratings given"
    assert len(body["items"]) == 10


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"ratings": [{"item": 3, "rating": 9}]}, 422, "expected ratings in [1, 5]"),
        ({"ratings": [{"item": 3, "rating": 4}, {"item": 3, "rating": 2}]}, 422, "duplicates"),
        ({"ratings": [{"item": 99999, "rating": 4}]}, 404, "99999"),
        ({"ratings": [{"item": "No Such Film", "rating": 4}]}, 404, "No Such Film"),
        ({"ratings": [{"item": 3, "rating": "good"}]}, 422, "ratings.0.rating"),
        ({"ratings": [{"item": 3}]}, 422, "ratings.0.rating"),
        ({"ratings": "lots"}, 422, "body.ratings"),
        ({"ratings": [], "n": 0}, 422, "body.n"),
        ({"ratings": [], "user": 1}, 422, "body.user"),
        ([1, 2, 3], 422, "body"),
    ],
)
def test_post_recommend_bad_body(
    client: TestClient, payload: object, status: int, needle: str
) -> None:
    resp = client.post("/recommend", json=payload)
    assert resp.status_code == status, resp.text
    assert needle in _error_shape(resp)["error"]


def test_malformed_json_422(client: TestClient) -> None:
    resp = client.post(
        "/recommend", content=b'{"ratings": [', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert "JSON" in _error_shape(resp)["error"]


def test_oversized_body_413(client: TestClient) -> None:
    ratings = [{"item": i, "rating": 3} for i in range(1, 400)]
    resp = client.post("/recommend", json={"ratings": ratings})
    assert resp.status_code == 413
    body = _error_shape(resp)
    assert body["detail"] == {"max_bytes": 4096}


def test_oversized_streamed_body_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"ratings": ['
        for _ in range(200):
            yield b'{"item": 1, "rating": 3},'
        yield b"]}"

    resp = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    _error_shape(resp)


def test_similar_by_id_and_title(client: TestClient, synth_rec: Recommender) -> None:
    a = client.get("/similar", params={"item": 5, "n": 4}).json()
    b = client.get("/similar", params={"item": synth_rec.title(5), "n": 4}).json()
    assert a == b
    assert a["query"] == 5 and a["title"] == synth_rec.title(5)
    ids = [x["id"] for x in a["neighbours"]]
    assert len(ids) == 4 and 5 not in ids
    assert ids == synth_rec.similar_items(5, n=4)[0].ids
    scores = [x["score"] for x in a["neighbours"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 + 1e-6 for s in scores)


def test_similar_errors(client: TestClient) -> None:
    resp = client.get("/similar", params={"item": "Synthetic Movie 5"})
    assert resp.status_code in (200, 404, 409)
    resp = client.get("/similar", params={"item": "qqqq zzzz"})
    assert resp.status_code == 404
    body = _error_shape(resp)
    assert body["detail"]["ambiguous"] is False and body["detail"]["query"] == "qqqq zzzz"
    assert client.get("/similar", params={"item": 5, "n": 101}).status_code == 422
    assert client.get("/similar").status_code == 422


def test_predict_matches_python_api(client: TestClient, synth_rec: Recommender) -> None:
    pairs = [{"user": 1, "item": 2}, {"user": 2, "item": synth_rec.title(9)}]
    body = client.post("/predict", json={"pairs": pairs}).json()
    want = synth_rec.predict([1, 2], [2, 9])
    got = [p["prediction"] for p in body["predictions"]]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert [p["item"] for p in body["predictions"]] == [2, 9]
    assert body["predictions"][1]["title"] == synth_rec.title(9)
    lo, hi = synth_rec.rating_scale or (1, 5)
    assert all(lo <= g <= hi for g in got)


def test_predict_unknown_ids(client: TestClient) -> None:
    pairs = [{"user": 1, "item": 2}, {"user": 4242, "item": 2}, {"user": 1, "item": "Nope"}]
    resp = client.post("/predict", json={"pairs": pairs[:2]})
    assert resp.status_code == 404 and "4242" in _error_shape(resp)["error"]
    resp = client.post("/predict", json={"pairs": pairs[2:]})
    assert resp.status_code == 404 and "Nope" in _error_shape(resp)["error"]
    body = client.post("/predict", json={"pairs": pairs, "on_unknown": "null"}).json()
    preds = body["predictions"]
    assert preds[0]["prediction"] is not None
    assert preds[1]["prediction"] is None and preds[2]["prediction"] is None
    assert preds[2]["item"] == "Nope"


@pytest.mark.parametrize(
    "payload",
    [
        {"pairs": []},
        {"pairs": [{"user": 1}]},
        {"pairs": [{"user": 1, "item": 2, "extra": 1}]},
        {"pairs": [{"user": 1, "item": 2}], "on_unknown": "zero"},
        {"pairs": [{"user": 1, "item": 2}] * (MAX_PAIRS + 1)},
    ],
)
def test_predict_bad_body_422(synth_rec: Recommender, payload: dict) -> None:
    with TestClient(create_app(synth_rec, warm_up=False)) as c:  # default body limit
        resp = c.post("/predict", json=payload)
    assert resp.status_code == 422, resp.text
    _error_shape(resp)


def test_items_search(client: TestClient, synth_rec: Recommender) -> None:
    title = synth_rec.title(12)
    body = client.get("/items", params={"query": title, "n": 3}).json()
    assert body["items"][0] == {"id": 12, "title": title, "score": 1.0, "how": "exact"}
    body = client.get("/items", params={"query": "synthetic movie", "n": 5}).json()
    assert len(body["items"]) == 5
    assert client.get("/items", params={"query": ""}).status_code == 422
    assert client.get("/items", params={"query": "x", "n": 0}).status_code == 422


def test_ambiguous_title_409() -> None:
    d = Interactions.from_arrays([1, 1, 2, 2], [10, 20, 10, 30], [4.0, 5.0, 3.0, 2.0])
    info = pd.DataFrame({"title": ["Twin (2000)", "Twin (2000)", "Other (1999)"]})
    rec = Recommender(create_model("dot", d, n_factors=2), d.users, d.items, d, item_info=info)
    with TestClient(create_app(rec)) as c:
        resp = c.get("/similar", params={"item": "Twin (2000)"})
        assert resp.status_code == 409
        detail = _error_shape(resp)["detail"]
        assert detail["ambiguous"] is True
        assert sorted(m["id"] for m in detail["matches"]) == [10, 20]
        assert c.get("/similar", params={"item": 20}).status_code == 200


def test_report_missing_404(client: TestClient, tmp_path: object) -> None:
    resp = client.get("/report")
    assert resp.status_code == 404
    assert "report" in _error_shape(resp)["error"]


def test_page_and_static(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="search"' in page.text and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for f in ("app.js", "style.css"):
        assert client.get(f"/static/{f}").status_code == 200
    for text in (
        page.text,
        client.get("/static/app.js").text,
        client.get("/static/style.css").text,
    ):
        assert "http://" not in text and "https://" not in text  # nothing fetched from outside


def test_openapi_lists_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/health", "/recommend", "/similar", "/predict", "/items"} <= set(spec["paths"])
    assert set(spec["paths"]["/recommend"]) == {"get", "post"}
    n = next(p for p in spec["paths"]["/recommend"]["get"]["parameters"] if p["name"] == "n")
    assert n["schema"]["minimum"] == 1 and n["schema"]["maximum"] == MAX_N
    assert client.get("/docs").status_code == 404  # no CDN page offline; schema above


def test_unknown_route_and_method(client: TestClient) -> None:
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and "/nowhere" in _error_shape(resp)["error"]
    resp = client.delete("/recommend")
    assert resp.status_code == 405
    _error_shape(resp)


def test_other_recfit_error_400_and_crash_500(client: TestClient) -> None:
    resp = client.get("/boom/bundle")
    assert resp.status_code == 400
    assert _error_shape(resp)["detail"] == {"type": "BundleError"}
    resp = client.get("/boom/crash")
    assert resp.status_code == 500
    body = _error_shape(resp)
    assert body["error"] == "internal server error" and "a bug" not in json.dumps(body)


def test_create_app_rejects_bad_limit(synth_rec: Recommender) -> None:
    with pytest.raises(ConfigError, match="max_body_bytes"):
        create_app(synth_rec, max_body_bytes=0)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=60)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint=st.sampled_from(["/items?query", "/similar?item", "/recommend?user"]),
    value=_text,
    n=st.integers(-5, 150),
)
def test_any_query_never_500(client: TestClient, endpoint: str, value: str, n: int) -> None:
    path, key = endpoint.split("?")
    resp = client.get(path, params={key: value, "n": n})
    assert resp.status_code in (200, 404, 409, 422), (resp.status_code, resp.text)
    if resp.status_code != 200:
        _error_shape(resp)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats() | _text,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["ratings", "item", "rating", "n", "x"]), children, max_size=4
            )
        ),
        max_leaves=12,
    )
)
def test_any_json_body_never_500(client: TestClient, body: object) -> None:
    try:
        raw = json.dumps(body).encode()
    except ValueError:
        return
    for path in ("/recommend", "/predict"):
        resp = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert resp.status_code in (200, 404, 409, 413, 422), (resp.status_code, resp.text)
