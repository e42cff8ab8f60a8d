"""BPR (models/bpr.py): the loss falls, held-out items of a user's group rank high,
seeds are deterministic, negatives are never positives, fold-in, divergence and its
registry entry."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfit.errors import ConfigError, TrainingDivergedError
from recfit.models import bpr as bpr_module
from recfit.models import family
from recfit.models.bpr import BPR
from recfit.models.ials import load_kernels

from .test_ials import clustered, hit_rate


def test_the_loss_falls_and_held_out_items_rank_high() -> None:
    x, held = clustered()
    m = BPR(*x.shape, n_factors=8, epochs=40, lr=0.05)
    m.fit_positives(x)
    loss = m.fit_info["loss"]
    assert len(loss) == 40 and loss[-1] < 0.5 * loss[0]
    users = np.arange(x.shape[0])
    pop = np.broadcast_to(np.asarray(x.sum(0)), x.shape)
    assert hit_rate(m.score_users(users, x), x, held) > hit_rate(pop, x, held) + 0.2
    assert m.fit_info["compile_seconds"] >= 0 and m.fit_info["fit_seconds"] > 0


def test_same_seed_same_weights() -> None:
    x, _ = clustered(seed=2)
    runs = []
    for seed in (5, 5, 6):
        m = BPR(*x.shape, n_factors=4, epochs=3)
        m.fit_positives(x, seed=seed)
        runs.append(torch.cat([m.user_factors.ravel(), m.item_factors.ravel(), m.item_bias]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_the_bit_mask_and_the_binary_search_draw_the_same_negatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, _ = clustered(seed=3)
    weights = []
    for limit in (bpr_module.MASK_BYTES, 0):
        monkeypatch.setattr(bpr_module, "MASK_BYTES", limit)
        m = BPR(*x.shape, n_factors=4, epochs=2)
        m.fit_positives(x, seed=1)
        weights.append(m.item_factors.clone())
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("masked", [True, False])
def test_a_negative_is_never_a_positive_of_the_user(masked: bool) -> None:
    """User 0 likes items 0..8 of 10: with items fixed and lr 0 nothing moves, so check
    through the gradient: a step with the only free item 9 as negative raises b_i
    for the positive and lowers b_9, never another positive's bias."""
    kern = load_kernels()[0]
    n_items = 10
    x = sp.csr_matrix(np.ones((1, n_items), np.float32))
    x[0, 9] = 0
    x.eliminate_zeros()
    indptr, indices = x.indptr.astype(np.int64), x.indices.astype(np.int64)
    mask = np.zeros((1, 2), np.uint8)
    kern.bit_mask(indptr, indices, n_items, mask)
    mask = mask if masked else mask[:0]
    uf = np.zeros((1, 2), np.float32)
    itf = np.zeros((n_items, 2), np.float32)
    for seed in range(20):
        bias = np.zeros(n_items, np.float32)
        users, items = np.zeros(1, np.int64), np.array([seed % 9], np.int64)
        kern.bpr_epoch(
            users, items, indptr, indices, mask, uf, itf, bias, 1.0, 0.0, seed, 64, False
        )
        assert bias[9] < 0 and bias[seed % 9] > 0
        assert np.count_nonzero(bias) == 2


def test_fold_in_is_deterministic_and_follows_the_positives() -> None:
    x, held = clustered()
    m = BPR(*x.shape, n_factors=8, epochs=40, fold_in_epochs=60)
    m.fit_positives(x)
    a, b = m.score_history(x), m.score_history(x)
    np.testing.assert_array_equal(a, b)
    assert hit_rate(a, x, held) > 0.5


def test_divergence_is_an_error() -> None:
    x, _ = clustered()
    m = BPR(*x.shape, n_factors=4, epochs=5, lr=1e30, init_std=1e10)
    with pytest.raises(TrainingDivergedError, match="finite"):
        m.fit_positives(x)


def test_settings_and_registry_entry() -> None:
    for kw in ({"lr": 0.0}, {"reg": -1.0}, {"epochs": -1}, {"fold_in_epochs": 0.5}):
        with pytest.raises(ConfigError, match=next(iter(kw))):
            BPR(3, 3, **kw)  # type: ignore[arg-type]
    fam = family("bpr")
    assert (fam.task, fam.output, fam.adapter) == ("topn", "score", "topn")
    assert {"n_factors", "lr", "reg", "epochs"} <= fam.reads
    assert BPR(3, 4, lr=0.1).config()["lr"] == 0.1
