"""make_split takes every spec the README lists, ml-100k's predefined splits included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import recfit
from recfit.data import Interactions, make_split, movielens, split_dataset
from recfit.data.grouplens import PREDEFINED_SPLITS, movielens_folder
from recfit.errors import ConfigError, DataError

_GENRES = "|".join(["0"] * 19)


def _tiny_ml100k(folder: Path) -> Path:
    """An ml-100k-shaped folder: 3 users, 3 items, 6 ratings, a u1 split of 4 + 2."""
    folder.mkdir()
    rows = [(1, 1, 5), (1, 2, 3), (2, 1, 4), (2, 3, 2), (3, 2, 1), (3, 3, 4)]
    lines = [f"{u}\t{i}\t{r}\t{880000000 + k}" for k, (u, i, r) in enumerate(rows)]
    (folder / "u.data").write_text("\n".join(lines) + "\n", encoding="latin-1")
    (folder / "u1.base").write_text("\n".join(lines[:4]) + "\n", encoding="latin-1")
    (folder / "u1.test").write_text("\n".join(lines[4:]) + "\n", encoding="latin-1")
    items = [f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{_GENRES}" for i in (1, 2, 3)]
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    users = [f"{u}|30|M|writer|0000{u}" for u in (1, 2, 3)]
    (folder / "u.user").write_text("\n".join(users) + "\n", encoding="latin-1")
    return folder


def test_make_split_reads_a_predefined_split_from_the_data_folder(tmp_path: Path) -> None:
    data = movielens_folder(_tiny_ml100k(tmp_path / "ml-100k"))
    split = make_split(data, "u1")
    assert (len(split.train_idx), len(split.test_idx)) == (4, 2)
    assert split.test.users.id(split.test.user).tolist() == [3, 3]
    # the package-level name is the same function
    assert recfit.make_split(data, "u1").test_idx.tolist() == split.test_idx.tolist()
    assert split_dataset is make_split


def test_make_split_predefined_missing_files_name_the_file(tmp_path: Path) -> None:
    data = movielens_folder(_tiny_ml100k(tmp_path / "ml-100k"))
    with pytest.raises(DataError, match=r"u2\.base"):
        make_split(data, "u2")


def test_make_split_predefined_of_other_data_says_what_to_load() -> None:
    d = Interactions.from_arrays(np.arange(4), np.arange(4), np.ones(4))
    for spec in PREDEFINED_SPLITS:
        with pytest.raises(ConfigError, match=r"expected ml-100k \(loaded with"):
            make_split(d, spec)


def test_make_split_unknown_spec_names_the_predefined_ones() -> None:
    d = Interactions.from_arrays(np.arange(4), np.arange(4), np.ones(4))
    with pytest.raises(ConfigError, match=r"u1\.\.u5, ua, ub"):
        make_split(d, "u9")


@pytest.mark.slow
def test_make_split_every_predefined_ml100k_split(data_dir: Path) -> None:
    data = movielens("ml-100k", data_dir, download=False)
    sizes = {}
    for spec in PREDEFINED_SPLITS:
        s = make_split(data, spec)
        sizes[spec] = (len(s.train_idx), len(s.test_idx))
        assert not np.intersect1d(s.train_idx, s.test_idx).size
    assert sizes["u1"] == (80_000, 20_000)
    assert sizes["ua"] == (90_570, 9_430)
