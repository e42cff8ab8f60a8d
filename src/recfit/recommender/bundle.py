"""The bundle on disk: a folder of JSON and safetensors files with a checksummed manifest.

Layout (format version :data:`BUNDLE_FORMAT_VERSION`)::

    manifest.json        format, format_version, recfit_version, model family, created,
                         and {file: {"sha256", "bytes"}} for every other file
    recommender.json     rating scale, run config, feature spaces, sizes, fold-in settings
    users.json           user vocabulary (raw id ↔ index)
    items.json           item vocabulary
    item_info.json       title / year / genres per item index (columns present only)
    model.safetensors    weights + model config in the metadata (recfit.models.write_model_file)
    arrays.safetensors   seen items (CSR: seen_indptr int64, seen_indices int32),
                         popularity float64, and side-feature arrays
                         ("features/<side>/<name>")

Loading reads JSON and safetensors only: nothing in a bundle is executed, and a bundle is
treated as untrusted input:

* only the files above are read, each a plain file directly inside the bundle folder
  (a manifest entry naming another path, a symbolic link, a folder or a device is
  refused before it is opened or hashed);
* every file is checked against the manifest's size and sha256 before it is parsed;
* every JSON file is checked against a schema (types, lengths, finite numbers, ids
  within int64, nesting at most :data:`MAX_JSON_DEPTH` deep);
* every safetensors header is read and checked (dtype, shape, offsets against the file
  size) without allocating any tensor, and the model's declared sizes are compared with
  the tensors' own shapes (the model is first built on PyTorch's ``meta`` device, which
  allocates nothing) before any weights are allocated.

Any problem raises :class:`~recfit.errors.BundleError` naming the file and the field.

This module holds the format, the manifest and the atomic folder write; the checks of
untrusted JSON are in :mod:`~recfit.recommender.untrusted`, the schemas in
:mod:`~recfit.recommender.schemas`, the safetensors checks in
:mod:`~recfit.recommender.tensors`, and a Recommender's own files are written by
:mod:`~recfit.recommender.bundle_write` and read by :mod:`~recfit.recommender.bundle_read`.
A single-file model (a bare ``model.safetensors``, what ``recfit.models.write_model_file``
writes) is not a bundle: :func:`bundle_path` refuses it and says how to re-save it.

Saving writes every file into a fresh hidden sibling folder (``.NAME.tmp-XXXX``), fsyncs
it, and only then moves it into place: onto a free path with one ``rename``, over an
existing bundle with an atomic exchange (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere
two renames, with the old bundle kept under ``.NAME.old-XXXX`` for the instant between
them) before the old copy is deleted. A crash at any point leaves either the old bundle
or the new one at the path, never a mixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recfit._fs import (
    check_name,
    default_dir_mode,
    default_file_mode,
    open_plain,
    publish_dir,
    read_plain_file,
)
from recfit._version import __version__
from recfit.data.vocab import Vocabulary
from recfit.errors import BundleError, RecfitError
from recfit.recommender.schemas import ManifestDoc, VocabularyDoc
from recfit.recommender.untrusted import parse_json, read_json, short, validate_doc

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MANIFEST",
    "MAX_JSON_BYTES",
    "RUN_SUBDIR",
    "BundleFiles",
    "bundle_path",
    "read_vocabulary",
    "sha256_file",
    "single_file_kind",
    "verify_manifest",
    "write_bundle_dir",
]

BUNDLE_FORMAT = "recfit.bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUN_SUBDIR = "bundle"
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_BYTES = 1 << 30
"""Largest JSON file of a bundle (vocabularies of tens of millions of ids fit)."""


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


def _present(p: Path) -> bool:
    """``p`` exists as anything, a dangling symbolic link included."""
    return os.path.lexists(p)


def bundle_path(path: str | Path) -> Path:
    """The bundle folder for ``path``: itself, or ``path/bundle`` for a run directory.

    Raises:
        BundleError: neither holds a ``manifest.json``, or a run's ``bundle`` is a
            symbolic link (a run's files must lie inside the run folder).
    """
    p = Path(path)
    if _present(p / MANIFEST):
        return p
    sub = p / RUN_SUBDIR
    if _present(sub / MANIFEST):
        if sub.is_symlink() or not sub.is_dir():
            raise BundleError(
                f"expected {RUN_SUBDIR!r} as a plain folder inside {str(p)!r}, received a "
                "symbolic link or another kind of file"
            )
        return sub
    if not p.exists():
        raise BundleError(f"expected a bundle or run directory, received missing path {str(p)!r}")
    single = p if p.is_file() else p / "model.safetensors"  # an older run directory's
    kind = single_file_kind(single)
    if kind == "model":
        raise BundleError(
            f"expected a bundle (a folder with {MANIFEST}), received the single-file model "
            f"{str(single)!r}, which holds no vocabularies; re-save it as a bundle with "
            f"recfit.save_model(recfit.load_model({str(single)!r}), FOLDER, TRAINING_DATA)"
        )
    if kind == "checkpoint":
        raise BundleError(
            f"expected a bundle (a folder with {MANIFEST}), received the training checkpoint "
            f"{str(p)!r}; finish the run with `recfit train --resume RUN`, then load RUN "
            f"(its bundle is RUN/{RUN_SUBDIR})"
        )
    raise BundleError(
        f"expected a bundle (a folder with {MANIFEST}) or a run directory holding "
        f"{RUN_SUBDIR}/{MANIFEST}, received {str(p)!r} (re-run `recfit train` to write one)"
    )


SINGLE_FILE_KEYS = {"recfit.checkpoint": "checkpoint", "recfit.config": "model"}
"""Safetensors metadata keys that mark recfit's other files: a single-file model
(``recfit.models.write_model_file``) and a training checkpoint (looked for in this order)."""


def single_file_kind(path: Path) -> str | None:
    """``"model"`` for a single-file model, ``"checkpoint"`` for a training checkpoint,
    ``None`` for anything else; only the start of a plain file is read.

    Example:
        >>> import tempfile
        >>> from recfit.models import DotBias, write_model_file
        >>> with tempfile.TemporaryDirectory() as d:
        ...     single_file_kind(write_model_file(DotBias(2, 2, 1), Path(d) / "m.safetensors"))
        'model'
    """
    if path.is_symlink() or not path.is_file():
        return None
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        head = f.read(min(n, MAX_MANIFEST_BYTES))
    return next(
        (kind for key, kind in SINGLE_FILE_KEYS.items() if f'"{key}"'.encode() in head), None
    )


class BundleFiles:
    """The files of a bundle whose manifest was checked: each is read once, as a plain
    file inside the folder, and checked against its size and sha256 before use.

    Attributes:
        folder: the bundle folder.
        manifest: the validated manifest.
    """

    def __init__(self, folder: Path, manifest: ManifestDoc) -> None:
        self.folder = folder
        self.manifest = manifest

    def where(self, name: str) -> str:
        """The path of a file, for messages."""
        return str(self.folder / name)

    def read(self, name: str) -> bytes:
        """The verified bytes of a listed file.

        Raises:
            BundleError: not listed, not a plain file, another size or sha256.
        """
        entry = self.manifest.files.get(name)
        if entry is None:
            raise BundleError(f"expected {name} listed in {self.where(MANIFEST)!r}, received none")
        data = read_plain_file(self.folder, name, expect_bytes=entry.bytes)
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise BundleError(
                f"expected sha256 {entry.sha256} for {name}, received {digest} "
                f"(damaged or altered: {self.where(name)!r})"
            )
        return data

    def json(self, name: str) -> Any:
        """The verified file parsed with :func:`parse_json`."""
        return parse_json(self.read(name), self.where(name))


def verify_manifest(folder: Path, required: tuple[str, ...]) -> BundleFiles:
    """Read and check the manifest: format, version, schema, and that it lists exactly
    the ``required`` files, each a plain file inside ``folder`` of the listed size.

    The sha256 of each file is checked when :meth:`BundleFiles.read` reads it.

    Raises:
        BundleError: wrong format or version, a file missing from the manifest or one it
            should not list (another name, a path, ``..``), a listed file missing, not a
            plain file (a symbolic link, a folder ...) or of another size.
    """

    where = str(folder / MANIFEST)
    man = read_json(folder, MANIFEST, max_bytes=MAX_MANIFEST_BYTES)
    if not isinstance(man, dict) or man.get("format") != BUNDLE_FORMAT:
        got = man.get("format") if isinstance(man, dict) else type(man).__name__
        raise BundleError(
            f"expected a {BUNDLE_FORMAT!r} manifest, received format {short(got)} ({where!r})"
        )
    version = man.get("format_version")
    if version != BUNDLE_FORMAT_VERSION or isinstance(version, bool):
        raise BundleError(
            f"expected bundle format version {BUNDLE_FORMAT_VERSION} (recfit {__version__}), "
            f"received version {short(version)} written by recfit "
            f"{short(man.get('recfit_version'))} ({str(folder)!r}); re-save it with a "
            "matching recfit"
        )
    doc = validate_doc(ManifestDoc, man, where)
    for name in doc.files:
        check_name(name, folder)
        if name not in required:
            raise BundleError(
                f"expected only the files {sorted(required)} listed in {where!r}, received {name!r}"
            )
    for name in required:
        if name not in doc.files:
            raise BundleError(f"expected {name} listed in {where!r}, received none")
    for name in required:
        limit = MAX_JSON_BYTES if name.endswith(".json") else None
        if limit is not None and doc.files[name].bytes > limit:
            raise BundleError(
                f"expected {name} of at most {limit} bytes, received a manifest entry of "
                f"{doc.files[name].bytes} bytes ({where!r})"
            )
        fd, st = open_plain(folder, name)
        os.close(fd)
        if st.st_size != doc.files[name].bytes:
            raise BundleError(
                f"expected {name} of {doc.files[name].bytes} bytes, received {st.st_size} "
                f"bytes (truncated or altered: {str(folder / name)!r})"
            )
    return BundleFiles(folder, doc)


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
        publish_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_vocabulary(files: BundleFiles, name: str) -> Vocabulary:
    """The vocabulary in ``name`` (``users.json`` / ``items.json``), schema-checked.

    Raises:
        BundleError: a field of the wrong type, ids beyond int64, duplicate ids.
    """
    where = files.where(name)
    doc = validate_doc(VocabularyDoc, files.json(name), where)
    ids = (
        np.asarray(doc.ids, dtype=np.int64)
        if doc.kind == "int"
        else np.asarray(doc.ids, dtype=object).reshape(-1)
    )
    try:
        return Vocabulary(ids, name=doc.name, unknown=doc.unknown, sentinel=doc.sentinel)
    except RecfitError as exc:
        raise BundleError(f"expected a valid vocabulary at field 'ids' of {where}: {exc}") from None
