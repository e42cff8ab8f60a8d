"""One entry point for "the data a run names": a MovieLens release or a rating file,
and its split (a spec, or one of ml-100k's predefined splits)."""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from recfit.data.columns import ReadOptions, read_options
from recfit.data.grouplens import (
    DATASETS,
    PREDEFINED_SPLITS,
    movielens,
    movielens_folder,
    predefined_split,
    release_folder,
)
from recfit.data.interactions import Interactions
from recfit.data.io import load
from recfit.data.split import ColdPolicy, Split, split_by_spec
from recfit.errors import ConfigError

__all__ = ["load_dataset", "make_split", "split_dataset"]

_FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".gz", ".bz2", ".zip", ".xz", ".zst")


def load_dataset(
    dataset: str | Path,
    *,
    data_dir: str | Path | None = None,
    **options: Unpack[ReadOptions],
) -> Interactions:
    """A MovieLens release by name, a rating file by path (CSV, TSV, Parquet), or a folder.

    A folder is read as the extracted MovieLens release it is (or holds), else as the one
    rating file it holds. ``options`` are those of :func:`recfit.data.io.from_frame`;
    only ``duplicates`` applies to a MovieLens release.

    Raises:
        DataError: the file cannot be read or holds invalid values.
        ConfigError: ``dataset`` is neither an existing file nor a MovieLens name, or a
            folder holds no release and not exactly one rating file.

    Example:
        >>> load_dataset("ml-7m")
        Traceback (most recent call last):
        ...
        recfit.errors.ConfigError: expected a file path or a MovieLens name (ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest-small, ml-latest), received 'ml-7m'
    """
    duplicates = read_options(options, "load_dataset").get("duplicates", "error")
    p = Path(dataset)
    if str(dataset) not in DATASETS and (p.exists() or p.suffix.lower() in _FILE_SUFFIXES):
        if p.is_dir():
            found = release_folder(p)
            if found is not None:
                return movielens_folder(found[1], duplicates=duplicates)
            p = _only_rating_file(p)
        return load(p, **options)
    if str(dataset) not in DATASETS:
        raise ConfigError(
            f"expected a file path or a MovieLens name ({', '.join(DATASETS)}), "
            f"received {str(dataset)!r}"
        )
    return movielens(str(dataset), data_dir=data_dir, duplicates=duplicates)


def _only_rating_file(folder: Path) -> Path:
    """The one CSV / TSV / Parquet file directly in ``folder``."""
    try:
        files = sorted(
            f
            for f in folder.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in _FILE_SUFFIXES
        )
    except OSError as exc:
        raise ConfigError(f"expected a readable folder, received {str(folder)!r}: {exc}") from None
    if len(files) != 1:
        raise ConfigError(
            f"expected a folder holding a MovieLens release or exactly one rating file "
            f"(.csv, .tsv, .parquet), received {str(folder)!r} with "
            f"{[f.name for f in files][:10] or 'none'}; pass the file itself"
        )
    return files[0]


def make_split(
    data: Interactions,
    spec: str,
    *,
    seed: int = 0,
    cold: ColdPolicy = "keep",
    data_dir: str | Path | None = None,
) -> Split:
    """Split ``data`` by ``spec``: ``random:F``, ``user:F``, ``temporal:F``, ``last:K``,
    ``kfold:K:J``, ``users:F:G`` (see :mod:`recfit.data.split`), or ml-100k's own ``u1``
    … ``u5``, ``ua``, ``ub``.

    A predefined split reads ``<spec>.base`` and ``<spec>.test`` from the folder the
    data was loaded from (``data.meta["folder"]``), else from ``data_dir`` as for
    :func:`recfit.data.movielens`.

    Raises:
        ConfigError: a predefined split asked of data other than ml-100k, or a bad spec.
        DataError: a predefined split's files are missing or do not match the data.

    Example:
        >>> d = Interactions.from_arrays(range(10), range(10), [4.0] * 10)
        >>> make_split(d, "random:0.2", seed=0).summary()["test"]
        2
        >>> make_split(d, "u1")
        Traceback (most recent call last):
        ...
        recfit.errors.ConfigError: expected ml-100k (loaded with recfit.data.movielens) for the predefined split 'u1', received data named 'ratings'
    """
    if spec in PREDEFINED_SPLITS:
        if data.name != "ml-100k":
            raise ConfigError(
                f"expected ml-100k (loaded with recfit.data.movielens) for the predefined "
                f"split {spec!r}, received data named {data.name!r}"
            )
        return predefined_split("ml-100k", spec, data_dir, data=data).with_cold(cold)
    return split_by_spec(data, spec, seed=seed, cold=cold)


split_dataset = make_split
"""The name run configurations and the command line have used for :func:`make_split`."""
