"""Reading untrusted safetensors files: the header is checked against the file's size
before any tensor is allocated, and a model's declared sizes against its tensors' shapes
before any weight is read (see :func:`load_model_bytes`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from safetensors.numpy import load as load_numpy
from safetensors.torch import load as load_tensors

from recfit.errors import BundleError
from recfit.models import base as model_base
from recfit.models.base import RatingModel
from recfit.models.persist import MODEL_FORMAT_VERSION
from recfit.models.registry import build_model
from recfit.recommender.untrusted import (
    Count,
    StrictDoc,
    parse_json,
    short,
    short_exc,
    validate_doc,
)

__all__ = [
    "DTYPE_SIZES",
    "MAX_HEADER_BYTES",
    "MAX_TENSORS",
    "TensorInfo",
    "load_arrays_bytes",
    "load_model_bytes",
    "read_safetensors_header",
]

MAX_HEADER_BYTES = 100 << 20
"""Largest safetensors header accepted (the safetensors library's own limit)."""
MAX_TENSORS = 100_000
"""Most tensors one safetensors file of a bundle may declare."""


class _TensorSpec(StrictDoc):
    dtype: str
    shape: Annotated[list[Count], Field(max_length=8)]
    data_offsets: Annotated[list[Count], Field(min_length=2, max_length=2)]


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
            f"expected string metadata in the safetensors header of {where}, received {short(meta)}"
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


_TORCH_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip
_NUMPY_DTYPES = ("BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64")


def load_model_bytes(
    data: bytes, where: str, sizes: Mapping[str, int] | None = None
) -> RatingModel:
    """Rebuild a model from the bytes of a file written by
    :func:`~recfit.models.write_model_file`, checking every declared size first.

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
    infos, meta = read_safetensors_header(data, where)
    version = meta.get("recfit.format_version")
    if version != str(MODEL_FORMAT_VERSION):
        raise BundleError(
            f"expected model format version {MODEL_FORMAT_VERSION}, received "
            f"{short(version)} (file {where!r})"
        )
    raw = meta.get("recfit.config")
    if raw is None:
        raise BundleError(f"expected a model config in {where!r}, received none")
    config = parse_json(raw, f"the model config of {where}")
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise BundleError(
            f"expected a model config object with a 'name' in {where!r}, received {short(config)}"
        )
    try:
        with torch.device("meta"):
            shell = build_model(config)
        want = {k: (v.dtype, tuple(v.shape)) for k, v in shell.state_dict().items()}
    except Exception as exc:  # any failure to build from an untrusted config is the bundle's
        raise BundleError(
            f"expected a model config that builds a {config['name']!r} model in {where!r}, "
            f"received: {short_exc(exc)}"
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
            f"expected readable tensors in {where!r}, received: {short_exc(exc)}"
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
            f"expected weights matching the config in {where!r}, received: {short_exc(exc)}"
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
            f"expected readable arrays in {where!r}, received: {short_exc(exc)}"
        ) from None
    for name, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise BundleError(
                f"expected finite values in array {name!r} of {where!r}, received NaN or inf"
            )
    return arrays
