"""Adapters chosen by the model's family, and a dot model without factors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import DotBias, RatingClassifier, family
from recfit.recommender import Recommender
from recfit.recommender.adapters import (
    ADAPTERS,
    AdapterContext,
    DotAdapter,
    NNAdapter,
    adapter_for,
)


def test_the_adapter_is_the_one_the_family_names(tiny: Interactions) -> None:
    ctx = AdapterContext.default(tiny.n_users, tiny.n_items)
    dot = DotBias(tiny.n_users, tiny.n_items, 3)
    assert type(adapter_for(dot, ctx)) is ADAPTERS[family("dot").adapter] is DotAdapter
    clf = RatingClassifier(tiny.n_users, tiny.n_items, layers=(4,))
    assert type(adapter_for(clf, ctx)).__name__ == "GenericAdapter"
    with pytest.raises(ConfigError, match="family 'dot'"):
        NNAdapter(dot, ctx)  # an adapter refuses a family that does not name it


def test_a_dot_model_without_factors_answers_but_has_no_vectors(tiny: Interactions) -> None:
    model = DotBias(tiny.n_users, tiny.n_items, n_factors=0, global_mean=3.0, bias_init_std=0.1)
    model.record_training(tiny.user, tiny.item, tiny.rating)
    rec = Recommender(model, tiny.users, tiny.items, tiny, rating_scale=tiny.rating_scale)
    assert not rec.adapter.supports_similarity and not rec.info()["supports_similarity"]
    with pytest.raises(ConfigError, match="0 factors"):
        rec.adapter.item_vectors()
    # rankings of a known user: mu + b_u + b_i, best item bias first
    user = tiny.users.id(np.array([0]))[0]
    got = rec.recommend(user, n=tiny.n_items, exclude_seen=False)[0].ids
    bias = model.item_bias.detach().numpy()
    assert got == list(tiny.items.id(np.argsort(-bias, kind="stable")))
    # a new user's row is their bias: higher ratings give a higher bias
    items = tiny.items.id(np.arange(3))
    low = rec.fold_in(dict(zip(items, [1.0, 1.0, 1.0], strict=True)))
    high = rec.fold_in(dict(zip(items, [5.0, 5.0, 5.0], strict=True)))
    assert low.shape == (1,) and float(high[0]) > float(low[0])
    assert torch.isfinite(high).all()
