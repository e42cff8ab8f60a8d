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
* ``output_kind``: what a prediction means, ``"rating"`` (in the data's units: clipped
  into the rating scale, compared with ratings by the metrics) or ``"score"`` (a
  ranking score such as a two-tower logit: never clipped, never called a rating). Every
  layer that shows a prediction (Python results, the command line, HTTP, the report)
  reads it from here through :func:`output_kind`.
* the training record (rating families): how many training rows of positive weight
  each user and item had and a baseline ``mu + b_u + b_i`` fitted on those rows
  (:meth:`RatingModel.record_training`). A pair whose user or item had no training row
  is *unknown*: its embeddings never moved from their initialisation, so
  :meth:`RatingModel.apply_fallback` answers the baseline (the global mean plus the
  known side's bias) instead and says so, like Surprise's ``was_impossible``. The
  record is part of the weights, so it survives :func:`save_model` / :func:`load_model`.
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
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from recfit.errors import BundleError, ConfigError

__all__ = [
    "MODELS",
    "MODEL_FORMAT_VERSION",
    "OUTPUT_TITLES",
    "RECORD_BUFFERS",
    "Batch",
    "OutputKind",
    "RatingModel",
    "build_model",
    "fit_baseline",
    "load_model",
    "output_kind",
    "register_model",
    "save_model",
]

OutputKind = Literal["rating", "score"]
"""What a model's prediction is: a rating in the data's units, or a ranking score."""

OUTPUT_TITLES: dict[str, str] = {"rating": "predicted rating", "score": "score"}
"""How a prediction of each kind is titled wherever it is shown (tables, reports)."""

RECORD_BUFFERS = (
    "train_user_count",
    "train_item_count",
    "baseline_mean",
    "baseline_user",
    "baseline_item",
)
"""Names of the training-record buffers (absent from model files written before them)."""

BASELINE_REG = (15.0, 10.0)
"""Ridge of the user and item baseline biases (Surprise's ``BaselineOnly`` defaults)."""

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


def fit_baseline(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    weight: np.ndarray | None,
    n_users: int,
    n_items: int,
    *,
    reg: tuple[float, float] = BASELINE_REG,
    n_iter: int = 10,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The baseline ``mu + b_u + b_i`` of weighted ratings, and the per-side row counts.

    ``mu`` is the weighted mean rating; the biases minimise
    ``Σ w (r - mu - b_u - b_i)² + reg_u Σ b_u² + reg_i Σ b_i²`` by ``n_iter`` alternating
    exact steps (Surprise's ``BaselineOnly`` with ALS). Rows of weight 0 count nowhere;
    a user or item without rows has bias 0 and count 0.

    Returns:
        ``(mu, b_u [n_users], b_i [n_items], count_u [n_users], count_i [n_items])``.

    Example:
        >>> mu, bu, bi, cu, ci = fit_baseline(
        ...     np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([5.0, 3.0, 4.0]), None, 3, 3)
        >>> round(mu, 3), cu.tolist(), ci.tolist(), float(bu[2]), float(bi[2])
        (4.0, [2, 1, 0], [2, 1, 0], 0.0, 0.0)
    """
    u = np.asarray(user, dtype=np.int64)
    i = np.asarray(item, dtype=np.int64)
    r = np.asarray(rating, dtype=np.float64)
    w = np.ones(len(r)) if weight is None else np.asarray(weight, dtype=np.float64)
    keep = w > 0
    u, i, r, w = u[keep], i[keep], r[keep], w[keep]
    count_u = np.bincount(u, minlength=n_users).astype(np.int64)
    count_i = np.bincount(i, minlength=n_items).astype(np.int64)
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    if not len(r):
        return 0.0, bu, bi, count_u, count_i
    mu = float((w * r).sum() / w.sum())
    wu = np.bincount(u, weights=w, minlength=n_users) + reg[0]
    wi = np.bincount(i, weights=w, minlength=n_items) + reg[1]
    res = r - mu
    for _ in range(n_iter):
        bi = np.bincount(i, weights=w * (res - bu[u]), minlength=n_items) / wi
        bu = np.bincount(u, weights=w * (res - bi[i]), minlength=n_users) / wu
    return mu, bu, bi, count_u, count_i


class RatingModel(nn.Module):
    """Base class of recfit's models (see the module documentation for the contract)."""

    registry_name: ClassVar[str] = ""
    supports_fused: ClassVar[bool] = False
    output_kind: ClassVar[OutputKind] = "rating"
    """``"rating"`` (the data's units) or ``"score"`` (a ranking score, never clipped)."""

    # the training record (rating families register it with _register_record)
    train_user_count: Tensor
    train_item_count: Tensor
    baseline_mean: Tensor
    baseline_user: Tensor
    baseline_item: Tensor

    def _register_record(self, n_users: int, n_items: int) -> None:
        """Add the training-record buffers; counts of -1 mean "not recorded yet"."""
        self.register_buffer("train_user_count", torch.full((n_users,), -1, dtype=torch.long))
        self.register_buffer("train_item_count", torch.full((n_items,), -1, dtype=torch.long))
        self.register_buffer("baseline_mean", torch.zeros(1))
        self.register_buffer("baseline_user", torch.zeros(n_users))
        self.register_buffer("baseline_item", torch.zeros(n_items))

    @property
    def has_record(self) -> bool:
        """Whether the model knows which users and items it was trained on."""
        counts = getattr(self, "train_user_count", None)
        return isinstance(counts, Tensor) and len(counts) > 0 and int(counts[0]) >= 0

    @torch.no_grad()
    def record_training(
        self,
        user: Any,
        item: Any,
        rating: Any,
        weight: Any = None,
    ) -> None:
        """Remember the training rows: per-user and per-item counts of rows with a
        positive weight, and the baseline ``mu + b_u + b_i`` fitted on them
        (:func:`fit_baseline`). :func:`recfit.models.create_model` and the Learner call
        it (the Learner only when nothing is recorded yet).

        Raises:
            ConfigError: the family keeps no record (a score model), or an index is
                beyond the model's sizes.

        Example:
            >>> from recfit.models import BiasedMF
            >>> m = BiasedMF(3, 2, n_factors=2)
            >>> m.record_training([0, 1], [0, 0], [4.0, 2.0])
            >>> m.train_item_count.tolist(), round(float(m.baseline_mean), 3)
            ([2, 0], 3.0)
        """
        if not hasattr(self, "train_user_count"):
            raise ConfigError(
                f"expected a rating model with a training record, received "
                f"{type(self).__name__} (output kind {self.output_kind!r})"
            )
        n_users, n_items = len(self.train_user_count), len(self.train_item_count)
        u, i = np.asarray(user, dtype=np.int64), np.asarray(item, dtype=np.int64)
        for name, idx, n in (("user", u, n_users), ("item", i, n_items)):
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ConfigError(
                    f"expected {name} indices in [0, {n}), received "
                    f"{int(idx.min())}..{int(idx.max())} (record_training)"
                )
        mu, bu, bi, cu, ci = fit_baseline(u, i, np.asarray(rating), weight, n_users, n_items)
        dev = self.train_user_count.device
        self.train_user_count.copy_(torch.from_numpy(cu).to(dev))
        self.train_item_count.copy_(torch.from_numpy(ci).to(dev))
        self.baseline_mean.fill_(mu)
        self.baseline_user.copy_(torch.from_numpy(bu).to(self.baseline_user))
        self.baseline_item.copy_(torch.from_numpy(bi).to(self.baseline_item))

    def unknown(self, user: Tensor, item: Tensor) -> Tensor:
        """``bool`` per pair: the user or the item had no training row of positive weight
        (a negative index counts as unknown). All ``False`` without a record."""
        if not self.has_record:
            return torch.zeros(user.shape, dtype=torch.bool, device=user.device)
        cu, ci = self.train_user_count, self.train_item_count
        u_ok = (user >= 0) & (cu.index_select(0, user.clamp_min(0).to(cu.device)) > 0)
        i_ok = (item >= 0) & (ci.index_select(0, item.clamp_min(0).to(ci.device)) > 0)
        return ~(u_ok & i_ok).to(user.device)

    def baseline(self, user: Tensor, item: Tensor) -> Tensor:
        """``mu + b_u + b_i`` per pair in rating units; an unknown side (no training row,
        or a negative index) adds nothing, so an unknown item gets the global mean plus
        the user's bias.

        Raises:
            ConfigError: the model has no training record.
        """
        if not self.has_record:
            raise ConfigError(
                f"expected a model with a training record for the baseline, received "
                f"{type(self).__name__} without one (call record_training)"
            )
        bu, bi = self.baseline_user, self.baseline_item
        u = user.clamp_min(0).to(bu.device)
        i = item.clamp_min(0).to(bi.device)
        zero = torch.zeros((), dtype=bu.dtype, device=bu.device)
        b_u = torch.where((user >= 0).to(bu.device), bu.index_select(0, u), zero)
        b_i = torch.where((item >= 0).to(bi.device), bi.index_select(0, i), zero)
        return (self.baseline_mean + b_u + b_i).to(user.device)

    def fallback_output(self, rating: Tensor) -> Tensor:
        """The output whose :meth:`to_rating` is ``rating`` (identity for regression)."""
        return rating

    def apply_fallback(self, batch: Batch, output: Tensor) -> tuple[Tensor, Tensor]:
        """``forward``'s ``output`` with every unknown pair's row replaced by the
        baseline's output, and the ``bool`` mask of those rows.

        Without a record (a score model, or a model file from before the record) the
        output is returned unchanged with an all-``False`` mask.
        """
        mask = self.unknown(batch["user"], batch["item"])
        if not bool(mask.any()):
            return output, mask
        fb = self.fallback_output(self.baseline(batch["user"][mask], batch["item"][mask]))
        out = output.clone()
        out[mask] = fb.to(out.dtype)
        return out, mask

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


def output_kind(model: Any) -> OutputKind:
    """What ``model``'s predictions are: ``"rating"`` or ``"score"`` (the one place every
    layer reads it from; a model class says it with its ``output_kind``).

    Example:
        >>> from recfit.models import DotBias
        >>> output_kind(DotBias(2, 2)), OUTPUT_TITLES[output_kind(DotBias(2, 2))]
        ('rating', 'predicted rating')
    """
    kind = getattr(type(model), "output_kind", "rating")
    return "score" if kind == "score" else "rating"


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
        missing = set(model.state_dict()) - set(tensors)
        if missing and missing <= set(RECORD_BUFFERS):
            # a file from before the training record: load it, nothing recorded
            model.load_state_dict(tensors, strict=False)
        else:
            model.load_state_dict(tensors)
    except RuntimeError as e:
        raise BundleError(f"expected weights matching the config in {str(path)!r}: {e}") from e
    return model.to(device)
