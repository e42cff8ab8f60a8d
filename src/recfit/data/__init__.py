"""The data layer: vocabularies, interactions, datasets, files, splits, synthetic data."""

from recfit.data.interactions import Interactions
from recfit.data.split import (
    Split,
    kfold,
    leave_last_k,
    make_split,
    per_user_split,
    random_split,
    split_from_pairs,
    temporal_split,
)
from recfit.data.vocab import Vocabulary

__all__ = [
    "Interactions",
    "Split",
    "Vocabulary",
    "kfold",
    "leave_last_k",
    "make_split",
    "per_user_split",
    "random_split",
    "split_from_pairs",
    "temporal_split",
]
