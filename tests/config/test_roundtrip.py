"""Fuzzing: any valid config dict survives TOML and JSON unchanged."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recfit.config import TASK_CONFIGS, load_toml_text, to_toml, validate_config
from recfit.errors import ConfigError

text = st.text(max_size=12)  # any characters: quotes, backslashes, controls, non-ASCII
pos = st.floats(min_value=0.0, exclude_min=True, max_value=1e6, allow_nan=False)
nonneg = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
sizes = st.lists(st.integers(1, 512), min_size=1, max_size=3)

SHARED: dict[str, Any] = {
    "dataset": text, "data_dir": st.none() | text, "user_col": text, "item_col": text,
    "rating_col": text, "timestamp_col": st.none() | text, "weight_col": st.none() | text,
    "split": text, "seed": ints, "epochs": st.integers(0, 10**6), "lr": pos, "wd": nonneg,
    "reg": nonneg, "device": text,
}  # fmt: skip

OWN: dict[str, dict[str, Any]] = {
    "rating": {
        "model": st.sampled_from(["auto", "dot", "mf", "svdpp", "nn"]),
        "n_factors": st.integers(1, 10**6),
        "y_range": st.none()
        | st.tuples(st.floats(-1e3, 0, allow_nan=False), st.floats(1, 1e3, allow_nan=False)),
        "loss": st.sampled_from(["mse", "mae", "huber"]),
        "bs": st.integers(0, 10**6),
        "opt": st.sampled_from(["auto", "adam", "sgd", "momentum", "adagrad"]),
        "schedule": st.sampled_from(["one_cycle", "constant", "cosine", "cyclic"]),
        "checkpoint_every": st.none() | st.integers(1, 10**6),
        "bf16": st.booleans(),
    },
    "classification": {
        "n_factors": st.integers(1, 1000),
        "layers": sizes,
        "dropout": st.floats(0.0, 0.99),
        "batch_norm": st.booleans(),
        "head": st.sampled_from(["softmax", "ordinal"]),
        "decode": st.sampled_from(["expected", "argmax"]),
        "biases": st.booleans(),
        "imbalance": st.sampled_from(["none", "undersample", "oversample"]),
        "bs": st.integers(0, 10**6),
    },
    "retrieval": {
        "n_factors": st.integers(1, 1000),
        "layers": sizes,
        "user_features": st.none() | st.lists(text, max_size=3),
        "item_features": st.none() | st.lists(text, max_size=3),
        "use_ids": st.booleans(),
        "temperature": pos,
        "logq": st.booleans(),
        "num_hard_negatives": st.none() | st.integers(1, 100),
        "positive_min_rating": st.none() | st.floats(-10, 10),
        "relevant_min_rating": st.none() | st.floats(-10, 10),
        "exclude_seen": st.booleans(),
        "eval_every": st.integers(0, 100),
        "eval_ks": sizes,
        "n_bootstrap": st.integers(0, 10**4),
        "opt": st.sampled_from(["adagrad", "adam"]),
        "bs": st.integers(1, 10**6),
    },
    "topn": {
        "model": st.sampled_from(["auto", "popularity"]),
        "positive_min_rating": st.none() | st.floats(-10, 10),
        "confidence": st.sampled_from(["binary", "value"]),
        "eval_ks": sizes,
        "exclude_seen": st.booleans(),
        "n_bootstrap": st.integers(0, 10**4),
        "ease_lambda": pos,
        "knn_k": st.integers(1, 10**4),
        "n_factors": st.integers(1, 1000),
    },
}


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    task = draw(st.sampled_from(list(TASK_CONFIGS)))
    data = draw(st.fixed_dictionaries({}, optional={**SHARED, **OWN[task]}))
    if task == "classification" and draw(st.booleans()):
        data["imbalance"] = "class_weights"
        data["class_weight"] = draw(
            st.sampled_from(["inverse", "sqrt_inverse"])
            | st.dictionaries(st.sampled_from(["1", "2", "3.5"]), pos, max_size=3)
        )
    return {"task": task, **data}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_dict_to_config_to_toml_and_json_and_back_is_equal(data: dict[str, Any]) -> None:
    try:
        cfg = validate_config(data)
    except ConfigError:
        assume(False)  # e.g. a y_range on a model without one: refused, nothing to compare
        raise
    back = load_toml_text(to_toml(cfg))
    assert back == cfg and type(back) is type(cfg)
    assert validate_config(json.loads(cfg.model_dump_json())) == cfg
