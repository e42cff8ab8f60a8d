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

import csv
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from platformdirs import user_cache_dir

from recfit.data.download import fetch, is_complete
from recfit.data.interactions import Interactions, encode_time
from recfit.data.io import DuplicatePolicy, merge_duplicates
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

ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of ``u.item`` in order (as in ``u.genre``)."""

ML1M_OCCUPATIONS: dict[int, str] = {
    0: "other or not specified",
    1: "academic/educator",
    2: "artist",
    3: "clerical/admin",
    4: "college/grad student",
    5: "customer service",
    6: "doctor/health care",
    7: "executive/managerial",
    8: "farmer",
    9: "homemaker",
    10: "K-12 student",
    11: "lawyer",
    12: "programmer",
    13: "retired",
    14: "sales/marketing",
    15: "scientist",
    16: "self-employed",
    17: "technician/engineer",
    18: "tradesman/craftsman",
    19: "unemployed",
    20: "writer",
}
"""Occupation codes of ml-1m ``users.dat`` (from the ml-1m README)."""

ML1M_AGE_GROUPS: dict[int, str] = {
    1: "Under 18",
    18: "18-24",
    25: "25-34",
    35: "35-44",
    45: "45-49",
    50: "50-55",
    56: "56+",
}
"""Age codes of ml-1m ``users.dat`` (from the ml-1m README)."""

PREDEFINED_SPLITS: tuple[str, ...] = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
"""The splits shipped with ml-100k (``uN.base`` / ``uN.test``)."""

_NO_GENRES = "(no genres listed)"
_RATING_COLS = ("user", "item", "rating", "timestamp")
_RATINGS_HEADER = "userId,movieId,rating,timestamp"
_MOVIES_HEADER = "movieId,title,genres"
_LINKS_HEADER = "movieId,imdbId,tmdbId"
_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)(?:\s*\([^()]*\))*\s*$")
_INT = re.compile(rb"^\s*-?\d+\s*$")
_FLOAT = re.compile(
    rb"^\s*[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|NaN|inf|-inf|Inf)\s*$"
)
_LIMITS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

Kind = Literal["100k", "dat", "csv"]


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
    try:
        return _RELEASES[name]
    except KeyError:
        raise ConfigError(
            f"expected a MovieLens name in {list(DATASETS)}, received {name!r}"
        ) from None


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


# ---------------------------------------------------------------------------- ratings
def _ratings_error(
    path: Path,
    data: bytes,
    *,
    sep: bytes,
    columns: Sequence[tuple[str, str]],
    header: bool,
    fallback: str,
) -> DataError:
    """Find the first malformed line of a numeric file (the slow, exact path)."""
    names = [c for c, _ in columns]
    n = len(columns)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for k in range(1 if header else 0, len(lines)):
        line = lines[k].removesuffix(b"\r")
        lineno = k + 1
        if not line.strip():
            return DataError(
                f"expected {n} fields separated by {sep.decode()!r}, received an empty line",
                file=str(path),
                line=lineno,
                column=names[0],
            )
        fields = line.split(sep)
        if len(fields) != n:
            col = names[len(fields)] if len(fields) < n else names[-1]
            return DataError(
                f"expected {n} fields separated by {sep.decode()!r}, received {len(fields)}: "
                f"{_show(line)}",
                file=str(path),
                line=lineno,
                column=col,
            )
        for (col, kind), raw in zip(columns, fields, strict=True):
            if kind == "float":
                ok = _FLOAT.match(raw) is not None
            else:
                ok = _INT.match(raw) is not None and len(raw.strip()) <= 24
                if ok:
                    lo, hi = _LIMITS[kind]
                    ok = lo <= int(raw) <= hi
            if not ok:
                what = "a number" if kind == "float" else f"an integer ({kind})"
                return DataError(
                    f"expected {what}, received {_show(raw)}",
                    file=str(path),
                    line=lineno,
                    column=col,
                )
    return DataError(f"expected a well-formed ratings file, received: {fallback}", file=str(path))


def _show(raw: bytes) -> str:
    return repr(raw.decode("utf-8", errors="replace")[:80])


def _read_ratings(
    path: Path, kind: Kind, scale: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, item ids, ratings, timestamps) of a ratings file, validated."""
    columns = (("user", "int32"), ("item", "int32"), ("rating", "float"), ("timestamp", "int64"))
    types = {
        "user": pa.int32(),
        "item": pa.int32(),
        "rating": pa.float32(),
        "timestamp": pa.int64(),
    }
    header = kind == "csv"
    sep = {"100k": b"\t", "dat": b"::", "csv": b","}[kind]
    source: Any
    try:
        if header:
            with path.open("rb") as fh:
                first = fh.readline().rstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf")
            if first.decode("utf-8", errors="replace").strip() != _RATINGS_HEADER:
                raise DataError(
                    f"expected the header {_RATINGS_HEADER!r}, received {_show(first)}",
                    file=str(path),
                    line=1,
                )
        # "::" becomes a tab so the multithreaded C parser can read it.
        source = (
            pa.BufferReader(path.read_bytes().replace(b"::", b"\t")) if sep == b"::" else str(path)
        )
    except OSError as exc:
        raise DataError(f"expected a readable file, received {exc!r}", file=str(path)) from exc
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=list(_RATING_COLS), skip_rows=1 if header else 0, use_threads=True
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="," if header else "\t",
                quote_char=False,
                ignore_empty_lines=False,
                newlines_in_values=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        del source
        raise _ratings_error(
            path, path.read_bytes(), sep=sep, columns=columns, header=header, fallback=str(exc)
        ) from None
    del source
    u = table.column("user").to_numpy()
    i = table.column("item").to_numpy()
    r = table.column("rating").to_numpy()
    t = table.column("timestamp").to_numpy()
    offset = 2 if header else 1  # 0-based data row -> 1-based line number
    bad = ~np.isfinite(r) | (r < scale[0]) | (r > scale[1])
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"expected a rating in [{scale[0]:g}, {scale[1]:g}], received {float(r[row]):g} "
            f"({int(bad.sum())} lines out of range)",
            file=str(path),
            row=row,
            line=row + offset,
            column="rating",
        )
    return u, i, r, t


# ---------------------------------------------------------------------------- metadata
def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"expected a readable file, received {exc!r}", file=str(path)) from exc


def _text_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text file; trailing blank lines are ignored."""
    data = _read_bytes(path)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"expected {encoding} text, received the byte {data[exc.start]:#04x}",
            file=str(path),
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    for k, line in enumerate(lines):
        yield k + 1, line.removesuffix("\r")


def _fields(
    path: Path, encoding: str, sep: str, names: Sequence[str]
) -> Iterator[tuple[int, list[str]]]:
    """Split every line on ``sep`` and check the field count."""
    n = len(names)
    for lineno, line in _text_lines(path, encoding):
        parts = line.split(sep)
        if len(parts) != n:
            col = names[len(parts)] if len(parts) < n else names[-1]
            raise DataError(
                f"expected {n} fields separated by {sep!r}, received {len(parts)}: {line[:80]!r}",
                file=str(path),
                line=lineno,
                column=col,
            )
        yield lineno, parts


def _csv_fields(path: Path, header: str, names: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """Rows of a UTF-8 CSV file with a header (quoted fields may hold commas)."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"expected UTF-8 text, received the byte {data[exc.start]:#04x}",
            file=str(path),
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    n = len(names)
    start = 1
    try:
        for parts in reader:
            lineno, start = start, reader.line_num + 1
            if lineno == 1:
                if ",".join(parts) != header:
                    raise DataError(
                        f"expected the header {header!r}, received {','.join(parts)!r}",
                        file=str(path),
                        line=1,
                    )
                continue
            if not parts:
                raise DataError(
                    f"expected {n} comma-separated fields, received an empty line",
                    file=str(path),
                    line=lineno,
                    column=names[0],
                )
            if len(parts) != n:
                col = names[len(parts)] if len(parts) < n else names[-1]
                raise DataError(
                    f"expected {n} comma-separated fields, received {len(parts)}: {parts!r}"[:200],
                    file=str(path),
                    line=lineno,
                    column=col,
                )
            yield lineno, parts
    except csv.Error as exc:
        raise DataError(
            f"expected well-formed CSV, received {exc}", file=str(path), line=reader.line_num
        ) from None


def _int(value: str, path: Path, lineno: int, column: str) -> int:
    text = value.strip()
    if len(text) > 24 or _INT.match(text.encode()) is None:
        raise DataError(
            f"expected an integer (int64), received {value[:80]!r}",
            file=str(path),
            line=lineno,
            column=column,
        )
    number = int(text)
    if not _LIMITS["int64"][0] <= number <= _LIMITS["int64"][1]:
        raise DataError(
            f"expected an integer (int64), received {text!r}",
            file=str(path),
            line=lineno,
            column=column,
        )
    return number


def _year(title: str) -> int | None:
    m = _YEAR.search(title)
    return int(m.group(1)) if m else None


class _Table:
    """Metadata rows keyed by id, with a duplicate check, placed onto a vocabulary later."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.ids: list[int] = []
        self.cols: dict[str, list[Any]] = {c: [] for c in columns}
        self.lines: dict[int, int] = {}

    def add(self, key: int, lineno: int, column: str, **values: Any) -> None:
        if key in self.lines:
            raise DataError(
                f"expected distinct ids, received {key} again (first on line {self.lines[key]})",
                file=str(self.path),
                line=lineno,
                column=column,
            )
        self.lines[key] = lineno
        self.ids.append(key)
        for c, v in values.items():
            self.cols[c].append(v)

    def frame(
        self, vocab: Vocabulary, dtypes: dict[str, str], fill: dict[str, Any]
    ) -> tuple[pd.DataFrame, int, int]:
        """A frame with one row per vocabulary index; (frame, rows without a vocab
        entry, vocab entries without a row)."""
        ids = np.asarray(self.ids, dtype=np.int64)
        pos = vocab.index(ids, unknown="sentinel").astype(np.int64)
        known = pos >= 0
        n = len(vocab)
        has = np.zeros(n, dtype=bool)
        has[pos[known]] = True
        out: dict[str, Any] = {}
        targets = pos[known].tolist()
        for c, values in self.cols.items():
            default = fill.get(c)
            col: list[Any] = [default] * n
            for p, v in zip(
                targets, (v for v, k in zip(values, known.tolist(), strict=True) if k), strict=True
            ):
                col[p] = v
            dtype = dtypes.get(c, "object")
            if dtype == "object":
                out[c] = pd.Series(col, dtype=object)
            elif dtype == "datetime":
                out[c] = pd.to_datetime(pd.Series(col, dtype=object))
            else:
                out[c] = pd.Series(col, dtype=dtype)
        frame = pd.DataFrame(out, index=pd.RangeIndex(n))
        return frame, int((~known).sum()), int((~has).sum())


def _genres(raw: str, cache: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    got = cache.get(raw)
    if got is None:
        got = () if raw in ("", _NO_GENRES) else tuple(raw.split("|"))
        cache[raw] = got
    return got


def _ml100k_genres(folder: Path) -> tuple[str, ...]:
    path = folder / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    named: dict[int, str] = {}
    for lineno, (name, code) in _fields(path, "latin-1", "|", ("genre", "id")):
        named[_int(code, path, lineno, "id")] = name
    if sorted(named) != list(range(len(named))) or len(named) != 19:
        raise DataError(
            f"expected genre ids 0..18, received {sorted(named)}", file=str(path), column="id"
        )
    return tuple(named[k] for k in range(19))


def _movies_100k(folder: Path) -> _Table:
    path = folder / "u.item"
    genres = _ml100k_genres(folder)
    names = ("item", "title", "release_date", "video_release_date", "imdb_url", *genres)
    table = _Table(path, ("title", "year", "genres", "release_date", "imdb_url"))
    dates: list[str] = []
    date_lines: list[int] = []
    for lineno, parts in _fields(path, "latin-1", "|", names):
        key = _int(parts[0], path, lineno, "item")
        flags = parts[5:]
        chosen = []
        for g, f in zip(genres, flags, strict=True):
            if f == "1":
                chosen.append(g)
            elif f != "0":
                raise DataError(
                    f"expected a genre flag 0 or 1, received {f!r}",
                    file=str(path),
                    line=lineno,
                    column=g,
                )
        title = parts[1]
        table.add(
            key,
            lineno,
            "item",
            title=title,
            year=_year(title),
            genres=tuple(chosen),
            release_date=parts[2] or None,
            imdb_url=parts[4] or None,
        )
        dates.append(parts[2])
        date_lines.append(lineno)
    parsed = pd.to_datetime(pd.Series(dates), format="%d-%b-%Y", errors="coerce")
    bad = parsed.isna().to_numpy() & (pd.Series(dates) != "").to_numpy()
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"expected a date like '01-Jan-1995', received {dates[k]!r}",
            file=str(path),
            line=date_lines[k],
            column="release_date",
        )
    table.cols["release_date"] = [None if pd.isna(v) else v for v in parsed.tolist()]
    return table


def _movies_dat(folder: Path, encoding: str) -> _Table:
    path = folder / "movies.dat"
    table = _Table(path, ("title", "year", "genres"))
    cache: dict[str, tuple[str, ...]] = {}
    for lineno, (mid, title, genres) in _fields(path, encoding, "::", ("item", "title", "genres")):
        key = _int(mid, path, lineno, "item")
        table.add(
            key, lineno, "item", title=title, year=_year(title), genres=_genres(genres, cache)
        )
    return table


def _movies_csv(folder: Path) -> _Table:
    path = folder / "movies.csv"
    table = _Table(path, ("title", "year", "genres"))
    cache: dict[str, tuple[str, ...]] = {}
    for lineno, (mid, title, genres) in _csv_fields(
        path, _MOVIES_HEADER, ("item", "title", "genres")
    ):
        key = _int(mid, path, lineno, "item")
        table.add(
            key, lineno, "item", title=title, year=_year(title), genres=_genres(genres, cache)
        )
    links = folder / "links.csv"
    if links.is_file():
        imdb: dict[int, str | None] = {}
        tmdb: dict[int, int | None] = {}
        for lineno, (mid, imdb_id, tmdb_id) in _csv_fields(
            links, _LINKS_HEADER, ("item", "imdb_id", "tmdb_id")
        ):
            key = _int(mid, links, lineno, "item")
            imdb[key] = imdb_id or None
            tmdb[key] = _int(tmdb_id, links, lineno, "tmdb_id") if tmdb_id.strip() else None
        table.cols["imdb_id"] = [imdb.get(k) for k in table.ids]
        table.cols["tmdb_id"] = [tmdb.get(k) for k in table.ids]
    return table


def _users_100k(folder: Path) -> _Table:
    path = folder / "u.user"
    table = _Table(path, ("age", "gender", "occupation", "zip"))
    for lineno, (uid, age, gender, occ, zipc) in _fields(
        path, "latin-1", "|", ("user", "age", "gender", "occupation", "zip")
    ):
        table.add(
            _int(uid, path, lineno, "user"),
            lineno,
            "user",
            age=_int(age, path, lineno, "age"),
            gender=gender,
            occupation=occ,
            zip=zipc,
        )
    return table


def _users_1m(folder: Path) -> _Table:
    path = folder / "users.dat"
    table = _Table(path, ("age", "age_group", "gender", "occupation", "occupation_code", "zip"))
    for lineno, (uid, gender, age, occ, zipc) in _fields(
        path, "latin-1", "::", ("user", "gender", "age", "occupation", "zip")
    ):
        age_code = _int(age, path, lineno, "age")
        occ_code = _int(occ, path, lineno, "occupation")
        if age_code not in ML1M_AGE_GROUPS:
            raise DataError(
                f"expected an age code in {sorted(ML1M_AGE_GROUPS)}, received {age_code}",
                file=str(path),
                line=lineno,
                column="age",
            )
        if occ_code not in ML1M_OCCUPATIONS:
            raise DataError(
                f"expected an occupation code in 0..20, received {occ_code}",
                file=str(path),
                line=lineno,
                column="occupation",
            )
        table.add(
            _int(uid, path, lineno, "user"),
            lineno,
            "user",
            age=age_code,
            age_group=ML1M_AGE_GROUPS[age_code],
            gender=gender,
            occupation=ML1M_OCCUPATIONS[occ_code],
            occupation_code=occ_code,
            zip=zipc,
        )
    return table


_DTYPES = {
    "year": "Int64",
    "age": "Int64",
    "occupation_code": "Int64",
    "tmdb_id": "Int64",
    "release_date": "datetime",
}


# ---------------------------------------------------------------------------- public API
def _load(spec: _Release, folder: Path, duplicates: DuplicatePolicy = "error") -> Interactions:
    path = folder / spec.ratings_file
    u, i, r, t = _read_ratings(path, spec.kind, spec.scale)
    data = Interactions.from_arrays(u, i, r, timestamp=t, rating_scale=spec.scale, name=spec.name)
    ui, ii, rr, _, tt, n_dup = merge_duplicates(
        data.user, data.item, data.rating, None, data.timestamp, data.users, data.items,
        duplicates=duplicates, source=str(path), line_offset=2 if spec.kind == "csv" else 1,
        stacklevel=4,
    )  # fmt: skip
    if n_dup:
        offset, origin = encode_time(tt) if tt is not None else (None, 0)
        data = replace(data, user=ui, item=ii, rating=rr, time_offset=offset, time_origin=origin)
    if spec.kind == "100k":
        movies = _movies_100k(folder)
    elif spec.kind == "dat":
        movies = _movies_dat(folder, spec.encoding)
    else:
        movies = _movies_csv(folder)
    item_features, items_no_rating, items_no_meta = movies.frame(
        data.items, _DTYPES, {"genres": ()}
    )
    meta: dict[str, Any] = {
        "release": spec.name,
        "folder": str(folder),
        "ratings": len(data),
        **({"duplicates_merged": n_dup} if n_dup else {}),
        "metadata_items": len(movies.ids),
        "items_without_ratings": items_no_rating,
        "items_without_metadata": items_no_meta,
    }
    user_features = None
    users = {"ml-100k": _users_100k, "ml-1m": _users_1m}.get(spec.name)
    if users is not None:
        table = users(folder)
        user_features, users_no_rating, users_no_meta = table.frame(data.users, _DTYPES, {})
        meta.update(
            metadata_users=len(table.ids),
            users_without_ratings=users_no_rating,
            users_without_metadata=users_no_meta,
        )
    return Interactions(
        user=data.user,
        item=data.item,
        rating=data.rating,
        users=data.users,
        items=data.items,
        time_offset=data.time_offset,
        time_origin=data.time_origin,
        user_features=user_features,
        item_features=item_features,
        rating_scale=spec.scale,
        name=spec.name,
        meta=meta,
    )


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
        u, i, _, _ = _read_ratings(path, "100k", spec.scale)
        parts.append((u, i))
    (tr_u, tr_i), (te_u, te_i) = parts
    return split_from_pairs(data, tr_u, tr_i, te_u, te_i, name=f"{name}:{split}")
