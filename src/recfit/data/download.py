"""Download, verify and safely extract the official GroupLens MovieLens archives.

:func:`fetch` streams ``<base URL>/<archive>.zip`` to a temporary file inside the cache
folder, verifies its checksum, extracts it into a temporary folder (rejecting absolute
paths, ``..`` components and links), writes a completion marker last and only then
renames the release folder into place. A folder in the cache is therefore either
complete or absent: an interrupted, truncated or corrupt download leaves nothing that
a later load would accept.

Checksums are written ``"<algorithm>:<hex>"`` (``md5`` or ``sha256``). GroupLens
publishes MD5 sums (``<archive>.zip.md5`` next to each archive); the table
:data:`ARCHIVES` holds them for the frozen releases. For the ``ml-latest*`` releases,
which GroupLens refreshes, the published ``.md5`` file is fetched from the same base URL.

The base URL is ``https://files.grouplens.org/datasets/movielens``; the ``base_url``
argument or the environment variable ``RECFIT_MOVIELENS_URL`` replaces it (a mirror,
or a local server in tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import lzma
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from recfit.data.checks import one_of
from recfit.errors import ChecksumError, ConfigError, DownloadError, RecfitError

__all__ = [
    "ARCHIVES",
    "DEFAULT_BASE_URL",
    "MARKER",
    "URL_ENV",
    "Archive",
    "base_url",
    "fetch",
    "is_complete",
]

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"
"""Where GroupLens publishes the archives."""

URL_ENV = "RECFIT_MOVIELENS_URL"
"""Environment variable that replaces :data:`DEFAULT_BASE_URL`."""

MARKER = ".recfit-complete"
"""File written last inside an extracted release; its presence means the folder is complete."""

_CHUNK = 1 << 20
_OFFLINE = (
    "; without network access, copy the extracted release folder (e.g. ml-100k/) into a "
    "folder and pass it with --data-dir (data_dir= in Python) or set RECFIT_DATA_DIR"
)


@dataclass(frozen=True)
class Archive:
    """One GroupLens archive.

    Attributes:
        name: the dataset name (``"ml-100k"``).
        archive: the zip file name on the server (``"ml-100k.zip"``).
        folder: the top-level folder inside the zip (``"ml-10M100K"`` for ml-10m).
        checksum: ``"md5:<hex>"`` as published by GroupLens, or ``None`` when the
            published ``.md5`` file must be fetched (releases that GroupLens refreshes).
        expanded: the release's size once extracted, in bytes (rounded up; generous for
            the releases GroupLens refreshes). Extraction stops with an error past
            :func:`max_expanded` of it, so a hostile archive cannot fill the disk.
    """

    name: str
    archive: str
    folder: str
    checksum: str | None
    expanded: int = 1 << 30

    @property
    def max_expanded(self) -> int:
        """The most bytes extraction writes: twice :attr:`expanded`, at least 64 MiB."""
        return max(2 * self.expanded, 64 << 20)


ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        Archive(
            "ml-100k", "ml-100k.zip", "ml-100k", "md5:0e33842e24a9c977be4e0107933c0723", 17 << 20
        ),
        Archive("ml-1m", "ml-1m.zip", "ml-1m", "md5:c4d9eecfca2ab87c1945afe126590906", 25 << 20),
        Archive(
            "ml-10m", "ml-10m.zip", "ml-10M100K", "md5:ce571fd55effeba0271552578f2648bd", 300 << 20
        ),
        Archive(
            "ml-20m", "ml-20m.zip", "ml-20m", "md5:cd245b17a1ae2cc31bb14903e1204af3", 900 << 20
        ),
        Archive(
            "ml-25m", "ml-25m.zip", "ml-25m", "md5:6b51fb2759a8657d3bfcbfc42b592ada", 1200 << 20
        ),
        Archive(
            "ml-32m", "ml-32m.zip", "ml-32m", "md5:d472be332d4daa821edc399621853b57", 1000 << 20
        ),
        Archive("ml-latest-small", "ml-latest-small.zip", "ml-latest-small", None, 32 << 20),
        Archive("ml-latest", "ml-latest.zip", "ml-latest", None, 3 << 30),
    )
}
"""The known archives by dataset name."""

_HEX = {"md5": 32, "sha256": 64}


def base_url(url: str | None = None) -> str:
    """The base URL to download from: ``url``, else ``$RECFIT_MOVIELENS_URL``, else GroupLens.

    Example:
        >>> base_url("http://127.0.0.1:8000/mirror/")
        'http://127.0.0.1:8000/mirror'
    """
    chosen = url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
    return chosen.rstrip("/")


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` is a release that :func:`fetch` finished extracting.

    Example:
        >>> is_complete("/nonexistent/ml-100k")
        False
    """
    return (Path(folder) / MARKER).is_file()


def _archive(name: str) -> Archive:
    return one_of(ARCHIVES, name, "a MovieLens dataset name")


def _parse_checksum(value: str, where: str) -> tuple[str, str]:
    """``"md5:<hex>"``, ``"sha256:<hex>"`` or a bare hex digest -> (algorithm, hex)."""
    text = value.strip().lower()
    algo, sep, digest = text.partition(":")
    if not sep:
        digest = algo
        algo = {32: "md5", 64: "sha256"}.get(len(digest), "")
    if algo not in _HEX or len(digest) != _HEX[algo] or re.fullmatch(r"[0-9a-f]+", digest) is None:
        raise ConfigError(
            f"expected a checksum 'md5:<32 hex>' or 'sha256:<64 hex>' ({where}), received {value!r}"
        )
    return algo, digest


def _published_md5(url: str, timeout: float) -> tuple[str, str]:
    """Fetch ``<url>.md5`` (``MD5 (x.zip) = <hex>`` or ``<hex>  x.zip``)."""
    md5_url = url + ".md5"
    try:
        with urllib.request.urlopen(md5_url, timeout=timeout) as resp:
            text = resp.read(4096).decode("ascii", errors="replace")
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"expected the published checksum at {md5_url}, received HTTP {exc.code} {exc.reason}"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(
            f"expected the published checksum at {md5_url}, received {exc!r}{_OFFLINE}"
        ) from exc
    m = re.search(r"\b([0-9a-fA-F]{32})\b", text)
    if m is None:
        raise DownloadError(f"expected an MD5 digest in {md5_url}, received {text[:200]!r}")
    return "md5", m.group(1).lower()


def _download(
    url: str, dest: Path, algo: str, *, timeout: float, progress: bool | None, desc: str
) -> str:
    """Stream ``url`` into ``dest``; return the hex digest. Raises DownloadError."""
    hasher = hashlib.new(algo)
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
            length_header = resp.headers.get("Content-Length")
            total = int(length_header) if length_header and length_header.isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=None if progress is None else not progress,
                leave=False,
            ) as bar:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"expected HTTP 200 from {url}, received HTTP {exc.code} {exc.reason}"
        ) from exc
    except http.client.IncompleteRead as exc:
        got = received + len(exc.partial)
        raise DownloadError(
            f"expected {got + (exc.expected or 0)} bytes from {url}, received {got} "
            "(the connection closed early)"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"expected to download {url}, received {exc!r}{_OFFLINE}") from exc
    if total is not None and received != total:
        raise DownloadError(
            f"expected {total} bytes from {url} (Content-Length), received {received}"
        )
    return hasher.hexdigest()


def _safe_members(zf: zipfile.ZipFile, url: str) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every member with its relative path; raise before anything is written if one is unsafe."""
    out: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    for info in zf.infolist():
        name = info.filename
        parts = re.split(r"[/\\]", name)
        mode = info.external_attr >> 16
        problem = None
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            problem = "an absolute path"
        elif ".." in parts:
            problem = "a '..' component"
        elif stat.S_ISLNK(mode):
            problem = "a symbolic link"
        elif "\x00" in name:
            problem = "a NUL character"
        if problem is not None:
            raise DownloadError(
                f"expected archive members with relative paths inside the archive folder, "
                f"received {name!r} with {problem} (from {url}); nothing was extracted"
            )
        rel = PurePosixPath(*[p for p in parts if p not in ("", ".")])
        out.append((info, rel))
    return out


def _extract(zip_path: Path, into: Path, url: str, limit: int | None = None) -> None:
    """Extract ``zip_path`` under ``into`` after checking every member; stop past ``limit``
    bytes written (the declared sizes are checked first, the written bytes counted)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = _safe_members(zf, url)
            declared = sum(info.file_size for info, _ in members)
            if limit is not None and declared > limit:
                raise DownloadError(
                    f"expected at most {limit:,} bytes once extracted, received an archive "
                    f"declaring {declared:,} (from {url}); nothing was extracted"
                )
            written = 0
            root = into.resolve()
            for info, rel in members:
                if not rel.parts:
                    continue
                target = root.joinpath(*rel.parts)
                if root not in target.resolve().parents:
                    raise DownloadError(
                        f"expected archive members inside {root}, received {info.filename!r} "
                        f"(from {url})"
                    )
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if limit is not None and written > limit:
                            raise DownloadError(
                                f"expected at most {limit:,} bytes once extracted, received "
                                f"more (from {url}); extraction stopped"
                            )
                        dst.write(chunk)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        zlib.error,
        lzma.LZMAError,
        RuntimeError,  # an encrypted member: a password is required
        NotImplementedError,  # a compression method Python lacks
        ValueError,
    ) as exc:
        if isinstance(exc, RecfitError):
            raise
        raise DownloadError(
            f"expected a valid zip archive (unencrypted) from {url}, received "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def fetch(
    name: str,
    cache_dir: str | Path,
    *,
    url: str | None = None,
    checksum: str | None = None,
    progress: bool | None = None,
    timeout: float = 60.0,
    max_expanded: int | None = None,
) -> Path:
    """Download, verify and extract MovieLens ``name`` into ``cache_dir``; return its folder.

    A complete folder already in ``cache_dir`` (with the :data:`MARKER` file) is returned
    without any network access.

    Args:
        name: a key of :data:`ARCHIVES` (``"ml-100k"``, ``"ml-1m"``, ..., ``"ml-latest"``).
        cache_dir: the folder that receives ``<official folder name>/``.
        url: the base URL (see :func:`base_url`); the archive is ``<url>/<archive>``.
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"`` to verify against instead of
            the table or the published ``.md5`` file.
        progress: show a tqdm bar (``None``: only on a terminal).
        timeout: seconds to wait on the network per operation.
        max_expanded: the most bytes extraction may write (default
            :attr:`Archive.max_expanded`: twice the release's known size).

    Returns:
        ``cache_dir / Archive.folder``, complete.

    Raises:
        ConfigError: an unknown name or a malformed ``checksum``.
        ChecksumError: the archive does not match the expected checksum.
        DownloadError: the transfer failed or was truncated (the message says how to
            use a copy already on disk), the zip is invalid, encrypted, unsafe or expands
            past ``max_expanded``, or the folder exists but is incomplete.

    Example:
        >>> fetch("ml-100k", "/tmp/recfit-datasets")  # doctest: +SKIP
        PosixPath('/tmp/recfit-datasets/ml-100k')
    """
    spec = _archive(name)
    cache = Path(cache_dir)
    target = cache / spec.folder
    if is_complete(target):
        return target
    if target.exists():
        raise DownloadError(
            f"expected {target} to be absent or a complete download (with {MARKER}), "
            f"received a folder without the marker or the release files; remove it, or point "
            f"data_dir / RECFIT_DATA_DIR at a folder holding a complete {spec.folder}/"
        )
    archive_url = f"{base_url(url)}/{spec.archive}"
    if checksum is not None:
        algo, expected = _parse_checksum(checksum, "checksum argument")
    elif spec.checksum is not None:
        algo, expected = _parse_checksum(spec.checksum, f"table entry {name}")
    else:
        algo, expected = _published_md5(archive_url, timeout)

    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=f".{spec.archive}.", suffix=".part")
        os.close(fd)
        tmp_zip = Path(tmp_name)
        tmp_dir = Path(tempfile.mkdtemp(dir=cache, prefix=f".{spec.folder}.", suffix=".extract"))
    except OSError as exc:
        raise DownloadError(f"expected a writable cache folder {cache}, received {exc!r}") from exc
    try:
        received = _download(
            archive_url, tmp_zip, algo, timeout=timeout, progress=progress, desc=spec.archive
        )
        if received != expected:
            raise ChecksumError(
                f"expected {algo} {expected}, received {algo} {received} for {archive_url}",
                url=archive_url,
                expected=f"{algo}:{expected}",
                received=f"{algo}:{received}",
            )
        _extract(
            tmp_zip,
            tmp_dir,
            archive_url,
            spec.max_expanded if max_expanded is None else max_expanded,
        )
        extracted = tmp_dir / spec.folder
        if not extracted.is_dir():
            found = sorted(p.name for p in tmp_dir.iterdir())
            raise DownloadError(
                f"expected a top-level folder {spec.folder!r} in {archive_url}, received {found}"
            )
        marker = {
            "name": name,
            "url": archive_url,
            "checksum": f"{algo}:{received}",
            "extracted_at": int(time.time()),
        }
        (extracted / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        try:
            os.replace(extracted, target)
        except OSError as exc:
            # Another process may have finished the same download first.
            if not is_complete(target):
                raise DownloadError(
                    f"expected to move the extracted release to {target}, received {exc!r}"
                ) from exc
        return target
    except RecfitError:
        raise
    except OSError as exc:  # disk full, permissions while extracting or writing the marker
        raise DownloadError(
            f"expected to write {spec.archive} into {cache}, received {exc!r}"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_zip.unlink()
        shutil.rmtree(tmp_dir, ignore_errors=True)
