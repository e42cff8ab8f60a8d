"""Malformed data files through the public loaders, each classified by what happened.

A fixed corpus (no randomness) written into ``work``: CSV and TSV files, Parquet files,
``.gz`` / ``.bz2`` / ``.xz`` / ``.zip`` / ``.zst`` files, DataFrames, MovieLens-release
shaped folders with bad ``u.data`` / ``ratings.dat`` / ``ratings.csv`` / metadata lines,
and archives served to :func:`recfit.data.download.fetch` from a server on 127.0.0.1
(zip bombs, capped small, unsafe paths, encryption, bad checksums).

Every input is loaded through ``recfit.data.io`` (``load``, ``read_csv``,
``read_parquet``, ``from_frame``), ``recfit.data.grouplens`` (``movielens``,
``movielens_folder``), ``recfit.data.sources.load_dataset`` or ``fetch`` and classified:

- ``typed_error``: a ``RecfitError`` (the wanted refusal);
- ``answer``: the input was acceptable and every loaded value equals the expected one
  exactly (ids, float32 ratings and weights, int64 timestamps);
- ``untyped_error``: any other exception (a failure);
- ``wrong_answer``: a load of an input that must be refused, or a load whose values
  differ from the input (a failure).

Run standalone: ``python -m benchmarks.reliability.files`` (prints counts by outcome).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import lzma
import os
import re
import stat
import tempfile
import threading
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

try:
    from benchmarks.reliability import Case, Outcome
except ImportError:  # run from benchmarks/ by the driver
    from reliability import Case, Outcome  # type: ignore[no-redef]

from recfit.data.download import fetch
from recfit.data.grouplens import movielens, movielens_folder
from recfit.data.io import from_frame, load, read_csv, read_parquet
from recfit.data.sources import load_dataset
from recfit.errors import RecfitError

CORPUS = "files"


@dataclass
class _Input:
    name: str
    load: Callable[[Path], Any]  # builds its files under the given folder and loads them
    expect: dict[str, list[Any]] | None = None  # exact values of an acceptable input


# ---------------------------------------------------------------------- classification
def _compare(d: Any, expect: dict[str, list[Any]]) -> str | None:
    """``None`` when ``d`` holds exactly ``expect``; else what differs."""
    if "shape" in expect:  # a large real release: its counts
        shape = [len(d), d.n_users, d.n_items]
        return None if shape == expect["shape"] else f"expected {expect['shape']}, received {shape}"
    got: dict[str, list[Any]] = {
        "user": d.users.id(d.user).tolist(),
        "item": d.items.id(d.item).tolist(),
        "rating": d.rating.tolist(),
    }
    if d.timestamp is not None:
        got["timestamp"] = d.timestamp.tolist()
    if d.weight is not None:
        got["weight"] = d.weight.tolist()
    for key, want in expect.items():
        have = got.get(key)
        if key in ("rating", "weight"):
            want = [float(np.float32(v)) for v in want]
        if have != want:
            return f"{key}: expected {want!r:.200}, received {have!r:.200}"
    extra = set(got) - set(expect) - {"rating"}
    if extra:
        return f"unexpected columns {sorted(extra)}"
    return None


def _classify(inp: _Input, work: Path) -> Case:
    folder = work / re.sub(r"[^A-Za-z0-9_.-]", "_", inp.name)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = inp.load(folder)
    except RecfitError as exc:
        return Case(CORPUS, inp.name, "typed_error", f"{type(exc).__name__}: {exc}"[:300])
    except Exception as exc:  # any other exception is the failure counted
        return Case(CORPUS, inp.name, "untyped_error", f"{type(exc).__name__}: {exc}"[:300])
    if inp.expect is None:
        what = f"{len(d)} rows" if hasattr(d, "__len__") else repr(d)[:100]
        return Case(CORPUS, inp.name, "wrong_answer", f"loaded an input to refuse: {what}")
    problem = _compare(d, inp.expect)
    outcome: Outcome = "answer" if problem is None else "wrong_answer"
    return Case(CORPUS, inp.name, outcome, problem or "exact")


# ---------------------------------------------------------------------- builders
def _text(name: str, text: str, **kw: Any) -> Callable[[Path], Any]:
    def go(folder: Path) -> Any:
        p = folder / name
        p.write_text(text, encoding="utf-8")
        return read_csv(p, **kw) if "encoding" in kw else load(p, **kw)

    return go


def _bytes(
    name: str, data: bytes, reader: Callable[..., Any] = load, **kw: Any
) -> Callable[[Path], Any]:
    def go(folder: Path) -> Any:
        p = folder / name
        p.write_bytes(data)
        return reader(p, **kw)

    return go


def _parquet(table: pa.Table, **kw: Any) -> Callable[[Path], Any]:
    def go(folder: Path) -> Any:
        p = folder / "t.parquet"
        pq.write_table(table, p)
        return read_parquet(p, **kw)

    return go


def _frame(df: Callable[[], pd.DataFrame], **kw: Any) -> Callable[[Path], Any]:
    return lambda folder: from_frame(df(), **kw)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _encrypted(data: bytes) -> bytes:
    raw = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (k := raw.find(sig, start)) >= 0:
            raw[k + off] |= 0x01
            start = k + 4
    return bytes(raw)


def _csv_inputs() -> list[_Input]:
    h = "user,item,rating\n"
    out: list[_Input] = []
    for v in ("1e39", "1e300", "-1e39", "3.5e38", "1e-50", "nan", "inf", "-inf", "", "abc",
              "4 stars", "True", "0x10", "1,5"):  # fmt: skip
        out.append(_Input(f"csv_rating_{v or 'empty'}", _text("r.csv", f"{h}1,1,4\n2,1,{v}\n")))
    for v in ("1e39", "1e-50", "-1", "nan", "True", "x"):
        out.append(
            _Input(
                f"csv_weight_{v}", _text("w.csv", f"{h[:-1]},w\n1,1,4,1\n2,1,3,{v}\n", weight="w")
            )
        )
    for v in ("1e30", "-1e30", "9.3e18", "9223372036854775808", "-9223372036854775809", "1.5",
              "abc", "", "2000-13-45"):  # fmt: skip
        out.append(
            _Input(
                f"csv_ts_{v or 'empty'}",
                _text("t.csv", f"{h[:-1]},t\n1,1,4,5\n2,1,3,{v}\n", timestamp="t"),
            )
        )
    out.append(
        _Input(
            "csv_ts_numbers_and_dates",
            _text("t.csv", f"{h[:-1]},t\n1,1,4,-1\n2,1,3,2000-01-01\n", timestamp="t"),
        )
    )
    lo, hi = -(2**63), 2**63 - 1
    out.append(
        _Input(
            "csv_ts_span_overflow",
            _text("t.csv", f"{h[:-1]},t\n1,1,4,{lo}\n2,1,3,{hi}\n", timestamp="t"),
        )
    )
    # ids beyond int64: kept exactly, as text
    for big in ("9223372036854775808", "18446744073709551615", "18446744073709551616",
                "-9223372036854775809", "1" * 60):  # fmt: skip
        out.append(
            _Input(
                f"csv_id_{big[:24]}",
                _text("i.csv", f"{h}{big},1,4\n5,1,2\n"),
                {"user": [big, "5"], "item": [1, 1], "rating": [4.0, 2.0]},
            )
        )
    for bad in ("1e30", "1e3", "1.5", "inf", "nan", ""):
        out.append(
            _Input(f"csv_float_id_{bad or 'empty'}", _text("f.csv", f"{h}{bad},1,4\n2.0,1,2\n"))
        )
    out.append(
        _Input(
            "csv_float_id_exact",
            _text("f.csv", f"{h}1.0,1,4\n9007199254740993.0,1,2\n"),
            {"user": [1, 9007199254740993], "item": [1, 1], "rating": [4.0, 2.0]},
        )
    )
    out += [
        _Input("csv_duplicate_pair", _text("d.csv", f"{h}1,1,4\n2,1,3\n1,1,5\n")),
        _Input("csv_duplicate_many", _text("d.csv", h + "1,1,4\n" * 50)),
        _Input("tsv_duplicate_pair", _text("d.tsv", "user\titem\trating\n1\t1\t4\n1\t1\t4\n")),
        _Input("csv_missing_column", _text("m.csv", "user,item\n1,1\n")),
        _Input("csv_misnamed_column", _text("m.csv", "userId,movieId,rating\n1,1,4\n")),
        _Input("csv_empty_file", _text("e.csv", "")),
        _Input("csv_header_only", _text("e.csv", h)),
        _Input("csv_blank_lines", _text("e.csv", "\n\n\n")),
        _Input("csv_ragged_row", _text("g.csv", f"{h}1,1,4\n2,1,3,9,9\n")),
        _Input("csv_unterminated_quote", _text("q.csv", f'{h}1,"abc,4\n2,1,3\n')),
        _Input("csv_missing_id", _text("n.csv", f"{h}1,1,4\n,1,3\n")),
        _Input("csv_na_id", _text("n.csv", f"{h}1,1,4\nNA,1,3\n")),
        _Input("csv_bool_ids", _text("b.csv", f"{h}True,1,4\nFalse,1,3\n")),
        _Input("csv_unknown_encoding", _text("r.csv", f"{h}1,1,4\n", encoding="no-such")),
        _Input(
            "csv_unicode_ids",
            _text("u.csv", f"{h}Zoë,Amélie,4\n日本,Ünïcode,3\n"),
            {"user": ["Zoë", "日本"], "item": ["Amélie", "Ünïcode"], "rating": [4.0, 3.0]},
        ),
        _Input(
            "csv_float32_edges",
            _text("x.csv", f"{h}1,1,3.4e38\n2,1,1e-40\n"),
            {"user": [1, 2], "item": [1, 1], "rating": [3.4e38, 1e-40]},
        ),
    ]
    return out


def _read_csv_kw(**kw: Any) -> Callable[..., Any]:
    return lambda p: read_csv(p, **kw)


def _encoding_and_byte_inputs() -> list[_Input]:
    h = b"user,item,rating\n"
    good = h + b"1,1,4\n2,1,3\n"
    gz = gzip.compress(good * 1)
    rows = b"".join(b"%d,1,4\n" % k for k in range(2000))
    big_gz = gzip.compress(h + rows)
    bomb = gzip.compress(h + b"1,1,4\n" * 800_000)  # ~5 MB of one repeated pair: refused
    return [
        _Input("latin1_bytes_as_utf8", _bytes("l.csv", h + b"caf\xe9,1,4\n")),
        _Input(
            "latin1_with_encoding",
            _bytes("l.csv", h + b"caf\xe9,1,4\n", _read_csv_kw(encoding="latin-1")),
            {"user": ["café"], "item": [1], "rating": [4.0]},
        ),
        _Input("utf16_file", _bytes("w.csv", (h + b"1,1,4\n").decode().encode("utf-16"))),
        _Input("nul_bytes", _bytes("z.csv", h + b"1\x00,1,4\n"), {"user": ["1\x00"], "item": [1]}),
        _Input("binary_garbage", _bytes("g.csv", bytes(range(256)) * 4)),
        _Input(
            "bom_header",
            _bytes("b.csv", b"\xef\xbb\xbf" + good),
            {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input(
            "crlf_lines",
            _bytes("c.csv", good.replace(b"\n", b"\r\n")),
            {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input(
            "gz_good",
            _bytes("g.csv.gz", gz),
            {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input("gz_truncated", _bytes("t.csv.gz", big_gz[: len(big_gz) // 2])),
        _Input("gz_not_gzip", _bytes("n.csv.gz", b"plain text, not gzip")),
        _Input("gz_empty", _bytes("e.csv.gz", b"")),
        _Input("gz_bomb_duplicates", _bytes("b.csv.gz", bomb)),
        _Input("bz2_garbage", _bytes("g.csv.bz2", b"BZh91AY&SY garbage")),
        _Input("bz2_truncated", _bytes("t.csv.bz2", bz2.compress(h + rows)[:100])),
        _Input("xz_garbage", _bytes("g.csv.xz", b"\xfd7zXZ\x00\x00 garbage")),
        _Input("xz_truncated", _bytes("t.csv.xz", lzma.compress(h + rows)[:100])),
        _Input("zst_garbage", _bytes("g.csv.zst", b"\x28\xb5\x2f\xfd garbage")),
        _Input("zip_garbage", _bytes("g.csv.zip", b"PK\x03\x04 garbage")),
        _Input("zip_empty", _bytes("e.csv.zip", _zip({}))),
        _Input("zip_two_files", _bytes("t.csv.zip", _zip({"a.csv": good, "b.csv": good}))),
        _Input("zip_encrypted", _bytes("x.csv.zip", _encrypted(_zip({"r.csv": good})))),
        _Input("zip_truncated", _bytes("t.csv.zip", _zip({"r.csv": h + rows})[:300])),
        _Input(
            "zip_good",
            _bytes("o.csv.zip", _zip({"r.csv": good})),
            {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input("unknown_suffix", _bytes("r.json", good)),
        _Input("directory_as_file", lambda folder: load(folder)),
        _Input("missing_file", lambda folder: load(folder / "nope.csv")),
    ]


def _parquet_inputs() -> list[_Input]:
    base = {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.0]}
    t = pa.table(base)
    out = []
    for i, meta in enumerate(
        [
            b"not json",
            b"[1, 2]",
            b'{"rating_scale": "ab"}',
            b'{"rating_scale": [5, 1]}',
            b'{"rating_scale": [1, 2, 3]}',
            b'{"name": 7}',
            b'{"rating_scale": [true, 5]}',
            b'{"rating_scale": [1, 1e999]}',
            b"\xff\xfe",
        ]
    ):
        out.append(
            _Input(f"parquet_meta_{i}", _parquet(t.replace_schema_metadata({b"recfit": meta})))
        )
    big = pa.array([2**63 + 5, 1], type=pa.uint64())
    out += [
        _Input("parquet_rating_1e39", _parquet(pa.table({**base, "rating": [4.0, 1e39]}))),
        _Input("parquet_rating_nan", _parquet(pa.table({**base, "rating": [4.0, float("nan")]}))),
        _Input(
            "parquet_rating_inf_f32",
            _parquet(pa.table({**base, "rating": pa.array([4.0, float("inf")], pa.float32())})),
        ),
        _Input("parquet_rating_string", _parquet(pa.table({**base, "rating": ["4", "x"]}))),
        _Input("parquet_rating_null", _parquet(pa.table({**base, "rating": [4.0, None]}))),
        _Input("parquet_rating_bool", _parquet(pa.table({**base, "rating": [True, False]}))),
        _Input(
            "parquet_ids_uint64",
            _parquet(pa.table({**base, "user": big})),
            {"user": [str(2**63 + 5), "1"], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input(
            "parquet_ids_null",
            _parquet(pa.table({**base, "user": pa.array([1, None], pa.int64())})),
        ),
        _Input(
            "parquet_ids_binary_bad",
            _parquet(pa.table({**base, "user": pa.array([b"a", b"\xff"])})),
        ),
        _Input(
            "parquet_ids_binary_ok",
            _parquet(pa.table({**base, "user": pa.array([b"a", b"b"])})),
            {"user": ["a", "b"], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input("parquet_ids_list", _parquet(pa.table({**base, "user": [[1], [2]]}))),
        _Input("parquet_ids_struct", _parquet(pa.table({**base, "user": [{"a": 1}, {"a": 2}]}))),
        _Input("parquet_ids_float_1e30", _parquet(pa.table({**base, "user": [1e30, 1.0]}))),
        _Input("parquet_ids_bool", _parquet(pa.table({**base, "user": [True, False]}))),
        _Input(
            "parquet_ids_dictionary",
            _parquet(pa.table({**base, "user": pa.array(["a", "b"]).dictionary_encode()})),
            {"user": ["a", "b"], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input(
            "parquet_ts_uint64_big",
            _parquet(pa.table({**base, "t": pa.array([1, 2**63 + 1], pa.uint64())}), timestamp="t"),
        ),
        _Input(
            "parquet_ts_float_1e30", _parquet(pa.table({**base, "t": [1.0, 1e30]}), timestamp="t")
        ),
        _Input(
            "parquet_ts_tz",
            _parquet(
                pa.table({**base, "t": pa.array([0, 10], pa.timestamp("s", tz="Europe/Paris"))}),
                timestamp="t",
            ),
            {**base, "timestamp": [0, 10]},
        ),
        _Input(
            "parquet_weight_negative", _parquet(pa.table({**base, "w": [1.0, -1.0]}), weight="w")
        ),
        _Input("parquet_weight_1e_50", _parquet(pa.table({**base, "w": [1.0, 1e-50]}), weight="w")),
        _Input(
            "parquet_duplicates",
            _parquet(pa.table({"user": [1, 1], "item": [1, 1], "rating": [4.0, 3.0]})),
        ),
        _Input(
            "parquet_empty_table",
            _parquet(
                pa.table(
                    {
                        "user": pa.array([], pa.int64()),
                        "item": pa.array([], pa.int64()),
                        "rating": pa.array([], pa.float64()),
                    }
                )
            ),
        ),
        _Input("parquet_missing_column", _parquet(pa.table({"user": [1], "item": [1]}))),
        _Input("parquet_not_parquet", _bytes("x.parquet", b"PAR1 not really PAR1")),
        _Input("parquet_truncated", lambda folder: _truncated_parquet(folder)),
    ]
    return out


def _truncated_parquet(folder: Path) -> Any:
    p = folder / "t.parquet"
    pq.write_table(
        pa.table({"user": list(range(1000)), "item": [1] * 1000, "rating": [4.0] * 1000}), p
    )
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2] + data[-8:])  # a footer pointing at garbage
    return read_parquet(p)


def _frame_inputs() -> list[_Input]:
    def df(**cols: Any) -> Callable[[], pd.DataFrame]:
        base: dict[str, Any] = {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.0]}
        base.update(cols)
        return lambda: pd.DataFrame(
            {
                k: pd.Series(v, dtype=object)
                if isinstance(v, list) and any(isinstance(x, str) for x in v)
                else v
                for k, v in base.items()
            }
        )

    return [
        _Input(
            "frame_int_column_names",
            lambda f: from_frame(
                pd.DataFrame({0: [1], 1: [2], 2: [3.0]}), user="0", item="1", rating="2"
            ),
            {"user": [1], "item": [2], "rating": [3.0]},
        ),
        _Input(
            "frame_duplicate_column_names",
            lambda f: from_frame(
                pd.DataFrame([[1, 2, 3.0]], columns=["user", "user", "rating"]),
                item="rating",
                rating=None,
            ),
        ),
        _Input(
            "frame_python_int_2_64",
            _frame(df(user=[2**64 + 1, 1])),
            {"user": [str(2**64 + 1), "1"], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
        _Input(
            "frame_mixed_1_and_str_1",
            _frame(
                lambda: pd.DataFrame(
                    {
                        "user": pd.Series([1, "1"], dtype=object),
                        "item": [1, 2],
                        "rating": [1.0, 2.0],
                    }
                )
            ),
        ),
        _Input("frame_bool_ids", _frame(df(user=[True, False]))),
        _Input("frame_nan_ids", _frame(df(user=[1.0, float("nan")]))),
        _Input(
            "frame_none_ids",
            _frame(
                lambda: pd.DataFrame(
                    {
                        "user": pd.Series([1, None], dtype=object),
                        "item": [1, 1],
                        "rating": [1.0, 2.0],
                    }
                )
            ),
        ),
        _Input(
            "frame_int64_na",
            _frame(
                lambda: pd.DataFrame(
                    {
                        "user": pd.array([2**62 + 1, None], dtype="Int64"),
                        "item": [1, 1],
                        "rating": [1.0, 2.0],
                    }
                )
            ),
        ),
        _Input(
            "frame_int64_ext_exact",
            _frame(
                lambda: pd.DataFrame(
                    {
                        "user": pd.array([2**62 + 1, 3], dtype="Int64"),
                        "item": [1, 1],
                        "rating": [1.0, 2.0],
                    }
                )
            ),
            {"user": [2**62 + 1, 3], "item": [1, 1], "rating": [1.0, 2.0]},
        ),
        _Input("frame_rating_1e39", _frame(df(rating=[4.0, 1e39]))),
        _Input("frame_rating_huge_int", _frame(df(rating=[4, 10**400]))),
        _Input(
            "frame_rating_object_bool",
            _frame(
                lambda: pd.DataFrame(
                    {"user": [1, 2], "item": [1, 1], "rating": pd.Series([2.0, True], dtype=object)}
                )
            ),
        ),
        _Input("frame_ts_1e30", _frame(df(t=[1.0, 1e30]), timestamp="t")),
        _Input(
            "frame_ts_python_2_64",
            _frame(
                lambda: pd.DataFrame(
                    {
                        "user": [1, 2],
                        "item": [1, 1],
                        "rating": [1.0, 2.0],
                        "t": pd.Series([1, 2**64], dtype=object),
                    }
                ),
                timestamp="t",
            ),
        ),
        _Input("frame_not_a_frame", lambda f: from_frame([[1, 2, 3]])),  # type: ignore[arg-type]
        _Input(
            "frame_float_ids_exact",
            _frame(df(user=[1.0, 2.0])),
            {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.0]},
        ),
    ]


# ---------------------------------------------------------------------- releases
_FLAGS = "|".join(["0"] * 18 + ["1"])
_U_ITEM = f"1|A (1995)|01-Jan-1995||http://x|{_FLAGS}\n2|B (1995)|01-Jan-1995||http://y|{_FLAGS}\n"
_U_USER = "1|24|M|technician|85711\n2|53|F|other|T8H1N\n"


def _ml100k(
    data: str, item: str = _U_ITEM, user: str = _U_USER, **kw: Any
) -> Callable[[Path], Any]:
    def go(folder: Path) -> Any:
        rel = folder / "ml-100k"
        rel.mkdir(parents=True, exist_ok=True)
        (rel / "u.data").write_bytes(data.encode("latin-1"))
        (rel / "u.item").write_bytes(item.encode("latin-1"))
        (rel / "u.user").write_text(user)
        return movielens("ml-100k", folder, download=False, **kw)

    return go


def _ml1m(
    ratings: str, users: str = "1::F::1::10::48067\n2::M::56::0::70072\n"
) -> Callable[[Path], Any]:
    def go(folder: Path) -> Any:
        rel = folder / "ml-1m"
        rel.mkdir(parents=True, exist_ok=True)
        (rel / "ratings.dat").write_text(ratings)
        (rel / "movies.dat").write_bytes(
            "1::Café (1995)::Drama\n2::B (1995)::Comedy\n".encode("latin-1")
        )
        (rel / "users.dat").write_text(users)
        return movielens("ml-1m", folder, download=False)

    return go


def _mlcsv(
    ratings: str, movies: str = "movieId,title,genres\n1,A (1995),Drama\n2,B (1995),Comedy\n"
) -> Callable[[Path], Any]:
    def go(folder: Path) -> Any:
        rel = folder / "ml-latest-small"
        rel.mkdir(parents=True, exist_ok=True)
        (rel / "ratings.csv").write_text(ratings)
        (rel / "movies.csv").write_text(movies)
        return movielens("ml-latest-small", folder, download=False)

    return go


def _release_inputs() -> list[_Input]:
    ok = "1\t1\t5\t10\n2\t2\t3\t11\n"
    want = {"user": [1, 2], "item": [1, 2], "rating": [5.0, 3.0], "timestamp": [10, 11]}
    hdr = "userId,movieId,rating,timestamp\n"
    out = [
        _Input("ml100k_good", _ml100k(ok), want),
        _Input("ml100k_crlf", _ml100k(ok.replace("\n", "\r\n")), want),  # Windows lines
        _Input("ml100k_three_fields", _ml100k("1\t1\t5\t10\n2\t2\t3\n")),
        _Input("ml100k_five_fields", _ml100k("1\t1\t5\t10\n2\t2\t3\t11\t9\n")),
        _Input("ml100k_text_user", _ml100k("1\t1\t5\t10\nx\t2\t3\t11\n")),
        _Input("ml100k_megabyte_id", _ml100k("1\t1\t5\t10\n" + "9" * 1_000_000 + "\t2\t3\t11\n")),
        _Input("ml100k_int32_overflow_id", _ml100k("1\t1\t5\t10\n2147483648\t2\t3\t11\n")),
        _Input("ml100k_rating_6", _ml100k("1\t1\t5\t10\n2\t2\t6\t11\n")),
        _Input("ml100k_rating_0", _ml100k("1\t1\t5\t10\n2\t2\t0\t11\n")),
        _Input("ml100k_rating_nan", _ml100k("1\t1\t5\t10\n2\t2\tnan\t11\n")),
        _Input("ml100k_rating_1e39", _ml100k("1\t1\t5\t10\n2\t2\t1e39\t11\n")),
        _Input("ml100k_ts_1e30", _ml100k("1\t1\t5\t10\n2\t2\t3\t1e30\n")),
        _Input("ml100k_ts_int64_overflow", _ml100k("1\t1\t5\t10\n2\t2\t3\t9223372036854775808\n")),
        _Input("ml100k_duplicate_pair", _ml100k("1\t1\t5\t10\n2\t2\t3\t11\n1\t1\t4\t12\n")),
        _Input(
            "ml100k_duplicate_last",
            _ml100k("1\t1\t5\t10\n2\t2\t3\t11\n1\t1\t4\t12\n", duplicates="last"),
            {"user": [2, 1], "item": [2, 1], "rating": [3.0, 4.0], "timestamp": [11, 12]},
        ),
        _Input("ml100k_empty_line", _ml100k("1\t1\t5\t10\n\n2\t2\t3\t11\n")),
        _Input("ml100k_empty_file", _ml100k("")),
        _Input("ml100k_spaces_not_tabs", _ml100k("1 1 5 10\n")),
        _Input("ml100k_item_bad_flag", _ml100k(ok, item=_U_ITEM.replace("|0|", "|2|", 1))),
        _Input(
            "ml100k_item_bad_date",
            _ml100k(ok, item=_U_ITEM.replace("01-Jan-1995", "32-Foo-1995", 1)),
        ),
        _Input("ml100k_item_huge_id", _ml100k(ok, item="7" * 100_000 + _U_ITEM[1:])),
        _Input(
            "ml100k_item_duplicate_id", _ml100k(ok, item=_U_ITEM + _U_ITEM.splitlines()[0] + "\n")
        ),
        _Input("ml100k_item_few_fields", _ml100k(ok, item="1|A (1995)\n")),
        _Input("ml100k_user_duplicate", _ml100k(ok, user=_U_USER + "1|30|F|other|1\n")),
        _Input("ml100k_user_text_age", _ml100k(ok, user="1|old|M|x|1\n2|5|F|y|2\n")),
        _Input("ml100k_missing_u_item", lambda folder: _missing_file(folder)),
        _Input(
            "ml1m_good",
            _ml1m("1::1::5::978300760\n2::2::3::978302109\n"),
            {
                "user": [1, 2],
                "item": [1, 2],
                "rating": [5.0, 3.0],
                "timestamp": [978300760, 978302109],
            },
        ),
        _Input(  # tabs parse like '::' (the values are the file's): accepted as they are
            "ml1m_tab_separated",
            _ml1m("1\t1\t5\t978300760\n"),
            {"user": [1], "item": [1], "rating": [5.0], "timestamp": [978300760]},
        ),
        _Input("ml1m_three_fields", _ml1m("1::1::5\n")),
        _Input("ml1m_duplicate_pair", _ml1m("1::1::5::1\n1::1::4::2\n")),
        _Input(  # inside ml-1m's 1-5 scale, though the release has whole stars only
            "ml1m_rating_half",
            _ml1m("1::1::4.5::1\n"),
            {"user": [1], "item": [1], "rating": [4.5], "timestamp": [1]},
        ),
        _Input("ml1m_bad_age_code", _ml1m("1::1::5::1\n", users="1::F::2::10::48067\n")),
        _Input("ml1m_bad_occupation", _ml1m("1::1::5::1\n", users="1::F::1::99::48067\n")),
        _Input(
            "mlcsv_good",
            _mlcsv(hdr + "1,1,4.5,5\n2,2,0.5,6\n"),
            {"user": [1, 2], "item": [1, 2], "rating": [4.5, 0.5], "timestamp": [5, 6]},
        ),
        _Input("mlcsv_wrong_header", _mlcsv("user,item,rating,timestamp\n1,1,4,5\n")),
        _Input("mlcsv_duplicates", _mlcsv(hdr + "1,1,4,5\n1,1,4,6\n")),
        _Input("mlcsv_rating_5_5", _mlcsv(hdr + "1,1,5.5,5\n")),
        _Input("mlcsv_quoted_rating", _mlcsv(hdr + '1,1,"4",5\n')),
        _Input(
            "mlcsv_movies_bad_quote",
            _mlcsv(hdr + "1,1,4,5\n", movies='movieId,title,genres\n1,"A (1995),Drama\n'),
        ),
        _Input(
            "mlcsv_movies_bad_id",
            _mlcsv(hdr + "1,1,4,5\n", movies="movieId,title,genres\nx,A (1995),Drama\n"),
        ),
        _Input("folder_without_release", lambda folder: movielens_folder(folder)),
        _Input("load_dataset_two_releases", lambda folder: _two_releases(folder)),
    ]
    return out


def _missing_file(folder: Path) -> Any:
    rel = folder / "ml-100k"
    rel.mkdir(parents=True, exist_ok=True)
    (rel / "u.data").write_text("1\t1\t5\t10\n")
    (rel / "u.user").write_text(_U_USER)
    return movielens("ml-100k", folder, download=False)


def _two_releases(folder: Path) -> Any:
    _ml100k("1\t1\t5\t10\n")(folder)
    _mlcsv("userId,movieId,rating,timestamp\n1,1,4,5\n")(folder)
    return load_dataset(folder)


# ---------------------------------------------------------------------- archives via fetch
@contextlib.contextmanager
def _server(routes: dict[str, bytes]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/m"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _archive_inputs(routes: dict[str, bytes], url: Callable[[], str]) -> list[_Input]:
    ratings = b"userId,movieId,rating,timestamp\n1,1,4.0,5\n2,1,3.5,6\n"
    movies = b"movieId,title,genres\n1,A (1995),Drama\n"
    rel = {"ml-latest-small/ratings.csv": ratings, "ml-latest-small/movies.csv": movies}

    def link_zip() -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in rel.items():
                zf.writestr(k, v)
            info = zipfile.ZipInfo("ml-latest-small/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        return buf.getvalue()

    archives: dict[str, tuple[bytes, dict[str, Any]]] = {
        "fetch_zip_bomb_capped": (
            _zip({**rel, "ml-latest-small/pad.bin": b"\0" * (4 << 20)}),
            {"max_expanded": 1 << 20},
        ),
        "fetch_zip_bomb_default_cap": (
            _zip({**rel, "ml-latest-small/pad.bin": b"\0" * (80 << 20)}),
            {},
        ),
        "fetch_encrypted": (_encrypted(_zip(rel)), {}),
        "fetch_dotdot": (_zip({**rel, "ml-latest-small/../../evil.txt": b"x"}), {}),
        "fetch_absolute": (_zip({**rel, "/tmp/evil.txt": b"x"}), {}),
        "fetch_symlink": (link_zip(), {}),
        "fetch_not_zip": (b"not a zip at all", {}),
        "fetch_truncated_zip": (_zip(rel)[:60], {}),
        "fetch_wrong_top_folder": (_zip({"other/ratings.csv": ratings}), {}),
        "fetch_bad_checksum": (_zip(rel), {"checksum": "md5:" + "0" * 32}),
    }
    out = []
    for name, (data, kw) in archives.items():

        def go(folder: Path, data: bytes = data, kw: dict[str, Any] = kw) -> Any:
            routes["/m/ml-latest-small.zip"] = data
            args = {"checksum": "md5:" + hashlib.md5(data).hexdigest(), **kw}
            target = fetch("ml-latest-small", folder / "cache", url=url(), progress=False, **args)
            return (
                movielens("ml-latest-small", folder / "cache", download=False) if target else None
            )

        out.append(_Input(name, go))
    good = _zip(rel)

    def fetch_good(folder: Path) -> Any:
        routes["/m/ml-latest-small.zip"] = good
        fetch(
            "ml-latest-small",
            folder / "cache",
            url=url(),
            progress=False,
            checksum="md5:" + hashlib.md5(good).hexdigest(),
        )
        return movielens("ml-latest-small", folder / "cache", download=False)

    out.append(
        _Input(
            "fetch_good",
            fetch_good,
            {"user": [1, 2], "item": [1, 1], "rating": [4.0, 3.5], "timestamp": [5, 6]},
        )
    )
    return out


def inputs(routes: dict[str, bytes], url: Callable[[], str]) -> list[_Input]:
    """Every input of the corpus, in a fixed order."""
    return (
        _csv_inputs()
        + _encoding_and_byte_inputs()
        + _parquet_inputs()
        + _frame_inputs()
        + _release_inputs()
        + _archive_inputs(routes, url)
    )


def run(work: Path, data_dir: Path | None) -> list[Case]:
    """Build and load every input under ``work``; one :class:`Case` per input."""
    routes: dict[str, bytes] = {}
    base: list[str] = []
    cases: list[Case] = []
    with _server(routes) as url:
        base.append(url)
        for inp in inputs(routes, lambda: base[0]):
            cases.append(_classify(inp, work))
    if data_dir is not None and (data_dir / "ml-100k").is_dir():
        # the real release through the folder loader: the published counts
        real = _Input(
            "ml100k_real_folder",
            lambda folder: movielens_folder(data_dir / "ml-100k"),
            {"shape": [100_000, 943, 1682]},
        )
        cases.append(_classify(real, work))
    return cases


def main() -> None:
    env = os.environ.get("RECFIT_DATA_DIR")
    with tempfile.TemporaryDirectory(prefix="recfit-files-") as tmp:
        cases = run(Path(tmp), Path(env) if env else None)
    counts = Counter(c.outcome for c in cases)
    for c in cases:
        if c.outcome in ("untyped_error", "wrong_answer"):
            print(f"{c.outcome:14s} {c.name:34s} {c.detail[:160]}")
    print(f"{len(cases)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(json.dumps(dict(counts)))


if __name__ == "__main__":
    main()
