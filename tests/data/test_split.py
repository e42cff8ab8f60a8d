from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions, kfold, make_split, split_from_pairs
from recfit.errors import ConfigError, DataError


@st.composite
def interactions(draw: st.DrawFn) -> Interactions:
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 8))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=2,
            max_size=60,
            unique=True,
        )
    )
    u, i = np.array(pairs).T
    ts = draw(st.lists(st.integers(0, 10), min_size=len(u), max_size=len(u)))
    return Interactions.from_arrays(u, i, np.ones(len(u)), timestamp=ts)


SPECS = ["random:0.3", "user:0.3", "temporal:0.3", "last:1", "kfold:2:1"]


@settings(max_examples=50)
@given(interactions(), st.sampled_from(SPECS), st.integers(0, 3), st.sampled_from(["keep", "drop"]))
def test_parts_disjoint_deterministic_and_accounted(
    d: Interactions, spec: str, seed: int, cold: str
) -> None:
    s = make_split(d, spec, seed=seed, cold=cold)  # type: ignore[arg-type]
    again = make_split(d, spec, seed=seed, cold=cold)  # type: ignore[arg-type]
    assert np.array_equal(s.train_idx, again.train_idx) and np.array_equal(
        s.test_idx, again.test_idx
    )
    every = np.concatenate([s.train_idx, s.test_idx, s.dropped_idx])
    assert len(np.unique(every)) == len(every) == len(d)
    summ = s.summary()
    assert summ["train"] + summ["test"] + summ["dropped_cold_rows"] == len(d)
    if cold == "drop":
        assert s.cold_counts()["cold_rows"] == 0


@settings(max_examples=30)
@given(interactions())
def test_last_k_holds_out_each_users_latest(d: Interactions) -> None:
    s = make_split(d, "last:1")
    ts = d.timestamp
    assert ts is not None
    for r in s.test_idx:
        u = d.user[r]
        mine = np.flatnonzero(d.user == u)
        assert ts[r] == ts[mine].max()
        assert len(mine) > 1


@settings(max_examples=30)
@given(interactions(), st.integers(2, 4))
def test_kfold_partitions(d: Interactions, k: int) -> None:
    if k > len(d):
        with pytest.raises(ConfigError):
            kfold(d, k)
        return
    folds = kfold(d, k, seed=3)
    tests = np.concatenate([f.test_idx for f in folds])
    assert sorted(tests.tolist()) == list(range(len(d)))


def test_temporal_cut_is_global(tiny: Interactions) -> None:
    s = make_split(tiny, "temporal:0.25")
    ts = tiny.timestamp
    assert ts is not None
    assert ts[s.train_idx].max() <= ts[s.test_idx].min()
    assert len(s.test_idx) == round(0.25 * len(tiny))


def test_per_user_keeps_min_train(tiny: Interactions) -> None:
    s = make_split(tiny, "user:0.9", seed=1)
    assert np.all(np.bincount(tiny.user[s.train_idx], minlength=tiny.n_users) >= 1)


def test_cold_policy_counts() -> None:
    d = Interactions.from_arrays([1, 1, 2], [1, 2, 1], [1, 2, 3])
    s = split_from_pairs(d, [1, 1], [1, 2], [2], [1])
    assert s.summary()["cold_users"] == 1 and len(s.test_idx) == 1
    s = split_from_pairs(d, [1, 1], [1, 2], [2], [1], cold="drop")
    assert len(s.test_idx) == 0 and s.summary()["dropped_cold_rows"] == 1


def test_split_from_pairs_errors() -> None:
    d = Interactions.from_arrays([1, 2], [1, 2], [1, 2])
    with pytest.raises(DataError, match="not"):
        split_from_pairs(d, [1], [1], [2], [9])
    with pytest.raises(DataError, match="disjoint"):
        split_from_pairs(d, [1], [1], [1], [1])


@pytest.mark.parametrize("spec", ["random:1.5", "bogus", "kfold:3:3", "random:x", "last:0"])
def test_bad_specs(spec: str, tiny: Interactions) -> None:
    with pytest.raises(ConfigError):
        make_split(tiny, spec)


def test_time_splits_need_timestamps() -> None:
    d = Interactions.from_arrays([1, 2], [1, 2], [1, 2])
    with pytest.raises(DataError, match="timestamps"):
        make_split(d, "temporal:0.5")
