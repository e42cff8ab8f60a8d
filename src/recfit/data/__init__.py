"""The data layer: vocabularies, interactions, datasets, files, splits, synthetic data."""

from recfit.data.download import fetch
from recfit.data.interactions import Interactions
from recfit.data.grouplens import DATASETS, data_home, movielens, predefined_split
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
    "DATASETS",
    "Interactions",
    "Split",
    "Vocabulary",
    "data_home",
    "fetch",
    "kfold",
    "leave_last_k",
    "make_split",
    "movielens",
    "per_user_split",
    "predefined_split",
    "random_split",
    "split_from_pairs",
    "temporal_split",
]
