from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import BundleError, ConfigError, DataError, UnknownIdError
from recfit.index import ItemSets
from recfit.models import DotBias, Family, RatingModel, TwoTower, create_model, register_family
from recfit.models.registry import sized_build, unregister_family
from recfit.models.retrieval_losses import RescaledMSELoss
from recfit.recommender import (
    ItemNotFoundError,
    Recommender,
    bundle_write,
    normalise_title,
)
from recfit.train.learner import Learner

# Model families under test. Other families (classifier, two-tower) plug in here: add a
# factory building a small model for ``train`` and the shared tests run on it.
FAMILIES: dict[str, Callable[[Interactions], RatingModel]] = {
    "dot": lambda d: create_model("dot", d, n_factors=4, y_range=(0.5, 5.5), seed=1),
    "mf": lambda d: create_model("mf", d, n_factors=4, seed=1),
    "svdpp": lambda d: create_model("svdpp", d, n_factors=4, y_range=(0.5, 5.5), seed=1),
    "nn": lambda d: create_model("nn", d, layers=(8,), y_range=(0.5, 5.5), seed=1),
    "classifier": lambda d: create_model("classifier", d, layers=(8,), seed=1),
    "ordrec": lambda d: create_model("ordrec", d, n_factors=4, implicit=True, seed=1),
    "two_tower": lambda d: TwoTower.from_data(d, embedding_dim=8, layer_sizes=(8,), seed=1),
}
SIMILARITY_FAMILIES = ("dot", "mf", "svdpp", "nn", "two_tower", "ordrec")


def _titled(d: Interactions) -> Interactions:
    titles = [f"Movie {i} ({1990 + i % 10})" for i in range(d.n_items)]
    titles[0] = "Star Wars (1977)"
    titles[1] = "Godfather, The (1972)"
    titles[2] = titles[3] = "Twin Film (1999)"
    info = pd.DataFrame(
        {
            "title": titles,
            "year": pd.array([1977, 1972] + [1999] * (d.n_items - 2), dtype="Int64"),
            "genres": [("Drama",)] * d.n_items,
        }
    )
    return dataclasses.replace(d, item_features=info)


@pytest.fixture(scope="module")
def data() -> Interactions:
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 25
    pu, qi = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    keep = rng.random(u.shape) < 0.6
    r = np.clip(np.round(3 + (pu[u[keep]] * qi[i[keep]]).sum(1)), 1, 5)
    d = Interactions.from_arrays(u[keep] + 100, i[keep] + 1000, r, rating_scale=(1, 5))
    return _titled(d)


def _fit(name: str, d: Interactions) -> RatingModel:
    model = FAMILIES[name](d)
    loss = RescaledMSELoss(d.rating_scale or (1, 5)) if name == "two_tower" else None
    Learner(model, d, bs=32, seed=0, progress=False, wd=0.01, loss=loss).fit(4, 1e-2)
    return model


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest, data: Interactions) -> tuple[str, RatingModel]:
    return request.param, _fit(request.param, data)


def _rec(model: RatingModel, d: Interactions, **kw: Any) -> Recommender:
    return Recommender(
        model, d.users, d.items, d, item_info=d.item_features, rating_scale=d.rating_scale, **kw
    )


# ------------------------------------------------------------------ round trip
def test_round_trip_gives_identical_answers(
    family: tuple[str, RatingModel], data: Interactions, tmp_path: Path
) -> None:
    name, model = family
    rec = _rec(model, data, config={"model": name})
    back = Recommender.load(rec.save(tmp_path / "b"))
    assert back.family == name and back.config == {"model": name}
    users, items = [100, 105, 139], [1000, 1003, 1024]
    assert np.array_equal(rec.predict(users, items), back.predict(users, items))
    a, b = rec.recommend(users, n=7), back.recommend(users, n=7)
    assert a.to_dict() == b.to_dict()
    assert back.rating_scale == (1.0, 5.0)
    assert back.title(1000) == "Star Wars (1977)"
    assert back.item_info is not None and back.item_info["year"].iloc[1] == 1972
    assert back.item_info["genres"].iloc[0] == ("Drama",)
    assert back.seen_items(100) == rec.seen_items(100)
    assert np.array_equal(back.popularity, rec.popularity)
    ratings = {1000: 5.0, 1001: 1.0, 1005: 4.0}
    assert rec.recommend_for_ratings(ratings, n=5) == back.recommend_for_ratings(ratings, n=5)
    if name in SIMILARITY_FAMILIES:
        assert rec.similar_items([1000, 1001], n=4) == back.similar_items([1000, 1001], n=4)
        assert rec.similar_users(100, n=3) == back.similar_users(100, n=3)
    # a run directory holding bundle/ loads too
    run = tmp_path / "run"
    rec.save(run / "bundle")
    assert Recommender.load(run).recommend(users, n=7).to_dict() == a.to_dict()


def test_predict_matches_learner_and_policies(data: Interactions) -> None:
    model = _fit("dot", data)
    rec = _rec(model, data)
    expect = Learner(model, data, progress=False).predict(data)
    got = rec.predict(data.users.id(data.user), data.items.id(data.item))
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)
    one_user = rec.predict(100, [1000, 1001])
    assert one_user.shape == (2,) and ((one_user >= 1) & (one_user <= 5)).all()
    with pytest.raises(UnknownIdError, match="unknown"):
        rec.predict(999999, 1000)
    nan = rec.predict([100, 999999], [1000, 1000], on_unknown="nan")
    assert np.isfinite(nan[0]) and np.isnan(nan[1])
    with pytest.raises(DataError, match="as many items"):
        rec.predict([100, 101], [1000, 1001, 1002])


# ------------------------------------------------------------------ damaged bundles
def _rewrite_manifest(folder: Path, name: str) -> None:
    import hashlib

    man = json.loads((folder / "manifest.json").read_text())
    blob = (folder / name).read_bytes()
    man["files"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    (folder / "manifest.json").write_text(json.dumps(man))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "model.safetensors").unlink(), "missing"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json"),
        (
            lambda p: (p / "model.safetensors").write_bytes(
                (p / "model.safetensors").read_bytes()[:100]
            ),
            "truncated",
        ),
        (
            lambda p: (p / "arrays.safetensors").write_bytes(
                bytes(
                    b ^ 1 if k == 200 else b
                    for k, b in enumerate((p / "arrays.safetensors").read_bytes())
                )
            ),
            "sha256",
        ),
        (lambda p: (p / "manifest.json").write_text("{not json"), "valid JSON"),
        (
            lambda p: (
                (p / "recommender.json").write_text("{oops"),
                _rewrite_manifest(p, "recommender.json"),
            ),
            "valid JSON",
        ),
        (
            lambda p: (
                (p / "model.safetensors").write_bytes(b"garbage" * 10),
                _rewrite_manifest(p, "model.safetensors"),
            ),
            "safetensors",
        ),
        (
            lambda p: (p / "manifest.json").write_text(
                json.dumps({**json.loads((p / "manifest.json").read_text()), "format_version": 99})
            ),
            "format version 1",
        ),
        (
            lambda p: (
                (p / "users.json").write_text(json.dumps({"kind": "int", "ids": [1, 2]})),
                _rewrite_manifest(p, "users.json"),
            ),
            "n_users",
        ),
    ],
    ids=[
        "missing-file",
        "no-manifest",
        "truncated",
        "flipped-byte",
        "bad-manifest",
        "bad-json",
        "bad-safetensors",
        "wrong-version",
        "inconsistent",
    ],
)
def test_damaged_bundles_raise_bundle_error(
    data: Interactions, tmp_path: Path, damage: Callable[[Path], Any], message: str
) -> None:
    rec = _rec(create_model("dot", data, n_factors=2), data)
    folder = rec.save(tmp_path / "b")
    damage(folder)
    with pytest.raises(BundleError, match=message):
        Recommender.load(folder)


def test_missing_path_and_non_bundle_folder(data: Interactions, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="missing path"):
        Recommender.load(tmp_path / "nothing")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(BundleError, match="manifest"):
        Recommender.load(tmp_path / "run")
    rec = _rec(create_model("dot", data, n_factors=2), data)
    with pytest.raises(BundleError, match="other files"):
        rec.save(tmp_path / "run")  # would replace a folder that is not a bundle
    assert (tmp_path / "run" / "config.json").exists()


def test_crash_during_save_keeps_the_old_bundle(
    data: Interactions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _rec(create_model("dot", data, n_factors=2, seed=1), data)
    new = _rec(create_model("dot", data, n_factors=2, seed=2), data)
    path = old.save(tmp_path / "b")
    expect = old.predict([100, 101], [1000, 1001], clip=False)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(bundle_write, "write_model_file", boom)
    with pytest.raises(OSError, match="simulated"):
        new.save(path)
    monkeypatch.undo()
    assert np.array_equal(
        Recommender.load(path).predict([100, 101], [1000, 1001], clip=False), expect
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"], "no temporary folder left"
    # a successful save replaces it
    new.save(path)
    got = Recommender.load(path).predict([100, 101], [1000, 1001], clip=False)
    assert np.array_equal(got, new.predict([100, 101], [1000, 1001], clip=False))
    assert not np.array_equal(got, expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# ------------------------------------------------------------------ recommend
def test_seen_items_never_recommended_and_filters(data: Interactions) -> None:
    rec = _rec(_fit("dot", data), data)
    users = data.users.id(np.arange(data.n_users)).tolist()
    res = rec.recommend(users, n=data.n_items)
    for r in res:
        assert r.path == "model"
        seen = set(rec.seen_items(r.user))
        assert seen.isdisjoint(r.ids)
        assert len(r.ids) == data.n_items - len(seen)  # every unseen item, each once
        assert r.scores == sorted(r.scores, reverse=True)
    with_seen = rec.recommend(users[0], n=data.n_items, exclude_seen=False)[0]
    assert len(with_seen.ids) == data.n_items and not with_seen.to_frame().empty
    cands = [1000, 1001, 1002, 1003, 1004]
    r = rec.recommend(users[0], n=10, candidates=cands, exclude_seen=False)[0]
    assert sorted(r.ids) == cands
    r = rec.recommend(users[0], n=10, candidates=cands, exclude=[1001, 424242], exclude_seen=False)[
        0
    ]
    assert sorted(r.ids) == [1000, 1002, 1003, 1004]
    with pytest.raises(UnknownIdError):
        rec.recommend(users[0], candidates=[424242])
    with pytest.raises(ConfigError, match="n as an integer"):
        rec.recommend(users[0], n=0)


def test_index_path_equals_generic_path(
    family: tuple[str, RatingModel], data: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = _rec(family[1], data)
    users = [100, 110, 120, 139]
    a = rec.recommend(users, n=8)
    monkeypatch.setattr(rec.adapter, "retrieval", lambda rows: None)
    b = rec.recommend(users, n=8)
    for x, y in zip(a, b, strict=True):
        assert x.ids == y.ids
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-5)
    # scores are the model's predictions
    np.testing.assert_allclose(a[0].scores, rec.predict(100, a[0].ids), rtol=1e-5, atol=1e-5)


def test_unknown_and_cold_users(data: Interactions) -> None:
    model = _fit("mf", data)
    # user 139 keeps its vocabulary slot but has no training ratings
    train = data.take(np.flatnonzero(data.users.id(data.user) != 139))
    rec = Recommender(model, data.users, data.items, train, item_info=data.item_features)
    res = rec.recommend([100, "stranger", 139], n=3, exclude=[int(rec.popularity.argmax()) + 1000])
    assert [r.path for r in res] == ["model", "popular", "popular"]
    assert res[1].reason is not None and "unknown user id 'stranger'" in res[1].reason
    assert res[2].reason is not None and "no training ratings" in res[2].reason
    top = np.argsort(-rec.popularity, kind="stable")
    assert res[1].ids == [int(x) + 1000 for x in top[1:4]]  # the excluded top item is skipped
    assert res[1].scores == [float(rec.popularity[x]) for x in top[1:4]]
    with pytest.raises(UnknownIdError, match="stranger"):
        rec.recommend([100, "stranger"], on_unknown="error")
    d = res.to_dict()
    json.dumps(d)
    assert d["recommendations"][1]["path"] == "popular"
    frame = res.to_frame()
    assert list(frame.columns) == [
        "user", "rank", "item", "score", "title", "path", "reason", "kind",
    ]  # fmt: skip
    assert frame["kind"].tolist() == ["rating"] * 3 + ["popularity"] * 6
    assert len(frame) == 9 and frame["title"].notna().all()


# ------------------------------------------------------------------ fold-in
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fold_in_minimises_its_objective(name: str, data: Interactions) -> None:
    rec = _rec(_fit(name, data), data)
    if not rec.adapter.supports_fold_in:
        pytest.skip("family without fold-in")
    ratings = {1000: 5.0, 1002: 4.0, 1004: 1.0, 1010: 2.0, 1020: 5.0}
    row = rec.fold_in(ratings).clone().requires_grad_(True)
    items = torch.tensor(rec.items.index(list(ratings)), dtype=torch.long)
    r = torch.tensor(list(ratings.values()))
    if rec.family == "svdpp":  # centred on what the rated items say (implicit term)
        m, v = rec.adapter._fold_prior(items, torch.ones(len(items)))  # type: ignore[attr-defined]
    else:
        m, v = rec.adapter._prior(rec.adapter.user_rows(torch.arange(rec.n_users)))
    sd, m = v.sqrt().float(), m.float()

    def objective(z: torch.Tensor) -> torch.Tensor:
        res = r - _score_rows(rec, (m + sd * z).unsqueeze(0), items)
        if rec.family == "two_tower":  # its free intercept, profiled out
            res = res - res.mean()
        return (res**2).sum() + rec.fold_in_reg * (z * z).sum()

    z0 = ((row.detach() - m) / sd).clone()
    best = float(objective(z0))
    # a long independent descent from the answer finds nothing meaningfully better
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=1e-2)
    with torch.enable_grad():
        for _ in range(300):
            opt.zero_grad()
            loss = objective(z)
            (z.grad,) = torch.autograd.grad(loss, [z])
            opt.step()
    assert float(objective(z.detach())) > best - 1e-3 * max(1.0, best)
    # and it beats the prior mean (no fold-in at all)
    assert best < float(objective(torch.zeros_like(z0)))
    again = rec.fold_in(list(ratings.items()))
    assert torch.equal(again, row.detach())  # deterministic


def _score_rows(rec: Recommender, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    a = rec.adapter
    if rec.family in ("dot", "mf", "svdpp"):
        d = a.d  # type: ignore[attr-defined]
        x = rows[:, :d] @ a.item_factors[items].T + rows[:, d:] + a.mu + a.item_bias[items]  # type: ignore[attr-defined]
        return a._link(x)[0]  # type: ignore[attr-defined,no-any-return]
    if rec.family == "two_tower":
        return (rows @ a.items_[items].T)[0]  # type: ignore[attr-defined,no-any-return]
    return a._head(a.item_part[items] + rows @ a.w_user.T)  # type: ignore[attr-defined,no-any-return]


def test_recommend_for_ratings_paths_and_validation(data: Interactions) -> None:
    rec = _rec(_fit("dot", data), data)
    r = rec.recommend_for_ratings([(1000, 5.0), (1001, 4.5)], n=5)
    assert r.path == "fold_in" and r.user is None and len(r.ids) == 5
    assert 1000 not in r.ids and 1001 not in r.ids
    r2 = rec.recommend_for_ratings({1000: 5.0}, n=30, exclude_rated=False)
    assert 1000 in r2.ids
    empty = rec.recommend_for_ratings({}, n=3)
    assert empty.path == "popular" and empty.reason == "no ratings given"
    with pytest.raises(DataError, match=r"in \[1, 5\]"):
        rec.fold_in({1000: 9.0})
    with pytest.raises(UnknownIdError):
        rec.fold_in({424242: 3.0})
    with pytest.raises(DataError, match="once"):
        rec.fold_in([(1000, 3.0), (1000, 4.0)])
    with pytest.raises(ConfigError, match="at least one rating"):
        rec.fold_in({})
    frame = pd.DataFrame({"item": [1000, 1001], "rating": [5.0, 4.5]})
    assert torch.equal(rec.fold_in(frame), rec.fold_in({1000: 5.0, 1001: 4.5}))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "floor"), [("dot", 0.6), ("svdpp", 0.6), ("nn", 0.6)])
def test_fold_in_recovers_trained_users_on_ml100k(data_dir: Path, name: str, floor: float) -> None:
    from recfit.config import RatingConfig
    from recfit.runs import recommender_of, train_run

    cfg = RatingConfig(dataset="ml-100k", data_dir=str(data_dir), model=name, epochs=5, seed=42)
    res = train_run(cfg, progress=False)
    rec = recommender_of(res)
    train = res.split.train
    users = np.random.default_rng(0).choice(np.unique(train.user), 60, replace=False)
    overlap = []
    for u in users:
        m = train.user == u
        ratings = list(
            zip(train.items.id(train.item[m]).tolist(), train.rating[m].tolist(), strict=True)
        )
        own = set(rec.recommend(train.users.id([u])[0], n=10)[0].ids)
        folded = set(rec.recommend_for_ratings(ratings, n=10).ids)
        overlap.append(len(own & folded) / 10)
    mean = float(np.mean(overlap))
    print(f"{name}: fold-in top-10 overlap {mean:.3f}")
    assert mean >= floor


# ------------------------------------------------------------------ similarity
def test_similar_items_and_users(data: Interactions) -> None:
    rec = _rec(_fit("mf", data), data)
    res = rec.similar_items([1000, 1005], n=5)
    assert res.kind == "item" and len(res) == 2
    assert res[0].title == "Star Wars (1977)"
    for q, r in zip([1000, 1005], res, strict=True):
        assert q not in r.ids and len(r.ids) == 5
        scores = [s.score for s in r.neighbours]
        assert (
            scores == sorted(scores, reverse=True)
            and -1.0001 <= min(scores) <= max(scores) <= 1.0001
        )
    # cosine against a direct computation
    q = rec.adapter.item_vectors()
    qn = q / q.norm(dim=1, keepdim=True)
    sims = (qn @ qn[0]).numpy()
    sims[0] = -np.inf
    assert res[0].ids[0] == int(np.argmax(sims)) + 1000
    users = rec.similar_users(100, n=3)
    assert users.kind == "user" and 100 not in users[0].ids and len(users[0].ids) == 3
    assert list(res.to_frame().columns) == ["query", "rank", "neighbour", "score", "title"]
    json.dumps(res.to_dict())
    with pytest.raises(UnknownIdError):
        rec.similar_items(424242)


# ------------------------------------------------------------------ titles
def test_title_lookup(data: Interactions) -> None:
    rec = _rec(create_model("dot", data, n_factors=2), data)
    assert rec.resolve_item("Star Wars (1977)") == 1000
    assert rec.resolve_item("star wars (1977)") == 1000
    assert rec.resolve_item("the godfather") == 1001
    assert rec.resolve_item(1005) == 1005 and rec.resolve_item("1005") == 1005
    with pytest.raises(ItemNotFoundError) as amb:
        rec.resolve_item("Twin Film (1999)")
    assert amb.value.ambiguous and sorted(m.id for m in amb.value.matches) == [1002, 1003]
    assert "1002" in str(amb.value)
    with pytest.raises(ItemNotFoundError) as unk:
        rec.resolve_item("Star Wors")
    assert not unk.value.ambiguous and unk.value.matches[0].id == 1000
    assert "Star Wars (1977)" in str(unk.value)
    assert isinstance(unk.value, UnknownIdError)
    found = rec.find_items("movie 1", n=3)
    assert found[0].how in ("prefix", "casefold") and all(m.score <= 1 for m in found)
    assert rec.find_items("Star Wars (1977)")[0].how == "exact"
    assert normalise_title("Godfather, The (1972)") == "the godfather 1972"


# ------------------------------------------------------------------ batch
def test_recommend_all_streams_to_parquet(data: Interactions, tmp_path: Path) -> None:
    model = _fit("dot", data)
    train = data.take(np.flatnonzero(data.users.id(data.user) != 139))
    rec = Recommender(model, data.users, data.items, train, item_info=data.item_features)
    out = tmp_path / "recs.parquet"
    stats = rec.recommend_all(n=4, out=out, chunk_size=7, with_titles=True)
    assert stats["users"] == data.n_users and stats["rows"] == data.n_users * 4
    frame = pq.read_table(out).to_pandas()
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-data.n_users // 7)
    assert set(frame.columns) == {"user", "rank", "item", "score", "path", "kind", "title"}
    assert set(frame["kind"]) == {"rating", "popularity"}
    for user in (100, 117, 138):
        got = frame[frame.user == user].sort_values("rank")
        assert got["item"].tolist() == rec.recommend(user, n=4)[0].ids
    assert (frame[frame.user == 139]["path"] == "popular").all()
    seen = {
        (u, i) for u, i in zip(train.users.id(train.user), train.items.id(train.item), strict=True)
    }
    assert not any((u, i) in seen for u, i in zip(frame.user, frame.item, strict=True))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ other families
def test_family_without_adapter_falls_back_to_generic(data: Interactions) -> None:
    class Toy(DotBias):
        pass

    register_family(
        Family(
            name="toy_no_adapter", task="rating", model_class=Toy, output="rating",
            reads=frozenset(), trainers=("sgd",), adapter="generic", defaults={},
            build=sized_build(Toy),
        )
    )  # fmt: skip
    try:
        model = Toy(data.n_users, data.n_items, n_factors=3)
        rec = _rec(model, data)
        assert type(rec.adapter).__name__ == "GenericAdapter"
        r = rec.recommend(100, n=5)[0]
        # ranked on the model's output, shown clipped into the rating scale like predict
        np.testing.assert_allclose(r.scores, rec.predict(100, r.ids), rtol=1e-5)
        with pytest.raises(ConfigError, match="item representations"):
            rec.similar_items(1000)
        folded = rec.recommend_for_ratings({1000: 4.0}, n=3)
        assert folded.path == "popular" and "no fold-in" in (folded.reason or "")
    finally:
        unregister_family("toy_no_adapter")


def test_constructor_validation(data: Interactions) -> None:
    model = create_model("dot", data, n_factors=2)
    with pytest.raises(ConfigError, match="n_users"):
        Recommender(DotBias(3, data.n_items), data.users, data.items, data)
    with pytest.raises(DataError, match="seen"):
        Recommender(model, data.users, data.items, ItemSets.from_lists([[0]]))
    with pytest.raises(DataError, match="popularity"):
        Recommender(model, data.users, data.items, data, popularity=[1.0])


def test_cached_top_lists_answer_like_fresh_ones(data: Interactions) -> None:
    rec = _rec(_fit("dot", data), data)
    users = list(data.users.ids[:10])
    fresh = _rec(_fit("dot", data), data)
    fresh.cache_n = 0  # k = n: no list longer than asked
    assert rec.warm() == int((rec.seen.lengths() > 0).sum())
    for n in (1, 5, 24):
        for ex in (True, False):
            a = rec.recommend(users, n=n, exclude_seen=ex).to_frame()
            b = fresh.recommend(users, n=n, exclude_seen=ex).to_frame()
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)
    rec.cache_users = 3
    rec.recommend(users, n=2)
    assert len(rec.ranker._lru) == 3  # least recently used lists are dropped


# ------------------------------------------------------------------ what a prediction means
RATING_FAMILIES = ("dot", "mf", "svdpp", "nn", "classifier")


def test_scores_are_never_clipped_into_the_rating_scale(data: Interactions) -> None:
    from fastapi.testclient import TestClient

    from recfit.server import create_app

    model = _fit("two_tower", data)
    rec = _rec(model, data)
    assert rec.output_kind == "score" and rec.info()["output_kind"] == "score"
    users, items = [100, 100, 101], [1000, 1001, 1002]
    raw = rec.adapter.score(
        torch.from_numpy(rec.users.index(users)).long(),
        torch.from_numpy(rec.items.index(items)).long(),
    ).numpy()
    assert (raw < 1).all()  # rescaled-MSE scores live in [0, 1], below the rating scale
    got = rec.predictions(users, items)
    assert got.kind == "score" and not got.fallback.any()
    np.testing.assert_allclose(got.values, raw, rtol=1e-6)
    np.testing.assert_allclose(rec.predict(users, items), raw, rtol=1e-6)
    assert set(got.to_frame()["kind"]) == {"score"}
    r = rec.recommend(100, n=3)[0]
    assert r.kind == "score" and r.to_dict()["kind"] == "score"
    assert rec.recommend("ghost", n=3)[0].kind == "popularity"
    client = TestClient(create_app(rec))
    body = {"pairs": [{"user": u, "item": i} for u, i in zip(users, items, strict=True)]}
    answer = client.post("/predict", json=body).json()["predictions"]
    assert [p["kind"] for p in answer] == ["score"] * 3
    np.testing.assert_allclose([p["prediction"] for p in answer], raw, rtol=1e-5)
    assert client.get("/recommend", params={"user": 100, "n": 3}).json()["kind"] == "score"


def _cold_split(d: Interactions) -> tuple[Interactions, np.ndarray]:
    """``d`` without the rows of user 100 and item 1000 (still in the vocabularies)."""
    cold = (d.users.id(d.user) == 100) | (d.items.id(d.item) == 1000)
    return d.take(np.flatnonzero(~cold)), cold


@pytest.mark.parametrize("name", RATING_FAMILIES)
def test_untrained_users_and_items_get_the_baseline(
    name: str, data: Interactions, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from recfit.models import fit_baseline
    from recfit.server import create_app

    train, cold = _cold_split(data)
    model = _fit(name, train)
    rec = _rec(model, train)
    mu, bu, bi, _, _ = fit_baseline(
        train.user, train.item, train.rating, None, train.n_users, train.n_items
    )
    u_ix, i_ix = train.users.index([101, 100, 100]), train.items.index([1000, 1001, 1000])
    want = mu + bu[u_ix] + bi[i_ix]  # user 100 and item 1000 add no bias
    assert bu[u_ix[1]] == 0 and bi[i_ix[0]] == 0
    got = rec.predictions([101, 100, 100, 101], [1000, 1001, 1000, 1001])
    assert got.kind == "rating" and got.fallback.tolist() == [True, True, True, False]
    np.testing.assert_allclose(got.values[:3], want, rtol=1e-5, atol=1e-5)
    assert "item 1000 has no training ratings" in (got.reasons[0] or "")
    assert "mean + user bias" in (got.reasons[0] or "") and got.reasons[3] is None
    frame = got.to_frame()
    assert frame["fallback"].tolist() == [True, True, True, False]
    # the same rule as the Learner's predict
    np.testing.assert_array_equal(Learner(model, train, progress=False).fallback(data), cold)
    np.testing.assert_allclose(
        rec.predict(data.users.id(data.user), data.items.id(data.item), clip=False),
        Learner(model, train, progress=False).predict(data),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    # ids outside the vocabulary: the baseline only when asked
    oov = rec.predictions([101, "ghost"], ["nope", 1001], on_unknown="baseline")
    assert oov.fallback.all() and "unknown item id 'nope'" in (oov.reasons[0] or "")
    np.testing.assert_allclose(
        oov.values, [mu + bu[u_ix[0]], mu + bi[i_ix[1]]], rtol=1e-5, atol=1e-5
    )
    # the record survives the bundle
    back = Recommender.load(rec.save(tmp_path / "b"))
    again = back.predictions([101, 100, 100, 101], [1000, 1001, 1000, 1001])
    assert again.fallback.tolist() == got.fallback.tolist()
    np.testing.assert_array_equal(again.values, got.values)
    # and HTTP says so
    client = TestClient(create_app(back))
    body = {"pairs": [{"user": 101, "item": 1000}, {"user": 101, "item": 1001}]}
    answer = client.post("/predict", json=body).json()["predictions"]
    assert [p["fallback"] for p in answer] == [True, False]
    assert answer[0]["kind"] == "rating" and "no training ratings" in answer[0]["reason"]
    body = {"pairs": [{"user": "ghost", "item": 1001}], "on_unknown": "baseline"}
    (ghost,) = client.post("/predict", json=body).json()["predictions"]
    assert ghost["fallback"] and ghost["prediction"] == pytest.approx(mu + bi[i_ix[1]], abs=1e-5)
    assert "unknown user id 'ghost'" in ghost["reason"]
    # an item outside the vocabulary too, as Recommender.predictions answers it
    body = {"pairs": [{"user": 101, "item": "nope"}], "on_unknown": "baseline"}
    (nope,) = client.post("/predict", json=body).json()["predictions"]
    assert nope["fallback"] and nope["prediction"] == pytest.approx(float(oov.values[0]), abs=1e-5)
    assert nope["reason"] == oov.reasons[0] and nope["title"] is None
    body["on_unknown"] = "null"
    (null,) = client.post("/predict", json=body).json()["predictions"]
    assert null["prediction"] is None and not null["fallback"] and "nope" in null["reason"]


@pytest.mark.parametrize("name", RATING_FAMILIES)
def test_recommend_scores_a_never_trained_item_as_predict_does(
    name: str, data: Interactions
) -> None:
    """An item without training ratings that recommend may return (a candidate, or
    min_item_count=0) scores the baseline that predict answers, not untrained weights."""
    train, _ = _cold_split(data)
    model = _fit(name, train)
    users = [101, 102, 103]
    for rec, kw in (
        (_rec(model, train), {"candidates": [1000, 1001, 1002, 1003]}),
        (_rec(model, train, min_item_count=0), {}),
    ):
        res = rec.recommend(users, n=rec.n_items, exclude_seen=False, **kw)
        for r in res:
            got = {x.id: x.score for x in r.items}
            assert 1000 in got
            want = rec.predictions(r.user, list(got), clip=False).values
            np.testing.assert_allclose(list(got.values()), want, rtol=1e-5, atol=1e-5)
            assert list(got.values()) == sorted(got.values(), reverse=True)
