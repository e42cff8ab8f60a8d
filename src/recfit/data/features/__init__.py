"""Feature preprocessing: a :class:`FeatureSpace` of typed feature specs.

In the spirit of keras' ``FeatureSpace``, done natively with numpy and pandas: every
transformation is vectorised over whole columns. A space is a mapping from feature
name to a *spec* (a frozen, JSON-serialisable dataclass). :meth:`FeatureSpace.adapt`
learns vocabularies, bin edges and scales from the frame it is given (pass the
training split only); :meth:`FeatureSpace.transform` turns a frame into a dict of
numpy arrays that a model can embed.

Index layout (the same for every index-valued kind, so that ``nn.Embedding(...,
padding_idx=0)`` works everywhere):

* ``0``: padding (sequences) or a missing value (``None``/``NaN``/``pd.NA``).
* ``1 .. num_oov_indices``: out-of-vocabulary values (with more than one OOV index,
  a value goes to ``1 + stable_hash(value) % num_oov_indices``).
* ``num_oov_indices + 1 ..``: the learned vocabulary, most frequent first, ties by
  value ascending.

Discretised floats use ``0`` for a missing value and ``1 .. n_bins`` for the bins;
crosses use ``0 .. crossing_dim - 1`` (no reserved index). Rescaled floats are
``float32`` with missing values mapped to ``0.0`` (the learned mean when the scale and
offset are learned).

Text and multi-valued features give a padded ``int64`` array of shape ``(n, width)``
under the feature name and a boolean array of the same shape under ``name + "_mask"``
(``True`` where a token is). ``width`` is ``max_length`` or, when that is ``None``, the
longest row seen by :meth:`~FeatureSpace.adapt` (at least 1); longer rows are
truncated to their first ``width`` tokens.

Example:
    >>> import pandas as pd
    >>> users = pd.DataFrame({"age": [20, 30, 40, 50], "job": ["a", "b", "a", "c"]})
    >>> space = FeatureSpace({"age": FloatDiscretized(num_bins=2), "job": StringCategorical()})
    >>> out = space.adapt(users).transform(users)
    >>> out["age"].tolist(), out["job"].tolist()
    ([1, 1, 2, 2], [2, 3, 2, 4])
    >>> space.cardinalities()
    {'age': 3, 'job': 5}
"""

from __future__ import annotations

from recfit.data.features.encoding import _hash_cross as _hash_cross
from recfit.data.features.inference import space_for_table
from recfit.data.features.movielens import movielens_item_space, movielens_user_space
from recfit.data.features.space import FeatureInfo, FeatureSpace
from recfit.data.features.specs import (
    Crossed,
    FeatureSpec,
    FloatDiscretized,
    FloatRescaled,
    IntCategorical,
    MultiCategorical,
    StringCategorical,
    Text,
)

__all__ = [
    "Crossed",
    "FeatureInfo",
    "FeatureSpace",
    "FeatureSpec",
    "FloatDiscretized",
    "FloatRescaled",
    "IntCategorical",
    "MultiCategorical",
    "StringCategorical",
    "Text",
    "movielens_item_space",
    "movielens_user_space",
    "space_for_table",
]
