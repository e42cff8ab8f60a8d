from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recfit.config import (
    ClassificationConfig,
    RatingConfig,
    RetrievalConfig,
    load_config,
    validate_config,
)
from recfit.errors import ConfigError


def test_defaults_are_the_best_rating_configuration() -> None:
    cfg = RatingConfig()
    got = (cfg.model, cfg.n_factors, cfg.y_range, cfg.epochs, cfg.lr, cfg.wd, cfg.reg, cfg.bs)
    assert got == ("auto", 50, (0.0, 5.5), 5, 5e-3, 0.05, 0.05, 0)  # bs 0: chosen by data size
    assert (cfg.opt, cfg.schedule, cfg.pct_start, cfg.seed, cfg.trainer) == (
        "auto", "one_cycle", 0.25, 42, "sgd"
    )  # fmt: skip


def test_task_defaults_are_the_former_task_defaults() -> None:
    """The numbers the per-task defaults had before each task got its class."""
    c = ClassificationConfig()
    assert (c.model, c.loss, c.n_factors, c.bs, c.wd, c.reg, c.lr, c.epochs) == (
        "classifier", "cross_entropy", 32, 256, 0.3, 0.0, 5e-3, 5
    )  # fmt: skip
    r = RetrievalConfig()
    got = (r.model, r.n_factors, r.layers, r.opt, r.schedule, r.epochs, r.lr, r.bs, r.wd,
           r.reg, r.monitor, r.seed)  # fmt: skip
    assert got == ("two_tower", 32, (32,), "adagrad", "constant", 30, 0.05, 1000, 0.0, 0.0,
                   "top_100_accuracy", 42)  # fmt: skip
    # the settings the retrieval dataclass had, under one name each
    assert (r.objective, r.temperature, r.logq, r.remove_accidental_hits, r.num_negatives,
            r.negative_sampling, r.popularity_alpha, r.eval_ks, r.n_bootstrap, r.use_ids,
            r.user_features, r.item_features) == (
        "softmax", 0.1, True, True, 0, "uniform", 1.0, (10, 20, 100), 1000, True, None, None
    )  # fmt: skip


def test_validate_config_picks_the_task_class() -> None:
    assert type(validate_config({})) is RatingConfig
    assert type(validate_config({"task": "classification"})) is ClassificationConfig
    assert type(validate_config({"task": "retrieval", "epochs": 3})) is RetrievalConfig
    c = validate_config({"task": "classification", "bs": 32})
    assert (c.model, c.bs, c.wd) == ("classifier", 32, 0.3)


def test_an_unknown_task_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as e:
        validate_config({"task": "ranking"})
    msg = str(e.value)
    assert "expected task one of" in msg and "received 'ranking'" in msg
    for task in ("rating", "classification", "retrieval"):
        assert task in msg


@pytest.mark.parametrize(
    ("task", "key"),
    [
        ("rating", "epoch"),
        ("rating", "temperature"),  # another task's field is unknown here
        ("rating", "imbalance"),
        ("classification", "y_range"),
        ("classification", "objective"),
        ("retrieval", "head"),
        ("retrieval", "pct_start"),
        ("retrieval", "bf16"),
        ("retrieval", "embedding_dim"),  # the dataclass's names are gone: n_factors
        ("retrieval", "layer_sizes"),
    ],
)
def test_an_unknown_key_of_each_task_is_rejected(task: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        validate_config({"task": task, key: 1})


def test_auto_model_is_svdpp_on_the_dense_path_and_dot_on_the_row_wise_path() -> None:
    assert RatingConfig().resolve_model(big=False).model == "svdpp"
    assert RatingConfig().resolve_model(big=True).model == "dot"
    assert RatingConfig(trainer="als", reg=0.1).resolve_model(big=False).model == "dot"
    assert RatingConfig(model="nn").resolve_model(big=False).model == "nn"  # given: kept
    assert ClassificationConfig().resolve_model(big=False).model == "classifier"
    # svdpp's own schedule fills only what was not given, also when it is named
    named = RatingConfig(model="svdpp", epochs=3).resolve_model(big=True)
    assert (named.model, named.epochs, named.pct_start) == ("svdpp", 3, 0.3)
    small = RatingConfig().resolve_model(big=False)
    assert (small.epochs, small.pct_start) == (6, 0.3)
    const = RatingConfig(schedule="constant").resolve_model(big=False)
    assert (const.epochs, const.pct_start) == (6, 0.25)  # pct_start: not read, not filled
    with pytest.raises(ConfigError, match="for trainer 'als'"):
        validate_config({"trainer": "als", "model": "svdpp", "reg": 0.1})


def test_resolve_opt_row_wise_defaults_fill_what_was_not_given() -> None:
    big = RatingConfig(reg=0.1).resolve_opt(row_wise=True)
    assert (big.opt, big.lr, big.wd, big.reg) == ("adagrad", 0.03, 0.0, 0.1)
    assert RatingConfig().resolve_opt(row_wise=False).opt == "adam"
    assert RatingConfig(opt="sgd").resolve_opt(row_wise=True).opt == "sgd"
    assert ClassificationConfig().resolve_opt(row_wise=False).opt == "adam"
    assert RetrievalConfig().resolve_opt(row_wise=False).opt == "adagrad"
    als = RatingConfig(trainer="als", model="mf", reg=0.1).resolve_opt(row_wise=False)
    assert als.opt == "adam"  # the optimiser of the Learner that holds the model
    with pytest.raises(ConfigError, match="opt='sgd'"):
        validate_config({"trainer": "als", "model": "mf", "reg": 0.1, "opt": "sgd"})


def test_the_trainer_defaults_to_the_familys_first() -> None:
    cfg = RatingConfig(model="mf")
    assert cfg.trainer == "sgd" and "trainer" not in cfg.model_fields_set
    als = RatingConfig(model="mf", trainer="als", reg=0.1)
    assert als.trainer == "als" and als.replace(epochs=2).trainer == "als"
    with pytest.raises(ConfigError, match="trainer"):
        validate_config({"trainer": "bogus"})
    with pytest.raises(ConfigError, match="reg > 0"):
        validate_config({"trainer": "als", "reg": 0.0})


def test_model_is_checked_against_the_tasks_families() -> None:
    with pytest.raises(ConfigError, match="two_tower"):
        validate_config({"task": "retrieval", "model": "dot"})
    with pytest.raises(ConfigError, match="classifier"):
        validate_config({"task": "classification", "model": "dot"})
    with pytest.raises(ConfigError, match=r"expected model one of .*'svdpp'.*received 'bogus'"):
        validate_config({"model": "bogus"})
    with pytest.raises(ConfigError, match="expected model one of"):
        validate_config({"model": "two_tower"})  # a family of another task


def test_unknown_keys_and_bad_values_are_rejected_with_names() -> None:
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        validate_config({"epoch": 3})
    with pytest.raises(ConfigError, match=r"lr: .*received -1"):
        validate_config({"lr": -1})
    with pytest.raises(ConfigError, match="y_range"):
        validate_config({"y_range": [5, 1]})
    with pytest.raises(ConfigError, match=r"bs: .*received 0"):
        validate_config({"task": "retrieval", "bs": 0})
    with pytest.raises(ConfigError, match="layers"):
        validate_config({"task": "retrieval", "layers": []})
    with pytest.raises(ConfigError, match="eval_ks"):
        validate_config({"task": "retrieval", "eval_ks": [0]})
    with pytest.raises(ConfigError, match="opt"):
        validate_config({"task": "retrieval", "opt": "sgd"})
    with pytest.raises(ConfigError, match="schedule"):
        validate_config({"task": "classification", "schedule": "cosine"})
    with pytest.raises(ConfigError, match="table of settings"):
        validate_config([1, 2])  # type: ignore[arg-type]


def test_retrieval_patience_needs_eval_every_and_a_monitor_in_eval_ks() -> None:
    with pytest.raises(ConfigError, match="eval_every"):
        validate_config({"task": "retrieval", "patience": 1})
    with pytest.raises(ConfigError, match=r"eval_ks|cutoff"):
        validate_config({"task": "retrieval", "patience": 1, "eval_every": 1,
                         "monitor": "recall@5"})  # fmt: skip
    ok = validate_config({"task": "retrieval", "patience": 1, "eval_every": 1,
                          "monitor": "recall@20"})  # fmt: skip
    assert ok.patience == 1


def test_toml_and_json_round_trip(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\ndataset = "ml-1m"\nepochs = 3\ny_range = [1, 5]\n')
    cfg = load_config(toml)
    assert (cfg.dataset, cfg.epochs, cfg.y_range) == ("ml-1m", 3, (1.0, 5.0))
    js = tmp_path / "c.json"
    js.write_text(cfg.model_dump_json())
    assert load_config(js) == cfg
    (tmp_path / "r.toml").write_text('task = "retrieval"\nlayers = [64, 32]\n')
    r = load_config(tmp_path / "r.toml")
    assert isinstance(r, RetrievalConfig) and r.layers == (64, 32)


def test_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="line 1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="readable"):
        load_config(tmp_path / "missing.toml")
    js = tmp_path / "bad.json"
    js.write_text("[1]")
    with pytest.raises(ConfigError, match="table of settings"):
        load_config(js)


def test_replace_ignores_none_validates_and_keeps_the_task() -> None:
    cfg = RatingConfig().replace(epochs=None, lr=0.01)
    assert cfg.epochs == 5 and cfg.lr == 0.01 and type(cfg) is RatingConfig
    with pytest.raises(ConfigError):
        RatingConfig().replace(bs=-1)
    with pytest.raises(ConfigError, match="validate_config"):
        RatingConfig().replace(task="retrieval")
    r = RetrievalConfig().replace(epochs=3)
    assert type(r) is RetrievalConfig and (r.epochs, r.lr) == (3, 0.05)


#: a version-1 file: one flat class, every field written (what run directories hold)
_V1_RATING: dict[str, Any] = {
    "version": 1, "dataset": "ml-100k", "data_dir": None, "user_col": "user", "item_col": "item",
    "rating_col": "rating", "timestamp_col": None, "weight_col": None, "split": "random:0.2",
    "test_file": None, "seed": 42, "task": "rating", "model": "mf", "n_factors": 50,
    "y_range": [0.0, 5.5], "layers": [100], "dropout": 0.0, "batch_norm": True, "loss": "mse",
    "head": "softmax", "decode": "expected", "biases": True, "imbalance": "none",
    "class_weight": "inverse", "smote_epochs": 2, "smote_k": 5, "objective": "softmax",
    "temperature": 0.1, "logq": True, "num_hard_negatives": None, "num_negatives": 0,
    "positive_min_rating": None, "relevant_min_rating": None, "exclude_seen": False,
    "eval_every": 0, "opt": "adam", "schedule": "one_cycle", "trainer": "als", "epochs": 5,
    "lr": 0.005, "bs": 0, "wd": 0.05, "reg": 0.3, "reg_exponent": 0.75, "pct_start": 0.25,
    "patience": None, "inner_valid": 0.1, "monitor": "mse", "device": "auto",
    "checkpoint_every": None, "bf16": False,
}  # fmt: skip


def test_a_version_1_config_is_read_as_its_tasks_class(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(_V1_RATING))
    cfg = load_config(p)
    assert isinstance(cfg, RatingConfig) and cfg.version == 2
    assert (cfg.model, cfg.trainer, cfg.reg, cfg.reg_exponent, cfg.opt) == (
        "mf", "als", 0.3, 0.75, "adam"
    )  # fmt: skip
    retr = {**_V1_RATING, "task": "retrieval", "model": "two_tower", "trainer": "sgd",
            "opt": "adagrad", "schedule": "constant", "loss": "mse", "y_range": None,
            "reg": 0.0, "wd": 0.0, "lr": 0.05, "bs": 1000, "epochs": 30,
            "monitor": "top_100_accuracy", "n_factors": 32, "layers": [32],
            "reg_exponent": 1.0}  # fmt: skip
    r = validate_config(retr)
    assert isinstance(r, RetrievalConfig) and r.layers == (32,)
    # a value that was not the default stays an error: nothing is dropped silently
    with pytest.raises(ConfigError, match="temperature"):
        validate_config({**_V1_RATING, "temperature": 0.5})
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        validate_config({"version": 1, "epoch": 3})


def test_a_config_of_a_newer_format_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"version: .*received 3"):
        validate_config({"version": 3})


def test_a_closed_form_family_reads_none_of_the_training_settings() -> None:
    from recfit.models.registry import families

    if "baseline" not in [f.name for f in families("rating")]:
        pytest.skip("no closed-form family registered")
    cfg = validate_config({"model": "baseline"})
    assert cfg.trainer == "closed_form" and "trainer" not in cfg.model_fields_set
    for field, value in (("reg", 0.1), ("epochs", 3), ("lr", 0.1), ("patience", 2),
                         ("n_factors", 8), ("y_range", (1.0, 5.0))):  # fmt: skip
        with pytest.raises(ConfigError, match=f"received {field}="):
            validate_config({"model": "baseline", field: value})
    with pytest.raises(ConfigError, match="for trainer 'sgd'"):
        validate_config({"model": "baseline", "trainer": "sgd"})
    # the family's trainer follows the model when it changes
    assert RatingConfig(model="baseline").replace(model="mf").trainer == "sgd"
