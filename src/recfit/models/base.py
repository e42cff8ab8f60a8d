"""The model contract, the registry of model classes, and safetensors persistence.

Every rating model is a plain :class:`torch.nn.Module` (no training logic inside):

* ``forward(batch) -> output`` where ``batch`` is a dict of tensors (``user``, ``item``,
  ``rating``, ``weight`` and, for later models, side features). The output of a
  regression model is the predicted rating in the data's own units; other models may
  return something else (e.g. one logit per rating level) and convert it with
  ``to_rating``.
* ``penalty(batch) -> Tensor | None``: per-row sum of squares of the parameter rows the
  batch looked up (the ``reg`` semantics, see :mod:`recfit.train.learner`).
* ``config() -> dict``: everything needed to rebuild the module with :func:`build_model`.
* optionally ``fused_forward`` / ``fused_backward``: a hand-written gradient used by the
  Learner instead of autograd (same numbers, much less overhead per step).

Example:
    >>> from recfit.models import DotBias
    >>> m = DotBias(3, 4, n_factors=2)
    >>> build_model(m.config()).config() == m.config()
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from recfit.errors import BundleError, ConfigError

__all__ = [
    "MODELS",
    "MODEL_FORMAT_VERSION",
    "Batch",
    "RatingModel",
    "build_model",
    "load_model",
    "register_model",
    "save_model",
]

Batch = Mapping[str, Tensor]
"""A batch: column name → tensor (``user``, ``item`` int indices; ``rating``, ``weight``)."""

MODEL_FORMAT_VERSION = 1
MODELS: dict[str, type[RatingModel]] = {}
"""Model classes by registry name."""

M = TypeVar("M", bound="type[RatingModel]")


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`RatingModel` under ``name``."""

    def deco(cls: M) -> M:
        cls.registry_name = name
        MODELS[name] = cls
        return cls

    return deco


class RatingModel(nn.Module):
    """Base class of recfit's models (see the module documentation for the contract)."""

    registry_name: ClassVar[str] = ""
    supports_fused: ClassVar[bool] = False

    def forward(self, batch: Batch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_rating(self, output: Tensor) -> Tensor:
        """Convert ``forward``'s output to predicted ratings (identity for regression)."""
        return output

    def penalty(self, batch: Batch) -> Tensor | None:
        """Per-row sum of squares of the looked-up parameter rows, or ``None``."""
        return None

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Constructor arguments plus ``{"name": registry name}``."""
        raise NotImplementedError

    # Fused path (optional) -------------------------------------------------------
    def fused_forward(self, batch: Batch, with_penalty: bool) -> tuple[Tensor, Tensor | None, Any]:
        """Output, per-row penalty (when asked) and what ``fused_backward`` needs."""
        raise NotImplementedError

    def fused_backward(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> None:
        """Write every parameter's ``.grad`` given d(objective)/d(output) and d/d(penalty)."""
        raise NotImplementedError

    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_model(config: Mapping[str, Any]) -> RatingModel:
    """Rebuild a model (fresh weights) from ``config`` as returned by ``model.config()``.

    Example:
        >>> build_model({"name": "dot", "n_users": 2, "n_items": 3}).n_factors
        50
    """
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name not in MODELS:
        raise ConfigError(
            f"expected a model name among {sorted(MODELS)}, received {name!r} (config 'name')"
        )
    try:
        return MODELS[name](**cfg)
    except TypeError as e:
        raise ConfigError(
            f"expected valid arguments for model {name!r}, received {cfg!r}: {e}"
        ) from e


def _jsonable(config: Mapping[str, Any]) -> str:
    def conv(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        return v

    return json.dumps({k: conv(v) for k, v in config.items()}, sort_keys=True)


def save_model(
    model: RatingModel, path: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write the model's config and weights to one safetensors file.

    The config is stored as JSON in the file's metadata (key ``recfit.config``) with the
    format version; :func:`load_model` rebuilds the model from it without running code.

    Example:
        >>> import tempfile, os
        >>> from recfit.models import DotBias
        >>> m = DotBias(3, 4, n_factors=2)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     m2 = load_model(save_model(m, os.path.join(d, "m.safetensors")))
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


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file written by :func:`save_model`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_model(path: str | Path, device: str | torch.device = "cpu") -> RatingModel:
    """Rebuild a model saved by :func:`save_model` (config + weights).

    Raises:
        BundleError: the file is missing, not a recfit model, or from another format version.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"expected a model file, received missing path {str(path)!r}")
    try:
        meta = read_metadata(path)
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
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise BundleError(f"expected weights matching the config in {str(path)!r}: {e}") from e
    return model.to(device)
