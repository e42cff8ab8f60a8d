"""The shared value checks: first bad row, float32 casts, weights, rating scales."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recfit.data.checks import (
    check_rating_scale,
    check_ratings,
    fail_at,
    row_weights,
    to_float32,
)
from recfit.errors import ConfigError, DataError


@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_fail_at_names_the_first_bad_row(bad: list[bool]) -> None:
    mask = np.asarray(bad)
    if not mask.any():
        fail_at(mask, lambda r: f"row {r}")
        return
    with pytest.raises(DataError) as exc:
        fail_at(mask, lambda r: f"row {r}", file="f.csv", column="c", line_offset=2)
    first = bad.index(True)
    assert (exc.value.row, exc.value.line, exc.value.column) == (first, first + 2, "c")
    assert exc.value.file == "f.csv"


def test_to_float32_refuses_overflow_and_underflow_but_keeps_exact_values() -> None:
    assert to_float32(np.array([1.5, -2.0]), "rating").dtype == np.float32
    for value in (1e39, 1e-50):
        with pytest.raises(DataError, match="float32 holds") as exc:
            to_float32(np.array([1.0, value]), "weight", column="w")
        assert (exc.value.row, exc.value.column) == (1, "w")


def test_row_weights_checks_shape_and_values() -> None:
    assert row_weights(None, 3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(DataError, match="expected 2 weights"):
        row_weights([1.0], 2)
    with pytest.raises(DataError, match="non-negative") as exc:
        row_weights([1.0, -1.0], 2)
    assert exc.value.row == 1


def test_check_ratings_and_scale() -> None:
    check_ratings(np.array([1.0, 5.0]), (1.0, 5.0))
    with pytest.raises(DataError, match=r"in \[1, 5\]"):
        check_ratings(np.array([1.0, 6.0]), (1.0, 5.0), column="stars")
    assert check_rating_scale(None) is None
    with pytest.raises(ConfigError):
        check_rating_scale((5, 1))
