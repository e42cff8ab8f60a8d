"""Implicit data as a first-class input: clicks with no rating column, counts as values."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.config import validate_config
from recfit.data.duplicates import merge_duplicates
from recfit.data.interactions import Interactions
from recfit.data.io import from_frame, load
from recfit.data.positives import positives_matrix
from recfit.data.vocab import Vocabulary
from recfit.errors import DataError
from recfit.tasks.topn import load_positives


def _clicks(path: Path, **cols: list[object]) -> Path:
    frame = {"user": ["a", "a", "b", "c", "a"], "item": [1, 2, 1, 3, 1], **cols}
    if path.suffix == ".parquet":
        pd.DataFrame(frame).to_parquet(path)
    else:
        pd.DataFrame(frame).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_without_rating_column_is_implicit_for_topn(tmp_path: Path, suffix: str) -> None:
    path = _clicks(tmp_path / f"clicks{suffix}")
    cfg = validate_config({"task": "topn", "dataset": str(path)})
    with pytest.warns(UserWarning, match="merged 1 duplicate"):
        pos = load_positives(cfg)
    assert pos.meta["implicit"] and pos.meta["positives"]["implicit"]
    assert len(pos) == 4  # the repeated click (a, 1) adds up to one pair
    assert sorted(pos.rating.tolist()) == [1.0, 1.0, 1.0, 2.0]
    assert pos.summary()["implicit"].startswith("no rating column")


def test_the_rating_task_still_needs_the_rating_column(tmp_path: Path) -> None:
    path = _clicks(tmp_path / "clicks.csv")
    with pytest.raises(DataError, match="rating column 'rating'"):
        load(path)
    # a rating column named on purpose and missing is an error for top-N as well
    cfg = validate_config({"task": "topn", "dataset": str(path), "rating_col": "plays"})
    with pytest.raises(DataError, match="'plays'"):
        load_positives(cfg)


def test_a_frame_without_rating_column() -> None:
    df = pd.DataFrame({"user": ["a", "b"], "item": [1, 2]})
    d = from_frame(df, implicit_if_missing=True)
    assert d.meta["implicit"] and d.rating.tolist() == [1.0, 1.0]
    with pytest.raises(DataError, match="rating"):
        from_frame(df)


def test_counts_as_values(tmp_path: Path) -> None:
    path = _clicks(tmp_path / "plays.csv", plays=[3, 1, 5, 2, 4])
    cfg = validate_config(
        {"task": "topn", "dataset": str(path), "rating_col": "plays", "confidence": "value"}
    )
    with pytest.warns(UserWarning, match="duplicate"):
        pos = load_positives(cfg)
    assert "implicit" not in pos.meta
    pairs = zip(pos.users.id(pos.user), pos.items.id(pos.item), strict=True)
    got = dict(zip(pairs, pos.rating.tolist(), strict=True))
    assert got == {("a", 1): 7.0, ("a", 2): 1.0, ("b", 1): 5.0, ("c", 3): 2.0}


@pytest.mark.parametrize(
    ("plays", "match", "row"),
    [([3, 1, -5, 2, 4], "non-negative", 2), ([3, 1, 5, None, 4], "empty value", 3)],
)
def test_bad_counts_are_typed_errors_naming_the_place(
    tmp_path: Path, plays: list[object], match: str, row: int
) -> None:
    path = _clicks(tmp_path / "plays.csv", plays=plays)
    cfg = validate_config(
        {"task": "topn", "dataset": str(path), "rating_col": "plays", "confidence": "value"}
    )
    with pytest.raises(DataError, match=match) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        load_positives(cfg)
    assert e.value.column == "plays" and e.value.row == row
    assert e.value.file is not None and "plays.csv" in e.value.file


def test_positives_from_ratings_by_threshold(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 3], "rating": [5, 2, 4, 3]}).to_csv(
        path, index=False
    )
    cfg = validate_config({"task": "topn", "dataset": str(path), "positive_min_rating": 4})
    pos = load_positives(cfg)
    assert pos.rating.tolist() == [5.0, 4.0]
    assert pos.meta["positives"] == {"rows": 4, "positives": 2, "min_rating": 4.0,
                                     "implicit": False}  # fmt: skip
    # a threshold on implicit data is refused, not an empty run
    clicks = tmp_path / "clicks.csv"
    pd.DataFrame({"user": ["a", "b"], "item": [1, 2]}).to_csv(clicks, index=False)
    cfg = validate_config({"task": "topn", "dataset": str(clicks), "positive_min_rating": 4})
    with pytest.raises(DataError, match="positive_min_rating"):
        load_positives(cfg)
    # no rating reaches the threshold: an error, not an empty run
    cfg = validate_config({"task": "topn", "dataset": str(path), "positive_min_rating": 6})
    with pytest.raises(DataError, match="expected positives"):
        load_positives(cfg)


def test_duplicates_sum_policy() -> None:
    users, items = Vocabulary(["a", "b"]), Vocabulary([1, 2])
    u = np.array([0, 0, 1, 0], np.int32)
    i = np.array([0, 1, 0, 0], np.int32)
    r = np.array([2.0, 1.0, 3.0, 4.0], np.float32)
    ts = np.array([10, 11, 12, 13])
    with pytest.warns(UserWarning, match="duplicates='sum'"):
        _, _, r2, _, t2, n = merge_duplicates(u, i, r, None, ts, users, items, duplicates="sum")
    assert n == 1 and r2.tolist() == [1.0, 3.0, 6.0] and t2.tolist() == [11, 12, 13]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(0, 5), st.integers(0, 9)),
        min_size=1,
        max_size=30,
    )
)
def test_summed_clicks_and_counts_match_a_dense_count(rows: list[tuple[str, int, int]]) -> None:
    """Any frame of clicks (repeats allowed): the positives matrix of the loaded data is
    the dense matrix of click counts (value) or of pairs (binary)."""
    df = pd.DataFrame(rows, columns=["user", "item", "plays"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clicks = from_frame(df[["user", "item"]], implicit_if_missing=True, duplicates="sum")
        plays = from_frame(df, rating="plays", duplicates="sum")
    users, items = sorted(set(df.user)), sorted(set(df.item))
    count = np.zeros((len(users), len(items)), np.float32)
    total = np.zeros_like(count)
    for u, i, p in rows:
        count[users.index(u), items.index(i)] += 1
        total[users.index(u), items.index(i)] += p

    def dense(d: Interactions, confidence: str) -> np.ndarray:
        x = positives_matrix(d, confidence=confidence).toarray()  # type: ignore[arg-type]
        order_u = [list(d.users.id(np.arange(d.n_users))).index(u) for u in users]
        order_i = [list(d.items.id(np.arange(d.n_items))).index(i) for i in items]
        return x[np.ix_(order_u, order_i)]

    assert np.array_equal(dense(clicks, "value"), count)
    assert np.array_equal(dense(clicks, "binary"), (count > 0).astype(np.float32))
    assert np.array_equal(dense(plays, "value"), total)
