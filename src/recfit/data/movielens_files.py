"""Parsers of the MovieLens files: ratings (fast, with pyarrow, and exact), movies, links
and users, each line checked.

A malformed line raises :class:`~recfit.errors.DataError` whose ``file`` is the path,
``line`` the **1-based line number in the file** (a header line counts as line 1) and
``column`` the field name (``user``, ``item``, ``rating``, ``timestamp``, ``title``, ...).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recfit.data.vocab import Vocabulary
from recfit.errors import DataError

__all__ = [
    "FEATURE_DTYPES",
    "ML1M_AGE_GROUPS",
    "ML1M_OCCUPATIONS",
    "ML100K_GENRES",
    "Kind",
    "MetaTable",
    "read_movies",
    "read_ratings",
    "read_users",
]

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


def read_ratings(
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


def _decoded(path: Path, encoding: str) -> str:
    """The text of a file; an undecodable byte is an error naming its line."""
    data = _read_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        shown = "UTF-8" if encoding == "utf-8-sig" else encoding
        raise DataError(
            f"expected {shown} text, received the byte {data[exc.start]:#04x}",
            file=str(path),
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None


def _text_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text file; trailing blank lines are ignored."""
    lines = _decoded(path, encoding).split("\n")
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
    reader = csv.reader(io.StringIO(_decoded(path, "utf-8-sig"), newline=""), strict=True)
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


class MetaTable:
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


def _movies_100k(folder: Path) -> MetaTable:
    path = folder / "u.item"
    genres = _ml100k_genres(folder)
    names = ("item", "title", "release_date", "video_release_date", "imdb_url", *genres)
    table = MetaTable(path, ("title", "year", "genres", "release_date", "imdb_url"))
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


def _movies_dat(folder: Path, encoding: str) -> MetaTable:
    path = folder / "movies.dat"
    table = MetaTable(path, ("title", "year", "genres"))
    cache: dict[str, tuple[str, ...]] = {}
    for lineno, (mid, title, genres) in _fields(path, encoding, "::", ("item", "title", "genres")):
        key = _int(mid, path, lineno, "item")
        table.add(
            key, lineno, "item", title=title, year=_year(title), genres=_genres(genres, cache)
        )
    return table


def _movies_csv(folder: Path) -> MetaTable:
    path = folder / "movies.csv"
    table = MetaTable(path, ("title", "year", "genres"))
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


def _users_100k(folder: Path) -> MetaTable:
    path = folder / "u.user"
    table = MetaTable(path, ("age", "gender", "occupation", "zip"))
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


def _code(value: str, codes: dict[int, str], path: Path, lineno: int, column: str) -> int:
    """An integer code that ``codes`` names (ml-1m's age groups and occupations)."""
    code = _int(value, path, lineno, column)
    if code not in codes:
        raise DataError(
            f"expected {column} code in {sorted(codes)}, received {code}",
            file=str(path),
            line=lineno,
            column=column,
        )
    return code


def _users_1m(folder: Path) -> MetaTable:
    path = folder / "users.dat"
    table = MetaTable(path, ("age", "age_group", "gender", "occupation", "occupation_code", "zip"))
    for lineno, (uid, gender, age, occ, zipc) in _fields(
        path, "latin-1", "::", ("user", "gender", "age", "occupation", "zip")
    ):
        age_code = _code(age, ML1M_AGE_GROUPS, path, lineno, "age")
        occ_code = _code(occ, ML1M_OCCUPATIONS, path, lineno, "occupation")
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


FEATURE_DTYPES = {
    # the dtype of each feature column that is not an object column
    "year": "Int64",
    "age": "Int64",
    "occupation_code": "Int64",
    "tmdb_id": "Int64",
    "release_date": "datetime",
}


def read_movies(folder: Path, kind: Kind, encoding: str) -> MetaTable:
    """The movie metadata of a release folder (``u.item``, ``movies.dat`` or ``movies.csv``
    with ``links.csv``)."""
    if kind == "100k":
        return _movies_100k(folder)
    if kind == "dat":
        return _movies_dat(folder, encoding)
    return _movies_csv(folder)


_USERS: dict[str, Callable[[Path], MetaTable]] = {"ml-100k": _users_100k, "ml-1m": _users_1m}


def read_users(folder: Path, release: str) -> MetaTable | None:
    """The user metadata of a release folder (ml-100k and ml-1m only; else ``None``)."""
    reader = _USERS.get(release)
    return None if reader is None else reader(folder)
