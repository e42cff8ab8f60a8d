"""What the rating families fitted by their own compiled kernels share (``timesvdpp``,
``bmf``): the factor and bias tables, the clipped prediction, the training rows as user
lists, and the checks of their settings.

Example:
    >>> m = FittedFactors(3, 4, 2, global_mean=3.0, rating_range=(1.0, 5.0))
    >>> m.user_factors.shape, m.rating_range
    (torch.Size([3, 2]), (1.0, 5.0))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import Batch, RatingModel
from recfit.models.ials import check_positive

__all__ = ["FittedFactors", "check_settings", "rating_range", "training_rows"]


def check_settings(*, integer: bool = False, zero: bool = False, **values: Any) -> None:
    """:func:`~recfit.models.ials.check_positive` of every value, named by its keyword."""
    for name, v in values.items():
        check_positive(name, v, integer=integer, zero=zero)


class FittedFactors(RatingModel):
    """``mu + b_u + b_i + p_u · q_i`` tables (``user_factors``, ``item_factors`` of
    ``width`` columns, ``user_bias``, ``item_bias``) with the training record; a subclass
    adds its own terms to :meth:`base_terms` in ``forward`` and finishes with
    :meth:`clip`.

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        width: columns of the factor tables.
        seed: seeds the fit.
        global_mean: ``mu``.
        rating_range: predictions are clipped into it (``None``: not clipped).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        width: int,
        *,
        seed: int = 42,
        global_mean: float = 0.0,
        rating_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        check_settings(integer=True, n_users=n_users, n_items=n_items)
        check_settings(integer=True, zero=True, width=width)
        if rating_range is not None and not float(rating_range[0]) <= float(rating_range[1]):
            raise ConfigError(f"expected rating_range (low, high), received {rating_range!r}")
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.seed, self.global_mean = int(seed), float(global_mean)
        self.rating_range = (
            None if rating_range is None else (float(rating_range[0]), float(rating_range[1]))
        )
        self.user_factors = nn.Parameter(torch.zeros(self.n_users, int(width)))
        self.item_factors = nn.Parameter(torch.zeros(self.n_items, int(width)))
        self.user_bias = nn.Parameter(torch.zeros(self.n_users))
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self._register_record(self.n_users, self.n_items)
        self.fit_info: dict[str, Any] = {}

    def _head(self) -> dict[str, Any]:
        """The shared part of ``config()``."""
        return self._config(seed=self.seed, global_mean=self.global_mean,
                            rating_range=self.rating_range)  # fmt: skip

    def base_terms(self, u: Tensor, i: Tensor) -> Tensor:
        """``mu + b_u + b_i + p_u · q_i`` per row (indices already non-negative)."""
        pu = self.user_factors.index_select(0, u)
        qi = self.item_factors.index_select(0, i)
        bu = self.user_bias.index_select(0, u)
        return self.global_mean + bu + self.item_bias.index_select(0, i) + (pu * qi).sum(1)

    def clip(self, x: Tensor) -> Tensor:
        """``x`` clipped into :attr:`rating_range` (unchanged without one)."""
        return x if self.rating_range is None else x.clamp(*self.rating_range)

    def penalty(self, batch: Batch) -> Tensor:
        """Per row: ``|p_u|² + |q_i|² + b_u² + b_i²`` of the stored rows."""
        u, i = batch["user"].clamp_min(0), batch["item"].clamp_min(0)
        p = self.user_factors.index_select(0, u)
        q = self.item_factors.index_select(0, i)
        bu = self.user_bias.index_select(0, u)
        bi = self.item_bias.index_select(0, i)
        out: Tensor = (p * p).sum(1) + (q * q).sum(1) + bu * bu + bi * bi
        return out


def training_rows(train: Interactions) -> tuple[np.ndarray, ...]:
    """``(order, user, item, rating, weight, indptr)``: the positions of the rows with a
    positive weight sorted by user (stable), their columns in that order (int64 indices,
    float32 values) and the user CSR ``indptr``."""
    w = train.weights()
    keep = np.flatnonzero(w > 0)
    order = keep[np.argsort(np.asarray(train.user)[keep], kind="stable")]
    u = np.asarray(train.user, dtype=np.int64)[order]
    indptr = np.zeros(train.n_users + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=train.n_users), out=indptr[1:])
    return (
        order,
        u,
        np.asarray(train.item, dtype=np.int64)[order],
        np.asarray(train.rating, dtype=np.float32)[order],
        w[order].astype(np.float32),
        indptr,
    )


def rating_range(train: Interactions) -> tuple[float, float] | None:
    """The data's rating scale, else the smallest and largest rating of the rows with a
    positive weight (``None`` without any)."""
    if train.rating_scale is not None:
        return (float(train.rating_scale[0]), float(train.rating_scale[1]))
    r = np.asarray(train.rating)[train.weights() > 0]
    if not len(r):
        return None
    return (float(r.min()), float(r.max()))
