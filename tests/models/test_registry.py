"""The model-family registry: lookups, declarations, and what every family must do.

The tests marked "every family" iterate over :func:`recfit.models.registry.families`,
so a family added by one module and one registry line is covered without editing them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import DotBias, RatingModel, build_model, create_model
from recfit.models.registry import (
    TASKS,
    TRAINERS,
    Family,
    families,
    family,
    family_of,
    find_family,
    register_family,
    sized_build,
    unregister_family,
)
from recfit.recommender import Recommender
from recfit.recommender.adapters import ADAPTERS, AdapterContext, adapter_for

SMALL: dict[str, Any] = {"n_factors": 4, "layers": (8,), "y_range": (0.5, 5.5), "seed": 1}
"""Small settings for the fields a family reads (each family takes those it reads)."""

FAMILIES = [f.name for f in families()]


def _build(name: str, data: Interactions) -> RatingModel:
    fam = family(name)
    return fam.build(fam.settings(SMALL), data)


def _batch(data: Interactions) -> dict[str, torch.Tensor]:
    return {
        "user": torch.from_numpy(data.user.astype(np.int64)),
        "item": torch.from_numpy(data.item.astype(np.int64)),
    }


# ----------------------------------------------------------------------------- lookups
def test_unknown_name_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="received 'nope'") as info:
        family("nope")
    for name in FAMILIES:
        assert repr(name) in str(info.value)
    with pytest.raises(ConfigError, match="svdpp"):
        create_model("nope", Interactions.from_arrays([1], [2], [3.0]))
    with pytest.raises(ConfigError, match="model name"):
        build_model({"name": "nope", "n_users": 1, "n_items": 1})


def test_families_by_task_partition_the_registry() -> None:
    parts = [families(t) for t in TASKS]  # type: ignore[arg-type]
    names = [f.name for part in parts for f in part]
    assert sorted(names) == sorted(FAMILIES) and len(set(names)) == len(names)
    assert {"dot", "mf", "svdpp", "nn"} <= {f.name for f in families("rating")}
    assert [f.name for f in families("classification")] == ["classifier", "ordrec"]
    assert [f.name for f in families("retrieval")] == ["two_tower"]
    with pytest.raises(ConfigError, match="task"):
        families("ranking")  # type: ignore[arg-type]


def test_declarations_are_consistent() -> None:
    for f in families():
        assert f.output == f.model_class.output_kind, f.name
        assert f.trainers and set(f.trainers) <= set(TRAINERS), f.name
        assert ("closed_form" in f.trainers) == (f.closed_form is not None), f.name
        assert f.model_class.registry_name == f.name
        assert family(f.name) is f
    assert family("svdpp").defaults == {"epochs": 6, "pct_start": 0.3}
    assert family("dot").row_wise and family("mf").row_wise and not family("svdpp").row_wise
    assert family("dot").trainers[0] == "sgd" and "als" in family("mf").trainers
    assert family("dot").fused and not family("nn").fused


def test_family_of_goes_by_class_then_base_class() -> None:
    class Mine(DotBias):  # a subclass belongs to its registered base's family
        pass

    assert family_of(Mine(2, 2, 1)).name == "dot"
    assert find_family(object()) is None
    with pytest.raises(ConfigError, match="registered family"):
        family_of(torch.nn.Linear(1, 1))


def test_register_family_refuses_inconsistent_entries() -> None:
    class Toy(DotBias):
        pass

    base: dict[str, Any] = dict(
        name="toy", task="rating", model_class=Toy, output="rating", reads=frozenset(),
        trainers=("sgd",), adapter="dot", defaults={}, build=sized_build(Toy),
    )  # fmt: skip
    bad = {
        "output": ({"output": "score"}, "output_kind"),
        "task": ({"task": "ranking"}, "task"),
        "trainer": ({"trainers": ("adam",)}, "trainers"),
        "closed form": ({"trainers": ("closed_form",)}, "closed_form"),
        "taken name": ({"name": "dot"}, "already registered"),
        "class": ({"model_class": int}, "RatingModel"),
        "kernels": ({"kernels": ("warp_drive",)}, "kernel sets"),
        "warm-up": ({"warm_up": "compile it"}, "callable warm_up"),
    }
    for what, (change, message) in bad.items():
        with pytest.raises(ConfigError, match=message):
            register_family(Family(**{**base, **change}))
        assert "toy" not in FAMILIES, what
    with pytest.raises(ConfigError, match="one family per model class"):
        register_family(Family(**{**base, "model_class": DotBias}))
    try:
        fam = register_family(Family(**base))
        assert family("toy") is fam and family_of(Toy(2, 2, 1)) is fam
        assert register_family(Family(**base)).name == "toy"  # again: replaces
    finally:
        unregister_family("toy")
    with pytest.raises(ConfigError, match="received 'toy'"):
        family("toy")


def test_settings_pick_the_fields_a_family_reads() -> None:
    class Cfg:
        n_factors, y_range, seed, lr, layers = 8, None, 3, 0.1, (4,)

    assert family("dot").settings(Cfg()) == {"n_factors": 8, "y_range": None, "seed": 3}
    assert family("nn").settings({"layers": (4,), "n_factors": 2}) == {"layers": (4,)}


def test_build_fills_what_comes_from_the_data() -> None:
    d = Interactions.from_arrays(
        [1, 1, 2, 3], [5, 6, 6, 7], [1.0, 2.5, 4.0, 5.0], weight=[1.0, 1.0, 1.0, 0.0],
        rating_scale=(0.5, 5.0),
    )  # fmt: skip
    mf = family("mf").build({"n_factors": 2}, d)
    assert mf.global_mean == pytest.approx(2.5)  # weighted: the weight-0 row counts nowhere
    clf = family("classifier").build({"layers": (4,)}, d)
    assert clf.levels[0] == 0.5 and len(clf.levels) == 10  # half stars: 2.5 is not whole
    svdpp = family("svdpp").build({"n_factors": 2}, d)
    assert svdpp.implicit_items.tolist() == [0, 1, 1]  # user 3's only row has weight 0
    assert mf.has_record and mf.train_user_count.tolist() == [2, 1, 0]
    tt = family("two_tower").build({"n_factors": 4, "layers": [4]}, d)
    assert tt.query_tower.embedding_dim == 4 and tt.output_dim == 4
    with pytest.raises(ConfigError, match="valid arguments"):
        family("dot").build({"bogus": 1}, d)


# ------------------------------------------------------------------------ every family
@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_builds_forwards_and_has_an_adapter(name: str, tiny: Interactions) -> None:
    model = _build(name, tiny)
    fam = family(name)
    assert isinstance(model, fam.model_class) and family_of(model) is fam
    assert model.config()["name"] == name
    assert (model.n_users, model.n_items) == (tiny.n_users, tiny.n_items)
    out = model.eval()(_batch(tiny))
    assert out.shape[0] == len(tiny) and bool(torch.isfinite(out).all())
    assert fam.adapter in ADAPTERS
    adapter = adapter_for(model, AdapterContext.default(tiny.n_users, tiny.n_items))
    assert type(adapter) is ADAPTERS[fam.adapter]
    scores = adapter.score_all(adapter.user_rows(torch.tensor([0, 1])))
    assert tuple(scores.shape) == (2, tiny.n_items)
    fresh = build_model(model.config())  # what loading does: the config alone
    assert type(fresh) is fam.model_class and fresh.config() == model.config()


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_round_trips_through_a_bundle(
    name: str, tiny: Interactions, tmp_path: Path
) -> None:
    model = _build(name, tiny).eval()
    rec = Recommender(model, tiny.users, tiny.items, tiny, rating_scale=tiny.rating_scale)
    back = Recommender.load(rec.save(tmp_path / "bundle"))
    assert family_of(back.model) is family(name)
    users, items = tiny.users.id(tiny.user[:50]), tiny.items.id(tiny.item[:50])
    np.testing.assert_array_equal(back.predict(users, items), rec.predict(users, items))
    assert back.recommend(users[0], n=3)[0].ids == rec.recommend(users[0], n=3)[0].ids


def test_no_layer_tests_a_concrete_model_class() -> None:
    """Trainers, the recommender, the config and the CLI ask the registry: no
    ``isinstance(model, DotBias)`` and friends outside the models package (a capability
    protocol such as ``LevelModel`` is not a class test)."""
    classes = "|".join(sorted({f.model_class.__name__ for f in families()} | {"EmbeddingBody"}))
    pattern = re.compile(rf"isinstance\([^)]*\b({classes})\b")
    root = Path(__file__).resolve().parents[2] / "src" / "recfit"
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("models/", "tasks/")):  # the families; the tasks use their APIs
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
