"""Saving and loading a model: its config and weights in one safetensors file.

The config (``model.config()``, with the family's name) is stored as JSON in the file's
metadata with a format version; :func:`read_model_file` rebuilds the model through the family
registry (:func:`recfit.models.registry.build_model`) without running code from the file.

This file is a part, not a deliverable: a bundle's ``model.safetensors`` and the
``Checkpoint`` callback's snapshots. A model to keep, serve or hand over is saved with
:func:`recfit.save_model`, which writes a bundle (vocabularies, seen items, titles and
checksums with it) that ``Recommender.load``, ``recfit serve`` and ``recfit recommend`` read.

Example:
    >>> MODEL_FORMAT_VERSION
    1
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recfit.errors import BundleError
from recfit.models.base import RECORD_BUFFERS, RatingModel
from recfit.models.registry import build_model

__all__ = ["MODEL_FORMAT_VERSION", "read_model_file", "read_model_metadata", "write_model_file"]

MODEL_FORMAT_VERSION = 1
"""Version of the model file format (a file of another version is refused)."""


def _jsonable(config: Mapping[str, Any]) -> str:
    def conv(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        return v

    return json.dumps({k: conv(v) for k, v in config.items()}, sort_keys=True)


def write_model_file(
    model: RatingModel, path: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write the model's config and weights to one safetensors file.

    The config is stored as JSON in the file's metadata (key ``recfit.config``) with the
    format version; :func:`read_model_file` rebuilds the model from it without running code.

    Example:
        >>> import tempfile, os
        >>> from recfit.models import DotBias
        >>> m = DotBias(3, 4, n_factors=2)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     m2 = read_model_file(write_model_file(m, os.path.join(d, "m.safetensors")))
        >>> bool(torch.equal(m2.user_factors, m.user_factors))
        True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "recfit.format_version": str(MODEL_FORMAT_VERSION),
        "recfit.config": _jsonable(model.config()),
    }
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=meta)
    return path


def read_model_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file written by :func:`write_model_file`."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def read_model_file(path: str | Path, device: str | torch.device = "cpu") -> RatingModel:
    """Rebuild a model saved by :func:`write_model_file` (config + weights).

    Raises:
        BundleError: the file is missing, not a recfit model, or from another format version.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"expected a model file, received missing path {str(path)!r}")
    try:
        meta = read_model_metadata(path)
        tensors = load_file(str(path), device=str(device))
    except Exception as e:
        raise BundleError(f"expected a safetensors model file, received {str(path)!r}: {e}") from e
    version = meta.get("recfit.format_version")
    if version != str(MODEL_FORMAT_VERSION):
        raise BundleError(
            f"expected model format version {MODEL_FORMAT_VERSION}, received {version!r} "
            f"(file {str(path)!r})"
        )
    try:
        config = json.loads(meta["recfit.config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise BundleError(f"expected a model config in {str(path)!r}, received none") from e
    model = build_model(config)
    try:
        missing = set(model.state_dict()) - set(tensors)
        if missing and missing <= set(RECORD_BUFFERS):
            # a file from before the training record: load it, nothing recorded
            model.load_state_dict(tensors, strict=False)
        else:
            model.load_state_dict(tensors)
    except RuntimeError as e:
        raise BundleError(f"expected weights matching the config in {str(path)!r}: {e}") from e
    return model.to(device)
