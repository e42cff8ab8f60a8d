"""The data layer: vocabularies, interactions, datasets, files, splits, synthetic data.

Feature specs and spaces live in :mod:`recfit.data.features`.
"""

from recfit.data.download import fetch
from recfit.data.features import FeatureSpace
from recfit.data.grouplens import DATASETS, data_home, movielens, predefined_split
from recfit.data.interactions import Interactions
from recfit.data.io import from_frame, load, read_csv, read_parquet, write_parquet
from recfit.data.sources import load_dataset, make_split, split_dataset
from recfit.data.split import (
    Split,
    kfold,
    leave_last_k,
    per_user_split,
    random_split,
    split_from_pairs,
    temporal_split,
)
from recfit.data.synthetic import synthetic
from recfit.data.vocab import Vocabulary

__all__ = [
    "DATASETS",
    "FeatureSpace",
    "Interactions",
    "Split",
    "Vocabulary",
    "data_home",
    "fetch",
    "from_frame",
    "kfold",
    "leave_last_k",
    "load",
    "load_dataset",
    "make_split",
    "movielens",
    "per_user_split",
    "predefined_split",
    "random_split",
    "read_csv",
    "read_parquet",
    "split_dataset",
    "split_from_pairs",
    "synthetic",
    "temporal_split",
    "write_parquet",
]
