from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recfit.data import Vocabulary
from recfit.errors import ConfigError, DataError, UnknownIdError

int_ids = st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=50, unique=True)
str_ids = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=50, unique=True)


@given(st.one_of(int_ids, str_ids))
def test_index_and_id_are_inverse(ids: list) -> None:
    v = Vocabulary(ids, name="user")
    idx = v.index(ids)
    assert idx.dtype == np.int32
    assert sorted(idx.tolist()) == list(range(len(ids)))
    assert v.id(idx).tolist() == list(ids)


@given(st.one_of(int_ids, str_ids))
def test_json_round_trip(ids: list) -> None:
    v = Vocabulary(ids, name="item", unknown="sentinel", sentinel=-7)
    w = Vocabulary.from_json(v.to_json())
    assert w == v
    assert w.unknown == "sentinel" and w.sentinel == -7 and w.name == "item"
    assert w.kind == v.kind
    assert w.index(ids).tolist() == v.index(ids).tolist()


@given(st.lists(st.integers(0, 20), min_size=1, max_size=200))
def test_encode_matches_sorted_unique(values: list[int]) -> None:
    v, idx = Vocabulary.encode(values)
    assert v.ids.tolist() == sorted(set(values))
    assert v.id(idx).tolist() == values


def test_large_non_contiguous_integer_ids() -> None:
    ids = np.array([2**40, 7, 2**62, -3], dtype=np.int64)
    v, idx = Vocabulary.encode(ids)
    assert v.ids.tolist() == [-3, 7, 2**40, 2**62]
    assert idx.tolist() == [2, 1, 3, 0]


def test_unknown_policy_error_names_the_ids() -> None:
    v = Vocabulary([1, 2, 3], name="user")
    with pytest.raises(UnknownIdError, match=r"unknown.*\[9\]"):
        v.index([1, 9])
    assert isinstance(UnknownIdError("x"), KeyError)


def test_unknown_policy_sentinel() -> None:
    v = Vocabulary(["a", "b"], unknown="sentinel")
    assert v.index(["b", "zz"]).tolist() == [1, -1]
    assert v.index(["zz"], unknown="sentinel").tolist() == [-1]
    with pytest.raises(UnknownIdError):
        v.index(["zz"], unknown="error")


def test_string_queries_against_int_vocab_and_back() -> None:
    v = Vocabulary([196, 242])
    assert v.index(["242", 196]).tolist() == [1, 0]
    assert "196" in v and 196 in v and "x" not in v
    s = Vocabulary(["196", "a"])
    assert s.index([196]).tolist() == [0]


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="duplicates"):
        Vocabulary([1, 1, 2])
    with pytest.raises(ConfigError):
        Vocabulary([1], unknown="ignore")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="NaN"):
        Vocabulary.encode(np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="fractional"):
        Vocabulary.encode(np.array([1.5]))
    with pytest.raises(ConfigError, match="indices"):
        Vocabulary([1, 2]).id([2])
    with pytest.raises(DataError, match="JSON"):
        Vocabulary.from_json("{not json")
    with pytest.raises(DataError, match="kind"):
        Vocabulary.from_dict({"kind": "float", "ids": [1.0]})


def test_numbers_outside_int64_never_match_an_integer_vocabulary() -> None:
    """A query like '1E100' (found by hypothesis through GET /items) is no id, not a crash."""
    v = Vocabulary(np.array([1, 2, 3]), unknown="sentinel")
    assert v.index(["1E100", 1e100, "-1e30", "2"]).tolist() == [-1, -1, -1, 1]


def test_ids_above_2_to_53_match_exactly_never_through_a_float() -> None:
    """9007199254740993 is not 9007199254740992, given as an int or as its decimal string."""
    v = Vocabulary([9007199254740992, 9007199254740993, 50])
    assert v.index(["9007199254740993"]).tolist() == [2]
    assert v.index([9007199254740993, "9007199254740992"]).tolist() == [2, 1]
    # a mixed list (an int among strings) is an object array: still exact
    assert v.index(["x", 9007199254740993], unknown="sentinel").tolist() == [-1, 2]


@pytest.mark.parametrize(
    "query",
    [
        "050",
        " 50 ",
        "5e1",
        "+50",
        "50.0",
        "0x32",
        "5_0",
        "٥٠",
        50.0,
        True,
        np.float64(50),
        None,
        b"50",
    ],
)
def test_only_the_canonical_forms_of_an_integer_id_match(query: object) -> None:
    v = Vocabulary([1, 50])
    assert v.index([query], unknown="sentinel").tolist() == [-1]
    assert query not in v
    assert v.index([50, "50", np.int16(50)]).tolist() == [1, 1, 1]


def test_booleans_never_match() -> None:
    assert Vocabulary([0, 1]).index([True, False], unknown="sentinel").tolist() == [-1, -1]
    assert Vocabulary(["True", "1"]).index([True], unknown="sentinel").tolist() == [-1]
    assert Vocabulary([0, 1]).index(np.array([True]), unknown="sentinel").tolist() == [-1]


def test_integers_outside_int64_never_match_and_never_raise() -> None:
    v = Vocabulary([1, 2**63 - 1])
    got = v.index([2**63, -(2**63) - 1, 2**200, str(2**63), 2**63 - 1], unknown="sentinel")
    assert got.tolist() == [-1, -1, -1, -1, 1]
    assert v.index(np.array([2**63, 1], dtype=np.uint64), unknown="sentinel").tolist() == [-1, 0]
    with pytest.raises(UnknownIdError):
        v.index([2**64])
    # against strings, a big integer is its decimal string
    assert Vocabulary([str(2**70)]).index([2**70]).tolist() == [0]


def test_lone_surrogates_are_ordinary_unknown_strings() -> None:
    v = Vocabulary(["a", "b"])
    assert v.index(["\ud800", "a"], unknown="sentinel").tolist() == [-1, 0]
    with pytest.raises(UnknownIdError):
        v.index(["\ud800"])
    w = Vocabulary(["\ud800", "x"])
    assert w.id(w.index(["\ud800"])).tolist() == ["\ud800"]


@given(st.integers(-(2**70), 2**70), st.integers(-(2**70), 2**70))
def test_exact_integer_lookup_property(a: int, b: int) -> None:
    inside = [x for x in {a, b} if -(2**63) <= x < 2**63]
    if not inside:
        return
    v = Vocabulary(inside)
    for q in (a, b, str(a), str(b)):
        want = int(q) in inside
        assert (v.index([q], unknown="sentinel")[0] >= 0) == want
        if want:
            assert v.id(v.index([q])).tolist() == [int(q)]
    for q in (float(a), f"{a:e}", f"0{abs(a)}", f" {a}"):
        assert v.index([q], unknown="sentinel").tolist() == [-1]
