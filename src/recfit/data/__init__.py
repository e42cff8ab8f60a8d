"""The data layer: vocabularies, interactions, datasets, files, splits, synthetic data."""

from recfit.data.interactions import Interactions
from recfit.data.vocab import Vocabulary

__all__ = ["Interactions", "Vocabulary"]
