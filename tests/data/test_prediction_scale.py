"""Interactions.prediction_scale: stored once per object, the same values as computing it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions


def _computed(d: Interactions) -> tuple[float, float] | None:
    """The scale from the definition: declared, else the range of positive-weight ratings."""
    if d.rating_scale is not None:
        return (float(d.rating_scale[0]), float(d.rating_scale[1]))
    r = d.rating[d.weights() > 0]
    if not len(r) or float(r.min()) == float(r.max()):
        return None
    return (float(r.min()), float(r.max()))


def test_the_scale_is_stored_not_recomputed_per_call() -> None:
    d = Interactions.from_arrays([0, 1, 2], [0, 0, 1], [1.0, 3.5, 5.0])
    first = d.prediction_scale()
    assert first == (1.0, 5.0)
    assert d.prediction_scale() is first  # the stored value, not a new min/max


def test_rows_taken_or_reweighted_get_their_own_scale() -> None:
    d = Interactions.from_arrays([0, 1, 2], [0, 0, 1], [1.0, 3.5, 5.0])
    assert d.take(np.array([1, 2])).prediction_scale() == (3.5, 5.0)
    assert d.with_weights(np.array([0.0, 1.0, 1.0])).prediction_scale() == (3.5, 5.0)
    assert d.with_weights(np.array([0.0, 0.0, 1.0])).prediction_scale() is None
    assert d.with_weights(None).prediction_scale() == (1.0, 5.0)


@settings(max_examples=60, deadline=None)
@given(
    ratings=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.5, 5.0]), min_size=1, max_size=12),
    zeros=st.lists(st.booleans(), min_size=12, max_size=12),
    weighted=st.booleans(),
    declared=st.sampled_from([None, (0.5, 5.0), (0, 10)]),
)
def test_the_stored_scale_is_the_defined_one(
    ratings: list[float],
    zeros: list[bool],
    weighted: bool,
    declared: tuple[float, float] | None,
) -> None:
    n = len(ratings)
    w = np.where(zeros[:n], 0.0, 1.0).astype(np.float32) if weighted else None
    scale = None if declared is None else (float(declared[0]), float(declared[1]))
    d = Interactions.from_arrays(list(range(n)), [0] * n, ratings, weight=w, rating_scale=scale)
    assert d.prediction_scale() == _computed(d)
    half = d.take(np.arange(n // 2))  # n // 2 may be 0: no rows, no scale unless declared
    assert half.prediction_scale() == _computed(half)
