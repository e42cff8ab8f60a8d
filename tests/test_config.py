from __future__ import annotations

from pathlib import Path

import pytest

from recfit.config import TrainConfig, load_config, validate_config
from recfit.errors import ConfigError


def test_defaults_are_the_best_rating_configuration() -> None:
    cfg = TrainConfig()
    got = (cfg.model, cfg.n_factors, cfg.y_range, cfg.epochs, cfg.lr, cfg.wd, cfg.reg, cfg.bs)
    assert got == ("auto", 50, (0.0, 5.5), 5, 5e-3, 0.05, 0.05, 0)  # bs 0: chosen by data size


def test_auto_model_is_svdpp_on_the_dense_path_and_dot_on_the_row_wise_path() -> None:
    assert TrainConfig().resolve_model(big=False).model == "svdpp"
    assert TrainConfig().resolve_model(big=True).model == "dot"
    assert TrainConfig(trainer="als", reg=0.1).resolve_model(big=False).model == "dot"
    assert TrainConfig(model="nn").resolve_model(big=False).model == "nn"  # given: kept
    assert TrainConfig(task="classification").resolve_model(big=False).model == "classifier"
    # svdpp's own schedule fills only what was not given, also when it is named
    named = TrainConfig(model="svdpp", epochs=3).resolve_model(big=True)
    assert (named.model, named.epochs, named.pct_start) == ("svdpp", 3, 0.3)
    with pytest.raises(ConfigError, match="for trainer 'als'"):
        validate_config({"trainer": "als", "model": "svdpp", "reg": 0.1})


def test_unknown_keys_and_bad_values_are_rejected_with_names() -> None:
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        validate_config({"epoch": 3})
    with pytest.raises(ConfigError, match=r"lr: .*received -1"):
        validate_config({"lr": -1})
    with pytest.raises(ConfigError, match="y_range"):
        validate_config({"y_range": [5, 1]})


def test_toml_and_json_round_trip(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\ndataset = "ml-1m"\nepochs = 3\ny_range = [1, 5]\n')
    cfg = load_config(toml)
    assert (cfg.dataset, cfg.epochs, cfg.y_range) == ("ml-1m", 3, (1.0, 5.0))
    js = tmp_path / "c.json"
    js.write_text(cfg.model_dump_json())
    assert load_config(js) == cfg


def test_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="readable"):
        load_config(tmp_path / "missing.toml")


def test_replace_ignores_none_and_validates() -> None:
    cfg = TrainConfig().replace(epochs=None, lr=0.01)
    assert cfg.epochs == 5 and cfg.lr == 0.01
    with pytest.raises(ConfigError):
        TrainConfig().replace(bs=-1)


def test_task_defaults_apply_unless_given() -> None:
    from recfit.config import TASK_DEFAULTS

    r = TrainConfig().replace(task="retrieval")
    for key, value in TASK_DEFAULTS["retrieval"].items():
        assert getattr(r, key) == value, key
    assert TrainConfig().replace(task="retrieval", epochs=3).epochs == 3
    c = validate_config({"task": "classification", "bs": 32})
    assert (c.model, c.loss, c.bs, c.wd) == ("classifier", "cross_entropy", 32, 0.3)
    with pytest.raises(ConfigError, match="two_tower"):
        validate_config({"task": "retrieval", "model": "dot"})
