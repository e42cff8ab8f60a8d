"""The top-N split protocols: random holdout of positives, last-k by time (ties), strong
generalisation (held-out users with fold-in rows)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions, make_split
from recfit.data.split import leave_last_k, strong_generalisation
from recfit.errors import ConfigError


@st.composite
def interactions(draw: st.DrawFn) -> Interactions:
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 10))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=1,
            max_size=80,
            unique=True,
        )
    )
    u, i = np.array(pairs).T
    ts = draw(st.lists(st.integers(0, 4), min_size=len(u), max_size=len(u)))
    return Interactions.from_arrays(u, i, np.ones(len(u)), timestamp=ts)


def _all_rows(s: object) -> np.ndarray:
    parts = [s.train_idx, s.test_idx, s.fold_in_idx, s.dropped_idx]  # type: ignore[attr-defined]
    return np.sort(np.concatenate(parts))


@settings(max_examples=60, deadline=None)
@given(
    interactions(),
    st.sampled_from([0.1, 0.3, 0.5, 0.9]),
    st.sampled_from([0.2, 0.5, 0.8]),
    st.integers(0, 5),
    st.sampled_from(["keep", "drop"]),
)
def test_strong_generalisation_partitions_and_holds_users_out(
    d: Interactions, uf: float, gf: float, seed: int, cold: str
) -> None:
    s = make_split(d, f"users:{uf}:{gf}", seed=seed, cold=cold)  # type: ignore[arg-type]
    # no row lost or duplicated
    assert np.array_equal(_all_rows(s), np.arange(len(d)))
    # no held-out user in the training part; held-out users are exactly the non-training ones
    held = s.fold_in_users
    assert not np.isin(d.user[s.train_idx], held).any()
    assert np.isin(d.user[s.test_idx], held).all()
    assert len(held) == round(len(np.unique(d.user)) * uf)
    # every held-out user gives at least one row; with two rows or more it ranks one
    for u in held:
        n = int((d.user == u).sum())
        given_n = int((d.user[s.fold_in_idx] == u).sum())
        ranked = int((d.user[np.concatenate([s.test_idx, s.dropped_idx])] == u).sum())
        assert given_n >= 1 and given_n + ranked == n
        if n >= 2:
            assert ranked >= 1
    # deterministic by seed
    again = make_split(d, f"users:{uf}:{gf}", seed=seed, cold=cold)  # type: ignore[arg-type]
    for a, b in ((s.train_idx, again.train_idx), (s.test_idx, again.test_idx),
                 (s.fold_in_idx, again.fold_in_idx)):  # fmt: skip
        assert np.array_equal(a, b)
    # a held-out user is not cold (it has fold-in rows); only cold items can be dropped
    assert s.cold_counts()["cold_users"] == 0


def test_strong_generalisation_sizes_and_parts() -> None:
    d = Interactions.from_arrays(
        np.repeat(np.arange(100), 10), np.tile(np.arange(10), 100), np.ones(1000)
    )
    s = strong_generalisation(d, 0.1, 0.8, seed=3)
    assert len(s.fold_in_users) == 10
    assert len(s.test_idx) == 20 and len(s.fold_in_idx) == 80 and len(s.train_idx) == 900
    assert s.name == "users:0.1:0.8"
    assert s.fold_in.n_users == d.n_users and len(s.fold_in) == 80
    summary = s.summary()
    assert summary["fold_in"] == 80 and summary["fold_in_users"] == 10
    other = strong_generalisation(d, 0.1, 0.8, seed=4)
    assert not np.array_equal(other.fold_in_users, s.fold_in_users)
    # with_cold keeps the fold-in part
    assert np.array_equal(s.with_cold("drop").fold_in_idx, s.fold_in_idx)


def test_strong_generalisation_spec_defaults_and_errors() -> None:
    d = Interactions.from_arrays(
        np.repeat(np.arange(20), 5), np.tile(np.arange(5), 20), np.ones(100)
    )
    assert make_split(d, "users").name == "users:0.1:0.8"
    assert make_split(d, "users:0.2").name == "users:0.2:0.8"
    for bad in ("users:0:0.8", "users:0.1:1", "users:0.1:0.8:3"):
        with pytest.raises(ConfigError):
            make_split(d, bad)


def test_other_splits_have_no_fold_in_part() -> None:
    d = Interactions.from_arrays(np.arange(10), np.arange(10), np.ones(10), timestamp=np.arange(10))
    for spec in ("random:0.2", "user:0.2", "temporal:0.2", "last:1", "kfold:5:0"):
        s = make_split(d, spec)
        assert len(s.fold_in_idx) == 0 and len(s.fold_in_users) == 0
        assert "fold_in" not in s.summary()


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(1, 3))
def test_last_k_takes_the_newest_rows_ties_by_row_order(d: Interactions, k: int) -> None:
    s = leave_last_k(d, k)
    assert np.array_equal(_all_rows(s), np.arange(len(d)))
    ts = d.timestamp
    assert ts is not None
    for u in np.unique(d.user):
        rows = np.flatnonzero(d.user == u)
        # newest first: by time, ties by row position (the later row is newer)
        newest = rows[np.lexsort((rows, ts[rows]))][::-1]
        expected = np.sort(newest[:k]) if len(rows) > k else np.zeros(0, np.int64)
        got = s.test_idx[d.user[s.test_idx] == u]
        assert np.array_equal(got, expected)


def test_last_k_ties_match_temporal_order() -> None:
    # all timestamps equal: the last rows of the file are the newest, as temporal:F says
    d = Interactions.from_arrays([0, 0, 0, 1, 1], [1, 2, 3, 1, 2], np.ones(5), timestamp=[5] * 5)
    assert leave_last_k(d, 1).test_idx.tolist() == [2, 4]
    assert make_split(d, "temporal:0.4").test_idx.tolist() == [3, 4]


def test_last_k_and_kfold_refuse_fractional_numbers() -> None:
    d = Interactions.from_arrays(np.arange(10), np.arange(10), np.ones(10), timestamp=np.arange(10))
    for bad in ("last:1.5", "kfold:5.5:0", "kfold:5:0.5"):
        with pytest.raises(ConfigError, match="whole numbers"):
            make_split(d, bad)
    with pytest.raises(ConfigError):
        leave_last_k(d, 0)


@settings(max_examples=40, deadline=None)
@given(interactions(), st.integers(0, 5))
def test_random_holdout_of_positives_is_a_partition(d: Interactions, seed: int) -> None:
    s = make_split(d, "random:0.2", seed=seed)
    assert np.array_equal(_all_rows(s), np.arange(len(d)))
    assert len(s.test_idx) == round(len(d) * 0.2)
    assert np.array_equal(s.test_idx, make_split(d, "random:0.2", seed=seed).test_idx)
