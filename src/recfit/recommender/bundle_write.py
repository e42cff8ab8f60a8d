"""Writing a Recommender's bundle: every file (see :mod:`recfit.recommender.bundle` for the
layout) into a fresh folder that is swapped in atomically, never from weights or settings
that would not load back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import save_file

from recfit._version import __version__
from recfit.errors import BundleError
from recfit.models.persist import write_model_file
from recfit.recommender.bundle import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, write_bundle_dir
from recfit.recommender.items import item_info_doc

if TYPE_CHECKING:
    from recfit.recommender.core import Recommender

__all__ = ["write_bundle"]


def _settings(rec: Recommender) -> str:
    """``recommender.json``: sizes, rating scale, config, feature spaces, fold-in settings."""
    meta = {
        "model": rec.family,
        "n_users": rec.n_users,
        "n_items": rec.n_items,
        "rating_scale": None if rec.rating_scale is None else list(rec.rating_scale),
        "config": rec.config,
        "feature_spaces": {k: v.to_dict() for k, v in rec.feature_spaces.items()},
        "fold_in_reg": rec.fold_in_reg,
        "min_item_count": rec.min_item_count,
    }
    try:
        return json.dumps(meta, indent=2, default=str, allow_nan=False)
    except ValueError as exc:
        raise BundleError(
            f"expected finite numbers in the recommender's settings, received: {exc}"
        ) from None


def _arrays(rec: Recommender) -> dict[str, np.ndarray]:
    """``arrays.safetensors``: seen items (CSR), popularity and side-feature arrays."""
    arrays: dict[str, np.ndarray] = {
        "seen_indptr": rec.seen.indptr.astype(np.int64),
        "seen_indices": rec.seen.indices.astype(np.int32),
        "popularity": rec.popularity.astype(np.float64),
    }
    for side, table in rec.features.items():
        for name, arr in table.items():
            a = np.ascontiguousarray(arr)
            if a.dtype.kind not in "biuf":
                raise BundleError(
                    f"expected numeric feature arrays, received {a.dtype} for "
                    f"{side} feature {name!r}"
                )
            arrays[f"features/{side}/{name}"] = a
    return arrays


def write_bundle(rec: Recommender, path: str | Path) -> Path:
    """Write ``rec``'s bundle to the folder ``path`` atomically; an existing bundle there
    is replaced only once the new one is complete.

    Raises:
        BundleError: ``path`` holds other files, a feature array cannot be stored, or a
            weight or setting is NaN or infinite (it would not load).
    """
    for name, t in rec.model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BundleError(
                f"expected finite model weights to save, received NaN or inf in {name!r}"
            )
    settings = _settings(rec)  # checked before anything is written
    arrays = _arrays(rec)

    def write(d: Path) -> None:
        write_model_file(rec.model, d / "model.safetensors")
        (d / "users.json").write_text(rec.users.to_json(), "utf-8")
        (d / "items.json").write_text(rec.items.to_json(), "utf-8")
        (d / "item_info.json").write_text(json.dumps(item_info_doc(rec.item_info)), "utf-8")
        (d / "recommender.json").write_text(settings, "utf-8")
        save_file(arrays, str(d / "arrays.safetensors"))

    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "recfit_version": __version__,
        "model": rec.family,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return write_bundle_dir(path, write, manifest)
