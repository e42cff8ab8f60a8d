"""Answers from a trained model: the :class:`Recommender`, its bundle, results and adapters.

* :class:`Recommender` — ``predict``, ``recommend``, ``recommend_for_ratings`` /
  ``fold_in`` (new users), ``similar_items`` / ``similar_users``, ``find_items`` /
  ``resolve_item`` (titles), ``recommend_all`` (Parquet, streamed), ``save`` / ``load``.
* :mod:`~recfit.recommender.results` — the typed answers (``to_frame`` / ``to_dict``).
* :mod:`~recfit.recommender.adapters` — one adapter per model family; how to add one
  (a blend's: :mod:`~recfit.recommender.blend_adapter`).
* :func:`save_model` / :func:`load_model` — a model saved as a bundle (the one
  user-facing model file) and read back.
* :mod:`~recfit.recommender.bundle` — the on-disk format, checksums and atomic saving
  (:mod:`~recfit.recommender.bundle_write`, :mod:`~recfit.recommender.bundle_read`).

Example:
    >>> from recfit.data import Interactions
    >>> from recfit.models import create_model
    >>> d = Interactions.from_arrays([1, 1, 2], [3, 4, 3], [4.0, 5.0, 2.0])
    >>> rec = Recommender(create_model("dot", d), d.users, d.items, d)
    >>> rec.recommend(2, n=3)[0].ids
    [4]
"""

from recfit.recommender.adapters import (
    ADAPTERS,
    AdapterContext,
    DotAdapter,
    GenericAdapter,
    ModelAdapter,
    NNAdapter,
    adapter_for,
    register_adapter,
)
from recfit.recommender.blend_adapter import BlendAdapter
from recfit.recommender.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, bundle_path
from recfit.recommender.core import OnUnknown, Recommender
from recfit.recommender.results import (
    ItemMatch,
    Neighbours,
    Recommendation,
    RecommendResult,
    ScoredId,
    SimilarResult,
)
from recfit.recommender.saving import load_model, save_model
from recfit.recommender.titles import ItemNotFoundError, TitleIndex, normalise_title

__all__ = [
    "ADAPTERS",
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "AdapterContext",
    "BlendAdapter",
    "DotAdapter",
    "GenericAdapter",
    "ItemMatch",
    "ItemNotFoundError",
    "ModelAdapter",
    "NNAdapter",
    "Neighbours",
    "OnUnknown",
    "RecommendResult",
    "Recommendation",
    "Recommender",
    "ScoredId",
    "SimilarResult",
    "TitleIndex",
    "adapter_for",
    "bundle_path",
    "load_model",
    "normalise_title",
    "register_adapter",
    "save_model",
]
