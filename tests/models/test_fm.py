"""The ``fm`` family (a factorization machine over ids and side features), through the
registry.

Conformance (fit, predict, save/load, unknown ids, weights, evaluate ≡ predict) comes from
the suites that iterate over the registry; these tests check what is its own: the side
fields of feature tables (MovieLens's spaces, missing values, multi-valued features), the
prediction equals the FM formula on the one-hot vector, side features let it generalise
where ids cannot, settings and errors, a run end to end with its bundle.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recfit.config import RatingConfig, validate_config
from recfit.data import Interactions
from recfit.errors import BundleError, ConfigError
from recfit.models import build_model, create_model, family
from recfit.models.fm import FactorizationMachine, SideFields, side_fields
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.train import Learner
from recfit.train.batches import TensorData
from recfit.train.trainers import FitSpec, trainer_for


def _users(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "age": pd.array(rng.integers(18, 60, n), dtype="Int64"),
        "gender": rng.choice(["M", "F"], n),
        "occupation": rng.choice(["writer", "other", "artist"], n),
        "zip": rng.choice(["12345", "94043", "55455"], n),
    })  # fmt: skip


def _items(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    genres = [tuple(rng.choice(["Drama", "Comedy", "War"], rng.integers(0, 3), replace=False))
              for _ in range(n)]  # fmt: skip
    return pd.DataFrame({
        "title": [f"Film {k} (19{50 + k % 40})" for k in range(n)],
        "year": pd.array(1950 + np.arange(n) % 40, dtype="Int64"),
        "genres": genres,
    })  # fmt: skip


def _grouped(
    n_users: int = 60, n_items: int = 40, per_user: int = 6, seed: int = 0
) -> Interactions:
    """Ratings set by a user feature and an item feature only (``gender`` x genre):
    4.5 when they match, 1.5 when not; each user rates ``per_user`` items."""
    users, items = _users(n_users), _items(n_items)
    items["genres"] = [("Drama",) if k % 2 else ("War",) for k in range(n_items)]
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(n_users), per_user)
    i = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    match = (users["gender"].to_numpy()[u] == "F") == (i % 2 == 1)
    r = np.where(match, 4.5, 1.5)
    d = Interactions.from_arrays(u, i, r, rating_scale=(1, 5))
    return dataclasses.replace(d, user_features=users, item_features=items, name="ml-100k")


def _predict(m: FactorizationMachine, d: Interactions) -> np.ndarray:
    with torch.no_grad():
        return m(TensorData.from_interactions(d).columns).numpy()


def test_side_fields_of_movielens_tables() -> None:
    users = _users(5)
    users.loc[2, "occupation"] = None
    f = side_fields(users, "user", "ml-100k")
    assert f.names == ("age", "gender", "occupation", "zip_prefix")
    assert f.index.shape == (5, 4) and f.value.shape == (5, 4)
    assert f.value[2, 2] == 0.0 and (np.delete(f.value, 2, axis=0) == 1.0).all()
    assert f.index.max() < f.size
    items = _items(6)
    g = side_fields(items, "item", "ml-100k")
    assert g.names == ("year", "genres")  # no title: free text
    n_genres = np.array([len(x) for x in items["genres"]])
    np.testing.assert_allclose(g.value[:, 1:].sum(1), (n_genres > 0).astype(float))
    # another table: the space is inferred, text left out
    other = side_fields(pd.DataFrame({"city": ["a", "b"], "about": ["one two three"] * 2}),
                        "user")  # fmt: skip
    assert other.names == ("city",)
    none = side_fields(None, "item", n_rows=3)
    assert none.index.shape == (3, 0) and none.size == 0


def test_prediction_is_the_fm_formula() -> None:
    d = _grouped(12, 8, 4)
    m = create_model("fm", d, n_factors=3, y_range=None, seed=2)
    assert isinstance(m, FactorizationMachine)
    with torch.no_grad():
        m.factors.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        m.weights.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
        m.bias.fill_(0.2)
    total = m.factors.shape[0]
    x = np.zeros((len(d), total))
    for row, (u, i) in enumerate(zip(d.user, d.item, strict=True)):
        for idx, val in (
            (m.user_fields[u], m.user_values[u]),
            (m.item_fields[i], m.item_values[i]),
        ):
            for j, v in zip(idx.tolist(), val.tolist(), strict=True):
                x[row, j] += v
    v, w = m.factors.detach().double().numpy(), m.weights.detach().double().numpy()
    inter = x @ v @ v.T
    pair = 0.5 * ((inter * x).sum(1) - ((x**2) @ (v**2).sum(1)))
    want = m.global_mean + 0.2 + x @ w + pair
    np.testing.assert_allclose(_predict(m, d), want, rtol=1e-4, atol=1e-4)
    assert m.global_mean == pytest.approx(float(d.rating.mean()))


def _fit(m: FactorizationMachine, d: Interactions, epochs: int = 30) -> FactorizationMachine:
    learn = Learner(m, d, bs=32, progress=False, seed=0, reg=0.0, wd=0.0)
    trainer_for("sgd").fit(learn, FitSpec(epochs=epochs, lr=3e-2))
    return m


def test_side_features_generalise_where_ids_cannot() -> None:
    d = _grouped(per_user=3)
    rng = np.random.default_rng(3)
    cut = rng.random(len(d)) < 0.7
    train, valid = d.take(np.flatnonzero(cut)), d.take(np.flatnonzero(~cut))
    with_features = _fit(create_model("fm", train, n_factors=4, seed=0), train)
    ids_only = dataclasses.replace(train, user_features=None, item_features=None)
    plain = _fit(create_model("fm", ids_only, n_factors=4, seed=0), ids_only)
    assert plain.n_features == 0 and with_features.n_features > 0

    def rmse(m: FactorizationMachine) -> float:
        return float(np.sqrt(np.mean((_predict(m, valid) - valid.rating) ** 2)))

    assert rmse(with_features) < 0.7 * rmse(plain)  # measured: 0.84 against 1.52


def test_bad_settings() -> None:
    for arg, value in (("n_factors", 0), ("n_features", -1), ("user_width", -1),
                       ("init_std", -1.0)):  # fmt: skip
        with pytest.raises(ConfigError, match=arg):
            FactorizationMachine(3, 3, **{arg: value})
    with pytest.raises(ConfigError, match="y_range"):
        FactorizationMachine(3, 3, y_range=(5.0, 1.0))
    m = FactorizationMachine(2, 2, n_features=3, user_width=1)
    with pytest.raises(ConfigError, match="user fields of shape"):
        m.set_fields(SideFields(np.zeros((2, 2), np.int64), np.ones((2, 2), np.float32), 3, ()),
                     SideFields(np.zeros((2, 0), np.int64), np.zeros((2, 0), np.float32), 0, ()))  # fmt: skip
    with pytest.raises(ConfigError, match="user field indices"):
        m.set_fields(SideFields(np.full((2, 1), 3), np.ones((2, 1), np.float32), 3, ()),
                     SideFields(np.zeros((2, 0), np.int64), np.zeros((2, 0), np.float32), 0, ()))  # fmt: skip
    with pytest.raises(ConfigError, match="n_factors"):
        validate_config({"model": "fm", "n_factors": 0})


def test_config_fields_reach_the_model() -> None:
    fam = family("fm")
    assert fam.trainers == ("sgd",) and fam.adapter == "generic"
    cfg = RatingConfig(model="fm", n_factors=7, y_range=(1.0, 5.0)).resolve_model(False)
    m = fam.build(fam.settings(cfg), _grouped())
    assert isinstance(m, FactorizationMachine)
    assert (m.n_factors, m.y_range, m.global_mean) == (7, (1.0, 5.0), 0.0)


def test_a_run_end_to_end_and_its_bundle(tmp_path: Path) -> None:
    d = _grouped()
    cfg = validate_config({"model": "fm", "split": "random:0.2", "seed": 0, "n_factors": 4,
                           "epochs": 2})  # fmt: skip
    result = train_run(cfg, tmp_path / "run", data=d)
    model = result.learner.model
    assert isinstance(model, FactorizationMachine) and model.n_features > 0
    rec = Recommender.load(tmp_path / "run" / "bundle")
    assert rec.info()["model"] == "fm"
    users, items = d.users.id(d.user[:20]), d.items.id(d.item[:20])
    got = rec.predict(users, items, on_unknown="baseline")
    np.testing.assert_allclose(np.asarray(got), _predict(model, d.take(np.arange(20))), atol=1e-6)
    again = build_model(model.config())  # the side fields travel with the weights
    again.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(_predict(again, d), _predict(model, d))  # type: ignore[arg-type]


def test_hostile_field_indices_are_refused_on_load() -> None:
    m = create_model("fm", _grouped(), n_factors=2)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    state["item_fields"][0, 0] = 10**6
    with pytest.raises(BundleError, match="item_fields"):
        build_model(m.config()).load_state_dict(state)
