"""The ``mf`` family starts its biases at the training baseline (without a sigmoid the
biases carry most of a rating's spread; from 0, row-wise Adagrad moves them too slowly)."""

from __future__ import annotations

import numpy as np
import torch

from recfit.data.synthetic import synthetic
from recfit.models import BiasedMF, create_model
from recfit.models.base import fit_baseline


def test_mf_biases_start_at_the_training_baseline() -> None:
    d = synthetic(800, 40, 30, n_factors=2, seed=2, with_timestamps=False)
    m = create_model("mf", d, n_factors=3, seed=0)
    assert isinstance(m, BiasedMF)
    mu, bu, bi, _, _ = fit_baseline(d.user, d.item, d.rating, d.weights(), d.n_users, d.n_items)
    assert abs(m.global_mean - mu) < 1e-6
    np.testing.assert_allclose(m.user_bias.detach().numpy(), bu, atol=1e-6)
    np.testing.assert_allclose(m.item_bias.detach().numpy(), bi, atol=1e-6)
    assert float(m.item_bias.detach().abs().mean()) > 0.05  # not the zero start
    # the record's baseline is the same fit: an untrained model predicts the baseline
    torch.testing.assert_close(m.user_bias.detach(), m.baseline_user.float())
    # the class itself keeps Surprise's zero biases
    assert float(BiasedMF(3, 2, n_factors=2).user_bias.detach().abs().sum()) == 0.0
