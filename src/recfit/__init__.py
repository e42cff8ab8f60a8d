"""recfit: train, evaluate and serve recommender models on rating data.

A trained model is kept and handed over as a bundle folder: :func:`save_model` (or
:meth:`Recommender.save`) writes it, :func:`load_model` and :meth:`Recommender.load` read
it, and ``recfit serve`` / ``recfit recommend`` answer from it. Training checkpoints
(``RUN/checkpoint.safetensors``, for ``recfit train --resume``) are not models to hand
over.
"""

import recfit._startup  # noqa: F401 (first: `recfit train` starts its compile here)
from recfit._version import __version__
from recfit.config import (
    ClassificationConfig,
    RatingConfig,
    RetrievalConfig,
    TopNConfig,
    TrainConfig,
    load_config,
    validate_config,
)
from recfit.data import Interactions, Split, Vocabulary, load_dataset, make_split, movielens
from recfit.errors import (
    BundleError,
    ConfigError,
    DataError,
    DownloadError,
    ItemNotFoundError,
    RecfitError,
    UnknownIdError,
)
from recfit.experiments import ExperimentResults, load_compare_config, run_experiments, seeds_for
from recfit.index import ApproximateIndex, ExactIndex, ItemSets
from recfit.models import BiasedMF, DotBias, EmbeddingNN, SVDpp, build_model, families, family
from recfit.recommender import Recommender, load_model, save_model
from recfit.runs import RunResult, train_run
from recfit.train import Callback, Learner

__all__ = [
    "ApproximateIndex",
    "BiasedMF",
    "BundleError",
    "Callback",
    "ClassificationConfig",
    "ConfigError",
    "DataError",
    "DotBias",
    "DownloadError",
    "EmbeddingNN",
    "ExactIndex",
    "ExperimentResults",
    "Interactions",
    "ItemNotFoundError",
    "ItemSets",
    "Learner",
    "RatingConfig",
    "RecfitError",
    "Recommender",
    "RetrievalConfig",
    "RunResult",
    "SVDpp",
    "Split",
    "TopNConfig",
    "TrainConfig",
    "UnknownIdError",
    "Vocabulary",
    "__version__",
    "build_model",
    "families",
    "family",
    "load_compare_config",
    "load_config",
    "load_dataset",
    "load_model",
    "make_split",
    "movielens",
    "run_experiments",
    "save_model",
    "seeds_for",
    "train_run",
    "validate_config",
]
