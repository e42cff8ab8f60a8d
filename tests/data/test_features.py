from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recfit.data.features import (
    Crossed,
    FeatureSpace,
    FloatDiscretized,
    FloatRescaled,
    IntCategorical,
    MultiCategorical,
    StringCategorical,
    Text,
    movielens_item_space,
    movielens_user_space,
    space_for_table,
)
from recfit.errors import ConfigError, DataError


def fit(spec: Any, values: list[Any], name: str = "f") -> FeatureSpace:
    return FeatureSpace({name: spec}).adapt(pd.DataFrame({name: pd.Series(values, dtype=object)}))


def run(space: FeatureSpace, values: list[Any], name: str = "f") -> dict[str, np.ndarray]:
    return space.transform(pd.DataFrame({name: pd.Series(values, dtype=object)}))


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ----------------------------------------------------------------------------- kinds


class TestFloatDiscretized:
    def test_quantile_bins_and_missing(self) -> None:
        space = fit(FloatDiscretized(num_bins=4), [1, 2, 3, 4, 5, 6, 7, 8])
        np.testing.assert_allclose(space.to_dict()["state"]["f"]["edges"], [2.75, 4.5, 6.25])
        out = run(space, [1, 2, 3, 4, 5, 6, 7, 8, None, -100.0, 100.0])["f"]
        assert out.dtype == np.int64
        assert out.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 0, 1, 4]
        assert space.cardinalities() == {"f": 5}

    def test_value_on_an_edge_goes_up(self) -> None:
        space = fit(FloatDiscretized(num_bins=2), [0.0, 10.0])
        assert run(space, [4.999, 5.0, 5.001])["f"].tolist() == [1, 2, 2]

    def test_repeated_quantiles_merge(self) -> None:
        space = fit(FloatDiscretized(num_bins=5), [3.0] * 10)
        assert space.to_dict()["state"]["f"]["edges"] == [3.0]
        assert space.cardinalities() == {"f": 3}
        assert run(space, [3.0, 100.0, None, 1.0])["f"].tolist() == [2, 2, 0, 1]
        assert fit(FloatDiscretized(num_bins=1), [1.0, 2.0]).cardinalities() == {"f": 2}

    def test_nullable_int_column(self) -> None:
        df = pd.DataFrame({"year": pd.array([1990, None, 2000, 1995], dtype="Int64")})
        space = FeatureSpace({"year": FloatDiscretized(num_bins=2)}).adapt(df)
        assert space.transform(df)["year"].tolist() == [1, 0, 2, 2]

    def test_non_numeric_is_a_data_error(self) -> None:
        with pytest.raises(DataError) as err:
            fit(FloatDiscretized(), ["a", "b"])
        assert err.value.column == "f"

    def test_bad_num_bins(self) -> None:
        for bad in (0, -1, 2.5, True, None):
            with pytest.raises(ConfigError, match="num_bins"):
                FloatDiscretized(num_bins=bad)  # type: ignore[arg-type]


class TestFloatRescaled:
    def test_learned_standardisation(self) -> None:
        space = fit(FloatRescaled(), [1.0, 3.0])
        out = run(space, [1.0, 2.0, 3.0, None, 5.0])["f"]
        assert out.dtype == np.float32
        assert out.tolist() == [-1.0, 0.0, 1.0, 0.0, 3.0]

    def test_given_scale_and_offset(self) -> None:
        space = fit(FloatRescaled(scale=0.5, offset=1.0), [100.0, 200.0])
        assert run(space, [0.0, 4.0])["f"].tolist() == [1.0, 3.0]

    def test_given_scale_learns_centring_offset(self) -> None:
        space = fit(FloatRescaled(scale=2.0), [1.0, 3.0])
        assert run(space, [2.0, 3.0])["f"].tolist() == [0.0, 2.0]

    def test_constant_column_keeps_scale_one(self) -> None:
        space = fit(FloatRescaled(), [4.0, 4.0])
        assert run(space, [4.0, 5.0])["f"].tolist() == [0.0, 1.0]
        assert "f" not in space.cardinalities()
        assert space.output_info()["f"].dtype == "float32"

    def test_bad_parameters(self) -> None:
        with pytest.raises(ConfigError):
            FloatRescaled(scale=float("nan"))
        with pytest.raises(ConfigError):
            FloatRescaled(offset="1")  # type: ignore[arg-type]


class TestCategorical:
    def test_frequency_then_value_order(self) -> None:
        space = fit(StringCategorical(), ["b", "a", "b", "c", "a", "d"])
        assert space.vocabulary("f") == ["a", "b", "c", "d"]
        out = run(space, ["a", "b", "c", "d", None, "zzz"])["f"]
        assert out.tolist() == [2, 3, 4, 5, 0, 1]
        assert space.cardinalities() == {"f": 6}

    def test_max_tokens(self) -> None:
        space = fit(StringCategorical(max_tokens=2), ["x", "y", "y", "z", "z", "z"])
        assert space.vocabulary("f") == ["z", "y"]
        assert run(space, ["z", "y", "x"])["f"].tolist() == [2, 3, 1]

    def test_no_oov_indices_rejects_unknown_values(self) -> None:
        space = fit(StringCategorical(num_oov_indices=0), ["a", "b"])
        assert run(space, ["a", "b", None])["f"].tolist() == [1, 2, 0]
        assert space.cardinalities() == {"f": 3}
        with pytest.raises(DataError, match="unknown") as err:
            run(space, ["a", "nope"])
        assert err.value.column == "f"

    def test_several_oov_indices_hash_stably(self) -> None:
        space = fit(StringCategorical(num_oov_indices=1000), ["a"])
        # pinned: blake2b-based, the same on every machine, run and Python hash seed
        assert run(space, ["zebra", "yak", "emu", "a"])["f"].tolist() == [211, 234, 822, 1001]
        ints = fit(IntCategorical(num_oov_indices=1000), [1])
        assert run(ints, [7, 8, 1])["f"].tolist() == [488, 623, 1001]

    def test_prefix(self) -> None:
        space = fit(StringCategorical(prefix=3), ["85711", "85702", "94043", "T8H1N"])
        assert space.vocabulary("f") == ["857", "940", "T8H"]
        assert run(space, ["85799", "940", "1"])["f"].tolist() == [2, 3, 1]

    def test_non_strings_are_converted(self) -> None:
        space = fit(StringCategorical(), [1, 2, 2])
        assert space.vocabulary("f") == ["2", "1"]
        assert run(space, ["1", 2])["f"].tolist() == [3, 2]

    def test_int_categorical(self) -> None:
        df = pd.DataFrame({"age": pd.array([25, 1, 25, None, 56], dtype="Int64")})
        space = FeatureSpace({"age": IntCategorical()}).adapt(df)
        assert space.vocabulary("age") == [25, 1, 56]
        assert space.transform(df)["age"].tolist() == [2, 3, 2, 0, 4]
        other = pd.DataFrame({"age": [25.0, 18.0, np.nan], "x": 1})
        assert space.transform(other)["age"].tolist() == [2, 1, 0]

    def test_int_categorical_rejects_fractions_and_words(self) -> None:
        with pytest.raises(DataError) as err:
            fit(IntCategorical(), [1, 2.5])
        assert err.value.row == 1 and err.value.column == "f"
        with pytest.raises(DataError, match="expected integer"):
            fit(IntCategorical(), ["1", "abc"])


class TestCrossed:
    def space(self) -> FeatureSpace:
        return FeatureSpace(
            {
                "a": StringCategorical(),
                "b": IntCategorical(),
                "ab": Crossed(("a", "b"), crossing_dim=1000),
            }
        )

    def test_hashes_component_indices(self) -> None:
        df = pd.DataFrame({"a": ["x", "y", "x", None], "b": [1, 2, 1, 3]})
        space = self.space().adapt(df)
        out = space.transform(df)
        # a: x→2, y→3, missing→0; b: 1→2, 2→3, 3→4; pinned splitmix64 buckets
        assert out["a"].tolist() == [2, 3, 2, 0] and out["b"].tolist() == [2, 3, 2, 4]
        assert out["ab"].tolist() == [out["ab"][0], out["ab"][1], out["ab"][0], out["ab"][3]]
        assert out["ab"].dtype == np.int64
        assert space.cardinalities()["ab"] == 1000
        assert out["ab"][0] != out["ab"][1]

    def test_pinned_values(self) -> None:
        from recfit.data.features import _hash_cross

        got = _hash_cross([np.array([1, 0, 3]), np.array([2, 0, 1])], 1000)
        assert got.tolist() == [40, 402, 998]

    def test_order_of_components_matters(self) -> None:
        from recfit.data.features import _hash_cross

        a, b = np.arange(50), np.arange(50)[::-1].copy()
        assert not np.array_equal(_hash_cross([a, b], 10**6), _hash_cross([b, a], 10**6))

    def test_bad_crosses(self) -> None:
        with pytest.raises(ConfigError, match="no such feature"):
            FeatureSpace({"a": StringCategorical(), "x": Crossed(("a", "b"), 8)})
        with pytest.raises(ConfigError, match="Text"):
            FeatureSpace({"a": StringCategorical(), "t": Text(), "x": Crossed(("a", "t"), 8)})
        with pytest.raises(ConfigError, match="two distinct"):
            Crossed(("a",), 8)
        with pytest.raises(ConfigError, match="two distinct"):
            Crossed(("a", "a"), 8)
        with pytest.raises(ConfigError, match="crossing_dim"):
            Crossed(("a", "b"), 0)
        assert Crossed(["a", "b"], 4).features == ("a", "b")  # type: ignore[arg-type]


class TestText:
    def test_tokens_ids_and_mask(self) -> None:
        titles = ["Toy Story (1995)", "GoldenEye (1995)", None, "It's a Toy!"]
        space = fit(Text(), titles)
        assert space.vocabulary("f") == ["1995", "toy", "a", "goldeneye", "its", "story"]
        out = run(space, [*titles, "TOY Robots"])
        assert out["f"].tolist() == [
            [3, 7, 2],
            [5, 2, 0],
            [0, 0, 0],
            [6, 4, 3],
            [3, 1, 0],
        ]
        assert out["f_mask"].dtype == np.bool_
        assert out["f_mask"].sum(axis=1).tolist() == [3, 2, 0, 3, 2]
        info = space.output_info()["f"]
        assert (info.cardinality, info.width, info.masked) == (8, 3, True)

    def test_max_tokens_and_truncation(self) -> None:
        space = fit(Text(max_tokens=1, max_length=2), ["b a a", "a c"])
        assert space.vocabulary("f") == ["a"]
        out = run(space, ["a b c d", "a"])
        assert out["f"].tolist() == [[2, 1], [2, 0]]
        assert out["f_mask"].tolist() == [[True, True], [True, False]]

    @pytest.mark.parametrize(
        ("standardize", "vocab"),
        [
            ("lower_and_strip_punctuation", ["ab", "cd"]),
            ("lower", ["a-b", "cd"]),
            ("strip_punctuation", ["Ab", "Cd"]),
            (None, ["A-b", "Cd"]),
        ],
    )
    def test_standardize_options(self, standardize: str | None, vocab: list[str]) -> None:
        assert fit(Text(standardize=standardize), ["A-b Cd"]).vocabulary("f") == vocab

    def test_bad_standardize(self) -> None:
        with pytest.raises(ConfigError, match="standardize"):
            Text(standardize="upper")

    def test_empty_and_missing(self) -> None:
        space = fit(Text(), ["", None, "   ", "!!!"])
        assert space.output_info()["f"].width == 1
        out = run(space, ["", "x"])
        assert out["f"].tolist() == [[0], [1]]
        assert out["f_mask"].tolist() == [[False], [True]]


class TestMultiCategorical:
    def test_tuples_lists_and_missing(self) -> None:
        cells = [("Drama", "Comedy"), ["Drama"], (), None, ("Comedy", None, "War")]
        space = fit(MultiCategorical(), cells)
        assert space.vocabulary("f") == ["Comedy", "Drama", "War"]
        out = run(space, [*cells, ("Horror", "War")])
        assert out["f"].tolist() == [[3, 2], [3, 0], [0, 0], [0, 0], [2, 4], [1, 4]]
        assert out["f_mask"].sum(axis=1).tolist() == [2, 1, 0, 0, 2, 2]
        assert space.cardinalities() == {"f": 5}

    def test_separator_and_string_cells(self) -> None:
        space = fit(MultiCategorical(separator="|"), ["A|B", "B", "", None])
        assert space.vocabulary("f") == ["B", "A"]
        assert run(space, ["A|B|C", "B"])["f"].tolist() == [[3, 2], [2, 0]]
        plain = fit(MultiCategorical(), ["A|B", ("A",)])
        assert plain.vocabulary("f") == ["A", "A|B"]

    def test_max_length(self) -> None:
        space = fit(MultiCategorical(max_length=1), [("a", "b"), ("b",)])
        out = run(space, [("a", "b")])
        assert out["f"].tolist() == [[3]]
        assert out["f_mask"].tolist() == [[True]]


# ----------------------------------------------------------------------------- the space


def users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [24, 53, 23, 24, 33, 42],
            "gender": ["M", "F", "M", "M", "F", "M"],
            "occupation": ["technician", "other", "writer", "technician", "other", "executive"],
            "zip": ["85711", "94043", "32067", "43537", "15213", "98101"],
            "bio": ["likes films", "", None, "a b c", "films", "x"],
            "tags": [("a",), ("a", "b"), (), None, ("c",), ("b",)],
            "score": [0.5, 1.5, np.nan, 2.5, 0.0, 1.0],
        }
    )


def full_space() -> FeatureSpace:
    return FeatureSpace(
        {
            "age": FloatDiscretized(num_bins=3),
            "gender": StringCategorical(),
            "occupation": StringCategorical(max_tokens=2, num_oov_indices=2),
            "zip_prefix": StringCategorical(prefix=1, column="zip"),
            "code": IntCategorical(column="age"),
            "gender_x_age": Crossed(("gender", "age"), crossing_dim=16),
            "bio": Text(max_tokens=50, max_length=4),
            "tags": MultiCategorical(),
            "score": FloatRescaled(),
        }
    )


class TestFeatureSpace:
    def test_outputs_in_order_with_masks(self) -> None:
        space = full_space()
        assert space.fitted is False
        assert space.adapt(users()) is space
        assert space.fitted is True
        out = space.transform(users())
        assert list(out) == [
            "age",
            "gender",
            "occupation",
            "zip_prefix",
            "code",
            "gender_x_age",
            "bio",
            "bio_mask",
            "tags",
            "tags_mask",
            "score",
        ]
        assert out["bio"].shape == (6, 4) and out["tags"].shape == (6, 2)
        assert out["zip_prefix"].tolist() == [6, 2, 4, 5, 3, 2]  # 9 most frequent
        assert space.columns == [
            "age",
            "gender",
            "occupation",
            "zip",
            "bio",
            "tags",
            "score",
        ]
        info = space.output_info()
        assert set(info) == set(space.features)
        for name, card in space.cardinalities().items():
            assert info[name].cardinality == card
            assert out[name].min() >= 0 and out[name].max() < card

    def test_transform_before_adapt(self) -> None:
        space = full_space()
        for call in (space.transform, lambda _: space.cardinalities()):
            with pytest.raises(ConfigError, match="adapt"):
                call(users())

    def test_missing_column_names_it_and_what_arrived(self) -> None:
        space = full_space().adapt(users())
        with pytest.raises(DataError) as err:
            space.transform(users().drop(columns=["zip"]))
        assert err.value.column == "zip"
        assert "zip_prefix" in str(err.value) and "'occupation'" in str(err.value)
        with pytest.raises(DataError, match="DataFrame"):
            space.transform({"age": [1]})  # type: ignore[arg-type]
        with pytest.raises(DataError, match="'gender'"):
            full_space().adapt(users().drop(columns=["gender"]))

    def test_extra_columns_and_row_order_are_respected(self) -> None:
        space = full_space().adapt(users())
        shuffled = users().iloc[[5, 3, 1, 0, 2, 4]].assign(extra=1)
        a = space.transform(users())
        b = space.transform(shuffled)
        for k in a:
            np.testing.assert_array_equal(a[k][[5, 3, 1, 0, 2, 4]], b[k], err_msg=k)

    def test_adapt_on_training_rows_only(self) -> None:
        train = users().iloc[:3]
        later = users().iloc[3:]
        space = full_space().adapt(train)
        out = space.transform(later)
        # 'executive' (row 5) and zip '1…' (row 4) were never seen in training: OOV
        assert "executive" not in space.vocabulary("occupation")
        assert out["occupation"][2] in (1, 2)
        assert out["zip_prefix"][1] == 1
        assert out["tags"][1].tolist()[0] == 1  # tag 'c'
        assert out["bio"][0].tolist()[:3] == [1, 1, 1]  # 'a b c'
        assert space.transform(train)["bio"][0].tolist()[:2] != [1, 1]

    def test_re_adapt_replaces_state(self) -> None:
        space = fit(StringCategorical(), ["a"])
        space.adapt(pd.DataFrame({"f": ["b", "b"]}))
        assert space.vocabulary("f") == ["b"]

    def test_bad_construction(self) -> None:
        with pytest.raises(ConfigError):
            FeatureSpace({})
        with pytest.raises(ConfigError, match="feature spec"):
            FeatureSpace({"a": "categorical"})  # type: ignore[dict-item]
        with pytest.raises(ConfigError, match="distinct output keys"):
            FeatureSpace({"t": Text(), "t_mask": StringCategorical()})
        with pytest.raises(ConfigError, match="non-empty str"):
            FeatureSpace({"": StringCategorical()})
        with pytest.raises(ConfigError, match="column"):
            StringCategorical(column="")
        with pytest.raises(ConfigError, match="max_tokens"):
            Text(max_tokens=0)
        with pytest.raises(ConfigError, match="num_oov_indices"):
            IntCategorical(num_oov_indices=-1)
        with pytest.raises(ConfigError, match="vocabulary"):
            fit(FloatRescaled(), [1.0]).vocabulary("f")
        with pytest.raises(ConfigError, match="received 'g'"):
            fit(StringCategorical(), ["a"]).vocabulary("g")


class TestPersistence:
    def test_json_round_trip_is_exact(self) -> None:
        df = users()
        df["score"] = [0.1 + 0.2, 1 / 3, np.nan, 2.5e-300, -7.77, 1e150]
        space = full_space().adapt(df)
        text = space.to_json()
        assert json.loads(text) == space.to_dict()
        back = FeatureSpace.from_json(text)
        assert back == space and back.fitted
        assert back.to_json() == text
        assert_same(space.transform(df), back.transform(df))
        unseen = df.assign(occupation="astronaut", zip="X1", tags=[("z",)] * 6)
        assert_same(space.transform(unseen), back.transform(unseen))
        assert back.output_info() == space.output_info()

    def test_unfitted_round_trip(self) -> None:
        space = full_space()
        back = FeatureSpace.from_dict(json.loads(space.to_json()))
        assert back.fitted is False
        assert dict(back.features) == dict(space.features)

    def test_unknown_spec_keys_and_kinds(self) -> None:
        d = full_space().to_dict()
        d["features"]["age"]["bins"] = 3
        with pytest.raises(ConfigError, match=r"unknown keys \['bins'\]"):
            FeatureSpace.from_dict(d)
        d = full_space().to_dict()
        d["features"]["age"]["kind"] = "float_bucketized"
        with pytest.raises(ConfigError, match="float_bucketized"):
            FeatureSpace.from_dict(d)
        d = full_space().to_dict()
        del d["features"]["gender_x_age"]["crossing_dim"]
        with pytest.raises(ConfigError, match="complete crossed"):
            FeatureSpace.from_dict(d)
        d = full_space().to_dict()
        d["features"]["age"]["num_bins"] = -2
        with pytest.raises(ConfigError, match="num_bins"):
            FeatureSpace.from_dict(d)

    def test_bad_envelope_and_state(self) -> None:
        good = full_space().adapt(users()).to_dict()
        for key, value in (("format", "other"), ("version", 99), ("extra", 1)):
            bad = {**good, key: value}
            with pytest.raises(ConfigError):
                FeatureSpace.from_dict(bad)
        bad_state = json.loads(json.dumps(good))
        bad_state["state"]["age"]["edges"] = [3.0, 1.0]
        with pytest.raises(ConfigError, match="'age'"):
            FeatureSpace.from_dict(bad_state)
        bad_state = json.loads(json.dumps(good))
        bad_state["state"]["code"]["vocabulary"] = ["24"]
        with pytest.raises(ConfigError, match="'code'"):
            FeatureSpace.from_dict(bad_state)
        bad_state = json.loads(json.dumps(good))
        del bad_state["state"]["tags"]
        with pytest.raises(ConfigError, match="state for each"):
            FeatureSpace.from_dict(bad_state)
        with pytest.raises(ConfigError, match="invalid JSON"):
            FeatureSpace.from_json("{nope")


# ----------------------------------------------------------------------------- properties

_WORDS = ["a", "b", "cc", "Dd", "e!", "f-g", "(h)"]
cell_str = st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w", ""]))
cell_int = st.one_of(st.none(), st.integers(-3, 3))
cell_float = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.just(float("nan")))
cell_text = st.one_of(st.none(), st.lists(st.sampled_from(_WORDS), max_size=6).map(" ".join))
cell_multi = st.one_of(st.none(), st.lists(st.sampled_from(["p", "q", "r", "s"]), max_size=5))


@st.composite
def frames(draw: st.DrawFn, min_size: int = 0) -> pd.DataFrame:
    n = draw(st.integers(min_size, 12))
    col = lambda s: pd.Series(draw(st.lists(s, min_size=n, max_size=n)), dtype=object)  # noqa: E731
    return pd.DataFrame(
        {
            "s": col(cell_str),
            "i": col(cell_int),
            "x": col(cell_float),
            "t": col(cell_text),
            "m": col(cell_multi),
        }
    )


def prop_space() -> FeatureSpace:
    return FeatureSpace(
        {
            "s": StringCategorical(max_tokens=2, num_oov_indices=2),
            "i": IntCategorical(),
            "x": FloatDiscretized(num_bins=3),
            "r": FloatRescaled(column="x"),
            "t": Text(max_tokens=4),
            "m": MultiCategorical(max_length=3),
            "si": Crossed(("s", "i"), crossing_dim=7),
        }
    )


def py_tokens(text: str | None) -> list[str]:
    if text is None:
        return []
    return re.sub("[" + re.escape(string.punctuation) + "]", "", text.lower()).split()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(min_size=1), frames())
def test_transform_properties(train: pd.DataFrame, later: pd.DataFrame) -> None:
    space = prop_space().adapt(train)
    out = space.transform(later)
    n = len(later)
    # deterministic, also through JSON
    assert_same(out, space.transform(later))
    assert_same(out, FeatureSpace.from_json(space.to_json()).transform(later))
    info = space.output_info()
    for name, fi in info.items():
        arr = out[name]
        assert arr.shape == ((n,) if fi.width == 1 and not fi.masked else (n, fi.width))
        if fi.cardinality is not None:
            assert arr.dtype == np.int64
            assert arr.size == 0 or (arr.min() >= 0 and arr.max() < fi.cardinality)
        else:
            assert arr.dtype == np.float32 and np.isfinite(arr).all()
    # masks match the number of (non-missing, non-empty) elements, truncated to width
    t_len = [len(py_tokens(v)) for v in later["t"]]
    m_len = [len([e for e in v if e]) if v is not None else 0 for v in later["m"]]
    for name, lengths in (("t", t_len), ("m", m_len)):
        ids, mask = out[name], out[f"{name}_mask"]
        width = info[name].width
        assert mask.sum(axis=1).tolist() == [min(k, width) for k in lengths]
        assert (ids[~mask] == 0).all() and (ids[mask] >= 1).all()
    # tokens agree with a per-row Python reference
    vocab = space.vocabulary("t")
    for row, text in enumerate(later["t"]):
        toks = py_tokens(text)[: info["t"].width]
        want = [vocab.index(w) + 2 if w in vocab else 1 for w in toks]
        assert out["t"][row][: len(want)].tolist() == want
    # single-valued categoricals agree with a per-row reference
    svocab = space.vocabulary("s")
    for row, v in enumerate(later["s"]):
        got = int(out["s"][row])
        if v is None:
            assert got == 0
        elif v in svocab:
            assert got == svocab.index(v) + 3
        else:
            assert got in (1, 2)
    # missing numbers map to index 0 / value 0.0
    missing_x = later["x"].isna().to_numpy()
    assert (out["x"][missing_x] == 0).all() and (out["x"][~missing_x] >= 1).all()
    assert (out["r"][missing_x] == 0.0).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["u", "v", "w", "x", "y"]), min_size=1, max_size=30))
def test_vocabulary_is_frequency_then_value(values: list[str]) -> None:
    space = fit(StringCategorical(), values)
    counts = pd.Series(values).value_counts()
    want = sorted(counts.index, key=lambda v: (-counts[v], v))
    assert space.vocabulary("f") == want


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=40), st.integers(1, 8))
def test_bins_are_monotone(values: list[float], num_bins: int) -> None:
    space = fit(FloatDiscretized(num_bins=num_bins), values)
    ordered = sorted(values)
    out = run(space, ordered)["f"]
    assert (np.diff(out) >= 0).all()
    assert out.min() >= 1 and out.max() <= space.cardinalities()["f"] - 1 <= num_bins


# ----------------------------------------------------------------------------- inference


class TestSpaceForTable:
    def test_rules(self) -> None:
        df = pd.DataFrame(
            {
                "user_id": [1, 2, 3, 4],
                "flag": [True, False, True, True],
                "code": [1, 18, 25, 1],
                "income": pd.array([10, 20, 30, 40], dtype="Int64"),
                "score": [0.1, 0.2, 0.3, np.nan],
                "city": ["Oslo", "Rome", None, "Oslo"],
                "kind": pd.Categorical(["a", "b", "a", "a"]),
                "genres": [("a", "b"), [], None, ("c",)],
                "bio": ["a long description here", "another long one", "x y z", None],
            }
        )
        space = space_for_table(df, exclude=["user_id"], max_int_categories=3)
        kinds = {k: type(v).__name__ for k, v in space.features.items()}
        assert kinds == {
            "flag": "IntCategorical",
            "code": "IntCategorical",
            "income": "FloatDiscretized",
            "score": "FloatDiscretized",
            "city": "StringCategorical",
            "kind": "StringCategorical",
            "genres": "MultiCategorical",
            "bio": "Text",
        }
        rescaled = space_for_table(df[["score", "income"]], numeric="rescaled")
        assert isinstance(rescaled.features["score"], FloatRescaled)
        assert isinstance(rescaled.features["income"], IntCategorical)
        out = space.adapt(df).transform(df)
        assert out["genres"].shape == (4, 2) and out["bio"].shape == (4, 4)
        assert out["kind"].tolist() == [2, 3, 2, 2]

    def test_errors(self) -> None:
        with pytest.raises(DataError) as err:
            space_for_table(pd.DataFrame({"g": [("a",), "b"]}))
        assert err.value.column == "g" and err.value.row == 1
        with pytest.raises(DataError, match="datetime"):
            space_for_table(pd.DataFrame({"d": pd.to_datetime(["2020-01-01"])}))
        with pytest.raises(ConfigError, match="exclude"):
            space_for_table(pd.DataFrame({"a": [1]}), exclude=["b"])
        with pytest.raises(ConfigError, match="numeric"):
            space_for_table(pd.DataFrame({"a": [1]}), numeric="log")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="usable column"):
            space_for_table(pd.DataFrame({"a": [1]}), exclude=["a"])


# ----------------------------------------------------------------------------- MovieLens


def test_movielens_spaces_by_name() -> None:
    assert isinstance(movielens_user_space("ml-100k").features["age"], FloatDiscretized)
    assert isinstance(movielens_user_space("ml-1m").features["age"], IntCategorical)
    assert movielens_user_space("ml-1m", zip_prefix=3).features["zip_prefix"] == (
        StringCategorical(prefix=3, column="zip")
    )
    assert set(movielens_item_space("ml-25m").features) == {"title", "year", "genres"}
    with pytest.raises(ConfigError, match="user features"):
        movielens_user_space("ml-25m")
    with pytest.raises(ConfigError, match="MovieLens"):
        movielens_item_space("netflix")


def test_movielens_shaped_frames_without_files() -> None:
    items = pd.DataFrame(
        {
            "title": ["Toy Story (1995)", "GoldenEye (1995)", "Unknown title"],
            "year": pd.array([1995, 1995, None], dtype="Int64"),
            "genres": [("Animation", "Children's", "Comedy"), ("Action",), ()],
        }
    )
    space = movielens_item_space("ml-100k").adapt(items)
    out = space.transform(items)
    assert out["title"].shape == (3, 16) and out["genres"].shape == (3, 3)
    assert out["year"].tolist() == [2, 2, 0]
    assert out["title_mask"].sum(axis=1).tolist() == [3, 2, 2]


def _decode(space: FeatureSpace, name: str, row: np.ndarray, mask: np.ndarray) -> list[Any]:
    vocab = space.vocabulary(name)
    return [vocab[i - 2] for i in row[mask].tolist()]


def test_movielens_100k_tables(data_dir: Path) -> None:
    from recfit.data import movielens

    d = movielens("ml-100k", data_dir, download=False)
    assert d.user_features is not None and d.item_features is not None
    us = movielens_user_space("ml-100k").adapt(d.user_features)
    u = us.transform(d.user_features)
    assert all(v.shape[0] == 943 for v in u.values())
    row = int(d.users.index([1])[0])  # user 1: 24, M, technician, 85711
    assert us.vocabulary("gender")[u["gender"][row] - 2] == "M"
    assert us.vocabulary("occupation")[u["occupation"][row] - 2] == "technician"
    assert us.vocabulary("zip_prefix")[u["zip_prefix"][row] - 2] == "8"
    card = us.cardinalities()
    assert card["gender"] == 4 and card["occupation"] == 2 + 21 and card["gender_x_age"] == 64
    assert 2 < card["age"] <= 11
    # the same (gender, age bin) always lands in the same cross bucket
    pairs = pd.DataFrame({"g": u["gender"], "a": u["age"], "x": u["gender_x_age"]})
    assert (pairs.groupby(["g", "a"])["x"].nunique() == 1).all()

    its = movielens_item_space("ml-100k").adapt(d.item_features)
    i = its.transform(d.item_features)
    assert i["title"].shape == (1682, 16) and i["genres"].shape == (1682, 6)
    toy = int(d.items.index([1])[0])
    assert _decode(its, "title", i["title"][toy], i["title_mask"][toy]) == ["toy", "story", "1995"]
    assert _decode(its, "genres", i["genres"][toy], i["genres_mask"][toy]) == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert its.cardinalities()["genres"] == 2 + 19
    no_year = d.item_features["year"].isna().to_numpy()
    assert no_year.any() and (i["year"][no_year] == 0).all() and (i["year"][~no_year] > 0).all()
    back = FeatureSpace.from_json(its.to_json())
    assert_same(i, back.transform(d.item_features))


def test_movielens_1m_tables(data_dir: Path) -> None:
    from recfit.data import movielens

    d = movielens("ml-1m", data_dir, download=False)
    assert d.user_features is not None and d.item_features is not None
    us = movielens_user_space("ml-1m").adapt(d.user_features)
    u = us.transform(d.user_features)
    assert all(v.shape[0] == 6040 for v in u.values())
    row = int(d.users.index([1])[0])  # user 1: F, age code 1, K-12 student, 48067
    assert us.vocabulary("age")[u["age"][row] - 2] == 1
    assert us.vocabulary("gender")[u["gender"][row] - 2] == "F"
    assert us.vocabulary("occupation")[u["occupation"][row] - 2] == "K-12 student"
    assert us.vocabulary("zip_prefix")[u["zip_prefix"][row] - 2] == "4"
    assert us.cardinalities()["age"] == 2 + 7 and us.cardinalities()["occupation"] == 2 + 21

    its = movielens_item_space("ml-1m").adapt(d.item_features)
    i = its.transform(d.item_features)
    assert i["title"].shape == (3706, 16) and i["genres"].shape[0] == 3706
    toy = int(d.items.index([1])[0])
    assert _decode(its, "genres", i["genres"][toy], i["genres_mask"][toy]) == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    assert its.cardinalities()["genres"] == 2 + 18
    assert_same(i, FeatureSpace.from_json(its.to_json()).transform(d.item_features))


def test_rescaled_values_stay_finite_after_a_near_constant_training_column() -> None:
    """std 1e-160 learns a scale of ~1e160: later values are clipped to float32's range."""
    space = FeatureSpace({"r": FloatRescaled(column="x")})
    space.adapt(pd.DataFrame({"x": [0.0, 2e-160]}))
    out = space.transform(pd.DataFrame({"x": [1.0, -1.0, 0.0]}))["r"]
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert out[0] == np.finfo(np.float32).max and out[1] == -np.finfo(np.float32).max
