from __future__ import annotations

import numpy as np
import pytest

from recfit.data import Interactions
from recfit.errors import DataError, UnknownIdError


def test_from_arrays_compact_dtypes_and_16_bytes_per_rating() -> None:
    d = Interactions.from_arrays(
        ["a", "b", "a"], [10, 20, 30], [1, 2, 3], timestamp=[978300760, 978300000, 1046454590]
    )
    assert d.user.dtype == np.int32 and d.item.dtype == np.int32
    assert d.rating.dtype == np.float32
    assert d.timestamp is not None and d.timestamp.dtype == np.int64
    assert d.timestamp.tolist() == [978300760, 978300000, 1046454590]
    assert d.nbytes / len(d) == 16


def test_wide_timestamp_span_is_exact() -> None:
    ts = np.array([-(2**40), 2**40], dtype=np.int64)
    d = Interactions.from_arrays([1, 2], [1, 2], [1, 2], timestamp=ts)
    assert d.timestamp is not None and d.timestamp.tolist() == ts.tolist()


def test_take_shares_vocabularies_and_subsets_all_columns() -> None:
    d = Interactions.from_arrays(
        [1, 2, 3], [4, 5, 6], [1, 2, 3], weight=[0.5, 1, 2], timestamp=[1, 2, 3]
    )
    t = d.take(np.array([2, 0]))
    assert t.users is d.users and t.items is d.items
    assert t.rating.tolist() == [3, 1]
    assert t.weights().tolist() == [2, 0.5]
    assert t.timestamp is not None and t.timestamp.tolist() == [3, 1]


def test_given_vocabulary_rejects_unknown_ids() -> None:
    d = Interactions.from_arrays([1, 2], [1, 2], [1, 2])
    with pytest.raises(UnknownIdError):
        Interactions.from_arrays([3], [1], [1], users=d.users, items=d.items)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rating": [1, float("nan")]}, "finite"),
        ({"rating": [1, "x"]}, "numbers"),
        ({"rating": [1, 9], "rating_scale": (1, 5)}, r"in \[1, 5\]"),
        ({"rating": [1, 2], "weight": [1, -1]}, "non-negative"),
    ],
)
def test_bad_values_are_typed_errors_with_row(kwargs: dict, match: str) -> None:
    base = {"user_ids": [1, 2], "item_ids": [1, 2]}
    with pytest.raises(DataError, match=match) as err:
        Interactions.from_arrays(**base, **kwargs)
    assert err.value.row == 1


def test_summary(tiny: Interactions) -> None:
    s = tiny.summary()
    assert s["ratings"] == len(tiny)
    assert sum(s["rating_histogram"].values()) == len(tiny)
    assert 0 < s["density"] <= 1
    assert s["bytes_per_rating"] == 16


def test_feature_table_must_align() -> None:
    import pandas as pd

    d = Interactions.from_arrays([1, 2], [1, 2], [1, 2])
    with pytest.raises(DataError, match="one user feature row"):
        Interactions(
            user=d.user,
            item=d.item,
            rating=d.rating,
            users=d.users,
            items=d.items,
            user_features=pd.DataFrame({"age": [1, 2, 3]}),
        )
