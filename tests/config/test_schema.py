"""The config schema as flags: kinds, parsing of flag text, defaults shown in --help."""

from __future__ import annotations

from typing import Any

import pytest

from recfit.config import TASK_CONFIGS, validate_config
from recfit.config.schema import field_spec, field_specs, parse_flag, shown_default
from recfit.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("layers", "64,32", (64, 32)),
        ("eval_ks", "5", (5,)),
        ("y_range", "1,5", (1.0, 5.0)),
        ("y_range", "1:5", (1.0, 5.0)),
        ("y_range", "none", None),
        ("user_features", "age, gender", ("age", "gender")),
        ("user_features", "none", None),
        ("item_features", "", ()),
        ("class_weight", "sqrt_inverse", "sqrt_inverse"),
        ("class_weight", "1=2,5=0.5", {"1": 2.0, "5": 0.5}),
        ("split", "random:0.3", "random:0.3"),  # text as it is
    ],
)
def test_flag_text_reads_as_the_fields_kind(name: str, text: str, value: Any) -> None:
    assert parse_flag(name, text) == value


@pytest.mark.parametrize(
    ("name", "text", "flag"),
    [("layers", "a,b", "--layers"), ("y_range", "a,b", "--y-range"),
     ("y_range", "1,2,3", "--y-range"), ("class_weight", "1:2", "--class-weight")],
)  # fmt: skip
def test_bad_flag_text_names_the_flag(name: str, text: str, flag: str) -> None:
    with pytest.raises(ConfigError, match=f"expected {flag} .*received {text!r}"):
        parse_flag(name, text)


def test_every_field_has_a_spec_with_its_defaults_per_task() -> None:
    specs = {s.name: s for s in field_specs()}
    for task, cls in TASK_CONFIGS.items():
        for name, info in cls.model_fields.items():
            if name == "version":
                continue
            assert specs[name].defaults[task] == info.default, (task, name)
            assert specs[name].help, name
    assert field_spec("model").choices[0] == "auto" and "two_tower" in field_spec("model").choices
    assert set(field_spec("opt").choices) == {"auto", "adam", "sgd", "momentum", "adagrad"}
    assert field_spec("temperature").tasks == ("retrieval",)
    with pytest.raises(ConfigError, match="config field"):
        field_spec("bogus")


def test_shown_defaults_say_what_each_task_family_and_path_brings() -> None:
    assert (
        shown_default("epochs")
        == "5 (ials: 15; autorec: 30; bpr: 100; svdpp: 6; ordrec: 8; timesvdpp: 30; retrieval: 30)"
    )
    assert shown_default("lr") == (
        "0.005 (autorec: 0.0025; bpr: 0.05; ordrec: 0.01; timesvdpp: 0.0105; retrieval: 0.05; "
        "row-wise adagrad: 0.03)"
    )
    assert shown_default("temperature") == "0.1 (retrieval only)"
    assert shown_default("task") == "rating"


def test_the_text_kinds_read_back_into_a_valid_config() -> None:
    cfg = validate_config({"task": "retrieval", "layers": parse_flag("layers", "8,4"),
                           "user_features": parse_flag("user_features", "")})  # fmt: skip
    assert cfg.layers == (8, 4) and cfg.user_features == ()
