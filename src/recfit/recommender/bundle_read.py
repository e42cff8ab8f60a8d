"""Reading a Recommender's bundle as untrusted input: the manifest first, then every
file checked against it and its schema, every declared size against the tensors'
headers, and the vocabularies, item table and arrays against each other (see
:mod:`recfit.recommender.bundle`). Nothing is executed and nothing is allocated from a
size that was not checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recfit.data.features import FeatureSpace
from recfit.data.vocab import Vocabulary
from recfit.errors import BundleError, RecfitError
from recfit.index import ItemSets
from recfit.models.base import RatingModel
from recfit.recommender.adapters import ModelAdapter
from recfit.recommender.bundle import BundleFiles, bundle_path, read_vocabulary, verify_manifest
from recfit.recommender.items import read_item_info
from recfit.recommender.schemas import MetaDoc
from recfit.recommender.tensors import load_arrays_bytes, load_model_bytes
from recfit.recommender.untrusted import validate_doc

__all__ = ["REQUIRED", "BundleContents", "check_answers", "read_bundle"]

REQUIRED = (
    "recommender.json",
    "users.json",
    "items.json",
    "item_info.json",
    "model.safetensors",
    "arrays.safetensors",
)
"""The files of a bundle besides its manifest (exactly these)."""


@dataclass(frozen=True)
class BundleContents:
    """What a checked bundle holds: the Recommender's arguments.

    Attributes:
        folder: the bundle folder.
        model: the model, weights loaded and checked.
        users: the user vocabulary.
        items: the item vocabulary.
        seen: each user's training items.
        options: the Recommender's keyword arguments (item_info, rating_scale, config,
            popularity, feature_spaces, features, fold_in_reg, min_item_count).
        model_file: the weights file, for messages.
    """

    folder: Path
    model: RatingModel
    users: Vocabulary
    items: Vocabulary
    seen: ItemSets
    options: dict[str, Any]
    model_file: str


def _check_meta(files: BundleFiles, meta: MetaDoc, users: Vocabulary, items: Vocabulary) -> None:
    """``recommender.json`` against the vocabularies and the manifest."""
    where = files.where("recommender.json")
    for side, vocab, n in (("n_users", users, meta.n_users), ("n_items", items, meta.n_items)):
        if len(vocab) != n:
            raise BundleError(
                f"expected field {side!r} of {where} to equal the vocabulary's size "
                f"{len(vocab)}, received {n}"
            )
    if meta.model != files.manifest.model:
        raise BundleError(
            f"expected field 'model' of {where} to equal the manifest's "
            f"{files.manifest.model!r}, received {meta.model!r}"
        )


def _spaces(files: BundleFiles, meta: MetaDoc) -> dict[str, FeatureSpace]:
    spaces = {}
    for key, value in (meta.feature_spaces or {}).items():
        try:
            spaces[key] = FeatureSpace.from_dict(value)
        except Exception as exc:  # untrusted content: any failure is the bundle's
            raise BundleError(
                f"expected a valid feature space at field 'feature_spaces.{key}' of "
                f"{files.where('recommender.json')}, received: {type(exc).__name__}: "
                f"{str(exc)[:300]}"
            ) from None
    return spaces


def read_bundle(path: str | Path) -> BundleContents:
    """Read and check the bundle at ``path`` (a bundle folder or a run directory).

    Raises:
        BundleError: missing, damaged, altered, inconsistent or from another format
            version; the message names the file and the field.
    """
    folder = bundle_path(path)
    files = verify_manifest(folder, REQUIRED)
    meta = validate_doc(MetaDoc, files.json("recommender.json"), files.where("recommender.json"))
    users = read_vocabulary(files, "users.json")
    items = read_vocabulary(files, "items.json")
    _check_meta(files, meta, users, items)
    item_info = read_item_info(files, len(items))
    model_file = files.where("model.safetensors")
    model = load_model_bytes(
        files.read("model.safetensors"), model_file, {"n_users": len(users), "n_items": len(items)}
    )
    family = type(model).registry_name
    if family != meta.model:
        raise BundleError(f"expected a {meta.model!r} model in {model_file!r}, received {family!r}")
    arrays = load_arrays_bytes(
        files.read("arrays.safetensors"),
        files.where("arrays.safetensors"),
        {
            "seen_indptr": ("I64", (len(users) + 1,)),
            "seen_indices": ("I32", (None,)),
            "popularity": ("F64", (len(items),)),
        },
        {"features/user/": (len(users),), "features/item/": (len(items),)},
    )
    features: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in arrays.items():
        if key.startswith("features/"):
            _, side, name = key.split("/", 2)
            features.setdefault(side, {})[name] = arr
    try:
        seen = ItemSets(arrays["seen_indptr"], arrays["seen_indices"])
    except RecfitError as exc:
        raise BundleError(
            f"expected a consistent bundle in {str(folder)!r}, received: {exc}"
        ) from exc
    options: dict[str, Any] = {
        "item_info": item_info,
        "rating_scale": None if meta.rating_scale is None else tuple(meta.rating_scale),
        "config": meta.config,
        "popularity": arrays["popularity"],
        "feature_spaces": _spaces(files, meta),
        "features": features,
        "fold_in_reg": meta.fold_in_reg,
        "min_item_count": meta.min_item_count,
    }
    return BundleContents(folder, model, users, items, seen, options, model_file)


def check_answers(adapter: ModelAdapter, seen: ItemSets, where: str) -> None:
    """Score every item for one trained user: the answers must be finite.

    Raises:
        BundleError: the model cannot answer, or answers NaN or infinity.
    """
    trained = np.flatnonzero(seen.lengths() > 0)
    user = torch.tensor([int(trained[0]) if len(trained) else 0])
    try:
        scores = adapter.score_all(adapter.user_rows(user))
    except RecfitError as exc:
        raise BundleError(f"expected a model that answers, in {where!r}: {exc}") from exc
    if not bool(torch.isfinite(scores).all()):
        raise BundleError(
            f"expected finite scores from the model in {where!r}, received NaN or inf "
            "(its config or weights are out of range)"
        )
