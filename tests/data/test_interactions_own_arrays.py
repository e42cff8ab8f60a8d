"""Interactions own their rating and weight arrays: writing to the caller's array (or a
DataFrame column, a Series, a tensor) afterwards changes neither the rows nor the scale."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from recfit.data import Interactions, Vocabulary, from_frame

Writable = Any  # an ndarray, a Series or a tensor the caller keeps and writes


def _given(kind: str, values: list[float]) -> Writable:
    arr = np.asarray(values, dtype=np.float32)
    if kind == "series":
        return pd.Series(arr)
    if kind == "tensor":
        return torch.from_numpy(arr)
    return arr


@pytest.mark.parametrize("kind", ["array", "series", "tensor"])
def test_writing_the_callers_ratings_leaves_rows_and_scale(kind: str) -> None:
    r = _given(kind, [1, 2, 3])
    d = Interactions.from_arrays([0, 1, 2], [0, 0, 0], r)
    r[:] = _given(kind, [1, 2, 9])
    assert d.rating.tolist() == [1.0, 2.0, 3.0]
    assert d.prediction_scale() == (1.0, 3.0)


@pytest.mark.parametrize("kind", ["array", "series", "tensor"])
def test_writing_the_callers_weights_leaves_rows_and_scale(kind: str) -> None:
    w = _given(kind, [1, 1, 0])
    d = Interactions.from_arrays([0, 1, 2], [0, 0, 0], [1.0, 2.0, 9.0], weight=w)
    w[:] = _given(kind, [1, 1, 1])
    assert d.weight is not None and d.weight.tolist() == [1.0, 1.0, 0.0]
    assert d.prediction_scale() == (1.0, 2.0)
    again = Interactions.from_arrays([0, 1, 2], [0, 0, 0], [1.0, 2.0, 9.0])
    w2 = _given(kind, [1, 1, 0])
    d2 = again.with_weights(w2)
    w2[:] = _given(kind, [1, 1, 1])
    assert d2.weight is not None and d2.weight.tolist() == [1.0, 1.0, 0.0]
    assert d2.prediction_scale() == (1.0, 2.0)


def _by_indices(r: np.ndarray, w: np.ndarray) -> Interactions:
    users, items = Vocabulary([0, 1, 2]), Vocabulary([0])
    u, i = np.arange(3, dtype=np.int32), np.zeros(3, np.int32)
    return Interactions.from_indices(u, i, r, users, items, weight=w)


def _by_constructor(r: np.ndarray, w: np.ndarray) -> Interactions:
    users, items = Vocabulary([0, 1, 2]), Vocabulary([0])
    u, i = np.arange(3, dtype=np.int32), np.zeros(3, np.int32)
    return Interactions(user=u, item=i, rating=r, users=users, items=items, weight=w)


def _by_replace(r: np.ndarray, w: np.ndarray) -> Interactions:
    d = Interactions.from_arrays([0, 1, 2], [0, 0, 0], [4.0, 4.0, 4.0])
    return dataclasses.replace(d, rating=r, weight=w)


@pytest.mark.parametrize("build", [_by_indices, _by_constructor, _by_replace])
def test_every_builder_copies_the_callers_arrays(
    build: Callable[[np.ndarray, np.ndarray], Interactions],
) -> None:
    r, w = np.float32([1, 2, 3]), np.float32([1, 1, 1])
    d = build(r, w)
    r[:] = [1, 2, 9]
    w[:] = [1, 0, 0]
    assert d.rating.tolist() == [1.0, 2.0, 3.0]
    assert d.weight is not None and d.weight.tolist() == [1.0, 1.0, 1.0]
    assert d.prediction_scale() == (1.0, 3.0)


def test_a_float32_column_of_the_callers_frame_is_copied() -> None:
    df = pd.DataFrame({"user": [0, 1, 2], "item": [0, 0, 0], "rating": np.float32([1, 2, 3])})
    d = from_frame(df)
    df.loc[2, "rating"] = 9.0
    assert d.rating.tolist() == [1.0, 2.0, 3.0]
    assert d.prediction_scale() == (1.0, 3.0)


def test_rows_taken_do_not_share_the_parent_arrays() -> None:
    d = Interactions.from_arrays([0, 1, 2], [0, 0, 0], [1.0, 2.0, 3.0], weight=[1.0, 1.0, 1.0])
    part = d.take(np.array([True, True, True]))
    assert not np.may_share_memory(part.rating, d.rating)
    assert part.weight is not None and d.weight is not None
    assert not np.may_share_memory(part.weight, d.weight)


def test_arrays_made_from_lists_or_a_file_are_not_copied_again() -> None:
    """Only shared arrays are copied: a loader's own arrays are taken as they are."""
    users, items = Vocabulary([0, 1, 2]), Vocabulary([0])
    u, i = np.arange(3, dtype=np.int32), np.zeros(3, np.int32)
    r = np.float32([1, 2, 3])
    d = Interactions.from_indices(u, i, r, users, items, copy=False)
    assert d.rating is r
    df = pd.DataFrame({"user": [0, 1, 2], "item": [0, 0, 0], "rating": [1.0, 2.0, 3.0]})
    assert not np.may_share_memory(from_frame(df).rating, df["rating"].to_numpy())
