"""Two-tower model: shapes, masks, gradients, determinism, persistence, features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.data.features import FeatureSpace, IntCategorical, MultiCategorical
from recfit.errors import ConfigError, DataError
from recfit.models import build_model, read_model_file, write_model_file
from recfit.models.two_tower import (
    CandidateTower,
    QueryTower,
    TwoTower,
    inputs_from_space,
)

USER_INPUTS = {
    "age": {"kind": "index", "cardinality": 4},
    "score": {"kind": "float"},
}
ITEM_INPUTS = {
    "title": {"kind": "sequence", "cardinality": 9, "width": 5},
    "genres": {"kind": "sequence", "cardinality": 6, "width": 3},
    "year": {"kind": "index", "cardinality": 3},
}


def _features(n_users: int = 6, n_items: int = 8, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    users = {"age": rng.integers(0, 4, n_users), "score": rng.normal(size=n_users).astype("f4")}
    items: dict[str, np.ndarray] = {"year": rng.integers(0, 3, n_items)}
    for name, card, width in (("title", 9, 5), ("genres", 6, 3)):
        lens = rng.integers(0, width + 1, n_items)
        mask = np.arange(width)[None, :] < lens[:, None]
        ids = np.where(mask, rng.integers(2, card, (n_items, width)), 0)
        items[name], items[name + "_mask"] = ids, mask
    return users, items


def _model(layers: tuple[int, ...] = (16, 8), seed: int = 0, use_id: bool = True) -> TwoTower:
    uf, itf = _features()
    q = QueryTower(6, USER_INPUTS, embedding_dim=4, layer_sizes=layers, use_id=use_id, seed=seed)
    c = CandidateTower(
        8, ITEM_INPUTS, embedding_dim=4, layer_sizes=layers, use_id=use_id, seed=seed + 1
    )
    q.set_features(uf)
    c.set_features(itf)
    return TwoTower(q, c)


def _batch() -> dict[str, torch.Tensor]:
    return {
        "user": torch.tensor([0, 1, 5, 3, 3]),
        "item": torch.tensor([7, 0, 2, 2, 4]),
        "rating": torch.tensor([5.0, 3.0, 1.0, 4.0, 2.0]),
        "weight": torch.ones(5),
    }


@pytest.mark.parametrize("layers", [(8,), (16, 8), (32, 16, 8)])
def test_shapes_for_each_depth(layers: tuple[int, ...]) -> None:
    m = _model(layers)
    out = m(_batch())
    assert out.shape == (5,)
    assert m.user_vectors().shape == (6, layers[-1])
    assert m.item_vectors().shape == (8, layers[-1])
    assert m.user_vectors([1, 2]).shape == (2, layers[-1])
    assert len(m.query_tower.dense) == len(layers)
    # forward is the dot product of the whole-vocabulary vectors
    b = _batch()
    expect = (m.user_vectors()[b["user"]] * m.item_vectors()[b["item"]]).sum(1)
    torch.testing.assert_close(m.eval()(b), expect)


def test_relu_between_layers_and_none_after_the_last() -> None:
    m = _model((16, 8))
    t = m.query_tower
    idx = torch.arange(6)
    feats = t.features_at(idx)
    h = torch.cat(
        [t.id_embedding(idx), t.embeddings["age"](feats["age"]), feats["score"].unsqueeze(1)], 1
    )
    h = torch.relu(t.dense[0](h))
    expect = t.dense[1](h)
    torch.testing.assert_close(t(idx), expect)
    assert bool((expect < 0).any())  # no activation on the output


def test_towers_of_different_widths_are_rejected() -> None:
    with pytest.raises(ConfigError, match="same output width"):
        TwoTower(QueryTower(3, layer_sizes=(4,)), CandidateTower(3, layer_sizes=(5,)))
    with pytest.raises(ConfigError, match="layer_sizes"):
        QueryTower(3, layer_sizes=())
    with pytest.raises(ConfigError, match="kind"):
        QueryTower(3, {"x": {"kind": "bogus", "cardinality": 2}})
    with pytest.raises(ConfigError, match="use_id"):
        QueryTower(3, use_id=False)


def test_masked_mean_pooling_by_hand() -> None:
    m = _model()
    t = m.candidate_tower
    idx = torch.arange(8)
    feats = t.features_at(idx)
    emb = t.embeddings["genres"].weight.detach()
    ids, mask = feats["genres"].numpy(), feats["genres_mask"].numpy()
    for r in range(8):
        toks = ids[r][mask[r]]
        expect = emb[toks].mean(0) if len(toks) else torch.zeros(emb.shape[1])
        got = (emb[ids[r]] * torch.from_numpy(mask[r]).float()[:, None]).sum(0) / max(
            1, mask[r].sum()
        )
        torch.testing.assert_close(got, expect)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_padding_never_affects_outputs(seed: int) -> None:
    m = _model()
    t = m.candidate_tower
    idx = torch.arange(8)
    feats = t.features_at(idx)
    before = t.encode_features(feats, idx)
    g = torch.Generator().manual_seed(seed)
    changed = dict(feats)
    for name, card in (("title", 9), ("genres", 6)):
        noise = torch.randint(0, card, feats[name].shape, generator=g)
        changed[name] = torch.where(feats[name + "_mask"], feats[name], noise)
    after = t.encode_features(changed, idx)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_gradients_reach_every_parameter() -> None:
    m = _model((16, 8))
    m.train()
    b = _batch()
    loss = (m(b) - 1.0).pow(2).mean() + m.penalty(b).mean()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad.abs().sum()) > 0, name


def test_same_seed_same_model_and_other_seed_differs() -> None:
    a, b, c = _model(seed=3), _model(seed=3), _model(seed=4)
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), na
    assert not torch.equal(a(_batch()), c(_batch()))


def test_save_load_round_trip(tmp_path: Path) -> None:
    m = _model()
    path = write_model_file(m, tmp_path / "tt.safetensors")
    m2 = read_model_file(path)
    assert isinstance(m2, TwoTower)
    assert m2.config() == m.config()
    torch.testing.assert_close(m2(_batch()), m(_batch()))
    torch.testing.assert_close(m2.item_vectors(), m.item_vectors())
    # build_model from the config gives the same structure with fresh buffers
    fresh = build_model(m.config())
    assert isinstance(fresh, TwoTower)
    assert int(fresh.candidate_tower.f_title.abs().sum()) == 0


def test_set_features_validates() -> None:
    q = QueryTower(6, USER_INPUTS, embedding_dim=4)
    uf, _ = _features()
    with pytest.raises(DataError, match="shape"):
        q.set_features({**uf, "age": uf["age"][:3]})
    with pytest.raises(DataError, match="indices"):
        q.set_features({**uf, "age": uf["age"] + 10})
    with pytest.raises(DataError, match="expected feature 'score'"):
        q.set_features({"age": uf["age"]})
    c = CandidateTower(8, ITEM_INPUTS, embedding_dim=4)
    _, itf = _features()
    with pytest.raises(DataError, match="mask"):
        c.set_features({k: v for k, v in itf.items() if k != "title_mask"})


def test_cold_start_from_features_alone() -> None:
    m = _model()
    t = m.query_tower
    feats = t.features_at(torch.tensor([2]))
    v = t.encode_features(feats, None)
    assert v.shape == (1, 8) and torch.isfinite(v).all()
    assert not torch.equal(v, t(torch.tensor([2])))  # the id embedding is left out
    with pytest.raises(DataError):
        QueryTower(3).encode_features({}, None)


def _frame_data() -> Interactions:
    rng = np.random.default_rng(0)
    d = Interactions.from_arrays(
        rng.integers(0, 12, 200), rng.integers(0, 9, 200), rng.integers(1, 6, 200).astype(float)
    )
    users = pd.DataFrame({"job": rng.integers(0, 3, d.n_users)})
    items = pd.DataFrame(
        {"tags": [tuple(rng.choice(["a", "b", "c"], 2)) for _ in range(d.n_items)]}
    )
    from dataclasses import replace

    return replace(d, user_features=users, item_features=items)


def test_from_data_fits_spaces_on_training_rows_and_round_trips(tmp_path: Path) -> None:
    d = _frame_data()
    space = FeatureSpace({"job": IntCategorical()})
    m = TwoTower.from_data(
        d, user_space=space, item_space=FeatureSpace({"tags": MultiCategorical()}), layer_sizes=(6,)
    )
    assert m.user_space is not None and m.user_space.fitted
    assert m.query_tower.inputs == inputs_from_space(m.user_space)
    expected = m.user_space.transform(d.user_features)["job"]
    np.testing.assert_array_equal(m.query_tower.f_job.numpy(), expected)
    m2 = read_model_file(write_model_file(m, tmp_path / "m.safetensors"))
    assert isinstance(m2, TwoTower) and m2.user_space == m.user_space
    torch.testing.assert_close(m2.user_vectors(), m.user_vectors())


def test_from_data_on_movielens(data_dir: Path) -> None:
    from recfit.data import movielens

    d = movielens("ml-100k", data_dir=data_dir, download=False)
    m = TwoTower.from_data(
        d,
        user_features=("age", "gender", "occupation", "gender_x_age"),
        item_features=("title", "genres"),
        layer_sizes=(64, 32),
    )
    assert sorted(m.query_tower.inputs) == ["age", "gender", "gender_x_age", "occupation"]
    assert m.candidate_tower.inputs["title"]["kind"] == "sequence"
    assert m.item_vectors().shape == (d.n_items, 32)
