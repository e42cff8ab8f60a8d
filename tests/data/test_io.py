"""Reading your own ratings: column mapping, validation with file/row/column, Parquet."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.data.io import from_frame, load, read_csv, read_parquet, write_parquet
from recfit.errors import ConfigError, DataError, DataWarning


def _write(tmp_path: Path, text: str, name: str = "r.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------- happy paths
def test_from_frame_string_ids_and_mapping() -> None:
    df = pd.DataFrame({"who": ["b", "a", "b"], "what": ["x", "y", "y"], "stars": [1, 2, 3]})
    d = from_frame(df, user="who", item="what", rating="stars", name="mine")
    assert d.users.ids.tolist() == ["a", "b"]
    assert d.user.tolist() == [1, 0, 1]
    assert d.item.tolist() == [0, 1, 1]
    assert d.rating.dtype == np.float32 and d.rating.tolist() == [1.0, 2.0, 3.0]
    assert d.name == "mine" and d.timestamp is None and d.weight is None


def test_large_non_contiguous_int64_ids() -> None:
    big = np.array([10**15 + 7, 3, 10**15 + 7, 2**62], dtype=np.int64)
    df = pd.DataFrame({"user": big, "item": [5, 5, 6, 9], "rating": [1.0, 2.0, 3.0, 4.0]})
    d = from_frame(df)
    assert d.users.kind == "int"
    assert d.users.ids.tolist() == [3, 10**15 + 7, 2**62]
    assert d.users.id(d.user).tolist() == big.tolist()


def test_implicit_data_without_rating_column() -> None:
    d = from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 1]}), rating=None)
    assert d.rating.tolist() == [1.0, 1.0]


def test_read_csv_with_columns_weights_and_timestamps(tmp_path: Path) -> None:
    p = _write(
        tmp_path, "userId,movieId,rating,ts,w\n1,10,4.5,100,1\n2,10,3,200,0.5\n1,20,5,300,0\n"
    )
    d = read_csv(
        p, user="userId", item="movieId", timestamp="ts", weight="w", rating_scale=(0.5, 5)
    )
    assert d.name == "r"
    assert d.timestamp is not None and d.timestamp.tolist() == [100, 200, 300]
    assert d.weight is not None and d.weight.tolist() == [1.0, 0.5, 0.0]
    assert d.rating_scale == (0.5, 5.0)
    assert d.meta["source"] == str(p)


def test_datetime_columns_become_seconds() -> None:
    t = pd.to_datetime(["1970-01-01 00:00:10", "2000-01-01 00:00:00"])
    d = from_frame(
        pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [1, 2], "t": t}), timestamp="t"
    )
    assert d.timestamp is not None and d.timestamp.tolist() == [10, 946684800]
    tz = t.tz_localize("Europe/Paris")  # 1 h ahead of UTC in winter
    d2 = from_frame(
        pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [1, 2], "t": tz}), timestamp="t"
    )
    assert d2.timestamp is not None and d2.timestamp.tolist() == [10 - 3600, 946684800 - 3600]


def test_iso_string_timestamps(tmp_path: Path) -> None:
    p = _write(tmp_path, "user,item,rating,t\n1,1,3,2000-01-01T00:00:00\n1,2,3,1970-01-02\n")
    d = read_csv(p, timestamp="t")
    assert d.timestamp is not None and d.timestamp.tolist() == [946684800, 86400]


def test_load_dispatches_on_suffix(tmp_path: Path) -> None:
    tsv = _write(tmp_path, "user\titem\trating\n1\t2\t3\n", "a.tsv")
    assert len(load(tsv)) == 1
    gz = tmp_path / "b.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("user,item,rating\n1,2,3\n4,5,1\n")
    d = load(gz)
    assert len(d) == 2 and d.name == "b"
    assert len(load(pd.DataFrame({"user": [1], "item": [1], "rating": [2.0]}))) == 1
    with pytest.raises(DataError, match=r"\.txt"):
        load(_write(tmp_path, "x", "c.txt"))


def test_parquet_round_trip_keeps_ids_scale_weights_time(tmp_path: Path) -> None:
    d = Interactions.from_arrays(
        ["u9", "u1", "u9"], [10**12, 5, 5], [1.5, 5.0, 3.0],
        timestamp=[5, 2**40, 7], weight=[1.0, 0.0, 2.5], rating_scale=(0.5, 5), name="mine",
    )  # fmt: skip
    p = tmp_path / "d.parquet"
    write_parquet(d, p)
    e = read_parquet(p)
    assert e.name == "mine" and e.rating_scale == (0.5, 5.0)
    assert e.users.id(e.user).tolist() == ["u9", "u1", "u9"]
    assert e.items.id(e.item).tolist() == [10**12, 5, 5]
    assert e.rating.tolist() == [1.5, 5.0, 3.0]
    assert e.timestamp is not None and e.timestamp.tolist() == [5, 2**40, 7]
    assert e.weight is not None and e.weight.tolist() == [1.0, 0.0, 2.5]
    assert len(load(p)) == 3


def test_parquet_from_pandas_with_other_names(tmp_path: Path) -> None:
    p = tmp_path / "x.pq"
    pd.DataFrame({"u": ["a", "b"], "i": [1, 2], "r": [3.0, 4.0]}).to_parquet(p)
    d = read_parquet(p, user="u", item="i", rating="r")
    assert d.users.ids.tolist() == ["a", "b"] and d.rating.tolist() == [3.0, 4.0]
    with pytest.raises(DataError, match=r"'rating'.*did you mean 'r'") as exc:
        read_parquet(p, user="u", item="i")
    assert exc.value.file == str(p)


# ---------------------------------------------------------------------- errors
def test_missing_column_lists_columns_and_closest_match(tmp_path: Path) -> None:
    p = _write(tmp_path, "userId,movieId,Rating\n1,2,3\n")
    with pytest.raises(DataError) as exc:
        read_csv(p, user="userId", item="movieId")
    msg = str(exc.value)
    assert "['userId', 'movieId', 'Rating']" in msg
    assert "did you mean 'Rating'" in msg
    assert exc.value.column == "rating" and exc.value.file == str(p)
    with pytest.raises(DataError, match="did you mean 'movieId'"):
        read_csv(p, user="userId", item="movieID", rating="Rating")


def test_non_numeric_rating_names_value_row_line_and_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "user,item,stars\n1,1,4\n1,2,5\n2,1,four\n")
    with pytest.raises(DataError) as exc:
        read_csv(p, rating="stars")
    assert "'four'" in str(exc.value)
    # 0-based data row 2 is on line 4 of the file (header is line 1)
    assert exc.value.row == 2 and exc.value.column == "stars" and exc.value.file == str(p)
    assert p.read_text().splitlines()[exc.value.row + 1].endswith("four")


def test_empty_and_nan_ratings(tmp_path: Path) -> None:
    p = _write(tmp_path, "user,item,rating\n1,1,4\n1,2,\n")
    with pytest.raises(DataError, match="empty value") as exc:
        read_csv(p)
    assert exc.value.row == 1 and exc.value.column == "rating"
    df = pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 1], "rating": [1.0, 2.0, np.nan]})
    with pytest.raises(DataError, match="empty value") as exc2:
        from_frame(df, source="frame")
    assert exc2.value.row == 2 and exc2.value.file == "frame"
    df.loc[2, "rating"] = np.inf
    with pytest.raises(DataError, match="finite"):
        from_frame(df)


def test_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least one rating row") as exc:
        read_csv(_write(tmp_path, "user,item,rating\n"))
    assert exc.value.file is not None
    with pytest.raises(DataError, match="empty file"):
        read_csv(_write(tmp_path, "", "e.csv"))
    with pytest.raises(DataError, match="at least one"):
        from_frame(pd.DataFrame({"user": [], "item": [], "rating": []}))
    with pytest.raises(DataError, match="does not exist"):
        read_csv(tmp_path / "nope.csv")


def test_missing_ids(tmp_path: Path) -> None:
    p = _write(tmp_path, "user,item,rating\n1,1,4\n,2,3\n")
    with pytest.raises(DataError, match="user id") as exc:
        read_csv(p)
    assert exc.value.row == 1 and exc.value.column == "user"
    df = pd.DataFrame({"user": ["a", "b"], "item": ["x", None], "rating": [1, 2]})
    with pytest.raises(DataError, match="item id") as exc2:
        from_frame(df)
    assert exc2.value.row == 1
    with pytest.raises(DataError, match=r"1.5"):
        from_frame(pd.DataFrame({"user": [1.0, 1.5], "item": [1, 2], "rating": [1, 2]}))


def test_duplicates_error_reports_count_and_rows() -> None:
    df = pd.DataFrame(
        {"user": ["a", "a", "b", "a", "b"], "item": [1, 2, 1, 1, 1], "rating": [1, 2, 3, 4, 5]}
    )
    with pytest.raises(DataError) as exc:
        from_frame(df, source="f.csv")
    msg = str(exc.value)
    assert "2 duplicate rows in 2 pairs" in msg
    assert "row 3 (user 'a', item 1) repeats row 0" in msg
    assert "row 4 (user 'b', item 1) repeats row 2" in msg
    assert exc.value.row == 3 and exc.value.file == "f.csv"


def test_duplicates_last_and_mean_merge_and_warn() -> None:
    df = pd.DataFrame(
        {
            "user": [1, 1, 2, 1],
            "item": [1, 2, 1, 1],
            "rating": [1.0, 2.0, 3.0, 4.0],
            "t": [10, 20, 30, 40],
            "w": [1.0, 1.0, 1.0, 3.0],
        }
    )
    with pytest.warns(DataWarning, match="merged 1 duplicate rows"):
        last = from_frame(df, duplicates="last", timestamp="t", weight="w")
    assert last.rating.tolist() == [2.0, 3.0, 4.0]
    assert last.timestamp is not None and last.timestamp.tolist() == [20, 30, 40]
    assert last.meta["duplicates_merged"] == 1
    with pytest.warns(DataWarning):
        mean = from_frame(df, duplicates="mean", timestamp="t", weight="w")
    assert mean.rating.tolist() == [2.0, 3.0, 2.5]
    assert mean.weight is not None and mean.weight.tolist() == [1.0, 1.0, 2.0]
    with pytest.raises(ConfigError):
        from_frame(df, duplicates="first")  # type: ignore[arg-type]


def test_rating_scale_weights_and_timestamps_are_checked() -> None:
    df = pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 1], "rating": [1, 6, 7]})
    with pytest.raises(DataError, match=r"\[1, 5\], received 6 \(2 rows outside\)") as exc:
        from_frame(df, rating_scale=(1, 5))
    assert exc.value.row == 1
    with pytest.raises(ConfigError):
        from_frame(df, rating_scale=(5, 1))
    df["w"] = [1.0, -0.5, 1.0]
    with pytest.raises(DataError, match=r"non-negative weights, received -0.5") as exc2:
        from_frame(df, weight="w")
    assert exc2.value.row == 1 and exc2.value.column == "w"
    df["w"] = [1.0, 1.0, np.inf]
    with pytest.raises(DataError, match="inf"):
        from_frame(df, weight="w")
    df["t"] = [1.0, 2.5, 3.0]
    with pytest.raises(DataError, match=r"integer timestamps.*2.5") as exc3:
        from_frame(df, timestamp="t")
    assert exc3.value.row == 1 and exc3.value.column == "t"
    df["t"] = ["1", "2", "soon"]
    with pytest.raises(DataError, match="'soon'") as exc4:
        from_frame(df, timestamp="t")
    assert exc4.value.row == 2


def test_malformed_csv_and_bad_parquet(tmp_path: Path) -> None:
    p = _write(tmp_path, "user,item,rating\n1,2,3\n1,2,3,4,5\n")
    with pytest.raises(DataError, match="line 3") as exc:
        read_csv(p)
    assert exc.value.file == str(p)
    bad = _write(tmp_path, "not parquet", "x.parquet")
    with pytest.raises(DataError, match="Parquet"):
        read_parquet(bad)


# ---------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.one_of(st.integers(-(2**62), 2**62)), st.text(min_size=1, max_size=3)),
        st.sampled_from([0.5, 1.0, 2.5, 5.0]),
        min_size=1,
        max_size=30,
    )
)
def test_frame_and_parquet_round_trip(pairs: dict[tuple[int, str], float]) -> None:
    import tempfile

    users = [k[0] for k in pairs]
    items = [k[1] for k in pairs]
    ratings = list(pairs.values())
    d = from_frame(pd.DataFrame({"user": users, "item": items, "rating": ratings}))
    back = d.to_frame()
    assert back["user"].tolist() == users
    assert back["item"].tolist() == items
    assert back["rating"].tolist() == ratings
    with tempfile.TemporaryDirectory() as tmp:
        write_parquet(d, Path(tmp) / "d.parquet")
        e = read_parquet(Path(tmp) / "d.parquet")
    assert e.to_frame().equals(back)
