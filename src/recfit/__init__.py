"""recfit: train, evaluate and serve recommender models on rating data."""

from recfit.data import Interactions, Vocabulary
from recfit.errors import (
    BundleError,
    ConfigError,
    DataError,
    DownloadError,
    RecfitError,
    UnknownIdError,
)

__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "Interactions",
    "RecfitError",
    "UnknownIdError",
    "Vocabulary",
    "__version__",
]
