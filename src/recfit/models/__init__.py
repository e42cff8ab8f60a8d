"""Rating models (plain ``nn.Module``), their losses, registry and persistence.

Example:
    >>> from recfit.data import Interactions
    >>> d = Interactions.from_arrays([1, 2, 2], [7, 7, 8], [4.0, 2.0, 5.0])
    >>> m = create_model("mf", d, n_factors=4)
    >>> (m.n_users, m.n_items, round(m.global_mean, 3))
    (2, 2, 3.667)
"""

from __future__ import annotations

from typing import Any

from recfit.data.interactions import Interactions

# The registry line: every family module, each registering its families when imported.
from recfit.models import (  # noqa: F401
    autorec,
    baseline,
    blend,
    bmf,
    bpr,
    classifier,
    dot,
    ease,
    fm,
    ials,
    itemknn,
    mlp,
    ordrec,
    popularity,
    svdpp,
    timesvdpp,
    two_tower,
)
from recfit.models.base import (
    OUTPUT_TITLES,
    Batch,
    OutputKind,
    RatingModel,
    fit_baseline,
    output_kind,
)
from recfit.models.classifier import LevelModel, RatingClassifier, levels_for_data
from recfit.models.dot import BiasedMF, DotBias
from recfit.models.losses import (
    LOSSES,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    Loss,
    MSELoss,
    get_loss,
)
from recfit.models.mlp import EmbeddingNN, emb_sz_rule
from recfit.models.ordrec import OrdRec
from recfit.models.persist import (
    MODEL_FORMAT_VERSION,
    read_model_file,
    read_model_metadata,
    write_model_file,
)
from recfit.models.registry import (
    Family,
    build_model,
    families,
    family,
    family_of,
    register_family,
)
from recfit.models.svdpp import SVDpp
from recfit.models.two_tower import CandidateTower, QueryTower, TwoTower

__all__ = [
    "LOSSES",
    "MODEL_FORMAT_VERSION",
    "OUTPUT_TITLES",
    "Batch",
    "BiasedMF",
    "CandidateTower",
    "CrossEntropyLoss",
    "DotBias",
    "EmbeddingNN",
    "Family",
    "HuberLoss",
    "L1Loss",
    "LevelModel",
    "Loss",
    "MSELoss",
    "OrdRec",
    "OutputKind",
    "QueryTower",
    "RatingClassifier",
    "RatingModel",
    "SVDpp",
    "TwoTower",
    "build_model",
    "create_model",
    "emb_sz_rule",
    "families",
    "family",
    "family_of",
    "fit_baseline",
    "get_loss",
    "levels_for_data",
    "output_kind",
    "read_model_file",
    "read_model_metadata",
    "register_family",
    "write_model_file",
]


def create_model(name: str, train: Interactions, **kwargs: Any) -> RatingModel:
    """Build a model of the family ``name`` sized for ``train``'s vocabularies
    (``family(name).build(kwargs, train)``, see :mod:`recfit.models.registry`).

    ``n_users`` and ``n_items`` come from the vocabularies; each family fills what it
    takes from the data (``mf``: ``global_mean``, the weighted mean training rating;
    ``classifier``: the rating ``levels``; ``svdpp``: each user's rated items as its
    implicit lists). Other arguments pass through. A rating model records ``train``'s
    rows (:meth:`RatingModel.record_training`): users and items without a row of
    positive weight are answered by the baseline.

    Raises:
        ConfigError: an unknown family (naming the known ones) or a bad argument.
    """
    return family(name).build(kwargs, train)
