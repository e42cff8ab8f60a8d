"""MovieLens parsers: the shared real copies, tiny files in each release's format, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recfit.data.grouplens as ml
from recfit.data.grouplens import (
    DATASETS,
    ML100K_GENRES,
    data_home,
    dataset_folder,
    movielens,
    predefined_split,
)
from recfit.errors import ConfigError, DataError, DownloadError


# ---------------------------------------------------------------------------- real data
def test_ml100k_counts_and_features(data_dir: Path) -> None:
    d = movielens("ml-100k", data_dir, download=False)
    assert (len(d), d.n_users, d.n_items) == (100_000, 943, 1682)
    assert d.user.dtype == np.int32 and d.item.dtype == np.int32
    assert d.rating.dtype == np.float32
    assert d.rating_scale == (1.0, 5.0) and d.name == "ml-100k"
    assert set(np.unique(d.rating).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    ts = d.timestamp
    assert ts is not None and ts.dtype == np.int64 and ts.min() > 8.7e8
    assert d.meta["metadata_items"] == 1682 and d.meta["items_without_ratings"] == 0
    assert d.meta["metadata_users"] == 943 and d.meta["users_without_ratings"] == 0

    f = d.item_features
    assert f is not None and len(f) == 1682
    assert list(f.columns) == ["title", "year", "genres", "release_date", "imdb_url"]
    toy = int(d.items.index([1])[0])
    assert f.title[toy] == "Toy Story (1995)"
    assert f.year[toy] == 1995 and str(f.year.dtype) == "Int64"
    assert f.genres[toy] == ("Animation", "Children's", "Comedy")
    assert f.release_date[toy] == pd.Timestamp("1995-01-01")
    assert f.imdb_url[toy].startswith("http://us.imdb.com/")
    unknown = int(d.items.index([267])[0])  # the "unknown" movie: no year, no date
    assert f.title[unknown] == "unknown" and pd.isna(f.year[unknown])
    assert pd.isna(f.release_date[unknown])
    # "(1995) (V)" keeps its year
    v = f.title.str.endswith("(V)").to_numpy()
    assert v.sum() == 1 and f.year[int(np.argmax(v))] == 1995
    assert all(set(g) <= set(ML100K_GENRES) for g in f.genres)

    u = d.user_features
    assert u is not None and len(u) == 943
    first = int(d.users.index([1])[0])
    assert (u.age[first], u.gender[first], u.occupation[first], u.zip[first]) == (
        24,
        "M",
        "technician",
        "85711",
    )
    # metadata rows sit on the vocabulary: a rated item's row is its own
    rated_ids = d.items.id(d.item[:50])
    assert (f.title.iloc[d.item[:50]].to_numpy() != None).all()  # noqa: E711
    assert len(set(rated_ids.tolist())) >= 1


def test_ml1m_counts_and_features(data_dir: Path) -> None:
    d = movielens("ml-1m", data_dir, download=False)
    assert (len(d), d.n_users, d.n_items) == (1_000_209, 6040, 3706)
    assert d.meta["metadata_items"] == 3883
    assert d.meta["items_without_ratings"] == 3883 - 3706
    assert d.meta["items_without_metadata"] == 0
    f = d.item_features
    assert f is not None and len(f) == 3706
    mis = int(d.items.index([73])[0])
    assert f.title[mis] == "Misérables, Les (1995)"  # latin-1 decoded
    assert f.genres[mis] == ("Drama", "Musical")
    u = d.user_features
    assert u is not None
    first = int(d.users.index([1])[0])
    assert u.age[first] == 1 and u.age_group[first] == "Under 18"
    assert u.occupation[first] == "K-12 student" and u.occupation_code[first] == 10
    assert u.gender[first] == "F" and u.zip[first] == "48067"
    assert set(u.occupation) <= set(ml.ML1M_OCCUPATIONS.values())


def test_predefined_splits_partition_u_data(data_dir: Path) -> None:
    full = movielens("ml-100k", data_dir, download=False)
    tests = []
    for k in range(1, 6):
        s = predefined_split("ml-100k", f"u{k}", data_dir, data=full)
        assert len(s.test_idx) == 20_000 and len(s.train_idx) == 80_000
        assert len(np.intersect1d(s.train_idx, s.test_idx)) == 0
        tests.append(s.test_idx)
    allt = np.concatenate(tests)
    assert len(np.unique(allt)) == 100_000  # disjoint and covering u.data
    # every (user, item, rating) of u1.test maps onto a row of u.data with those values
    s1 = predefined_split("ml-100k", "u1", data_dir)
    raw = np.loadtxt(data_dir / "ml-100k" / "u1.test", dtype=np.int64)
    t = s1.test
    got = np.stack([t.users.id(t.user), t.items.id(t.item), t.rating.astype(np.int64)], 1)
    want = raw[:, :3]
    assert np.array_equal(got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])])
    ua = predefined_split("ml-100k", "ua", data_dir, data=full)
    assert len(ua.test_idx) == 9430
    assert (np.bincount(full.user[ua.test_idx], minlength=943) == 10).all()


def test_predefined_split_rejects_other_names(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="ml-100k"):
        predefined_split("ml-1m", "u1", data_dir)
    with pytest.raises(ConfigError, match="u6"):
        predefined_split("ml-100k", "u6", data_dir)


# ---------------------------------------------------------------------------- tiny files
def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _ml10m(root: Path) -> Path:
    folder = root / "ml-10M100K"
    _write(
        folder / "ratings.dat",
        "1::10::4.5::965000000\n1::20::0.5::965000001\n2::10::3::965000002\n3::30::5::965000003\n",
    )
    _write(
        folder / "movies.dat",
        "10::Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)::Comedy|Romance\n"
        "20::Château (2001)::(no genres listed)\n"
        "30::Babylon 5 (1994-1998)::Sci-Fi\n"
        "40::Never Rated (1999)::Drama\n",
    )
    _write(folder / "tags.dat", "1::10::french::965000000\n")
    return folder


def test_ml10m_half_stars_utf8_and_metadata_only_items(tmp_path: Path) -> None:
    _ml10m(tmp_path)
    d = movielens("ml-10m", tmp_path, download=False)
    assert (len(d), d.n_users, d.n_items) == (4, 3, 3)
    assert d.rating_scale == (0.5, 5.0)
    assert d.rating.tolist() == [4.5, 0.5, 3.0, 5.0]
    assert d.timestamp is not None and d.timestamp.tolist()[:2] == [965000000, 965000001]
    f = d.item_features
    assert f is not None
    assert f.title.tolist()[:2] == [
        "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
        "Château (2001)",
    ]
    assert f.genres.tolist() == [("Comedy", "Romance"), (), ("Sci-Fi",)]
    assert f.year.tolist() == [2001, 2001, 1994]
    assert d.meta["metadata_items"] == 4 and d.meta["items_without_ratings"] == 1
    assert d.user_features is None


def _csv_release(root: Path, name: str = "ml-latest-small") -> Path:
    folder = root / name
    _write(
        folder / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
        "2,1,0.5,964982224\n2,99,3.0,964983815\n",
    )
    _write(
        folder / "movies.csv",
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '3,"American President, The (1995)",Comedy|Drama|Romance\n'
        '5,"Hello, ""World"" (2020)",(no genres listed)\n'
        "7,No Year Here,Drama\n",
    )
    _write(
        folder / "links.csv",
        "movieId,imdbId,tmdbId\n1,0114709,862\n3,0112346,\n5,0000001,5\n",
    )
    return folder


@pytest.mark.parametrize("name", ["ml-latest-small", "ml-20m", "ml-25m", "ml-32m", "ml-latest"])
def test_csv_releases_quoted_titles(tmp_path: Path, name: str) -> None:
    _csv_release(tmp_path, name)
    d = movielens(name, tmp_path, download=False)
    assert (len(d), d.n_users, d.n_items) == (4, 2, 3)
    assert d.rating.tolist() == [4.0, 4.5, 0.5, 3.0]
    assert d.rating_scale == (0.5, 5.0) and d.name == name
    f = d.item_features
    assert f is not None
    assert f.title.tolist() == ["Toy Story (1995)", "American President, The (1995)", None]
    assert f.genres.tolist()[1] == ("Comedy", "Drama", "Romance")
    assert f.genres.tolist()[2] == ()  # item 99 is rated but has no metadata
    assert f.imdb_id.tolist()[:2] == ["0114709", "0112346"]
    assert f.tmdb_id[0] == 862 and pd.isna(f.tmdb_id[1])
    assert d.meta["items_without_ratings"] == 2  # movies 5 and 7
    assert d.meta["items_without_metadata"] == 1  # movie 99


def test_ml1m_format_latin1_and_users(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    _write(folder / "ratings.dat", "1::1::5::978300760\n2::2::3::978302109\n")
    _write(
        folder / "movies.dat",
        "1::Misérables, Les (1995)::Drama|Musical\n2::Café (1993)::Comedy\n",
        "latin-1",
    )
    _write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::0::70072\n3::M::25::15::55117\n")
    d = movielens("ml-1m", tmp_path, download=False)
    f, u = d.item_features, d.user_features
    assert f is not None and u is not None
    assert f.title.tolist() == ["Misérables, Les (1995)", "Café (1993)"]
    assert u.occupation.tolist() == ["K-12 student", "other or not specified"]
    assert u.age_group.tolist() == ["Under 18", "56+"]
    assert d.meta["users_without_ratings"] == 1 and d.meta["metadata_users"] == 3


def _ml100k(root: Path, data: str | None = None, item: str | None = None) -> Path:
    folder = root / "ml-100k"
    _write(folder / "u.data", data or "1\t1\t5\t874965758\n2\t2\t3\t876893171\n")
    flags = "|".join(["0"] * 18 + ["1"])
    _write(
        folder / "u.item",
        item
        or (
            f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n"
            f"2|GoldenEye (1995)|01-Jan-1995||http://y|{flags}\n"
        ),
        "latin-1",
    )
    _write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    return folder


def test_ml100k_format_without_u_genre(tmp_path: Path) -> None:
    _ml100k(tmp_path)
    d = movielens("ml-100k", tmp_path, download=False)
    assert d.item_features is not None and d.item_features.genres[0] == ("Western",)
    assert d.user_features is not None and d.user_features.zip.tolist() == ["85711", "T8H1N"]


# ---------------------------------------------------------------------------- errors
def _err(tmp_path: Path, name: str) -> DataError:
    with pytest.raises(DataError) as info:
        movielens(name, tmp_path, download=False)
    return info.value


@pytest.mark.parametrize(
    ("ratings", "row", "column", "message"),
    [
        ("1::10::4.5::1\n1::20\n", 2, "rating", "expected 4 fields"),
        ("1::10::4.5::1\n1::20::x::2\n", 2, "rating", "expected a number"),
        ("1::10::4.5::1\n1::20::5.5::2\n", 2, "rating", "expected a rating in [0.5, 5]"),
        ("1::10::4.5::1\n\n1::20::5::2\n", 2, "user", "empty line"),
        ("1::10::4.5::1\n1::10.5::4::2\n", 2, "item", "expected an integer"),
        ("1::10::4.5::1\n1::20::4::2::9\n", 2, "timestamp", "received 5"),
        ("1::10::4.5::1\n1::20::4::\n", 2, "timestamp", "expected an integer"),
        ("1::10::4.5::1\n1::20::nan::3\n", 2, "rating", "received nan"),
    ],
)
def test_dat_ratings_errors_name_file_line_column(
    tmp_path: Path, ratings: str, row: int, column: str, message: str
) -> None:
    folder = _ml10m(tmp_path)
    _write(folder / "ratings.dat", ratings)
    e = _err(tmp_path, "ml-10m")
    assert e.file is not None and e.file.endswith("ratings.dat")
    assert (e.line, e.column) == (row, column)
    assert message in str(e) and "ratings.dat" in str(e)


@pytest.mark.parametrize(
    ("ratings", "row", "column"),
    [
        ("userId,movieId,rating,timestamp\n1,1,4,1\n1,2,4\n", 3, "timestamp"),
        ("userId,movieId,rating,timestamp\n1,1,4,1\n1,2,0,5\n", 3, "rating"),
        ("userId,movieId,rating,timestamp\n1,1,4,1\nx,2,4,5\n", 3, "user"),
        ("user,item,rating,timestamp\n1,1,4,1\n", 1, None),
    ],
)
def test_csv_ratings_errors(tmp_path: Path, ratings: str, row: int, column: str | None) -> None:
    folder = _csv_release(tmp_path)
    _write(folder / "ratings.csv", ratings)
    e = _err(tmp_path, "ml-latest-small")
    assert e.file is not None and e.file.endswith("ratings.csv")
    assert (e.line, e.column) == (row, column)


def test_movies_errors(tmp_path: Path) -> None:
    folder = _csv_release(tmp_path)
    _write(
        folder / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Comedy\n3,"Bad, quote\n'
    )
    e = _err(tmp_path, "ml-latest-small")
    assert e.file is not None and e.file.endswith("movies.csv") and e.line == 3

    _write(folder / "movies.csv", "movieId,title,genres\n1,A (1995),Comedy\n1,B (1996),Drama\n")
    e = _err(tmp_path, "ml-latest-small")
    assert (e.line, e.column) == (3, "item") and "distinct" in str(e)

    _write(folder / "movies.csv", "movieId,title,genres\n1,A (1995),Comedy\n3,Three,fields,4\n")
    e = _err(tmp_path, "ml-latest-small")
    assert (e.line, e.column) == (3, "genres")

    ten = tmp_path / "ten"
    f10 = _ml10m(ten)
    (f10 / "movies.dat").write_bytes(b"10::Ok (2001)::Drama\n20::Bad \xff byte::Drama\n")
    e = _err(ten, "ml-10m")
    assert e.line == 2 and "utf-8" in str(e)
    _write(f10 / "movies.dat", "10::Ok (2001)::Drama\nabc::Bad (2001)::Drama\n")
    e = _err(ten, "ml-10m")
    assert (e.line, e.column) == (2, "item")


def test_ml100k_and_ml1m_metadata_errors(tmp_path: Path) -> None:
    flags = "|".join(["0"] * 18 + ["2"])
    _ml100k(tmp_path, item=f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n")
    e = _err(tmp_path, "ml-100k")
    assert e.file is not None and e.file.endswith("u.item")
    assert (e.line, e.column) == (1, "Western")
    ok = "|".join(["0"] * 19)
    _ml100k(tmp_path, item=f"1|A (1995)|01-Jan-1995||x|{ok}\n2|B (1995)|31-Foo-1995||y|{ok}\n")
    e = _err(tmp_path, "ml-100k")
    assert (e.line, e.column) == (2, "release_date")
    _ml100k(tmp_path, data="1\t1\t5\t874965758\n2\t2\t6\t876893171\n")
    e = _err(tmp_path, "ml-100k")
    assert e.file is not None and e.file.endswith("u.data") and (e.line, e.column) == (2, "rating")

    folder = tmp_path / "ml-1m"
    _write(folder / "ratings.dat", "1::1::5::978300760\n")
    _write(folder / "movies.dat", "1::A (1995)::Drama\n")
    _write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::21::70072\n")
    e = _err(tmp_path, "ml-1m")
    assert e.file is not None and e.file.endswith("users.dat")
    assert (e.line, e.column) == (2, "occupation")
    _write(folder / "users.dat", "1::F::1::10::48067\n2::M::57::1::70072\n")
    assert (_err(tmp_path, "ml-1m").line, _err(tmp_path, "ml-1m").column) == (2, "age")


# ---------------------------------------------------------------------------- property
@st.composite
def _ratings(draw: st.DrawFn) -> list[tuple[int, int, float, int]]:
    pairs = draw(
        st.lists(
            st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
            min_size=1,
            max_size=40,
            unique=True,
        )
    )
    out = []
    for u, i in pairs:
        r = draw(st.integers(1, 10)) / 2
        t = draw(st.integers(0, 2**40))
        out.append((u, i, r, t))
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=_ratings(), csv_format=st.booleans())
def test_roundtrip_property(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[int, int, float, int]],
    csv_format: bool,
) -> None:
    root = tmp_path_factory.mktemp("rt")
    if csv_format:
        name, folder = "ml-latest-small", root / "ml-latest-small"
        body = "userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{i},{r:g},{t}\n" for u, i, r, t in rows
        )
        _write(folder / "ratings.csv", body)
        _write(folder / "movies.csv", "movieId,title,genres\n")
    else:
        name, folder = "ml-10m", root / "ml-10M100K"
        _write(folder / "ratings.dat", "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in rows))
        _write(folder / "movies.dat", "")
    d = movielens(name, root, download=False)
    back = d.to_frame()
    assert back.user.tolist() == [r[0] for r in rows]
    assert back.item.tolist() == [r[1] for r in rows]
    assert back.rating.tolist() == [r[2] for r in rows]
    assert back.timestamp.tolist() == [r[3] for r in rows]
    assert d.meta["items_without_metadata"] == d.n_items


# ---------------------------------------------------------------------------- locations
def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arg, env, cache = tmp_path / "arg", tmp_path / "env", tmp_path / "cache"
    monkeypatch.setattr(ml, "user_cache_dir", lambda appname: str(cache / appname))
    monkeypatch.delenv("RECFIT_DATA_DIR", raising=False)
    assert data_home() == cache / "recfit" / "datasets"
    monkeypatch.setenv("RECFIT_DATA_DIR", str(env))
    assert data_home() == env
    assert data_home(arg) == arg
    assert dataset_folder("ml-10m", arg) == arg / "ml-10M100K"

    _ml10m(env)
    assert len(movielens("ml-10m", download=False)) == 4  # from the env folder
    with pytest.raises(DownloadError) as info:
        movielens("ml-10m", arg, download=False)  # the argument wins
    msg = str(info.value)
    assert str(arg / "ml-10M100K") in msg and "RECFIT_DATA_DIR" in msg and "data_dir" in msg
    monkeypatch.delenv("RECFIT_DATA_DIR")
    with pytest.raises(DownloadError, match="default cache"):
        movielens("ml-10m", download=False)


def test_unknown_name_and_incomplete_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ml-100k"):
        movielens("ml-5m", tmp_path)
    assert set(DATASETS) == {
        "ml-100k",
        "ml-1m",
        "ml-10m",
        "ml-20m",
        "ml-25m",
        "ml-32m",
        "ml-latest-small",
        "ml-latest",
    }
    folder = _csv_release(tmp_path)
    (folder / "movies.csv").unlink()
    with pytest.raises(DownloadError, match="incomplete folder"):
        movielens("ml-latest-small", tmp_path, download=True)  # never touches the network
