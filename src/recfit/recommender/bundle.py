"""The bundle on disk: a folder of JSON and safetensors files with a checksummed manifest.

Layout (format version :data:`BUNDLE_FORMAT_VERSION`)::

    manifest.json        format, format_version, recfit_version, model family, created,
                         and {file: {"sha256", "bytes"}} for every other file
    recommender.json     rating scale, run config, feature spaces, sizes, fold-in settings
    users.json           user vocabulary (raw id ↔ index)
    items.json           item vocabulary
    item_info.json       title / year / genres per item index (columns present only)
    model.safetensors    weights + model config in the metadata (recfit.models.save_model)
    arrays.safetensors   seen items (CSR: seen_indptr int64, seen_indices int32),
                         popularity float64, and side-feature arrays
                         ("features/<side>/<name>")

Loading reads JSON and safetensors only: nothing in a bundle is executed. Every file
is checked against the manifest's sha256 before it is parsed; a missing, truncated or
altered file, invalid JSON, or another format version raises
:class:`~recfit.errors.BundleError` naming the file.

Saving writes every file into a fresh hidden sibling folder (``.NAME.tmp-XXXX``), fsyncs
it, and only then moves it into place: onto a free path with one ``rename``, over an
existing bundle with an atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere
two renames, with the old bundle kept under ``.NAME.old-XXXX`` for the instant between
them) before the old copy is deleted. A crash at any point leaves either the old bundle
or the new one at the path, never a mixture.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recfit._fs import default_dir_mode, default_file_mode
from recfit.errors import BundleError

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MANIFEST",
    "bundle_path",
    "read_json",
    "sha256_file",
    "verify_manifest",
    "write_bundle_dir",
]

BUNDLE_FORMAT = "recfit.bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUN_SUBDIR = "bundle"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = Path(d) / "x"; _ = p.write_bytes(b"abc")
        ...     sha256_file(p)[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundle_path(path: str | Path) -> Path:
    """The bundle folder for ``path``: itself, or ``path/bundle`` for a run directory.

    Raises:
        BundleError: neither holds a ``manifest.json``.
    """
    p = Path(path)
    if (p / MANIFEST).is_file():
        return p
    if (p / RUN_SUBDIR / MANIFEST).is_file():
        return p / RUN_SUBDIR
    if not p.exists():
        raise BundleError(f"expected a bundle or run directory, received missing path {str(p)!r}")
    raise BundleError(
        f"expected a bundle (a folder with {MANIFEST}) or a run directory holding "
        f"{RUN_SUBDIR}/{MANIFEST}, received {str(p)!r} (re-run `recfit train` to write one)"
    )


def read_json(folder: Path, name: str) -> Any:
    """Parse ``folder/name`` as JSON, raising :class:`BundleError` on any problem."""
    p = folder / name
    try:
        return json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise BundleError(
            f"expected {name} in the bundle, received a missing file ({str(p)!r})"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"expected valid JSON in {str(p)!r}, received: {exc}") from exc


def verify_manifest(folder: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """Read and check the manifest: format, version, and every file's size and sha256.

    Raises:
        BundleError: wrong format or version, a required file not listed, a listed file
            missing or with another size or checksum.
    """
    from recfit import __version__

    man = read_json(folder, MANIFEST)
    if not isinstance(man, dict) or man.get("format") != BUNDLE_FORMAT:
        got = man.get("format") if isinstance(man, dict) else type(man).__name__
        raise BundleError(
            f"expected a {BUNDLE_FORMAT!r} manifest, received format {got!r} "
            f"({str(folder / MANIFEST)!r})"
        )
    version = man.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"expected bundle format version {BUNDLE_FORMAT_VERSION} (recfit {__version__}), "
            f"received version {version!r} written by recfit {man.get('recfit_version')!r} "
            f"({str(folder)!r}); re-save it with a matching recfit"
        )
    files = man.get("files")
    if not isinstance(files, dict):
        raise BundleError(
            f"expected a 'files' table in {str(folder / MANIFEST)!r}, received {files!r}"
        )
    for name in required:
        if name not in files:
            raise BundleError(
                f"expected {name} listed in {str(folder / MANIFEST)!r}, received none"
            )
    for name, info in files.items():
        p = folder / name
        if not isinstance(info, dict) or "sha256" not in info:
            raise BundleError(f"expected a sha256 for {name} in the manifest, received {info!r}")
        if not p.is_file():
            raise BundleError(
                f"expected {name} in the bundle, received a missing file ({str(p)!r})"
            )
        size = p.stat().st_size
        if "bytes" in info and size != info["bytes"]:
            raise BundleError(
                f"expected {name} of {info['bytes']} bytes, received {size} bytes "
                f"(truncated or altered: {str(p)!r})"
            )
        digest = sha256_file(p)
        if digest != info["sha256"]:
            raise BundleError(
                f"expected sha256 {info['sha256']} for {name}, received {digest} "
                f"(damaged or altered: {str(p)!r})"
            )
    return man


def _fsync_dir(path: Path) -> None:
    if sys.platform.startswith("win"):  # pragma: no cover - no directory fds
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when unavailable."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - platform
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - old libc
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return int(rc) == 0


def write_bundle_dir(
    dest: str | Path,
    write_files: Callable[[Path], None],
    manifest: Mapping[str, Any],
) -> Path:
    """Write a bundle at ``dest`` atomically (see the module documentation).

    Args:
        dest: the bundle folder; it must not exist, be empty, or hold a bundle.
        write_files: writes every file except the manifest into the folder it is given.
        manifest: manifest fields; ``files`` (sizes and checksums) is added here.

    Raises:
        BundleError: ``dest`` is a non-empty folder that is not a bundle (it would be
            replaced), or a file that is not a folder.
    """
    dest = Path(dest)
    if dest.exists():
        if not dest.is_dir():
            raise BundleError(
                f"expected a folder path for the bundle, received a file {str(dest)!r}"
            )
        if not (dest / MANIFEST).is_file() and any(dest.iterdir()):
            raise BundleError(
                f"expected an empty folder or an existing bundle at {str(dest)!r}, received a "
                f"folder with other files (save into a subfolder such as {str(dest / RUN_SUBDIR)!r})"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        os.chmod(tmp, default_dir_mode())  # as mkdir would make it (mkdtemp: 0o700)
        write_files(tmp)
        files = {}
        for p in sorted(tmp.iterdir()):
            os.chmod(p, default_file_mode())  # safetensors writes 0o600
            with p.open("rb+") as f:
                os.fsync(f.fileno())
            files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        man = {**manifest, "files": files}
        text = json.dumps(man, indent=2, sort_keys=True) + "\n"
        with (tmp / MANIFEST).open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if not dest.exists():
            os.rename(tmp, dest)
        elif _exchange(tmp, dest):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old bundle
        else:  # pragma: no cover - non-Linux fallback
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
            os.rmdir(old)
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
