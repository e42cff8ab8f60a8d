"""The data layer: vocabularies, interactions, datasets, files, splits, synthetic data."""

from recfit.data.download import fetch
from recfit.data.features import (
    Crossed,
    FeatureInfo,
    FeatureSpace,
    FeatureSpec,
    FloatDiscretized,
    FloatRescaled,
    IntCategorical,
    MultiCategorical,
    StringCategorical,
    Text,
    movielens_item_space,
    movielens_user_space,
    space_for_table,
)
from recfit.data.grouplens import DATASETS, data_home, movielens, predefined_split
from recfit.data.interactions import Interactions
from recfit.data.io import from_frame, load, read_csv, read_parquet, write_parquet
from recfit.data.sources import load_dataset, split_dataset
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
from recfit.data.synthetic import synthetic
from recfit.data.vocab import Vocabulary

__all__ = [
    "DATASETS",
    "Crossed",
    "FeatureInfo",
    "FeatureSpace",
    "FeatureSpec",
    "FloatDiscretized",
    "FloatRescaled",
    "IntCategorical",
    "Interactions",
    "MultiCategorical",
    "Split",
    "StringCategorical",
    "Text",
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
    "movielens_item_space",
    "movielens_user_space",
    "per_user_split",
    "predefined_split",
    "random_split",
    "read_csv",
    "read_parquet",
    "space_for_table",
    "split_dataset",
    "split_from_pairs",
    "synthetic",
    "temporal_split",
    "write_parquet",
]
