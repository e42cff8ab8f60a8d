"""Rating levels: grids, ratings as levels, decoding level probabilities to ratings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.errors import ConfigError, DataError
from recfit.metrics.decoding import (
    decode_argmax,
    decode_expected,
    decoding_mse,
    levels_for_scale,
    ratings_to_levels,
)


def test_levels_for_scale() -> None:
    assert levels_for_scale().tolist() == [1, 2, 3, 4, 5]
    half = levels_for_scale((0.5, 5.0), step=0.5)
    assert half.tolist() == [0.5 * i for i in range(1, 11)]
    assert levels_for_scale((0, 10), 2.5).tolist() == [0, 2.5, 5, 7.5, 10]
    with pytest.raises(ConfigError, match="multiple of step"):
        levels_for_scale((1, 5), 1.5)
    with pytest.raises(ConfigError, match="low < high"):
        levels_for_scale((5, 1))
    with pytest.raises(ConfigError, match="step > 0"):
        levels_for_scale((1, 5), 0.0)


def test_ratings_to_levels() -> None:
    half = levels_for_scale((0.5, 5.0), 0.5)
    r = np.array([0.5, 5.0, 3.5, 1.0], dtype=np.float32)
    assert ratings_to_levels(r, half).tolist() == [0, 9, 6, 1]
    assert half[ratings_to_levels(r, half)].tolist() == r.tolist()
    with pytest.raises(DataError, match="on the grid") as e:
        ratings_to_levels([1.0, 2.0, 3.5], levels_for_scale())
    assert e.value.row == 2 and e.value.column == "rating"
    with pytest.raises(DataError) as e:
        ratings_to_levels([1.0, 6.0], levels_for_scale())
    assert e.value.row == 1
    with pytest.raises(DataError):
        ratings_to_levels([float("nan")], levels_for_scale())
    with pytest.raises(ConfigError, match="increasing"):
        ratings_to_levels([1.0], [2.0, 1.0])


@given(st.lists(st.integers(0, 9), min_size=1, max_size=50))
def test_ratings_to_levels_round_trip(idx: list[int]) -> None:
    half = levels_for_scale((0.5, 5.0), 0.5)
    r = half[np.array(idx)].astype(np.float32)
    assert ratings_to_levels(r, half).tolist() == idx


def test_decoding() -> None:
    lv = levels_for_scale()
    probs = np.array([[0.1, 0.1, 0.2, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0, 1.0]])
    assert decode_argmax(probs, lv).tolist() == [4.0, 5.0]
    assert decode_expected(probs, lv) == pytest.approx([0.1 + 0.2 + 0.6 + 2.0 + 0.5, 5.0])
    m = decoding_mse(probs, lv, [3.0, 5.0], weight=[1.0, 1.0])
    assert m["mse_argmax"] == pytest.approx(0.5)
    assert m["mse_expected"] == pytest.approx((3.4 - 3.0) ** 2 / 2)
    assert m["rmse_expected"] == pytest.approx(math.sqrt(m["mse_expected"]))
    # weight 0 removes the wrong row
    m0 = decoding_mse(probs, lv, [3.0, 5.0], weight=[0.0, 1.0])
    assert m0["mse_argmax"] == 0.0
    with pytest.raises(DataError, match="summing to 1") as e:
        decode_expected(np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [1.0, 2.0, 0.0, 0.0, 0.0]]), lv)
    assert e.value.row == 1
    with pytest.raises(DataError, match=r"shape \(n, 5\)"):
        decode_argmax(np.ones((2, 4)) / 4, lv)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_expected_decoding_minimises_mse_of_its_distribution(seed: int) -> None:
    # under the model's own distribution, the mean has the lowest expected squared error
    rng = np.random.default_rng(seed)
    lv = levels_for_scale()
    probs = rng.dirichlet(np.ones(5), size=1)[0]
    exp = float(probs @ lv)
    arg = float(lv[np.argmax(probs)])
    risk = lambda x: float((probs * (lv - x) ** 2).sum())  # noqa: E731
    assert risk(exp) <= risk(arg) + 1e-12
    assert decode_expected(probs[None], lv)[0] == pytest.approx(exp)
