"""Odd id inputs: each builds a consistent vocabulary and Interactions, or raises a typed
error that names the id column; never a RecursionError, TypeError or other traceback."""

from __future__ import annotations

import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recfit.data import Interactions, Vocabulary
from recfit.errors import DataError, RecfitError, UnknownIdError

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


def test_from_arrays_with_empty_id_lists_is_an_empty_interactions() -> None:
    """The reported crash: RecursionError from the id normalisation on ``[]``."""
    d = Interactions.from_arrays([], [], [])
    assert len(d) == 0 and d.n_users == 0 and d.n_items == 0
    assert d.user.dtype == np.int32 and d.item.dtype == np.int32
    assert d.rating.dtype == np.float32
    assert d.prediction_scale() is None
    assert d.summary()["ratings"] == 0
    assert len(d.take(np.zeros(0, dtype=np.int64))) == 0
    assert d.to_frame().shape == (0, 3)


@pytest.mark.parametrize("dtype", [object, str, np.int64, np.int32, np.uint64, float])
def test_empty_arrays_of_every_dtype_make_empty_vocabularies(dtype: Any) -> None:
    ids = np.array([], dtype=dtype)
    v, codes = Vocabulary.encode(ids, name="user")
    assert len(v) == 0 and codes.dtype == np.int32 and len(codes) == 0
    assert len(Vocabulary(ids)) == 0
    assert Vocabulary.from_json(v.to_json()) == v
    assert v.index([], unknown="error").tolist() == []
    d = Interactions.from_arrays(ids, ids, np.array([], dtype=np.float32))
    assert (len(d), d.n_users, d.n_items) == (0, 0, 0)


def test_empty_string_vocabulary_survives_a_json_round_trip() -> None:
    v = Vocabulary([], name="item")
    assert v.kind == "str"
    w = Vocabulary.from_dict({"name": "item", "kind": "str", "ids": []})
    assert w == v and w.kind == "str" and len(w) == 0


def test_no_rows_against_given_vocabularies() -> None:
    d = Interactions.from_arrays(["a", "b"], [1, 2], [1.0, 2.0])
    e = Interactions.from_arrays([], [], [], users=d.users, items=d.items)
    assert len(e) == 0 and e.users is d.users and e.items is d.items


@pytest.mark.parametrize(
    ("ids", "received"),
    [
        (["a", pd.NA], "missing values"),
        ([pd.NaT, "a"], "missing values"),
        ([np.float32("nan"), 1], "missing values"),
        ([None, None], "missing values"),
        ([(1,), (2,)], "nested values"),
        ([[1, 2], [3]], "nested values"),
        ([{"a": 1}], "nested values"),
        (np.array([b"\xff", b"a"]), "bytes"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "dates"),
        (np.array([1j]), "complex numbers"),
        (np.array([[1, 2], [3, 4]]), "1-d sequence"),
    ],
)
def test_odd_ids_are_refused_naming_the_column(ids: Any, received: str) -> None:
    n = len(ids)
    with pytest.raises(DataError, match=f"item ids.*{received}|{received}.*item ids"):
        Interactions.from_arrays(np.arange(n), ids, np.ones(n))
    with pytest.raises(DataError, match=f"user ids.*{received}|{received}.*user ids"):
        Vocabulary(ids, name="user")


@pytest.mark.parametrize("ids", [[[1, 2], [3]], ["", b"\x80"], [[]], np.zeros((2, 1), int)])
def test_odd_ids_against_a_given_vocabulary_are_typed_errors(ids: Any) -> None:
    """Found by the fuzz: NumPy's conversion raised ValueError (ragged nesting) or
    UnicodeDecodeError (bytes beside text) before the vocabulary saw the ids."""
    users = Vocabulary([0, 1, 5], name="user")
    n = len(ids)
    with pytest.raises(RecfitError, match="user ids"):
        Interactions.from_arrays(ids, np.arange(n), np.ones(n), users=users)


_TYPED_AND_OBJECTS = [
    # (a typed array, the same kind as Python or NumPy scalars in an object array, received)
    (np.array([1j, 2j]), [1j, 2j], "complex numbers"),
    (np.array([1j], dtype=np.complex64), [np.complex64(1j)], "complex numbers"),
    (
        np.array(["2020-01-01T10:00"], dtype="datetime64[s]"),
        [datetime.datetime(2020, 1, 1, 10)],
        "dates",
    ),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), [pd.Timestamp("2020-01-01")], "dates"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), [np.datetime64("2020-01-01")], "dates"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), [datetime.date(2020, 1, 1), "a"], "dates"),
    (np.array([1], dtype="timedelta64[s]"), [datetime.timedelta(seconds=1)], "time spans"),
    (np.array([1], dtype="timedelta64[s]"), [np.timedelta64(1, "s"), 7], "time spans"),
    (np.array([b"a"]), [bytearray(b"a"), "b"], "bytes"),
    (np.array([1.5]), [Decimal("1.5")], "fractional"),
    (np.array([np.inf]), [Decimal("Infinity"), 2], "infinite"),
    (np.array([np.nan]), [Decimal("NaN")], "missing values|NaN"),
    (np.array([np.nan]), [Decimal("sNaN"), "a"], "missing values|NaN"),
    (np.array([0.5]), [Fraction(1, 2)], "fractional"),
]


@pytest.mark.parametrize(("typed", "objects", "received"), _TYPED_AND_OBJECTS)
def test_a_kind_is_refused_alike_as_a_typed_array_or_as_objects(
    typed: np.ndarray, objects: list[Any], received: str
) -> None:
    """The same kinds are refused whether NumPy typed them or they are Python (or NumPy)
    scalars in an object array, and the error names the column (message and attribute)."""
    for ids in (typed, objects, np.array(objects, dtype=object)):
        n = len(ids)
        with pytest.raises(DataError, match=f"item ids.*({received})") as exc:
            Interactions.from_arrays(np.arange(n), ids, np.ones(n))
        assert exc.value.column == "item"
        with pytest.raises(DataError, match=f"user ids.*({received})") as exc:
            Vocabulary.encode(ids, name="user")
        assert exc.value.column == "user"


def test_integral_decimals_and_fractions_are_integer_ids_like_integral_floats() -> None:
    d = Interactions.from_arrays([Decimal("2"), Fraction(6, 2), 2.0, 5], [0, 0, 0, 0], [1] * 4)
    assert d.users.kind == "int" and d.users.ids.tolist() == [2, 3, 5]
    assert d.user.tolist() == [0, 1, 0, 2]


@pytest.mark.parametrize("ids", [[b"a", "b"], [b"a"], np.array([b"a"]), [bytearray(b"a"), "b"]])
def test_bytes_never_match_text_in_a_given_vocabulary(ids: Any) -> None:
    """NumPy's conversion turned ``[b"a", "b"]`` into the text ``["a", "b"]``, so ``b"a"``
    matched ``"a"``; ``[b"a"]`` alone was unknown. Bytes are now unknown either way."""
    items = Vocabulary(["a", "b"], name="item")
    n = len(ids)
    with pytest.raises(UnknownIdError, match="item ids"):
        Interactions.from_arrays(np.arange(n), ids, np.ones(n), items=items)
    d = Interactions.from_arrays([0, 1], ["a", "b"], [1.0, 2.0], items=items)
    assert d.item.tolist() == [0, 1]


def test_a_zero_dimensional_array_is_one_id() -> None:
    assert Vocabulary(np.array(7)).ids.tolist() == [7]
    assert Vocabulary.encode(np.array("a"))[0].ids.tolist() == ["a"]


# ----------------------------------------------------------------------------- fuzz
_scalars = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6).map(round).map(float),
    st.text(max_size=4),
    st.sampled_from(["1", "01", "nan", "None", ""]),
    st.none(),
    st.booleans(),
    st.binary(max_size=3),
    st.sampled_from([pd.NA, pd.NaT, np.nan, np.float32("nan"), np.int8(3), np.uint64(2**64 - 1)]),
    st.just(np.datetime64("NaT")),
    # kinds an object array may hold that typed arrays refuse, or numbers beyond float
    st.complex_numbers(max_magnitude=1e6),
    st.complex_numbers(max_magnitude=1e6).map(np.complex64),
    st.datetimes(),
    st.datetimes().map(pd.Timestamp),
    st.datetimes().map(np.datetime64),
    st.dates(),
    st.timedeltas(),
    st.decimals(allow_nan=True, allow_infinity=True, places=1),
    st.decimals(-(10**20), 10**20, places=0),
    st.fractions(max_denominator=4),
    st.binary(max_size=2).map(bytearray),
    st.sampled_from([b"a", b"1", b""]),  # the bytes of a given vocabulary's text ids
)
_nested = st.one_of(
    st.lists(st.integers(0, 3), max_size=2),
    st.lists(st.integers(0, 3), max_size=2).map(tuple),
    st.dictionaries(st.text(max_size=1), st.integers(0, 3), max_size=1),
    st.frozensets(st.integers(0, 3), max_size=2),
)
_lists = st.lists(st.one_of(_scalars, _nested), max_size=8)
_one_type = st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
    st.lists(st.text(max_size=4), max_size=8),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8),
    st.lists(st.floats(-1e3, 1e3).map(round).map(float), max_size=8),
)


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray:
    """NumPy arrays of each dtype (empty included), and arrays of the wrong shape."""
    vals = draw(_one_type)
    dtype = draw(st.sampled_from([object, str, np.int64, np.uint64, np.int8, float, np.float32]))
    try:
        arr = np.array(vals, dtype=dtype)
    except (OverflowError, ValueError, TypeError):
        arr = np.array(vals, dtype=object)
    shape = draw(st.sampled_from(["1-d", "0-d", "2-d"]))
    if shape == "0-d" and arr.size:
        return arr[:1].reshape(())
    if shape == "2-d":
        return arr.reshape(1, -1)
    return arr


_odd_ids = st.one_of(_lists, _one_type, _arrays(), _scalars)


def _n_rows(ids: Any) -> int:
    if isinstance(ids, np.ndarray):
        return 1 if ids.ndim == 0 else len(ids)
    if isinstance(ids, str | bytes | bytearray) or not hasattr(ids, "__len__"):
        return 1
    return len(ids)


def _as_list(ids: Any) -> list[Any]:
    if isinstance(ids, np.ndarray):
        return list(ids.reshape(-1))
    return [ids] if _n_rows(ids) == 1 and not isinstance(ids, list) else list(ids)


def _check_consistent(d: Interactions, raw: list[Any], vocab: Vocabulary, codes: Any) -> None:
    """Indices are int32 in range, the vocabulary is sorted and distinct, and equal raw
    ids (the same number or the same string) share an index, different ones do not."""
    codes = np.asarray(codes)
    assert codes.dtype == np.int32 and len(codes) == len(raw) == len(d)
    assert len(vocab) == len(np.unique(codes))  # every id of the vocabulary is used
    if len(codes):
        assert codes.min() >= 0 and codes.max() < len(vocab)
    ids = vocab.ids
    assert ids.dtype == np.int64 or all(isinstance(x, str) for x in ids.tolist())
    assert len(set(ids.tolist())) == len(ids)
    assert ids.tolist() == sorted(ids.tolist())
    assert vocab.index(ids).tolist() == list(range(len(ids)))
    for a in range(len(raw)):
        for b in range(a + 1, len(raw)):
            same = type(raw[a]) is type(raw[b]) and bool(raw[a] == raw[b])
            if same:
                assert codes[a] == codes[b], (raw[a], raw[b])
            if codes[a] == codes[b]:
                assert bool(raw[a] == raw[b]) or str(raw[a]) == str(raw[b]), (raw[a], raw[b])


@FUZZ
@given(ids=_odd_ids, side=st.sampled_from(["user", "item"]))
def test_from_arrays_builds_or_names_the_column(ids: Any, side: str) -> None:
    n = _n_rows(ids)
    plain = np.arange(n)
    user_ids, item_ids = (ids, plain) if side == "user" else (plain, ids)
    try:
        d = Interactions.from_arrays(user_ids, item_ids, np.ones(n))
    except RecfitError as exc:
        assert f"{side} ids" in str(exc), str(exc)
        assert not isinstance(exc, DataError) or exc.column in (side, None), exc.column
        return
    vocab, codes = (d.users, d.user) if side == "user" else (d.items, d.item)
    raw = _as_list(ids)
    refused = [v for v in raw if isinstance(v, _NEVER_IDS) or _fractional(v)]
    assert not refused, f"{refused} became the ids {vocab.ids.tolist()}"
    _check_consistent(d, raw, vocab, codes)


# scalar kinds that are never ids, however they come (a typed array refuses them too)
_NEVER_IDS = (
    bytes, bytearray, bool, np.bool_, complex, np.complexfloating, datetime.date,
    datetime.time, datetime.timedelta, np.datetime64, np.timedelta64,
)  # fmt: skip


def _fractional(v: Any) -> bool:
    """A number alone in its column that is no integer: never an id (beside text, a
    float or a decimal is its text, as a float column's text would be)."""
    if isinstance(v, Decimal):
        return not v.is_finite() or v != v.to_integral_value()
    return isinstance(v, Fraction) and v.denominator != 1


@FUZZ
@given(ids=_odd_ids, known=st.sampled_from([[0, 1, 5], ["a", "1", ""]]))
def test_from_arrays_with_given_vocabularies_builds_or_names_the_column(
    ids: Any, known: list[Any]
) -> None:
    n = _n_rows(ids)
    users = Vocabulary(known, name="user")
    items = Vocabulary(np.arange(n), name="item")
    try:
        d = Interactions.from_arrays(ids, np.arange(n), np.ones(n), users=users, items=items)
    except RecfitError as exc:
        assert "user" in str(exc), str(exc)
        return
    assert len(d) == n and d.users is users
    bytes_in = [v for v in _as_list(ids) if isinstance(v, bytes | bytearray)]
    assert not bytes_in, f"bytes {bytes_in} matched the ids {users.ids.tolist()}"
    assert d.user.dtype == np.int32 and ((d.user >= 0) & (d.user < len(users))).all()


def test_a_time_span_is_no_integer_id_in_a_lookup() -> None:
    """NumPy makes ``timedelta64`` an integer subclass: it matched the integer id 1."""
    v = Vocabulary([1, 2], name="item")
    assert v.index([np.timedelta64(1, "s"), 2], unknown="sentinel").tolist() == [-1, 1]
    assert Vocabulary(["1"]).index([np.timedelta64(1, "s")], unknown="sentinel").tolist() == [-1]
