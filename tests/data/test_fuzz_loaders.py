"""Fuzzing the loaders: every input is either loaded exactly or refused with a RecfitError.

"Exactly" means: ids come back as the integers or the text that the input holds
(integers beyond int64 as their decimal text); ratings and weights are the float32 of
the input's float64 value (an input that float32 cannot hold is an error, never inf or
0); timestamps are the input's integers. Anything else the loader raises is a failure.
Integer ids are numbers: the fuzzer writes them in canonical form (``7``, not ``007``).
"""

from __future__ import annotations

import math
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.data.io import from_frame, load, read_csv, read_parquet
from recfit.errors import RecfitError

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
INT64 = (-(2**63), 2**63 - 1)
_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_INT_POINT = re.compile(r"-?(0|[1-9][0-9]*)\.0*")


# ---------------------------------------------------------------------- the oracle
def _id_ok(loaded: Any, given_value: Any) -> bool:
    """A loaded id equals the given one: the same integer, or the same text."""
    if isinstance(given_value, str):
        text = given_value
        if _INT.fullmatch(text) or _INT_POINT.fullmatch(text):
            number = int(text.split(".")[0])
            return str(loaded) in (text, str(number))
        return isinstance(loaded, str) and loaded == text
    if isinstance(given_value, (bool, np.bool_)):
        return False  # booleans are no ids
    if isinstance(given_value, float):  # in a column of text, a float keeps its own text
        if math.isfinite(given_value) and given_value.is_integer():
            return str(loaded) in (str(int(given_value)), str(given_value))
        return loaded == str(given_value)
    return str(loaded) == str(int(given_value))


def _float_of(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if value is None:
        return None
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return None


def _float32_ok(loaded: float, given_value: Any) -> bool:
    f = _float_of(given_value)
    if f is None or not math.isfinite(f):
        return False
    with np.errstate(over="ignore", under="ignore"):
        f32 = np.float32(f)
    if not np.isfinite(f32) or (f32 == 0 and f != 0):
        return False
    return bool(np.float32(loaded) == f32)


def _ts_ok(loaded: int, given_value: Any) -> bool:
    if isinstance(given_value, str):
        if _INT.fullmatch(given_value.strip()):
            return loaded == int(given_value)
        f = _float_of(given_value)
        if f is None:  # an ISO-8601 date
            when = pd.to_datetime(given_value, format="ISO8601", utc=True)
            return bool(loaded == when.value // 10**9)
        return math.isfinite(f) and f.is_integer() and loaded == int(f)
    if isinstance(given_value, float):
        return given_value.is_integer() and loaded == int(given_value)
    return loaded == int(given_value)


def check_exact(d: Interactions, rows: list[dict[str, Any]], weighted: bool, timed: bool) -> None:
    """The loaded data holds exactly ``rows`` (no duplicates were allowed)."""
    assert len(d) == len(rows)
    users = d.users.id(d.user).tolist()
    items = d.items.id(d.item).tolist()
    ratings = d.rating.tolist()
    ts = d.timestamp.tolist() if d.timestamp is not None else None
    weights = d.weight.tolist() if d.weight is not None else None
    for k, row in enumerate(rows):
        assert _id_ok(users[k], row["user"]), (k, users[k], row["user"])
        assert _id_ok(items[k], row["item"]), (k, items[k], row["item"])
        if "rating" in row:
            assert _float32_ok(ratings[k], row["rating"]), (k, ratings[k], row["rating"])
        if timed:
            assert ts is not None and _ts_ok(ts[k], row["timestamp"]), (k, row["timestamp"])
        if weighted:
            assert weights is not None, "weights dropped"
            assert _float32_ok(weights[k], row["weight"]), (k, weights[k], row["weight"])
            assert weights[k] >= 0
    assert np.isfinite(d.rating).all()
    # equal ids stay equal; ids that share an index are the same number or the same text
    for col, codes in (("user", d.user), ("item", d.item)):
        pairs = {(repr(r[col]), code) for r, code in zip(rows, codes.tolist(), strict=True)}
        assert len({g for g, _ in pairs}) == len(pairs), col
        keys: dict[int, set[Any]] = {}
        for r, code in zip(rows, codes.tolist(), strict=True):
            keys.setdefault(code, set()).add(repr(_key(r[col])))
        assert all(len(v) == 1 for v in keys.values()), (col, keys)
    assert len(set(zip(d.user.tolist(), d.item.tolist(), strict=True))) == len(d)


def _key(value: Any) -> Any:
    if isinstance(value, str) and (_INT.fullmatch(value) or _INT_POINT.fullmatch(value)):
        return int(value.split(".")[0])
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _attempt(fn: Any, *args: Any, **kwargs: Any) -> Interactions | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)  # type: ignore[no-any-return]
        except RecfitError:
            return None


# ---------------------------------------------------------------------- CSV tokens
_letters = st.text(
    st.characters(categories=["L", "N", "Pd", "So"], exclude_characters=",\"'\r\n"),
    min_size=1,
    max_size=6,
).map(lambda s: "u" + s)
_int_tokens = st.one_of(
    st.integers(-5, 40),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**53 + 1]),
).map(str)
_odd = st.sampled_from(
    ["", "nan", "NaN", "inf", "-inf", "1.5", "1e3", "1.0", "2.000", "1e39", "1e300", "-1e39",
     "1e-50", "3.4e38", "3.5e38", "1e30", "9007199254740993.0", "True", "NA", "null", "é", "x y"]
)  # fmt: skip
_float_tokens = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-5, max_value=5).map(repr),
    st.integers(-(2**70), 2**70).map(str),
)
id_token = st.one_of(_int_tokens, _letters, _odd, st.sampled_from(["1", "2", "u1"]))
num_token = st.one_of(_float_tokens, _odd, st.integers(0, 5).map(str))
ts_token = st.one_of(
    st.integers(-(2**64), 2**64).map(str), st.integers(0, 10**10).map(str), _odd, _float_tokens
)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]], bool, bool]:
    timed, weighted = draw(st.booleans()), draw(st.booleans())
    cols = (
        ["user", "item", "rating"]
        + (["timestamp"] if timed else [])
        + (["weight"] if weighted else [])
    )
    n = draw(st.integers(0, 6))
    rows = []
    for _ in range(n):
        row = {"user": draw(id_token), "item": draw(id_token), "rating": draw(num_token)}
        if timed:
            row["timestamp"] = draw(ts_token)
        if weighted:
            row["weight"] = draw(num_token)
        rows.append(row)
    header = list(cols)
    if draw(st.integers(0, 9)) == 0 and header:  # a missing column
        header.pop(draw(st.integers(0, len(header) - 1)))
    lines = [",".join(header)] + [",".join(r[c] for c in cols if c in header) for r in rows]
    return "\n".join(lines) + "\n", rows, timed, weighted


@FUZZ
@given(csv_files())
def test_csv_loads_exactly_or_refuses(case: tuple[str, list[dict[str, Any]], bool, bool]) -> None:
    text, rows, timed, weighted = case
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "r.csv"
        p.write_text(text, encoding="utf-8")
        d = _attempt(
            read_csv,
            p,
            timestamp="timestamp" if timed else None,
            weight="weight" if weighted else None,
        )
    if d is not None:
        check_exact(d, rows, weighted, timed)


@FUZZ
@given(
    st.binary(max_size=400), st.sampled_from([".csv", ".tsv", ".csv.gz", ".csv.zip", ".parquet"])
)
def test_arbitrary_bytes_never_raise_untyped(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"r{suffix}"
        p.write_bytes(data)
        d = _attempt(load, p)
    if d is not None:
        assert np.isfinite(d.rating).all() and len(d) >= 1
        assert len(set(zip(d.user.tolist(), d.item.tolist(), strict=True))) == len(d)


# ---------------------------------------------------------------------- frames
frame_id = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(0, 30),
    st.text(max_size=4),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, True, 2**63, 2**64, 1.0, 1e30, "1", "nan"]),
)
frame_num = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.integers(0, 5),
    st.sampled_from([None, "x", "3", 1e39, 1e-50, True]),
)
frame_ts = st.one_of(
    st.integers(-(2**64), 2**64), st.floats(allow_nan=True), st.sampled_from([None, "2000-01-01"])
)


@st.composite
def frames(draw: st.DrawFn) -> tuple[pd.DataFrame, list[dict[str, Any]], bool, bool]:
    timed, weighted = draw(st.booleans()), draw(st.booleans())
    n = draw(st.integers(0, 6))
    homogeneous = draw(st.booleans())
    rows = []
    for _ in range(n):
        if homogeneous:
            row = {"user": draw(st.integers(-(2**70), 2**70)), "item": draw(st.text(max_size=3))}
            row["rating"] = draw(st.floats(allow_nan=True, allow_infinity=True))
        else:
            row = {"user": draw(frame_id), "item": draw(frame_id), "rating": draw(frame_num)}
        if timed:
            row["timestamp"] = draw(frame_ts)
        if weighted:
            row["weight"] = draw(frame_num)
        rows.append(row)
    cols = {c: pd.Series([r[c] for r in rows], dtype=object) for c in (rows[0] if rows else {})}
    df = pd.DataFrame(cols)
    if draw(st.booleans()):
        df = df.infer_objects()
    return df, rows, timed, weighted


def _frame_rows_ok(rows: list[dict[str, Any]]) -> bool:
    """Whether the oracle can judge a load of these rows (no value it cannot compare)."""
    for r in rows:
        for c in ("user", "item"):
            v = r[c]
            if isinstance(v, str) and (_INT.fullmatch(v) or _INT_POINT.fullmatch(v)):
                continue
            if v is None or isinstance(v, bool):
                return True  # must be an error: judged by check_exact failing to match
    return True


@FUZZ
@given(frames())
def test_frames_load_exactly_or_refuse(
    case: tuple[pd.DataFrame, list[dict[str, Any]], bool, bool],
) -> None:
    df, rows, timed, weighted = case
    d = _attempt(
        from_frame,
        df,
        timestamp="timestamp" if timed else None,
        weight="weight" if weighted else None,
    )
    if d is not None and _frame_rows_ok(rows):
        check_exact(d, rows, weighted, timed)


# ---------------------------------------------------------------------- Parquet
_arrow_ids = st.sampled_from(
    ["int64", "uint64", "int32", "string", "binary", "float64", "dict", "bool"]
)
_arrow_nums = st.sampled_from(["float64", "float32", "int64", "uint64", "string", "float16"])


def _arrow(values: list[Any], kind: str) -> pa.Array:
    if kind == "dict":
        strings = [None if v is None else str(v) for v in values]
        return pa.array(strings, type=pa.string()).dictionary_encode()
    if kind == "string":
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
    if kind == "binary":
        return pa.array([None if v is None else str(v).encode() for v in values], type=pa.binary())
    if kind == "float16":
        return pa.array(np.asarray(values, dtype=np.float64).astype(np.float16))
    return pa.array(values, type=pa.bool_() if kind == "bool" else getattr(pa, kind)())


@st.composite
def parquet_tables(draw: st.DrawFn) -> tuple[pa.Table, list[dict[str, Any]], bool, bool]:
    n = draw(st.integers(1, 6))
    timed, weighted = draw(st.booleans()), draw(st.booleans())
    uk, ik, rk = draw(_arrow_ids), draw(_arrow_ids), draw(_arrow_nums)
    ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(0, 20))
    uints = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 20))
    pools = {
        "int64": ints, "int32": st.integers(-(2**31), 2**31 - 1), "uint64": uints,
        "string": st.text(max_size=4), "binary": st.text(max_size=4), "dict": st.text(max_size=3),
        "float64": st.floats(allow_nan=True, allow_infinity=True), "bool": st.booleans(),
        "float32": st.floats(width=32, allow_nan=True, allow_infinity=True),
        "float16": st.floats(width=16, allow_nan=False, allow_infinity=False),
    }  # fmt: skip
    cols: dict[str, pa.Array] = {}
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    spec = [("user", uk), ("item", ik), ("rating", rk)]
    if timed:
        spec.append(("timestamp", draw(st.sampled_from(["int64", "uint64", "float64"]))))
    if weighted:
        spec.append(("weight", draw(_arrow_nums)))
    for col, kind in spec:
        values = [draw(pools[kind]) for _ in range(n)]
        if draw(st.integers(0, 5)) == 0:
            values[draw(st.integers(0, n - 1))] = None
        if kind == "float16":
            values = [float(np.float16(v)) if v is not None else float("nan") for v in values]
        cols[col] = _arrow(values, kind)
        for r, v in zip(rows, values, strict=True):
            r[col] = str(v) if kind in ("string", "binary", "dict") and v is not None else v
    return pa.table(cols), rows, timed, weighted


@FUZZ
@given(parquet_tables())
def test_parquet_loads_exactly_or_refuses(
    case: tuple[pa.Table, list[dict[str, Any]], bool, bool],
) -> None:
    table, rows, timed, weighted = case
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "t.parquet"
        pq.write_table(table, p)
        d = _attempt(
            read_parquet,
            p,
            timestamp="timestamp" if timed else None,
            weight="weight" if weighted else None,
        )
    if d is not None:
        check_exact(d, rows, weighted, timed)


# ---------------------------------------------------------------------- u.data lines
_field = st.one_of(
    st.integers(-3, 6).map(str),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["", "4.5", "nan", "1e39", "1e30", "2147483648", "x", " 3", "3 ", "5.0"]),
)


@st.composite
def u_data(draw: st.DrawFn) -> tuple[str, list[list[str]]]:
    lines = draw(
        st.lists(
            st.lists(_field, min_size=3, max_size=5),
            min_size=0,
            max_size=6,
        )
    )
    pool = st.sampled_from(["1\t1\t5\t10", "2\t1\t3\t11", "1\t2\t4\t12"])
    good = draw(st.lists(pool, max_size=3))
    rows = list(lines) + [g.split("\t") for g in good]
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[k] for k in order]
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    return sep.join("\t".join(r) for r in rows) + sep, rows


@FUZZ
@given(u_data())
def test_release_ratings_load_exactly_or_refuse(case: tuple[str, list[list[str]]]) -> None:
    from recfit.data.grouplens import movielens_folder

    text, rows = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ml-100k"
        folder.mkdir()
        (folder / "u.data").write_text(text)
        flags = "|".join(["0"] * 18 + ["1"])
        (folder / "u.item").write_text(f"1|A (1995)|01-Jan-1995||x|{flags}\n")
        (folder / "u.user").write_text("1|24|M|technician|85711\n")
        d = _attempt(movielens_folder, folder)
    if d is None:
        return
    assert len(d) == len(rows)
    users, items = d.users.id(d.user).tolist(), d.items.id(d.item).tolist()
    ts = d.timestamp.tolist() if d.timestamp is not None else []
    for k, r in enumerate(rows):
        assert len(r) == 4
        assert users[k] == int(r[0]) and items[k] == int(r[1]) and ts[k] == int(r[3])
        assert -(2**31) <= int(r[0]) < 2**31 and -(2**31) <= int(r[1]) < 2**31
        assert 1 <= float(r[2]) <= 5 and d.rating[k] == np.float32(float(r[2]))
    assert len(set(zip(users, items, strict=True))) == len(d)
