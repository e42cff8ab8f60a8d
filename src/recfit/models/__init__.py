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

import numpy as np
import torch

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import (
    MODEL_FORMAT_VERSION,
    MODELS,
    OUTPUT_TITLES,
    Batch,
    OutputKind,
    RatingModel,
    build_model,
    fit_baseline,
    load_model,
    output_kind,
    read_metadata,
    register_model,
    save_model,
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
from recfit.models.svdpp import SVDpp
from recfit.models.two_tower import CandidateTower, QueryTower, TwoTower

__all__ = [
    "LOSSES",
    "MODELS",
    "MODEL_FORMAT_VERSION",
    "OUTPUT_TITLES",
    "Batch",
    "BiasedMF",
    "CandidateTower",
    "CrossEntropyLoss",
    "DotBias",
    "EmbeddingNN",
    "HuberLoss",
    "L1Loss",
    "LevelModel",
    "Loss",
    "MSELoss",
    "OutputKind",
    "QueryTower",
    "RatingClassifier",
    "RatingModel",
    "SVDpp",
    "TwoTower",
    "build_model",
    "create_model",
    "emb_sz_rule",
    "fit_baseline",
    "get_loss",
    "levels_for_data",
    "load_model",
    "output_kind",
    "read_metadata",
    "register_model",
    "save_model",
]


def create_model(name: str, train: Interactions, **kwargs: Any) -> RatingModel:
    """Build the registered model ``name`` sized for ``train``'s vocabularies.

    ``n_users`` and ``n_items`` come from the vocabularies; for ``mf`` the ``global_mean``
    defaults to the (weighted) mean training rating; ``svdpp`` stores each user's rated items
    (rows of positive weight) as its implicit lists. Other arguments pass through. The
    model records ``train``'s rows (:meth:`RatingModel.record_training`): users and items
    without a row of positive weight are answered by the baseline.
    """
    if name not in MODELS:
        raise ConfigError(f"expected a model name among {sorted(MODELS)}, received {name!r}")
    kw: dict[str, Any] = {"n_users": train.n_users, "n_items": train.n_items, **kwargs}
    if name == "classifier" and "levels" not in kw:
        kw["levels"] = levels_for_data(train)
    if name == "mf" and "global_mean" not in kw:
        w = train.weights()
        kw["global_mean"] = float(np.average(train.rating, weights=w)) if w.sum() > 0 else 0.0
    model = build_model({"name": name, **kw})
    if isinstance(model, SVDpp):  # N(u): the items each user rated with a positive weight
        keep = train.weights() > 0
        model.set_implicit(
            torch.from_numpy(np.asarray(train.user)[keep]),
            torch.from_numpy(np.asarray(train.item)[keep]),
        )
    if hasattr(model, "train_user_count"):
        model.record_training(train.user, train.item, train.rating, train.weights())
    return model
