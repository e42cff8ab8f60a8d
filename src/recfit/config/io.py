"""The union of the task configs, validation from dicts, and TOML / JSON files.

Example:
    >>> cfg = validate_config({"task": "retrieval", "epochs": 3})
    >>> type(cfg).__name__, cfg.epochs
    ('RetrievalConfig', 3)
    >>> load_toml_text(to_toml(cfg)) == cfg
    True
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from recfit.config.base import CONFIG_VERSION, BaseTrainConfig, config_error
from recfit.config.classification import ClassificationConfig
from recfit.config.rating import RatingConfig
from recfit.config.retrieval import RetrievalConfig
from recfit.config.topn import TopNConfig
from recfit.errors import ConfigError

__all__ = [
    "TASK_CONFIGS",
    "TrainConfig",
    "load_config",
    "load_toml_text",
    "to_toml",
    "validate_config",
]

TrainConfig = Annotated[
    RatingConfig | ClassificationConfig | RetrievalConfig | TopNConfig,
    Field(discriminator="task"),
]
"""One training run's config: the task's class, chosen by ``task`` (default ``rating``)."""

AnyConfig = RatingConfig | ClassificationConfig | RetrievalConfig | TopNConfig

TASK_CONFIGS: dict[str, type[AnyConfig]] = {
    "rating": RatingConfig,
    "classification": ClassificationConfig,
    "retrieval": RetrievalConfig,
    "topn": TopNConfig,
}
"""The config class of each task."""

_ADAPTER: TypeAdapter[AnyConfig] = TypeAdapter(TrainConfig)

# Version 1 stored one flat class for every task, with every field. Its fields that a
# task's class no longer has were unread there, so a valid file holds their defaults:
# those are dropped when it is read (any other value stays an error).
_V1_DEFAULTS: dict[str, Any] = {
    "model": "auto", "n_factors": 50, "y_range": (0.0, 5.5), "layers": (100,), "dropout": 0.0,
    "batch_norm": True, "loss": "mse", "head": "softmax", "decode": "expected", "biases": True,
    "imbalance": "none", "class_weight": "inverse", "smote_epochs": 2, "smote_k": 5,
    "objective": "softmax", "temperature": 0.1, "logq": True, "num_hard_negatives": None,
    "num_negatives": 0, "positive_min_rating": None, "relevant_min_rating": None,
    "exclude_seen": False, "eval_every": 0, "reg_exponent": 1.0, "pct_start": 0.25,
    "checkpoint_every": None, "bf16": False,
}  # fmt: skip
_V1_TASK_DEFAULTS: dict[str, dict[str, Any]] = {"retrieval": {"y_range": None, "loss": "mse"}}


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 dict as the current version (see ``_V1_DEFAULTS``)."""
    if data.get("version") != 1:
        return data
    task = data.get("task", "rating")
    cls = TASK_CONFIGS.get(task)
    if cls is None:
        return data
    defaults = {**_V1_DEFAULTS, **_V1_TASK_DEFAULTS.get(task, {})}
    out: dict[str, Any] = {"version": CONFIG_VERSION}
    for k, v in data.items():
        if k == "version" or (
            k not in cls.model_fields and k in defaults and _same(v, defaults[k])
        ):
            continue
        out[k] = v
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return bool(a == b)


def validate_config(data: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
    """Validate a dict into the config class of its ``task`` (``rating`` when absent).

    Raises:
        ConfigError: an unknown task, unknown keys or invalid values, each named with
            what was received.

    Example:
        >>> validate_config({"task": "classification"}).model
        'classifier'
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a table of settings in {source}, received {type(data).__name__}"
        )
    data = _upgrade({"task": "rating", **data})
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        tag = data["task"] if isinstance(data["task"], str) else None
        raise config_error(exc, source, tag) from None


def load_config(path: str | Path) -> TrainConfig:
    """Read a config from a TOML or JSON file.

    A TOML file may hold the keys at the top level or under a ``[train]`` table.

    Raises:
        ConfigError: the file is missing, malformed (with its line) or invalid.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"expected a readable config file, received {str(p)!r}: {exc}") from exc
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"expected JSON in {str(p)!r}, received an error at line {exc.lineno}: {exc.msg}"
            ) from exc
        return validate_config(data, source=str(p))
    return load_toml_text(text, source=str(p))


def load_toml_text(text: str, *, source: str = "TOML") -> TrainConfig:
    """A config from TOML text (keys at the top level or under ``[train]``).

    Raises:
        ConfigError: malformed TOML or an invalid config.
    """
    try:
        data: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"expected TOML in {source!r}, received: {exc}") from exc
    if isinstance(data.get("train"), dict):
        data = data["train"]
    return validate_config(data, source=source)


# ------------------------------------------------------------------ TOML writing
def _toml_string(s: str) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ConfigError(f"expected a finite number for TOML, received {v!r}")
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return (
            "{"
            + ", ".join(f"{_toml_string(str(k))} = {_toml_value(x)}" for k, x in v.items())
            + "}"
        )
    raise ConfigError(f"expected a value TOML can hold, received {type(v).__name__}")


def to_toml(cfg: BaseTrainConfig, *, pending: Mapping[str, str] | None = None) -> str:
    """``cfg`` as TOML that :func:`load_config` reads back equal, every field in order.

    A ``None`` is written as a comment when it is the field's default (TOML has no null;
    leaving the key out gives it back) and as ``"none"`` otherwise (``y_range``).
    ``pending``: fields decided at run time (``{name: why}``), written as comments so
    that reading the file leaves them to the run (:func:`recfit.config.show_config`).

    Raises:
        ConfigError: a value TOML cannot hold (a field with no ``"none"`` spelling).
    """
    pending = pending or {}
    lines = []
    for name, info in type(cfg).model_fields.items():
        v = getattr(cfg, name)
        if name in pending:
            shown = "none" if v is None else _toml_value(v)
            lines.append(f"# {name} = {shown}  ({pending[name]})")
        elif v is None and info.default is None:
            lines.append(f"# {name}: none")
        elif v is None:
            lines.append(f'{name} = "none"')
        else:
            lines.append(f"{name} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
