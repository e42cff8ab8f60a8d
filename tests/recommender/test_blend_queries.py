"""A blend answers every query a served rating model answers: similar items and users
through its member with item vectors, a new user by fold-in (the blend's prediction when
every member folds in, else one member's, said so), from Python, the CLI and the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.data.synthetic import synthetic
from recfit.errors import ConfigError
from recfit.models import create_model
from recfit.models.blend import Blend, fit_closed_form
from recfit.recommender import BlendAdapter, Recommender
from recfit.runs import train_run

runner = CliRunner()
DOT = '{"model": "dot", "epochs": 2, "n_factors": 4}'
AUTOREC = '{"model": "autorec", "epochs": 2, "autorec_hidden": 8}'


@pytest.fixture(scope="module")
def data() -> Interactions:
    return synthetic(2000, 50, 40, seed=5, with_timestamps=False)


def _run(tmp: Path, data: Interactions, members: tuple[str, ...]) -> Path:
    out = tmp / "run"
    cfg = RatingConfig(model="blend", seed=0, blend_members=members)
    train_run(cfg, out, data=data, progress=False)
    return out


@pytest.fixture(scope="module")
def folding_run(tmp_path_factory: pytest.TempPathFactory, data: Interactions) -> Path:
    """Every member folds in: baseline (biases) and a DotBias."""
    return _run(tmp_path_factory.mktemp("blend"), data, ("baseline", DOT))


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory: pytest.TempPathFactory, data: Interactions) -> Path:
    """One member without fold-in or vectors (I-AutoRec) beside a DotBias."""
    return _run(tmp_path_factory.mktemp("blend"), data, (DOT, AUTOREC))


def _member_rec(rec: Recommender, k: int) -> Recommender:
    """Member ``k`` of ``rec``'s blend served alone, with the same data."""
    model = rec.model
    assert isinstance(model, Blend)
    return Recommender(model.member_models()[k], rec.users, rec.items, rec.seen,
                       rating_scale=rec.rating_scale, popularity=rec.popularity)  # fmt: skip


def _item(rec: Recommender, k: int = 0) -> Any:
    return rec.items.ids[k]


def test_similar_items_and_users_come_from_the_named_member(folding_run: Path) -> None:
    rec = Recommender.load(folding_run)
    assert isinstance(rec.adapter, BlendAdapter) and rec.adapter.supports_similarity
    res = rec.similar_items(_item(rec), n=5)
    assert res.source is not None and res.source.startswith("blend member 1 (dot)")
    want = _member_rec(rec, 1).similar_items(_item(rec), n=5)
    assert res[0].ids == want[0].ids and res[0].neighbours == want[0].neighbours
    users = rec.similar_users(rec.users.ids[0], n=3)
    assert users[0].ids == _member_rec(rec, 1).similar_users(rec.users.ids[0], n=3)[0].ids
    assert res.to_dict()["source"] == res.source


def test_fold_in_with_every_member_is_the_blends_prediction(folding_run: Path) -> None:
    rec = Recommender.load(folding_run)
    ratings = {_item(rec, 0): 5.0, _item(rec, 1): 1.0, _item(rec, 2): 4.0}
    got = rec.recommend_for_ratings(ratings, n=rec.n_items, exclude_rated=False)
    assert got.path == "fold_in" and got.reason is None and got.kind == "rating"
    model = rec.model
    assert isinstance(model, Blend)
    parts = []
    for k in range(2):
        m = _member_rec(rec, k)
        parts.append(m.adapter.score_all(m.fold_in(ratings).unsqueeze(0))[0].double())
    w = model.blend_weights
    want = (w[0] * parts[0] + w[1] * parts[1] + model.blend_intercept).clamp(*model.clip or ())
    by_id = dict(zip(got.ids, got.scores, strict=True))
    for j, item in enumerate(rec.items.ids):
        assert by_id[item] == pytest.approx(float(want[j]), abs=1e-5)
    # a known user's list is still the blend through forward
    item = int(rec.items.index([got.ids[0]])[0])
    pred = float(rec.predictions([rec.users.ids[0]], [got.ids[0]]).values[0])
    direct = model({"user": torch.tensor([0]), "item": torch.tensor([item])})
    assert pred == pytest.approx(float(direct[0]), abs=1e-5)


def test_fold_in_when_a_member_cannot_is_one_members_and_says_so(partial_run: Path) -> None:
    rec = Recommender.load(partial_run)
    assert rec.adapter.supports_fold_in and rec.adapter.supports_similarity
    ratings = {_item(rec, 0): 5.0, _item(rec, 3): 2.0}
    got = rec.recommend_for_ratings(ratings, n=5)
    assert got.path == "fold_in" and got.reason is not None
    assert got.reason.startswith("blend member 0 (dot) alone") and "autorec" in got.reason
    alone = _member_rec(rec, 0).recommend_for_ratings(ratings, n=5)
    assert got.ids == alone.ids and got.scores == pytest.approx(alone.scores, abs=1e-6)
    assert rec.similar_items(_item(rec), n=3).source.startswith("blend member 0 (dot)")  # type: ignore[union-attr]


@pytest.mark.parametrize(("weights", "expected"), [((0.3, 0.3, 0.4), 0), ((0.1, 0.1, 0.4), 2)])
def test_the_copies_of_one_model_with_other_seeds_count_together(
    data: Interactions, weights: tuple[float, float, float], expected: int
) -> None:
    """auto stores an average of seeds as copies of one member, each with its share of the
    weight: the vector and fold-in member is chosen by their summed weight (the first copy
    answers), not by one copy's share."""
    members = ('{"model": "dot", "n_factors": 4}', '{"model": "dot", "n_factors": 4, "seed": 3}',
               '{"model": "mf", "n_factors": 4}')  # fmt: skip
    m = create_model("blend", data, blend_members=members, seed=0)
    m.set_weights(list(weights), 0.0)
    rec = Recommender(m.eval(), data.users, data.items, data, rating_scale=data.rating_scale)
    adapter = rec.adapter
    assert isinstance(adapter, BlendAdapter)
    assert adapter.vector_member == expected and adapter.fold_member == expected


def test_a_blend_without_such_members_says_what_it_lacks(data: Interactions) -> None:
    m = create_model("blend", data, blend_members=("baseline",), seed=0)
    fit_closed_form(m, data)
    rec = Recommender(m, data.users, data.items, data, rating_scale=data.rating_scale)
    with pytest.raises(ConfigError, match="a member that has item vectors"):
        rec.similar_items(_item(rec))
    assert rec.adapter.supports_fold_in  # the baseline folds in (the user's bias)
    assert rec.recommend_for_ratings({_item(rec): 5.0}, n=3).reason is None


def test_cli_similar_and_recommend_for_new_ratings(partial_run: Path) -> None:
    rec = Recommender.load(partial_run)
    item = str(_item(rec))
    res = runner.invoke(app, ["similar", str(partial_run), "--item", item, "-n", "3"],
                        env={"COLUMNS": "250"})  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "answered by blend member 0 (dot)" in " ".join(res.output.split())
    res = runner.invoke(app, ["similar", str(partial_run), "--item", item, "--json"])
    assert json.loads(res.output)["source"].startswith("blend member 0 (dot)")
    args = ["recommend", str(partial_run), "--rate", f"{item}=5", "--rate",
            f"{rec.items.ids[3]}=2", "-n", "4"]  # fmt: skip
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    want = rec.recommend_for_ratings({rec.items.ids[0]: 5.0, rec.items.ids[3]: 2.0}, n=4)
    assert body["path"] == "fold_in" and body["reason"] == want.reason
    assert [x["id"] for x in body["items"]] == want.ids
    res = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "blend member 0 (dot) alone" in res.output
    res = runner.invoke(app, ["recommend", str(partial_run), "--rate", f"{item}"])
    assert res.exit_code == 2 and "ITEM=RATING" in res.output


def test_server_similar_and_fold_in_over_loopback(partial_run: Path, serve_process: Any) -> None:
    rec = Recommender.load(partial_run)
    item, other = (int(x) for x in rec.items.ids[[0, 3]])
    with serve_process(partial_run, timeout=90) as url:
        health = httpx.get(url + "/health", timeout=10).json()
        assert health["supports_similarity"] and health["supports_fold_in"]
        sim = httpx.get(url + "/similar", params={"item": str(item), "n": 3}, timeout=30)
        assert sim.status_code == 200, sim.text
        body = sim.json()
        assert body["source"].startswith("blend member 0 (dot)")
        assert [x["id"] for x in body["neighbours"]] == rec.similar_items(item, n=3)[0].ids
        ratings = [{"item": item, "rating": 5}, {"item": other, "rating": 2}]
        new = httpx.post(url + "/recommend", json={"ratings": ratings, "n": 4}, timeout=30)
        assert new.status_code == 200, new.text
        want = rec.recommend_for_ratings({item: 5.0, other: 2.0}, n=4)
        got = new.json()
        assert got["path"] == "fold_in" and got["reason"] == want.reason
        assert [x["id"] for x in got["items"]] == want.ids
