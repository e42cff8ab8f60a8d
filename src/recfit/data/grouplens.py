"""The MovieLens releases by name, parsed exactly and fast.

:func:`movielens` returns an :class:`~recfit.data.Interactions` with ``int32`` user and
item indices, ``float32`` ratings in the release's own units, ``int64`` timestamps, the
release's ``rating_scale`` and its metadata as feature tables aligned to the
vocabularies. The vocabularies are built from the ratings; metadata rows for users or
items without ratings are counted in ``Interactions.meta``, never silently dropped.

Supported names and the folder each one lives in (the official folder names):

===================  ==================  ======  ==========================================
name                 folder              scale   files
===================  ==================  ======  ==========================================
``ml-100k``          ``ml-100k/``        1-5     ``u.data`` (tab), ``u.item``, ``u.user`` (|)
``ml-1m``            ``ml-1m/``          1-5     ``ratings/movies/users.dat`` (``::``, latin-1)
``ml-10m``           ``ml-10M100K/``     0.5-5   ``ratings/movies.dat`` (``::``, UTF-8)
``ml-20m``           ``ml-20m/``         0.5-5   ``ratings/movies/links.csv``
``ml-25m``           ``ml-25m/``         0.5-5   ``ratings/movies/links.csv``
``ml-32m``           ``ml-32m/``         0.5-5   ``ratings/movies/links.csv``
``ml-latest-small``  ``ml-latest-small/``  0.5-5  ``ratings/movies/links.csv``
``ml-latest``        ``ml-latest/``      0.5-5   ``ratings/movies/links.csv``
===================  ==================  ======  ==========================================

The folder is looked up in ``data_dir``, else ``$RECFIT_DATA_DIR``, else
``platformdirs.user_cache_dir("recfit")/datasets`` (see :func:`data_home`).

Errors: a malformed line raises :class:`~recfit.errors.DataError` whose ``file`` is the
path, ``row`` the **1-based line number in the file** (a header line counts as line 1)
and ``column`` the field name (``user``, ``item``, ``rating``, ``timestamp``, ``title``,
...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from recfit.data.checks import one_of
from recfit.data.download import fetch, is_complete
from recfit.data.duplicates import DuplicatePolicy, merge_duplicates
from recfit.data.interactions import Interactions
from recfit.data.movielens_files import (
    FEATURE_DTYPES,
    ML1M_AGE_GROUPS,
    ML1M_OCCUPATIONS,
    ML100K_GENRES,
    Kind,
    read_movies,
    read_ratings,
    read_users,
)
from recfit.data.split import Split, split_from_pairs
from recfit.data.vocab import Vocabulary
from recfit.errors import ConfigError, DataError, DownloadError

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "ML1M_AGE_GROUPS",
    "ML1M_OCCUPATIONS",
    "ML100K_GENRES",
    "PREDEFINED_SPLITS",
    "data_home",
    "dataset_folder",
    "movielens",
    "movielens_folder",
    "predefined_split",
    "release_folder",
]

DATA_DIR_ENV = "RECFIT_DATA_DIR"
"""Environment variable naming the folder that holds the release folders."""

PREDEFINED_SPLITS: tuple[str, ...] = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
"""The splits shipped with ml-100k (``uN.base`` / ``uN.test``)."""


@dataclass(frozen=True)
class _Release:
    name: str
    folder: str
    kind: Kind
    scale: tuple[float, float]
    encoding: str

    @property
    def ratings_file(self) -> str:
        return {"100k": "u.data", "dat": "ratings.dat", "csv": "ratings.csv"}[self.kind]

    @property
    def movies_file(self) -> str:
        return {"100k": "u.item", "dat": "movies.dat", "csv": "movies.csv"}[self.kind]

    @property
    def users_file(self) -> str | None:
        return {"ml-100k": "u.user", "ml-1m": "users.dat"}.get(self.name)


_RELEASES: dict[str, _Release] = {
    r.name: r
    for r in (
        _Release("ml-100k", "ml-100k", "100k", (1.0, 5.0), "latin-1"),
        _Release("ml-1m", "ml-1m", "dat", (1.0, 5.0), "latin-1"),
        _Release("ml-10m", "ml-10M100K", "dat", (0.5, 5.0), "utf-8"),
        _Release("ml-20m", "ml-20m", "csv", (0.5, 5.0), "utf-8"),
        _Release("ml-25m", "ml-25m", "csv", (0.5, 5.0), "utf-8"),
        _Release("ml-32m", "ml-32m", "csv", (0.5, 5.0), "utf-8"),
        _Release("ml-latest-small", "ml-latest-small", "csv", (0.5, 5.0), "utf-8"),
        _Release("ml-latest", "ml-latest", "csv", (0.5, 5.0), "utf-8"),
    )
}

DATASETS: tuple[str, ...] = tuple(_RELEASES)
"""Every name :func:`movielens` understands."""


# ---------------------------------------------------------------------------- locations
def data_home(data_dir: str | Path | None = None) -> Path:
    """The folder that holds the release folders.

    ``data_dir`` if given, else ``$RECFIT_DATA_DIR`` if set, else
    ``platformdirs.user_cache_dir("recfit")/datasets``.

    Example:
        >>> str(data_home("/data/movielens"))
        '/data/movielens'
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(user_cache_dir("recfit")) / "datasets"


def _release(name: str) -> _Release:
    return one_of(_RELEASES, name, "a MovieLens name")


def dataset_folder(name: str, data_dir: str | Path | None = None) -> Path:
    """Where release ``name`` is (or would be) under :func:`data_home`.

    Example:
        >>> dataset_folder("ml-10m", "/data").as_posix()
        '/data/ml-10M100K'
    """
    return data_home(data_dir) / _release(name).folder


def _required(spec: _Release) -> list[str]:
    files = [spec.ratings_file, spec.movies_file]
    if spec.users_file is not None:
        files.append(spec.users_file)
    return files


def _locate_folder(spec: _Release, data_dir: str | Path | None, download: bool) -> Path:
    root = data_home(data_dir)
    folder = root / spec.folder
    missing = [f for f in _required(spec) if not (folder / f).is_file()]
    if not missing:
        return folder
    if not download:
        how = (
            "the data_dir argument"
            if data_dir is not None
            else f"${DATA_DIR_ENV}"
            if os.environ.get(DATA_DIR_ENV)
            else "the default cache folder"
        )
        raise DownloadError(
            f"expected MovieLens {spec.name} files {missing} in {folder} (from {how}), "
            f"received {'an incomplete folder' if folder.exists() else 'no such folder'}; "
            f"pass data_dir= (or set {DATA_DIR_ENV}) to a folder that holds {spec.folder}/, "
            "or call with download=True"
        )
    if folder.exists() and not is_complete(folder):
        raise DownloadError(
            f"expected MovieLens {spec.name} files {missing} in {folder}, received an "
            "incomplete folder that recfit did not download; remove it to download again, "
            f"or pass data_dir= (or set {DATA_DIR_ENV}) to a folder with a complete copy"
        )
    return fetch(spec.name, root)


# ---------------------------------------------------------------------------- public API
def _load(spec: _Release, folder: Path, duplicates: DuplicatePolicy = "error") -> Interactions:
    path = folder / spec.ratings_file
    user_ids, item_ids, r, times = read_ratings(path, spec.kind, spec.scale)
    users, u = Vocabulary.encode(user_ids, name="user")
    items, i = Vocabulary.encode(item_ids, name="item")
    u, i, r, _, t, n_dup = merge_duplicates(
        u, i, r, None, times, users, items,
        duplicates=duplicates, source=str(path), line_offset=2 if spec.kind == "csv" else 1,
        stacklevel=4,
    )  # fmt: skip
    movies = read_movies(folder, spec.kind, spec.encoding)
    item_features, items_no_rating, items_no_meta = movies.frame(
        items, FEATURE_DTYPES, {"genres": ()}
    )
    meta: dict[str, Any] = {
        "release": spec.name,
        "folder": str(folder),
        "ratings": len(u),
        **({"duplicates_merged": n_dup} if n_dup else {}),
        "metadata_items": len(movies.ids),
        "items_without_ratings": items_no_rating,
        "items_without_metadata": items_no_meta,
    }
    user_features = None
    table = read_users(folder, spec.name)
    if table is not None:
        user_features, users_no_rating, users_no_meta = table.frame(users, FEATURE_DTYPES, {})
        meta.update(
            metadata_users=len(table.ids),
            users_without_ratings=users_no_rating,
            users_without_metadata=users_no_meta,
        )
    return Interactions.from_indices(
        u, i, r, users, items,
        timestamp=t, user_features=user_features, item_features=item_features,
        rating_scale=spec.scale, name=spec.name, meta=meta, copy=False,  # read here
    )  # fmt: skip


def movielens(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    duplicates: DuplicatePolicy = "error",
) -> Interactions:
    """Load the MovieLens release ``name`` with its metadata.

    Args:
        name: one of :data:`DATASETS` (``"ml-100k"``, ``"ml-1m"``, ``"ml-10m"``,
            ``"ml-20m"``, ``"ml-25m"``, ``"ml-32m"``, ``"ml-latest-small"``,
            ``"ml-latest"``).
        data_dir: the folder holding the official release folders; default
            ``$RECFIT_DATA_DIR``, else the user cache (see :func:`data_home`).
        download: fetch and verify the official archive when the folder is missing
            (see :func:`recfit.data.download.fetch`).
        duplicates: a repeated (user, item) pair in the ratings file: ``"error"``
            (default), ``"last"`` or ``"mean"``, as for :func:`recfit.data.io.from_frame`.

    Returns:
        Ratings with ``item_features`` (``title`` as published, ``year`` parsed from it
        as nullable ``Int64``, ``genres`` as a tuple of names, plus ``release_date`` and
        ``imdb_url`` for ml-100k, ``imdb_id`` and ``tmdb_id`` where ``links.csv``
        exists) and, for ml-100k and ml-1m, ``user_features`` (``age``, ``gender``,
        ``occupation``, ``zip``; ml-1m also ``age_group`` and ``occupation_code``).
        ``meta`` counts the metadata rows and the users/items without ratings or
        without metadata.

    Raises:
        ConfigError: an unknown name.
        DataError: a malformed line or a repeated (user, item) pair; ``line`` is its
            1-based line number in the file.
        DownloadError: the folder is missing and ``download=False``, or the download
            failed.

    Example:
        >>> d = movielens("ml-100k")  # doctest: +SKIP
        >>> len(d), d.n_users, d.n_items  # doctest: +SKIP
        (100000, 943, 1682)
    """
    spec = _release(name)
    folder = _locate_folder(spec, data_dir, download)
    return _load(spec, folder, duplicates)


def _release_shape(folder: Path) -> _Release | None:
    """The release whose files ``folder`` holds (by its official name, else by its files)."""
    for spec in _RELEASES.values():
        if folder.name == spec.folder and all((folder / f).is_file() for f in _required(spec)):
            return spec
    for spec in (_RELEASES["ml-100k"], _RELEASES["ml-1m"], _RELEASES["ml-10m"]):
        if all((folder / f).is_file() for f in _required(spec)):
            return spec  # these files name their release
    csv_spec = _RELEASES["ml-latest-small"]
    if all((folder / f).is_file() for f in _required(csv_spec)):
        return _Release(folder.name, folder.name, "csv", csv_spec.scale, csv_spec.encoding)
    return None


def release_folder(folder: str | Path) -> tuple[str, Path] | None:
    """``(name, release folder)`` when ``folder`` is an extracted MovieLens release, or
    holds exactly one; ``None`` when it holds none.

    A folder with an official name (``ml-100k``, ``ml-10M100K``, ...) is that release;
    another folder is recognised by its files: ``u.data``/``u.item``/``u.user`` is
    ml-100k, ``ratings.dat``/``movies.dat`` ml-1m with ``users.dat`` and ml-10m without,
    and ``ratings.csv``/``movies.csv`` a CSV release named after its folder.

    Raises:
        ConfigError: the folder holds several releases.

    Example:
        >>> release_folder("/nonexistent") is None
        True
    """
    root = Path(folder)
    if not root.is_dir():
        return None
    spec = _release_shape(root)
    if spec is not None:
        return spec.name, root
    try:
        children = sorted(c for c in root.iterdir() if c.is_dir() and not c.is_symlink())
    except OSError:
        return None
    found = [(c, sp) for c in children if (sp := _release_shape(c)) is not None]
    if len(found) > 1:
        raise ConfigError(
            f"expected one MovieLens release in {root}, received {len(found)}: "
            f"{[c.name for c, _ in found]}; name one (e.g. {found[0][1].name} --data-dir {root})"
        )
    if found:
        return found[0][1].name, found[0][0]
    return None


def movielens_folder(folder: str | Path, *, duplicates: DuplicatePolicy = "error") -> Interactions:
    """Load the extracted MovieLens release in ``folder`` (see :func:`release_folder`).

    Raises:
        ConfigError: the folder holds no release, or several.
        DataError: as for :func:`movielens`.

    Example:
        >>> movielens_folder("/data/ml-100k")  # doctest: +SKIP
        Interactions(name='ml-100k', ratings=100000, users=943, items=1682)
    """
    found = release_folder(folder)
    if found is None:
        raise ConfigError(
            f"expected a folder holding an extracted MovieLens release (u.data, ratings.dat "
            f"or ratings.csv with its movie file), received {str(folder)!r}"
        )
    root = Path(found[1])
    spec = _release_shape(root)
    if spec is None:  # pragma: no cover - release_folder found it
        raise ConfigError(f"expected a MovieLens release in {root}")
    return _load(spec, root, duplicates)


def predefined_split(
    name: str = "ml-100k",
    split: str = "u1",
    data_dir: str | Path | None = None,
    *,
    data: Interactions | None = None,
) -> Split:
    """One of the splits shipped with ml-100k: ``u1`` .. ``u5`` (5-fold) or ``ua``/``ub``.

    The rows of ``<split>.base`` and ``<split>.test`` are matched to the full ml-100k
    data by (user id, item id).

    Args:
        name: the release; only ``"ml-100k"`` ships predefined splits.
        split: one of :data:`PREDEFINED_SPLITS`.
        data_dir: as for :func:`movielens`.
        data: the full ml-100k data when already loaded (saves parsing it again).

    Raises:
        ConfigError: another release or an unknown split.
        DataError: a malformed line or a pair that is not in ``u.data``.

    Example:
        >>> s = predefined_split("ml-100k", "u1")  # doctest: +SKIP
        >>> len(s.train_idx), len(s.test_idx)  # doctest: +SKIP
        (80000, 20000)
    """
    if name != "ml-100k":
        raise ConfigError(
            f"expected name='ml-100k' (the only release with predefined splits), received {name!r}"
        )
    if split not in PREDEFINED_SPLITS:
        raise ConfigError(f"expected split in {list(PREDEFINED_SPLITS)}, received {split!r}")
    spec = _release(name)
    if data is None:
        folder = _locate_folder(spec, data_dir, True)
        data = _load(spec, folder)
    else:
        folder = Path(data.meta.get("folder", dataset_folder(name, data_dir)))
    parts = []
    for suffix in ("base", "test"):
        path = folder / f"{split}.{suffix}"
        if not path.is_file():
            raise DataError(
                f"expected the split file {path.name}, received nothing", file=str(path)
            )
        u, i, _, _ = read_ratings(path, "100k", spec.scale)
        parts.append((u, i))
    (tr_u, tr_i), (te_u, te_i) = parts
    return split_from_pairs(data, tr_u, tr_i, te_u, te_i, name=f"{name}:{split}")
