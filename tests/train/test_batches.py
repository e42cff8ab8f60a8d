"""Tensors built once; batches by index permutation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.train.batches import TensorData, n_batches


def test_epoch_covers_every_row_once(tiny: Interactions) -> None:
    td = TensorData.from_interactions(tiny)
    g = torch.Generator().manual_seed(0)
    batches = list(td.epoch(50, g))
    assert sum(len(b["rating"]) for b in batches) == len(tiny)
    seen = torch.cat([b["user"] * 1000 + b["item"] for b in batches]).sort().values
    expected = torch.from_numpy(tiny.user.astype(np.int64) * 1000 + tiny.item).sort().values
    assert torch.equal(seen, expected)
    first = torch.cat([b["user"] for b in td.epoch(50, torch.Generator().manual_seed(0))])
    again = torch.cat([b["user"] for b in td.epoch(50, torch.Generator().manual_seed(0))])
    assert torch.equal(first, again)
    ordered = torch.cat([b["user"] for b in td.epoch(50, None)])
    assert torch.equal(ordered, torch.from_numpy(tiny.user.astype(np.int64)))


def test_zero_weight_rows_dropped() -> None:
    d = Interactions.from_arrays([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0], weight=[1.0, 0.0, 2.0])
    td = TensorData.from_interactions(d)
    assert len(td) == 2 and td.rows.tolist() == [0, 2]
    assert td.columns["weight"].tolist() == [1.0, 2.0]
    assert len(TensorData.from_interactions(d, drop_zero_weight=False)) == 3


def test_n_batches_and_lone_row() -> None:
    assert n_batches(0, 4) == 0
    assert n_batches(8, 4) == 2
    assert n_batches(9, 4) == 2  # the lone 9th row joins the last batch
    assert n_batches(10, 4) == 3
    assert n_batches(10, 4, drop_last=True) == 2
    d = Interactions.from_arrays(np.arange(9), np.arange(9), np.ones(9))
    sizes = [len(b["rating"]) for b in TensorData.from_interactions(d).epoch(4, None)]
    assert sizes == [4, 5]
    with pytest.raises(ConfigError):
        list(TensorData.from_interactions(d).epoch(0, None))
