"""The model contract every family's model follows.

A model is a plain :class:`torch.nn.Module` that holds parameters and the mathematics of
its prediction, never an optimiser, a loss or a training loop (those live in
:mod:`recfit.train`; which trainers a family supports is in its registry entry,
:mod:`recfit.models.registry`):

* ``forward(batch) -> output`` where ``batch`` is a dict of tensors (``user``, ``item``,
  ``rating``, ``weight`` and, for later models, side features). The output of a
  regression model is the predicted rating in the data's own units; other models may
  return something else (e.g. one logit per rating level) and convert it with
  ``to_rating``.
* ``penalty(batch) -> Tensor | None``: per-row sum of squares of the parameter rows the
  batch looked up (the ``reg`` semantics, see :mod:`recfit.train.learner`).
* ``config() -> dict``: everything needed to rebuild the module with
  :func:`~recfit.models.registry.build_model` (the family's name under ``"name"``).
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
  record is part of the weights, so it survives saving and loading
  (:mod:`recfit.models.persist`).
* optionally, its analytic gradient (``supports_fused``): ``fused_forward`` returns the
  output, the per-row penalty and what the gradient needs, ``fused_backward`` writes each
  parameter's ``.grad`` from d(objective)/d(output) and d(objective)/d(penalty). This is
  mathematics of the model (the derivative of ``forward`` and ``penalty``, like a custom
  autograd function), not training: the Learner picks it instead of autograd when the
  loss has a closed-form gradient too (same numbers, much less overhead per step), and
  the row-wise optimisers of :mod:`recfit.train.sparse` reuse its saved rows.

Example:
    >>> from recfit.models import DotBias
    >>> m = DotBias(3, 4, n_factors=2)
    >>> m.config()["name"], output_kind(m), m.n_parameters()
    ('dot', 'rating', 21)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from recfit.errors import ConfigError

__all__ = [
    "OUTPUT_TITLES",
    "RECORD_BUFFERS",
    "Batch",
    "OutputKind",
    "RatingModel",
    "clip_ratings",
    "fit_baseline",
    "output_kind",
    "squash",
    "unique_index",
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
    """The model's family name (set by :func:`~recfit.models.registry.register_family`)."""
    supports_fused: ClassVar[bool] = False
    """Whether the model supplies its analytic gradient (``fused_forward`` /
    ``fused_backward``)."""
    output_kind: ClassVar[OutputKind] = "rating"
    """``"rating"`` (the data's units) or ``"score"`` (a ranking score, never clipped)."""
    trains_on_timestamp: ClassVar[bool] = False
    """Whether the Learner's training batches carry the ``timestamp`` column (prediction
    batches carry it whenever the data has timestamps)."""

    n_users: int
    n_items: int

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

    def _config(self, **fields: Any) -> dict[str, Any]:
        """The head every sized model's ``config()`` shares (the family name and the
        vocabulary sizes), then ``fields``."""
        head = {"name": self.registry_name, "n_users": self.n_users, "n_items": self.n_items}
        return {**head, **fields}

    # Analytic gradient (optional, ``supports_fused``) ------------------------------
    def fused_forward(self, batch: Batch, with_penalty: bool) -> tuple[Tensor, Tensor | None, Any]:
        """Output, per-row penalty (when asked) and what ``fused_backward`` needs (no
        autograd graph is built)."""
        raise NotImplementedError

    def fused_backward(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> None:
        """Write every parameter's ``.grad`` (the derivative of the objective through
        ``forward`` and ``penalty``) given d(objective)/d(output) and d/d(penalty) per row;
        it changes no parameter."""
        raise NotImplementedError

    def compile_kernels(self) -> float:
        """Compile (or load from the cache) the kernels of the model's fused step, if it
        has any, before a fit's timer starts; returns the seconds it took."""
        return 0.0

    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def squash(x: Tensor, y_range: tuple[float, float] | None) -> Tensor:
    """``lo + (hi - lo) * sigmoid(x)`` for ``y_range = (lo, hi)``; ``x`` itself for ``None``
    (the scaled sigmoid of fastai's collab models).

    Example:
        >>> squash(torch.tensor([0.0]), (0.0, 5.0)).tolist(), squash(torch.tensor([7.0]), None)
        ([2.5], tensor([7.]))
    """
    if y_range is None:
        return x
    lo, hi = y_range
    return torch.sigmoid(x) * (hi - lo) + lo


def clip_ratings(
    values: np.ndarray, scale: tuple[float, float] | None, kind: OutputKind = "rating"
) -> np.ndarray:
    """Predictions as they leave a model for its users: a rating clipped into the rating
    scale of the training data (a linear model can predict beyond it), as ``float32``;
    a score (``kind == "score"``) or a prediction without a known scale unchanged. Only
    shown predictions are clipped, never the training objective (its gradient would
    vanish), and lists are ranked on the unclipped values (clipping would tie them).

    Example:
        >>> clip_ratings(np.array([0.2, 3.0, 6.1]), (1.0, 5.0)).tolist()
        [1.0, 3.0, 5.0]
    """
    if kind != "rating" or scale is None:
        return values
    out: np.ndarray = np.clip(values, scale[0], scale[1]).astype(np.float32, copy=False)
    return out


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


def unique_index(idx: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``torch.unique(idx, return_inverse=True)`` for indices in ``[0, n)``: by a mask
    over the ``n`` rows instead of a sort when ``idx`` is long against ``n`` (a batch's
    users, the items of its users' lists); the same sorted result either way.

    Example:
        >>> [t.tolist() for t in unique_index(torch.tensor([3, 1, 3]), 4)]
        [[1, 3], [1, 0, 1]]
    """
    if len(idx) * 256 < n:
        uniq, inv = torch.unique(idx, return_inverse=True)
        return uniq, inv
    seen = torch.zeros(n, dtype=torch.bool, device=idx.device)
    seen[idx] = True
    uniq = seen.nonzero().squeeze(1)
    pos = torch.empty(n, dtype=torch.long, device=idx.device)
    pos[uniq] = torch.arange(len(uniq), device=idx.device)
    return uniq, pos[idx]
