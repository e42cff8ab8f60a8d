"""Loaders never change a value silently, and every bad file is a typed error.

Each test here failed on the loaders before they checked float32 overflow, ids beyond
int64, float timestamps, duplicates in release files and the many ways a compressed
file or Parquet metadata can be broken.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recfit.data import Interactions
from recfit.data.grouplens import movielens, movielens_folder, release_folder
from recfit.data.io import from_frame, load, read_csv, read_parquet
from recfit.data.sources import load_dataset
from recfit.errors import ConfigError, DataError, DataWarning


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def _where(e: DataError) -> tuple[str | None, int | None, str | None]:
    return (Path(e.file).name if e.file else None, e.row, e.column)


# ---------------------------------------------------------------------- float32 casts
@pytest.mark.parametrize("value", ["1e39", "1e300", "-4e38"])
def test_rating_beyond_float32_is_an_error_not_inf(tmp_path: Path, value: str) -> None:
    p = _write(tmp_path / "r.csv", f"user,item,rating\n1,1,4\n2,1,{value}\n")
    with pytest.raises(DataError, match="float32") as info:
        read_csv(p)
    assert _where(info.value) == ("r.csv", 1, "rating")


@pytest.mark.parametrize("value", ["1e39", "1e300", "1e-50"])
def test_weight_beyond_float32_is_an_error(tmp_path: Path, value: str) -> None:
    p = _write(tmp_path / "w.csv", f"user,item,rating,w\n1,1,4,1\n2,1,3,{value}\n")
    with pytest.raises(DataError, match="float32") as info:
        read_csv(p, weight="w")
    assert _where(info.value) == ("w.csv", 1, "w")


def test_frame_and_arrays_refuse_float32_overflow() -> None:
    with pytest.raises(DataError, match="float32"):
        from_frame(pd.DataFrame({"user": [1], "item": [1], "rating": [1e39]}))
    with pytest.raises(DataError, match="float32"):
        Interactions.from_arrays([1], [1], [1.0], weight=[1e-50])


def test_float32_values_that_fit_load() -> None:
    d = from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3e38, 1e-40]}))
    assert d.rating.tolist() == [np.float32(3e38), np.float32(1e-40)]


# ---------------------------------------------------------------------- ids beyond int64
def test_csv_ids_beyond_int64_are_kept_exactly(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "r.csv",
        "user,item,rating\n9223372036854775808,1,1\n18446744073709551615,2,3\n",
    )
    d = read_csv(p)
    assert sorted(d.users.id(d.user).tolist()) == ["18446744073709551615", "9223372036854775808"]
    assert d.users.id(d.user[[0]]).tolist() == ["9223372036854775808"]
    for text in ("18446744073709551616", "-9223372036854775809", "1" * 60):
        d = read_csv(_write(tmp_path / "big.csv", f"user,item,rating\n{text},1,1\n5,1,2\n"))
        assert d.users.id(d.user).tolist() == [text, "5"]


def test_frame_ids_beyond_int64_are_kept_exactly() -> None:
    d = from_frame(pd.DataFrame({"user": [2**64 + 1, 1], "item": [1, 2], "rating": [1.0, 2.0]}))
    assert d.users.id(d.user).tolist() == [str(2**64 + 1), "1"]
    d = from_frame(
        pd.DataFrame(
            {"user": np.array([2**63, 1], dtype=np.uint64), "item": [1, 2], "rating": [1, 2]}
        )
    )
    assert d.users.id(d.user).tolist() == [str(2**63), "1"]
    big = pd.array([2**62 + 1, 3], dtype="Int64")  # through a float it would round
    d = from_frame(pd.DataFrame({"user": big, "item": [1, 2], "rating": [1, 2]}))
    assert d.users.id(d.user).tolist() == [2**62 + 1, 3]


def test_float_id_columns_are_read_from_their_text(tmp_path: Path) -> None:
    p = _write(tmp_path / "r.csv", "user,item,rating\n1.0,1,1\n9007199254740993.0,1,2\n")
    d = read_csv(p)  # the float 9007199254740993.0 would be ...992
    assert d.users.id(d.user).tolist() == [1, 9007199254740993]
    for bad, row in (("1e30", 0), ("1e3", 0)):
        p = _write(tmp_path / "r.csv", f"user,item,rating\n{bad},1,1\n2.0,1,2\n")
        with pytest.raises(DataError, match=bad) as info:
            read_csv(p)
        assert _where(info.value) == ("r.csv", row, "user")
    with pytest.raises(DataError, match="2\\*\\*53"):
        from_frame(pd.DataFrame({"user": [1e30], "item": [1], "rating": [1]}))


def test_mixed_ids_with_the_same_text_are_an_error() -> None:
    df = pd.DataFrame({"user": pd.Series([1, "1"], dtype=object), "item": [1, 2], "rating": 1})
    with pytest.raises(DataError, match="same text"):
        from_frame(df)


# ---------------------------------------------------------------------- timestamps
@pytest.mark.parametrize("value", ["1e30", "-1e30", "9.3e18"])
def test_float_timestamps_beyond_exact_range_are_errors(tmp_path: Path, value: str) -> None:
    p = _write(tmp_path / "t.csv", f"user,item,rating,ts\n1,1,1,5\n2,1,1,{value}\n")
    with pytest.raises(DataError, match="timestamps") as info:
        read_csv(p, timestamp="ts")
    assert _where(info.value) == ("t.csv", 1, "ts")


def test_timestamps_beyond_int64_and_spans_that_overflow(tmp_path: Path) -> None:
    p = _write(tmp_path / "t.csv", "user,item,rating,ts\n1,1,1,5\n2,1,1,9223372036854775808\n")
    with pytest.raises(DataError, match="int64") as info:
        read_csv(p, timestamp="ts")
    assert _where(info.value) == ("t.csv", 1, "ts")
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    with pytest.raises(DataError, match="spanning") as info:
        from_frame(
            pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": 1, "t": [lo, hi]}),
            timestamp="t",
        )
    assert (info.value.row, info.value.column) == (1, "t")
    d = from_frame(
        pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": 1, "t": [lo + 1, 0]}),
        timestamp="t",
    )
    assert d.timestamp is not None and d.timestamp.tolist() == [lo + 1, 0]


# ---------------------------------------------------------------------- release duplicates
def _ml100k(root: Path, data: str) -> Path:
    folder = root / "ml-100k"
    _write(folder / "u.data", data)
    flags = "|".join(["0"] * 18 + ["1"])
    _write(
        folder / "u.item",
        f"1|A (1995)|01-Jan-1995||http://x|{flags}\n2|B (1995)|01-Jan-1995||http://y|{flags}\n",
        "latin-1",
    )
    _write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    return folder


def test_duplicates_in_a_release_file_follow_the_policy(tmp_path: Path) -> None:
    _ml100k(tmp_path, "1\t1\t5\t10\n2\t2\t3\t11\n1\t1\t1\t12\n")
    with pytest.raises(DataError, match="duplicate") as info:
        movielens("ml-100k", tmp_path, download=False)
    e = info.value
    assert (Path(e.file or "").name, e.line, e.column) == ("u.data", 3, "user,item")
    with pytest.warns(DataWarning, match="merged 1"):
        d = movielens("ml-100k", tmp_path, download=False, duplicates="last")
    assert (len(d), d.rating.tolist()) == (2, [3.0, 1.0])
    assert d.timestamp is not None and d.timestamp.tolist() == [11, 12]
    assert d.meta["duplicates_merged"] == 1
    with pytest.warns(DataWarning):
        d = load_dataset(tmp_path / "ml-100k", duplicates="mean")
    assert sorted(d.rating.tolist()) == [3.0, 3.0]


def test_dat_and_csv_releases_check_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "ml-latest-small"
    _write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n1,1,4,2\n")
    _write(folder / "movies.csv", "movieId,title,genres\n1,A (1995),Drama\n")
    with pytest.raises(DataError, match="duplicate") as info:
        movielens("ml-latest-small", tmp_path, download=False)
    assert info.value.line == 3


# ---------------------------------------------------------------------- untyped errors
def test_unknown_encoding_is_a_config_error(tmp_path: Path) -> None:
    p = _write(tmp_path / "r.csv", "user,item,rating\n1,1,1\n")
    with pytest.raises(ConfigError, match="encoding"):
        read_csv(p, encoding="no-such-codec")


def test_corrupt_compressed_files_are_data_errors(tmp_path: Path) -> None:
    good = gzip.compress(b"user,item,rating\n" + b"1,1,1\n" * 1000)
    cases = {
        "trunc.csv.gz": good[: len(good) // 2],
        "notgz.csv.gz": b"this is not gzip data at all",
        "bad.csv.zip": b"PK\x03\x04 broken",
        "bad.csv.bz2": b"BZh9 broken",
        "bad.csv.xz": b"\xfd7zXZ\x00 broken",
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(DataError) as info:
            load(p)
        assert info.value.file == str(p), name


def test_zip_with_two_files_and_encrypted_zip(tmp_path: Path) -> None:
    two = tmp_path / "two.csv.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.csv", "user,item,rating\n1,1,1\n")
        zf.writestr("b.csv", "user,item,rating\n1,1,1\n")
    with pytest.raises(DataError, match="ValueError"):
        load(two)
    enc = tmp_path / "enc.csv.zip"
    enc.write_bytes(encrypted_zip({"r.csv": b"user,item,rating\n1,1,1\n"}))
    with pytest.raises(DataError, match="encrypted"):
        load(enc)


def encrypted_zip(members: dict[str, bytes]) -> bytes:
    """A zip whose members are flagged encrypted (reading them needs a password)."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (k := raw.find(sig, start)) >= 0:
            raw[k + off] |= 0x01
            start = k + 4
    return bytes(raw)


@pytest.mark.parametrize(
    "meta",
    [b"not json", b"[1, 2]", b'{"rating_scale": "ab"}', b'{"rating_scale": [5, 1]}',
     b'{"rating_scale": [1, 2, 3]}', b'{"name": 7}', b'{"rating_scale": [true, 5]}'],
)  # fmt: skip
def test_bad_recfit_parquet_metadata_is_a_data_error(tmp_path: Path, meta: bytes) -> None:
    table = pa.table({"user": [1], "item": [1], "rating": [1.0]})
    p = tmp_path / "m.parquet"
    pq.write_table(table.replace_schema_metadata({b"recfit": meta}), p)
    with pytest.raises(DataError, match="metadata") as info:
        read_parquet(p)
    assert info.value.file == str(p)


def test_parquet_binary_and_nested_columns(tmp_path: Path) -> None:
    p = tmp_path / "b.parquet"
    pq.write_table(
        pa.table({"user": pa.array([b"a", b"\xff"]), "item": [1, 2], "rating": [1, 2]}), p
    )
    with pytest.raises(DataError, match="UTF-8"):
        read_parquet(p)
    pq.write_table(pa.table({"user": pa.array([b"a", b"b"]), "item": [1, 2], "rating": [1, 2]}), p)
    assert read_parquet(p).users.ids.tolist() == ["a", "b"]
    pq.write_table(pa.table({"user": [[1], [2]], "item": [1, 2], "rating": [1, 2]}), p)
    with pytest.raises(DataError, match="list"):
        read_parquet(p)
    big = pa.array([2**63 + 5, None, 1], type=pa.uint64())
    pq.write_table(pa.table({"user": [1, 2, 3], "item": big, "rating": [1, 2, 3]}), p)
    with pytest.raises(DataError, match="empty value") as info:
        read_parquet(p)
    assert info.value.row == 1


def test_from_frame_with_integer_column_names() -> None:
    df = pd.DataFrame({0: [1, 2], 1: [5, 5], 2: [4.0, 3.0]})
    d = from_frame(df, user="0", item="1", rating="2")
    assert d.rating.tolist() == [4.0, 3.0]
    with pytest.raises(DataError, match="one column"):
        from_frame(pd.DataFrame([[1, 2, 3]], columns=[0, "0", 2]), user="0", item="2", rating=None)


def test_a_megabyte_id_in_u_data_is_a_data_error(tmp_path: Path) -> None:
    _ml100k(tmp_path, "1\t1\t5\t10\n" + "9" * 1_000_000 + "\t2\t3\t11\n")
    with pytest.raises(DataError, match="integer") as info:
        movielens("ml-100k", tmp_path, download=False)
    assert (info.value.line, info.value.column) == (2, "user")
    _ml100k(tmp_path, "1\t1\t5\t10\n")
    flags = "|".join(["0"] * 18 + ["1"])
    _write(tmp_path / "ml-100k" / "u.item", f"{'7' * 100_000}|A (1995)|01-Jan-1995||x|{flags}\n")
    with pytest.raises(DataError, match="integer"):
        movielens("ml-100k", tmp_path, download=False)


# ---------------------------------------------------------------------- folders
def test_release_folders_are_found(tmp_path: Path) -> None:
    _ml100k(tmp_path, "1\t1\t5\t10\n2\t2\t3\t11\n")
    for where in (tmp_path / "ml-100k", tmp_path):
        found = release_folder(where)
        assert found is not None and found[0] == "ml-100k"
        assert len(load_dataset(where)) == 2
    renamed = tmp_path / "copy"
    (tmp_path / "ml-100k").rename(renamed)
    assert movielens_folder(renamed).name == "ml-100k"
    _write(tmp_path / "ml-latest-small" / "ratings.csv", "userId,movieId,rating,timestamp\n")
    _write(tmp_path / "ml-latest-small" / "movies.csv", "movieId,title,genres\n")
    with pytest.raises(ConfigError, match="one MovieLens release"):
        release_folder(tmp_path)


def test_folder_with_one_rating_file(tmp_path: Path) -> None:
    _write(tmp_path / "mine" / "r.csv", "user,item,rating\n1,1,4\n")
    assert len(load_dataset(tmp_path / "mine")) == 1
    _write(tmp_path / "mine" / "s.csv", "user,item,rating\n1,1,4\n")
    with pytest.raises(ConfigError, match="exactly one rating file"):
        load_dataset(tmp_path / "mine")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="none"):
        load_dataset(tmp_path / "empty")


def test_written_metadata_still_round_trips(tmp_path: Path) -> None:
    p = tmp_path / "ok.parquet"
    table = pa.table({"user": [1], "item": [1], "rating": [1.0]})
    meta = json.dumps({"format": 1, "name": "x", "rating_scale": [1, 5]}).encode()
    pq.write_table(table.replace_schema_metadata({b"recfit": meta}), p)
    d = read_parquet(p)
    assert (d.name, d.rating_scale) == ("x", (1.0, 5.0))


# ---------------------------------------------------------------------- found by fuzzing
def test_boolean_ratings_and_weights_are_errors(tmp_path: Path) -> None:
    p = _write(tmp_path / "b.csv", "user,item,rating,w\n1,1,1,True\n")
    with pytest.raises(DataError, match="boolean") as info:
        read_csv(p, weight="w")
    assert _where(info.value) == ("b.csv", 0, "w")
    df = pd.DataFrame(
        {"user": [1, 2], "item": [1, 1], "rating": pd.Series([2.0, True], dtype=object)}
    )
    with pytest.raises(DataError, match="boolean") as info:
        from_frame(df)
    assert info.value.row == 1


def test_numbers_and_dates_in_one_timestamp_column_are_an_error() -> None:
    t = pd.Series([-1, "2000-01-01"], dtype=object)  # -1 was read as the year -1
    with pytest.raises(DataError, match="not both") as info:
        from_frame(
            pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": 1, "t": t}), timestamp="t"
        )
    assert info.value.row == 1


def test_object_columns_of_numbers_and_booleans_as_ids() -> None:
    ids = pd.Series([1.0, 2], dtype=object)  # a float id in an object column was '1.0'
    d = from_frame(pd.DataFrame({"user": ids, "item": [1, 1], "rating": [1, 2]}))
    assert d.users.id(d.user).tolist() == [1, 2]
    flags = pd.Series([True, 0], dtype=object)  # True was the id 'True'
    with pytest.raises(DataError, match="booleans"):
        from_frame(pd.DataFrame({"user": [1, 2], "item": flags, "rating": [1, 2]}))


def test_a_rating_beyond_float64_is_a_data_error() -> None:
    df = pd.DataFrame(
        {"user": [1, 2], "item": [1, 1], "rating": pd.Series([4, 10**400], dtype=object)}
    )
    with pytest.raises(DataError, match="numeric rating") as info:
        from_frame(df)
    assert (info.value.row, info.value.column) == (1, "rating")
