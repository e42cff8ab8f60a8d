"""Run configurations, one class per task: frozen, validated, rejecting unknown keys.

A config describes one training run completely (data, split, model, optimisation):
:class:`RatingConfig`, :class:`ClassificationConfig`, :class:`RetrievalConfig` or
:class:`TopNConfig`, sharing
:class:`~recfit.config.base.BaseTrainConfig`. :data:`TrainConfig` is their union,
discriminated by ``task``; :func:`validate_config` makes the right one from a dict. A run
directory stores its config as ``config.json`` and can be re-run from it; configs load
from TOML or JSON files (:func:`load_config`), and command-line flags override file
values. How each default was chosen: ``docs/defaults.md``.

Example:
    >>> cfg = validate_config({"dataset": "ml-100k", "epochs": 3})
    >>> type(cfg).__name__, cfg.model, cfg.epochs
    ('RatingConfig', 'auto', 3)
    >>> validate_config({"task": "retrieval"}).n_factors
    32
"""

from __future__ import annotations

from recfit.config.base import (
    CONFIG_VERSION,
    ROW_WISE_DEFAULTS,
    TRAINER_READS,
    BaseTrainConfig,
)
from recfit.config.classification import ClassificationConfig
from recfit.config.io import (
    TASK_CONFIGS,
    TrainConfig,
    load_config,
    load_toml_text,
    to_toml,
    validate_config,
)
from recfit.config.rating import AUTO_MODELS, RatingConfig
from recfit.config.retrieval import RetrievalConfig
from recfit.config.schema import show_config
from recfit.config.topn import TopNConfig

__all__ = [
    "AUTO_MODELS",
    "CONFIG_VERSION",
    "ROW_WISE_DEFAULTS",
    "TASK_CONFIGS",
    "TRAINER_READS",
    "BaseTrainConfig",
    "ClassificationConfig",
    "RatingConfig",
    "RetrievalConfig",
    "TopNConfig",
    "TrainConfig",
    "load_config",
    "load_toml_text",
    "show_config",
    "to_toml",
    "validate_config",
]
