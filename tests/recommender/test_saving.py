"""One user-facing model format: recfit.save_model writes a bundle that Recommender.load,
recfit.load_model and the command line read; a file of the earlier single-file format and
a training checkpoint are refused with what to do instead."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import recfit
from recfit.cli import app
from recfit.data import Interactions
from recfit.errors import BundleError, ConfigError
from recfit.models import create_model
from recfit.models.persist import read_model_metadata, write_model_file
from recfit.recommender import Recommender, load_model, save_model

runner = CliRunner()


@pytest.fixture
def data() -> Interactions:
    import pandas as pd

    d = Interactions.from_arrays(
        [1, 1, 2, 2, 3], [10, 20, 10, 30, 20], [5.0, 3.0, 4.0, 2.0, 1.0], rating_scale=(1, 5)
    )
    info = pd.DataFrame({"title": ["Ten (1990)", "Twenty (1991)", "Thirty (1992)"]})
    return dataclasses.replace(d, item_features=info)


def test_public_save_model_writes_a_bundle(data: Interactions, tmp_path: Path) -> None:
    assert recfit.save_model is save_model and recfit.load_model is load_model
    model = create_model("mf", data, n_factors=2, seed=0)
    path = recfit.save_model(model, tmp_path / "m", data)
    assert (path / "manifest.json").is_file(), "a bundle folder, not a single file"
    back = recfit.load_model(path)
    assert back.config() == model.config()
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v.detach().cpu()), k
    rec = Recommender.load(path)
    assert rec.title(20) == "Twenty (1991)" and rec.rating_scale == (1.0, 5.0)
    assert rec.seen_items(2) == [10, 30]
    assert rec.recommend(2, n=1)[0].path == "model"


def test_save_model_takes_recommender_options(data: Interactions, tmp_path: Path) -> None:
    model = create_model("dot", data, n_factors=2, seed=0)
    path = save_model(model, tmp_path / "m", data, config={"model": "dot"}, fold_in_reg=0.5)
    rec = Recommender.load(path)
    assert rec.config == {"model": "dot"} and rec.fold_in_reg == 0.5
    with pytest.raises(ConfigError, match="Interactions"):
        save_model(model, tmp_path / "x", "not data")  # type: ignore[arg-type]


def test_the_command_line_reads_a_saved_model(data: Interactions, tmp_path: Path) -> None:
    path = save_model(create_model("mf", data, n_factors=2, seed=0), tmp_path / "m", data)
    res = runner.invoke(app, ["recommend", str(path), "--user", "1", "-n", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["recommendations"][0]["path"] == "model"


def test_a_single_file_model_is_refused_with_how_to_resave(
    data: Interactions, tmp_path: Path
) -> None:
    model = create_model("mf", data, n_factors=2, seed=0)
    old = write_model_file(model, tmp_path / "old.safetensors")
    with pytest.raises(BundleError, match=r"single-file model .*re-save it as a bundle"):
        Recommender.load(old)
    # a folder holding one (an older run directory) gets the same answer
    (tmp_path / "oldrun").mkdir()
    write_model_file(model, tmp_path / "oldrun" / "model.safetensors")
    with pytest.raises(BundleError, match=r"single-file model .*oldrun.*re-save it"):
        Recommender.load(tmp_path / "oldrun")
    res = runner.invoke(app, ["recommend", str(old), "--user", "1"])
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "single-file model" in flat and "re-save it" in flat
    # the documented way out: read it through the checked reader, re-save it as a bundle
    back = load_model(old)
    assert back.config() == model.config()
    rec = Recommender.load(save_model(back, tmp_path / "new", data))
    assert np.allclose(rec.predict(1, 10, clip=False), Recommender(model, data.users,
                       data.items, data).predict(1, 10, clip=False))  # fmt: skip


def test_a_single_file_model_is_read_through_the_checks(data: Interactions, tmp_path: Path) -> None:
    model = create_model("mf", data, n_factors=2, seed=0)
    good = write_model_file(model, tmp_path / "good.safetensors")
    # the config declares more users than the tensors hold: refused before any weight
    tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = {**model.config(), "n_users": 10**9}

    meta = {**read_model_metadata(good), "recfit.config": json.dumps(cfg)}
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(BundleError, match=r"n_users|user_factors|tensor"):
        load_model(tmp_path / "bad.safetensors")
    # NaN weights are refused too
    tensors["user_factors"] = torch.full_like(tensors["user_factors"], float("nan"))
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=read_model_metadata(good))
    with pytest.raises(BundleError, match="finite"):
        load_model(tmp_path / "nan.safetensors")


def test_a_training_checkpoint_is_not_a_model(tmp_path: Path) -> None:
    ck = tmp_path / "checkpoint.safetensors"
    save_file({"model.w": torch.zeros(2)}, str(ck), metadata={"recfit.checkpoint": "{}"})
    for call in (Recommender.load, load_model):
        with pytest.raises(BundleError, match=r"training checkpoint .*--resume"):
            call(ck)


def test_other_files_are_not_bundles(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BundleError, match="expected a bundle"):
        load_model(tmp_path / "notes.txt")
    with pytest.raises(BundleError, match="missing path"):
        load_model(tmp_path / "nope")
