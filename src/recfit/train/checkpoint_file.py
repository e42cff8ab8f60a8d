"""The checkpoint file: one safetensors file, checked before anything is read from it.

The file holds tensors and, under the metadata key ``recfit.checkpoint``, JSON: the format
and its version (:data:`CHECKPOINT_VERSION`), the run's config, the training position
(kept at the top so tools read it without decoding anything) and the state of each
component, encoded by :func:`encode_state` (a tree of numbers, strings, lists and dicts
whose tensors are stored as tensors of the file and referred to by name). The metadata
key ``recfit.sha256`` is the SHA-256 of that JSON and of every tensor (:func:`checksum`).

:func:`read_file` refuses, with a :class:`~recfit.errors.CheckpointError`, a file that is
not a recfit checkpoint, one of another format version (files of earlier versions are
refused, never misread), a checksum that does not match, a tensor that is not finite and
an inconsistent position. :func:`write_checkpoint` writes atomically (temporary file,
fsync, rename). Nothing here executes code from the file.

Example:
    >>> tensors: dict[str, Tensor] = {}
    >>> tree = encode_state({"best": 0.5, "w": torch.zeros(2)}, "cb.0", tensors)
    >>> sorted(tensors), decode_state(tree, tensors)["best"]
    (['cb.0.w'], 0.5)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from recfit._fs import atomic_write, read_plain_file
from recfit.errors import CheckpointError, ConfigError

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_VERSION",
    "checksum",
    "decode_state",
    "encode_state",
    "load_rng_state",
    "read_file",
    "rng_state",
    "write_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.safetensors"
"""The checkpoint's file name inside a run directory."""
CHECKPOINT_VERSION = 3
"""3: each component's own ``state_dict`` (Learner, optimiser, callbacks, RNGs)."""
REQUIRED_TENSORS = ("learner.batch_order", "rng.torch", "rng.numpy.keys")
_META_KEY = "recfit.checkpoint"
_SHA_KEY = "recfit.sha256"


def _tensor_bytes(t: Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return bytes(flat.view(torch.uint8).numpy().tobytes())


def checksum(text: str, tensors: dict[str, Tensor]) -> str:
    """SHA-256 of a checkpoint's metadata JSON and its tensors (name, dtype, shape, bytes).

    Example:
        >>> a = checksum("{}", {"x": torch.zeros(2)})
        >>> a == checksum("{}", {"x": torch.zeros(2)}), a == checksum("{}", {"x": torch.ones(2)})
        (True, False)
    """
    h = hashlib.sha256(text.encode("utf-8"))
    for k in sorted(tensors):
        t = tensors[k]
        h.update(f"\0{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


# ------------------------------------------------------------------ state trees
def encode_state(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    """``obj`` (tensors, numbers, strings, ``None``, lists, tuples, dicts) as JSON-able
    data; each tensor goes to ``tensors`` under a name starting with ``key`` and is
    referred to by that name. :func:`decode_state` is the inverse.

    Example:
        >>> tensors: dict[str, Tensor] = {}
        >>> encode_state({"w": torch.ones(2), "n": (1, "a")}, "cb", tensors)
        {'w': {'__tensor__': 'cb.w'}, 'n': {'__tuple__': [1, 'a']}}
    """
    if isinstance(obj, Tensor):
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        items = [(k, encode_state(v, f"{key}.{k}", tensors)) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k, _ in items):
            return dict(items)
        return {
            "__dict__": [
                [encode_state(k, f"{key}.k{i}", tensors), v] for i, (k, v) in enumerate(items)
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [encode_state(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ConfigError(
        f"expected optimiser/callback state made of tensors, numbers, strings, lists and "
        f"dicts, received {type(obj).__name__} at {key!r}"
    )


def decode_state(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """The object :func:`encode_state` encoded, its tensors taken from ``tensors``."""
    if isinstance(obj, list):
        return [decode_state(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(decode_state(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {decode_state(k, tensors): decode_state(v, tensors) for k, v in obj["__dict__"]}
        return {k: decode_state(v, tensors) for k, v in obj.items()}
    return obj


# ------------------------------------------------------------------ global RNGs
def rng_state(device: torch.device) -> dict[str, Any]:
    """The global random generators a fit draws from: PyTorch's (dropout), CUDA's on a
    CUDA ``device``, and NumPy's legacy global RNG (the training loop does not use it;
    saved so user callbacks that do resume too).

    Example:
        >>> sorted(rng_state(torch.device("cpu")))
        ['numpy', 'torch']
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def load_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002 - the global RNG itself
        (n["name"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["gauss"]))
    )


# ------------------------------------------------------------------ the file
def write_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write one checkpoint file atomically (temporary file, fsync, rename)."""
    path = Path(path)
    text = json.dumps(meta, allow_nan=True, default=float)
    digest = checksum(text, tensors)
    atomic_write(path, st_save(tensors, metadata={_META_KEY: text, _SHA_KEY: digest}))
    return path


def read_file(run: str | Path) -> tuple[dict[str, Tensor], dict[str, Any], Path]:
    """Read and check ``RUN/checkpoint.safetensors`` (or a checkpoint file given
    directly): its tensors, its metadata and its path.

    Raises:
        CheckpointError: no checkpoint, a damaged one (checksum, non-finite tensor,
            inconsistent position), or one of another format version.
    """
    p = Path(run)
    if p.is_dir():
        p = p / CHECKPOINT_FILE
    if not os.path.lexists(p):
        raise CheckpointError(
            f"expected a checkpoint at {str(p)!r}, received no such file (the run stopped "
            "before its first checkpoint, or was not written with --out)"
        )
    data = read_plain_file(p.parent, p.name, error=CheckpointError)  # no link followed
    try:
        tensors: dict[str, Tensor] = st_load(data)
        n_header = int.from_bytes(data[:8], "little")
        meta_all = json.loads(data[8 : 8 + n_header]).get("__metadata__") or {}
        text = meta_all[_META_KEY]
        meta = json.loads(text)
    except Exception as exc:  # safetensors raises its own SafetensorError too
        raise CheckpointError(
            f"expected a readable recfit checkpoint, received {str(p)!r}: {exc}"
        ) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"expected checkpoint metadata as a JSON object, received {type(meta).__name__} "
            f"in {str(p)!r}"
        )
    if meta.get("format") != "recfit.checkpoint" or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"expected checkpoint format version {CHECKPOINT_VERSION}, received "
            f"{meta.get('format')!r} version {meta.get('version')!r} in {str(p)!r}"
        )
    stored = meta_all.get(_SHA_KEY)
    actual = checksum(text, tensors)
    if stored != actual:
        raise CheckpointError(
            f"expected the checkpoint's sha256 {stored!r}, received {actual!r} for the "
            f"contents of {str(p)!r} (the file was changed or damaged after it was written)"
        )
    _validate(meta, tensors, p)
    return tensors, meta, p


def _validate(meta: dict[str, Any], tensors: dict[str, Tensor], p: Path) -> None:
    """Finite tensors and a consistent position (see the module docs)."""
    where = f"in {str(p)!r}"
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"expected finite values in tensor {k!r}, received NaN or inf {where}"
            )
    if not any(k.startswith("model.") for k in tensors):
        raise CheckpointError(f"expected model tensors (model.*), received none {where}")
    pos = meta.get("position")
    names = ("epoch", "batches_done", "train_iter", "n_epochs", "steps_per_epoch", "world")
    if not isinstance(pos, dict) or not all(
        isinstance(pos.get(n), int) and not isinstance(pos.get(n), bool) for n in names
    ):
        raise CheckpointError(
            f"expected position fields {list(names)} as integers, received {pos!r} {where}"
        )
    ep, done, it = pos["epoch"], pos["batches_done"], pos["train_iter"]
    n_ep, steps = pos["n_epochs"], pos["steps_per_epoch"]
    if n_ep < 0 or steps < 1 or pos["world"] < 1:
        raise CheckpointError(
            f"expected n_epochs >= 0, steps_per_epoch >= 1 and world >= 1, received {pos!r} {where}"
        )
    if not 0 <= ep <= n_ep:
        raise CheckpointError(f"expected epoch in [0, {n_ep}], received {ep} {where}")
    if not 0 <= done <= steps or (done and ep >= n_ep):
        raise CheckpointError(
            f"expected batches_done in [0, {steps}] inside an epoch, received {done} at "
            f"epoch {ep} {where}"
        )
    expected = ep * steps + done  # fewer when a callback cancelled batches or epochs
    if not 0 <= it <= expected:
        raise CheckpointError(
            f"expected train_iter in [0, {expected}] (epoch {ep} × {steps} steps + {done}), "
            f"received {it} {where}"
        )
    learner = meta.get("learner")
    if not isinstance(learner, dict):
        raise CheckpointError(f"expected the learner's state object, received {learner!r} {where}")
    acc = learner.get("acc")
    if not (
        isinstance(acc, list)
        and len(acc) == 3
        and all(isinstance(a, int | float) and math.isfinite(a) for a in acc)
        and acc[0] >= 0
    ):
        raise CheckpointError(f"expected three finite loss sums in acc, received {acc!r} {where}")
    for name in ("lr", "mom"):
        v = learner.get(name)
        if not (isinstance(v, int | float) and math.isfinite(v)):
            raise CheckpointError(f"expected a finite {name}, received {v!r} {where}")
    hist = learner.get("history")
    if not isinstance(hist, list) or not all(isinstance(r, dict) for r in hist):
        raise CheckpointError(
            f"expected the history as a list of records, received {type(hist).__name__} {where}"
        )
    for name in ("optimizer", "callbacks", "rng"):
        if not isinstance(meta.get(name), dict):
            raise CheckpointError(
                f"expected the {name} state as an object, received {meta.get(name)!r} {where}"
            )
    for k in REQUIRED_TENSORS:
        if k not in tensors:
            raise CheckpointError(f"expected the tensor {k!r}, received none {where}")
