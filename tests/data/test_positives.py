"""positives_matrix and select_positives: the matrix top-N models train on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data.interactions import Interactions
from recfit.data.positives import positives_matrix, select_positives
from recfit.errors import ConfigError, DataError


def _data(weight: list[float] | None = None) -> Interactions:
    return Interactions.from_arrays(
        ["a", "a", "b", "a", "c"], [1, 2, 1, 1, 3], [3.0, 1.0, 2.0, 1.0, 5.0], weight=weight
    )


def test_binary_and_value_sum_duplicates() -> None:
    d = _data()
    x = positives_matrix(d)
    assert x.dtype == np.float32 and x.shape == (3, 3)
    assert x.toarray().tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    v = positives_matrix(d, confidence="value")
    assert v.toarray().tolist() == [[4, 1, 0], [2, 0, 0], [0, 0, 5]]
    assert x.has_sorted_indices and v.has_canonical_format


def test_weight_zero_rows_do_not_exist_and_weights_scale_values() -> None:
    d = _data(weight=[1.0, 0.0, 2.0, 1.0, 0.0])
    x = positives_matrix(d)
    assert x.toarray().tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert x.nnz == 2
    v = positives_matrix(d, confidence="value")
    assert v.toarray().tolist() == [[4, 0, 0], [4, 0, 0], [0, 0, 0]]


def test_zero_values_dropped_and_negative_refused() -> None:
    d = Interactions.from_arrays(["a", "b"], [1, 1], [0.0, 2.0])
    assert positives_matrix(d, confidence="value").nnz == 1
    assert positives_matrix(d).nnz == 2  # binary: the row is a positive
    bad = Interactions.from_arrays(["a", "b"], [1, 1], [1.0, -2.0])
    with pytest.raises(DataError, match="non-negative") as e:
        positives_matrix(bad, confidence="value")
    assert e.value.row == 1 and e.value.column == "rating"


def test_shape_widens_never_narrows() -> None:
    d = _data()
    assert positives_matrix(d, n_users=5, n_items=4).shape == (5, 4)
    with pytest.raises(ConfigError, match="n_items >= 3"):
        positives_matrix(d, n_items=2)
    with pytest.raises(ConfigError, match="confidence"):
        positives_matrix(d, confidence="counts")  # type: ignore[arg-type]


def test_select_positives_threshold() -> None:
    d = _data(weight=[1.0, 1.0, 1.0, 0.0, 1.0])
    p = select_positives(d, 2.0)
    assert p.rating.tolist() == [3.0, 2.0, 5.0]
    assert select_positives(d).rating.tolist() == [3.0, 1.0, 2.0, 5.0]
    assert select_positives(_data()) is not None
    with pytest.raises(ConfigError, match="finite"):
        select_positives(d, float("nan"))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    )
)
def test_matches_dense_reference(rows: list[tuple[int, int, int]]) -> None:
    u, i, r = (np.array(c) for c in zip(*rows, strict=True))
    d = Interactions.from_arrays(u, i, r.astype(np.float32))
    dense = np.zeros((d.n_users, d.n_items), np.float32)
    np.add.at(dense, (d.user, d.item), d.rating)
    assert np.array_equal(positives_matrix(d, confidence="value").toarray(), dense)
    seen = np.zeros_like(dense)
    seen[d.user, d.item] = 1.0
    assert np.array_equal(positives_matrix(d).toarray(), seen)
