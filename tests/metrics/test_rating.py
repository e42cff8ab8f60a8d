"""Rating metrics: hand-computed examples and weight properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.errors import ConfigError, DataError
from recfit.metrics import METRICS, get_metric, higher_is_better, mae, mse, r2, rmse

P = np.array([3.0, 4.0, 2.0, 5.0])
T = np.array([4.0, 4.0, 4.0, 3.0])
W = np.array([1.0, 2.0, 0.5, 0.0])


def test_hand_computed_unweighted() -> None:
    # errors: -1, 0, -2, 2
    assert mse(P, T) == pytest.approx((1 + 0 + 4 + 4) / 4)
    assert rmse(P, T) == pytest.approx(math.sqrt(9 / 4))
    assert mae(P, T) == pytest.approx((1 + 0 + 2 + 2) / 4)
    # mean target 3.75; ss_tot = 0.0625*3 + 0.5625 = 0.75; ss_res = 9
    assert r2(P, T) == pytest.approx(1 - 9 / 0.75)


def test_hand_computed_weighted() -> None:
    # weights 1, 2, 0.5, 0 -> Σw = 3.5
    assert mse(P, T, W) == pytest.approx((1 * 1 + 2 * 0 + 0.5 * 4) / 3.5)
    assert mae(P, T, W) == pytest.approx((1 * 1 + 2 * 0 + 0.5 * 2) / 3.5)
    assert rmse(P, T, W) == pytest.approx(math.sqrt(3 / 3.5))
    mean = (4 * 1 + 4 * 2 + 4 * 0.5) / 3.5  # = 4
    ss_tot = sum(w * (t - mean) ** 2 for w, t in zip(W[:3], T[:3], strict=True))
    assert ss_tot == 0
    assert math.isnan(r2(P, T, W))
    assert r2([3.0, 4.0, 5.0], [3.0, 5.0, 4.0], [1.0, 1.0, 2.0]) == pytest.approx(
        1 - (0 + 1 + 2) / (1 * (3 - 4) ** 2 + 1 * (5 - 4) ** 2 + 2 * 0)
    )


def test_float64_accumulation_of_float32_inputs() -> None:
    p = np.full(1_000_003, 3.1, dtype=np.float32)
    t = np.full(1_000_003, 3.0, dtype=np.float32)
    expected = (np.float64(np.float32(3.1)) - 3.0) ** 2
    assert mse(p, t) == pytest.approx(expected, rel=1e-12)


def test_weight_zero_rows_do_not_exist() -> None:
    base = mse(P[:3], T[:3], W[:3])
    garbage_p = np.concatenate([P[:3], [1e9, -1e9]])
    garbage_t = np.concatenate([T[:3], [0.0, 7.0]])
    garbage_w = np.concatenate([W[:3], [0.0, 0.0]])
    for f in METRICS.values():
        assert f(garbage_p, garbage_t, garbage_w) == f(P[:3], T[:3], W[:3]) or (
            math.isnan(f(P[:3], T[:3], W[:3]))
        )
    assert mse(garbage_p, garbage_t, garbage_w) == base


def test_errors_and_registry() -> None:
    with pytest.raises(DataError, match="same length"):
        mse([1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="one weight per row"):
        mse([1.0, 2.0], [1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="non-negative"):
        mse([1.0], [1.0], [-1.0])
    with pytest.raises(ConfigError, match="expected a metric"):
        get_metric("accuracy@5")
    assert get_metric("rmse") is rmse
    assert higher_is_better("r2") and not higher_is_better("mse")
    assert math.isnan(mse([], []))
    assert math.isnan(mse([1.0], [2.0], [0.0]))


ratings = st.lists(
    st.tuples(
        st.floats(-10, 10, allow_nan=False),
        st.floats(-10, 10, allow_nan=False),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ratings, st.sampled_from(sorted(METRICS)))
def test_integer_weight_equals_duplicated_rows(
    rows: list[tuple[float, float, int]], name: str
) -> None:
    f = get_metric(name)
    p = np.array([r[0] for r in rows])
    t = np.array([r[1] for r in rows])
    w = np.array([r[2] for r in rows], dtype=float)
    reps = w.astype(int)
    dup_p, dup_t = np.repeat(p, reps), np.repeat(t, reps)
    weighted = f(p, t, w)
    if reps.sum() == 0:
        assert math.isnan(weighted)
        return
    duplicated = f(dup_p, dup_t)
    if math.isnan(duplicated):
        assert math.isnan(weighted)
    else:
        assert weighted == pytest.approx(duplicated, rel=1e-9, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(ratings)
def test_metric_bounds(rows: list[tuple[float, float, int]]) -> None:
    p = np.array([r[0] for r in rows])
    t = np.array([r[1] for r in rows])
    w = np.array([r[2] for r in rows], dtype=float) + 0.5
    assert mse(p, t, w) >= 0
    assert mae(p, t, w) <= rmse(p, t, w) + 1e-9  # Jensen
    assert mse(t, t, w) == 0


def test_r2_of_identical_targets_is_nan_despite_rounding() -> None:
    # the mean of six copies of 3.320433632846628 is not exactly that value, so the spread
    # sums to about 1e-31; R² must still say "targets do not vary", not -5.6e31
    t = np.full(6, 3.320433632846628)
    assert math.isnan(r2(np.zeros(6), t))
    assert math.isnan(r2(np.zeros(2), t[:2], np.array([3.0, 3.0])))
    small = 1.0 - (1.0 - 1e-6) ** 2 / 5e-13  # a real, tiny spread still counts
    assert r2([1.0, 2.0], [1.0, 1.0 + 1e-6]) == pytest.approx(small, rel=1e-6)
