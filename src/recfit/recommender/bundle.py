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
import math
import os
import reprlib
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

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
from recfit.models import base as model_base
from recfit.models.base import RatingModel
from recfit.models.persist import MODEL_FORMAT_VERSION
from recfit.models.registry import build_model

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "DTYPE_SIZES",
    "MANIFEST",
    "MAX_JSON_DEPTH",
    "BundleFiles",
    "FileEntry",
    "ItemColumns",
    "ItemInfoDoc",
    "ManifestDoc",
    "MetaDoc",
    "TensorInfo",
    "VocabularyDoc",
    "bundle_path",
    "load_arrays_bytes",
    "load_model_bytes",
    "parse_json",
    "read_item_info",
    "read_json",
    "read_plain_file",
    "read_safetensors_header",
    "read_vocabulary",
    "sha256_file",
    "validate_doc",
    "verify_manifest",
    "write_bundle_dir",
]

BUNDLE_FORMAT = "recfit.bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUN_SUBDIR = "bundle"
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a bundle's JSON."""
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_BYTES = 1 << 30
"""Largest JSON file of a bundle (vocabularies of tens of millions of ids fit)."""
MAX_HEADER_BYTES = 100 << 20
"""Largest safetensors header accepted (the safetensors library's own limit)."""
MAX_TENSORS = 100_000
"""Most tensors one safetensors file of a bundle may declare."""
_INT64 = (-(1 << 63), (1 << 63) - 1)


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
    raise BundleError(
        f"expected a bundle (a folder with {MANIFEST}) or a run directory holding "
        f"{RUN_SUBDIR}/{MANIFEST}, received {str(p)!r} (re-run `recfit train` to write one)"
    )


# ------------------------------------------------------------------ JSON
class _Rejected(ValueError):
    def __init__(self, expected: str, received: str) -> None:
        super().__init__(expected, received)
        self.expected, self.received = expected, received


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or not _INT64[0] <= (v := int(text)) <= _INT64[1]:
        raise _Rejected("integers within int64", text if len(text) <= 24 else text[:24] + "...")
    return v


def _parse_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _Rejected("finite numbers", text if len(text) <= 24 else text[:24] + "...")
    return v


def _parse_constant(text: str) -> Any:
    raise _Rejected("finite numbers", text)


def _check_depth(value: Any, where: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v
        if depth > MAX_JSON_DEPTH:
            raise BundleError(
                f"expected JSON nested at most {MAX_JSON_DEPTH} deep in {where}, received "
                "deeper nesting"
            )
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def parse_json(data: bytes | str, where: str) -> Any:
    """Parse untrusted JSON: finite numbers only, integers within int64, nesting at most
    :data:`MAX_JSON_DEPTH` deep.

    Raises:
        BundleError: invalid UTF-8 or JSON, or any of the above, naming ``where``.

    Example:
        >>> parse_json(b'{"a": [1, 2.5]}', "x.json")
        {'a': [1, 2.5]}
        >>> parse_json(b'[NaN]', "x.json")
        Traceback (most recent call last):
        recfit.errors.BundleError: expected finite numbers in x.json, received NaN
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except _Rejected as exc:
        raise BundleError(f"expected {exc.expected} in {where}, received {exc.received}") from None
    except RecursionError:
        raise BundleError(
            f"expected JSON nested at most {MAX_JSON_DEPTH} deep in {where}, received deeper "
            "nesting"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"expected valid JSON in {where}, received: {exc}") from None
    _check_depth(value, where)
    return value


def read_json(folder: Path, name: str, *, max_bytes: int | None = None) -> Any:
    """Parse the plain file ``folder/name`` with :func:`parse_json`.

    Raises:
        BundleError: the file is missing, not a plain file inside ``folder``, or not
            acceptable JSON.
    """
    return parse_json(read_plain_file(folder, name, max_bytes=max_bytes), str(folder / name))


# ------------------------------------------------------------------ schemas
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = (
    60, 60, 4, 4, 2
)  # fmt: skip

Int64 = Annotated[int, Field(ge=_INT64[0], le=_INT64[1])]
Count = Annotated[int, Field(ge=0, le=_INT64[1])]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


M = TypeVar("M", bound=_Doc)


def validate_doc(doc: type[M], value: Any, where: str) -> M:
    """``value`` validated against the schema ``doc``.

    Raises:
        BundleError: naming ``where``, the first offending field, what it expected and
            what it received.
    """
    try:
        return doc.model_validate(value)
    except ValidationError as exc:
        errs = exc.errors(include_url=False)
        e = errs[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
        msg = str(e["msg"])
        msg = msg[:1].lower() + msg[1:]
        got = _SHORT.repr(e.get("input"))
        raise BundleError(
            f"expected field {loc!r} of {where} to satisfy: {msg}; received {got}{more}"
        ) from None


class FileEntry(_Doc):
    """One file of the manifest."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Count


class ManifestDoc(_Doc):
    """``manifest.json``."""

    format: Literal["recfit.bundle"]
    format_version: Literal[1]
    recfit_version: str
    model: str
    created: str
    files: dict[str, FileEntry]


class MetaDoc(_Doc):
    """``recommender.json``."""

    model: str
    n_users: Count
    n_items: Count
    rating_scale: Annotated[list[float], Field(min_length=2, max_length=2)] | None
    config: dict[str, Any] | None
    feature_spaces: dict[str, dict[str, Any]]
    fold_in_reg: Annotated[float, Field(gt=0)]
    min_item_count: float

    @field_validator("rating_scale")
    @classmethod
    def _scale_increases(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError("[lo, hi] with lo < hi")
        return v


class VocabularyDoc(_Doc):
    """``users.json`` and ``items.json``."""

    name: str = "id"
    kind: Literal["int", "str"]
    unknown: Literal["error", "sentinel"] = "error"
    sentinel: Annotated[int, Field(ge=_INT64[0], le=-1)] = -1
    ids: list[Int64] | list[str]

    @field_validator("ids")
    @classmethod
    def _kind_matches(cls, v: list[int] | list[str], info: ValidationInfo) -> list[int] | list[str]:
        kind = info.data.get("kind")
        if v and kind is not None and isinstance(v[0], str) != (kind == "str"):
            raise ValueError(f"ids of the vocabulary's kind {kind!r}")
        return v


Year = Annotated[float, Field(ge=-1e15, le=1e15)]


class ItemColumns(_Doc):
    """The columns of ``item_info.json`` (each present only when the bundle has it)."""

    title: list[str | None] | None = None
    year: list[Year | None] | None = None
    genres: list[list[str] | None] | None = None

    @field_validator("year")
    @classmethod
    def _whole_years(cls, v: list[float | None] | None) -> list[float | None] | None:
        for k, y in enumerate(v or ()):
            if y is not None and y != int(y):
                raise ValueError(f"whole years, received {y} at row {k}")
        return v


class ItemInfoDoc(_Doc):
    """``item_info.json``."""

    columns: ItemColumns


class _TensorSpec(_Doc):
    dtype: str
    shape: Annotated[list[Count], Field(max_length=8)]
    data_offsets: Annotated[list[Count], Field(min_length=2, max_length=2)]


# ------------------------------------------------------------------ safetensors
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
"""Bytes per element of each safetensors dtype."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors header: dtype, shape, and its byte range in the data."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        """The number of elements."""
        return math.prod(self.shape)


def read_safetensors_header(
    data: bytes, where: str
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors and string metadata a safetensors file declares, checked against its
    size, without allocating any tensor.

    Every tensor needs a known dtype, a shape whose size matches its byte range, and
    the byte ranges must tile the data after the header exactly.

    Raises:
        BundleError: naming ``where`` and the offending tensor.

    Example:
        >>> import numpy as np
        >>> from safetensors.numpy import save
        >>> infos, meta = read_safetensors_header(save({"a": np.zeros((2, 3), "float32")}), "x")
        >>> infos["a"].shape, infos["a"].dtype, meta
        ((2, 3), 'F32', {})
    """
    if len(data) < 8:
        raise BundleError(f"expected a safetensors file in {where}, received {len(data)} bytes")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise BundleError(
            f"expected a safetensors header within the file in {where}, received a header "
            f"of {n} bytes in a file of {len(data)} bytes"
        )
    header = parse_json(data[8 : 8 + n], f"the safetensors header of {where}")
    if not isinstance(header, dict):
        raise BundleError(
            f"expected a JSON object as the safetensors header of {where}, received "
            f"{type(header).__name__}"
        )
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise BundleError(
            f"expected string metadata in the safetensors header of {where}, received "
            f"{_SHORT.repr(meta)}"
        )
    if len(header) > MAX_TENSORS:
        raise BundleError(
            f"expected at most {MAX_TENSORS} tensors in {where}, received {len(header)}"
        )
    infos: dict[str, TensorInfo] = {}
    for name, raw in header.items():
        spec = validate_doc(_TensorSpec, raw, f"tensor {name!r} of {where}")
        size = DTYPE_SIZES.get(spec.dtype)
        if size is None:
            raise BundleError(
                f"expected a dtype among {sorted(DTYPE_SIZES)} for tensor {name!r} of {where}, "
                f"received {spec.dtype!r}"
            )
        begin, end = spec.data_offsets
        info = TensorInfo(spec.dtype, tuple(spec.shape), begin, end)
        if end - begin != info.numel * size:
            raise BundleError(
                f"expected {info.numel * size} bytes for tensor {name!r} of {where} "
                f"({spec.dtype} {list(info.shape)}), received offsets {begin}..{end}"
            )
        infos[name] = info
    pos, n_data = 0, len(data) - 8 - n
    for name, info in sorted(infos.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin != pos:
            raise BundleError(
                f"expected tensor {name!r} of {where} to start at byte {pos} of the data, "
                f"received {info.begin}"
            )
        pos = info.end
    if pos != n_data:
        raise BundleError(
            f"expected tensors covering the {n_data} data bytes of {where}, received {pos} bytes"
        )
    return infos, {str(k): v for k, v in meta.items()}


# ------------------------------------------------------------------ manifest
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
            f"expected a {BUNDLE_FORMAT!r} manifest, received format {_SHORT.repr(got)} ({where!r})"
        )
    version = man.get("format_version")
    if version != BUNDLE_FORMAT_VERSION or isinstance(version, bool):
        raise BundleError(
            f"expected bundle format version {BUNDLE_FORMAT_VERSION} (recfit {__version__}), "
            f"received version {_SHORT.repr(version)} written by recfit "
            f"{_SHORT.repr(man.get('recfit_version'))} ({str(folder)!r}); re-save it with a "
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


# ------------------------------------------------------------------ model and arrays
_TORCH_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip
_NUMPY_DTYPES = ("BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64")


def _short_exc(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def load_model_bytes(
    data: bytes, where: str, sizes: Mapping[str, int] | None = None
) -> RatingModel:
    """Rebuild a model from the bytes of a file written by
    :func:`~recfit.models.save_model`, checking every declared size first.

    The header is checked (:func:`read_safetensors_header`), the model is built from its
    config on PyTorch's ``meta`` device (no memory), and its parameter and buffer names,
    dtypes and shapes must equal the tensors' own; only then are the weights read and
    the model built for real. Weights must be finite.

    Args:
        data: the file's bytes.
        where: the file, for messages.
        sizes: expected values of the model's ``n_users`` / ``n_items`` (the
            vocabularies' sizes), checked on the meta model.

    Raises:
        BundleError: naming ``where`` and the config key or tensor at fault.
    """
    import torch
    from safetensors.torch import load as load_tensors

    infos, meta = read_safetensors_header(data, where)
    version = meta.get("recfit.format_version")
    if version != str(MODEL_FORMAT_VERSION):
        raise BundleError(
            f"expected model format version {MODEL_FORMAT_VERSION}, received "
            f"{_SHORT.repr(version)} (file {where!r})"
        )
    raw = meta.get("recfit.config")
    if raw is None:
        raise BundleError(f"expected a model config in {where!r}, received none")
    config = parse_json(raw, f"the model config of {where}")
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise BundleError(
            f"expected a model config object with a 'name' in {where!r}, received "
            f"{_SHORT.repr(config)}"
        )
    try:
        with torch.device("meta"):
            shell = build_model(config)
        want = {k: (v.dtype, tuple(v.shape)) for k, v in shell.state_dict().items()}
    except Exception as exc:  # any failure to build from an untrusted config is the bundle's
        raise BundleError(
            f"expected a model config that builds a {config['name']!r} model in {where!r}, "
            f"received: {_short_exc(exc)}"
        ) from None
    for key, size in (sizes or {}).items():
        got = getattr(shell, key, size)
        if isinstance(got, int) and got != size:
            raise BundleError(
                f"expected {key}={size} (the vocabulary's size) in the model config of "
                f"{where!r}, received {got}"
            )
    # a file from before the training record lacks its buffers: it loads without one
    optional = set(getattr(model_base, "RECORD_BUFFERS", ()))
    missing = set(want) - set(infos)
    lenient = bool(missing) and missing <= optional
    for name in sorted(set(want) | set(infos)):
        if name not in infos and lenient:
            continue
        if name not in infos:
            raise BundleError(f"expected tensor {name!r} in {where!r}, received none")
        if name not in want:
            raise BundleError(
                f"expected only the tensors of a {config['name']!r} model in {where!r}, "
                f"received {name!r}"
            )
        dtype, shape = want[name]
        got = infos[name]
        if _TORCH_DTYPES.get(got.dtype) != str(dtype).removeprefix("torch.") or got.shape != shape:
            raise BundleError(
                f"expected tensor {name!r} of {where!r} as {str(dtype).removeprefix('torch.')} "
                f"{list(shape)} (the model config's sizes), received {got.dtype} {list(got.shape)}"
            )
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # the header was checked; the library may still refuse it
        raise BundleError(
            f"expected readable tensors in {where!r}, received: {_short_exc(exc)}"
        ) from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BundleError(
                f"expected finite values in tensor {name!r} of {where!r}, received NaN or inf"
            )
    try:
        model = build_model(config)
        model.load_state_dict(tensors, strict=not lenient)
    except Exception as exc:
        raise BundleError(
            f"expected weights matching the config in {where!r}, received: {_short_exc(exc)}"
        ) from None
    return model.eval()


def load_arrays_bytes(
    data: bytes, where: str, expect: Mapping[str, tuple[str, tuple[int | None, ...]]],
    prefixes: Mapping[str, tuple[int | None, ...]] = {},
) -> dict[str, np.ndarray]:  # fmt: skip
    """The numpy arrays of a safetensors file, each checked against its header first.

    Args:
        data: the file's bytes.
        where: the file, for messages.
        expect: name → (dtype, shape) of every required array; ``None`` in a shape
            accepts any length on that axis.
        prefixes: name prefix → the leading shape of optional arrays under it (any
            numeric dtype, at most 2 axes).

    Raises:
        BundleError: a missing, unexpected, mistyped or misshapen array.
    """
    from safetensors.numpy import load as load_numpy

    infos, _ = read_safetensors_header(data, where)

    def fits(shape: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
        return len(shape) == len(want) and all(
            w is None or s == w for s, w in zip(shape, want, strict=True)
        )

    for name, info in infos.items():
        if name in expect:
            dtype, shape = expect[name]
            if info.dtype != dtype or not fits(info.shape, shape):
                raise BundleError(
                    f"expected array {name!r} of {where!r} as {dtype} "
                    f"{['any' if s is None else s for s in shape]}, received {info.dtype} "
                    f"{list(info.shape)}"
                )
            continue
        lead = next((v for k, v in prefixes.items() if name.startswith(k)), None)
        if lead is None:
            raise BundleError(
                f"expected only the arrays {sorted(expect)} (and {sorted(prefixes)}...) in "
                f"{where!r}, received {name!r}"
            )
        if (
            info.dtype not in _NUMPY_DTYPES
            or not 1 <= len(info.shape) <= 2
            or not fits(info.shape[: len(lead)], lead)
        ):
            raise BundleError(
                f"expected array {name!r} of {where!r} numeric with leading shape "
                f"{list(lead)} and at most 2 axes, received {info.dtype} {list(info.shape)}"
            )
    for name in expect:
        if name not in infos:
            raise BundleError(f"expected array {name!r} in {where!r}, received none")
    try:
        arrays = load_numpy(data)
    except Exception as exc:
        raise BundleError(
            f"expected readable arrays in {where!r}, received: {_short_exc(exc)}"
        ) from None
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise BundleError(
                f"expected finite values in array {name!r} of {where!r}, received NaN or inf"
            )
    return arrays


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


def read_item_info(files: BundleFiles, n_items: int) -> pd.DataFrame | None:
    """The item titles, years and genres of ``item_info.json`` (one row per item index),
    or ``None`` when the bundle has none.

    Raises:
        BundleError: a column of the wrong type or length.
    """
    import pandas as pd

    where = files.where("item_info.json")
    cols = validate_doc(ItemInfoDoc, files.json("item_info.json"), where).columns
    data: dict[str, Any] = {}
    for key in ("title", "year", "genres"):
        values = getattr(cols, key)
        if values is None:
            continue
        if len(values) != n_items:
            raise BundleError(
                f"expected field 'columns.{key}' of {where} with one value per item "
                f"({n_items}), received {len(values)}"
            )
        if key == "year":
            data[key] = pd.array([None if y is None else int(y) for y in values], dtype="Int64")
        elif key == "genres":
            data[key] = [() if g is None else tuple(g) for g in values]
        else:
            data[key] = list(values)
    return pd.DataFrame(data) if data else None
