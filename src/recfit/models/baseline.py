"""Surprise's ``BaselineOnly``: the global mean plus regularised user and item biases.

    prediction = mu + b_u + b_i

``mu`` is the weighted mean training rating; the biases minimise

    Σ w (r - mu - b_u - b_i)² + reg_user · Σ b_u² + reg_item · Σ b_i²

by ``n_iter`` alternating exact steps (:func:`~recfit.models.base.fit_baseline`; Surprise's
ALS defaults: ``reg_u`` 15, ``reg_i`` 10, 10 epochs). The family ``baseline`` trains it by
its closed form (trainer ``closed_form``), with no learning rate, batches or seed.

The model is a :class:`~recfit.models.DotBias` without factors, so the dot adapter
answers for it: predictions, rankings (by ``b_i``) and fold-in, where a new user's row
is their bias. It has no vectors to compare, so no similar items or users.

Example:
    >>> from recfit.data import Interactions
    >>> d = Interactions.from_arrays([1, 1, 2], [7, 8, 7], [5.0, 3.0, 4.0])
    >>> m = BaselineOnly(d.n_users, d.n_items)
    >>> fit_closed_form(m, d)
    >>> round(m.global_mean, 3), m.n_factors, m.config()["reg_user"]
    (4.0, 0, 15.0)
"""

from __future__ import annotations

from typing import Any, cast

import torch

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import BASELINE_REG, RatingModel, fit_baseline
from recfit.models.dot import DotBias
from recfit.models.registry import Family, mean_rating, register_family, sized_build

__all__ = ["BaselineOnly", "fit_closed_form"]


class BaselineOnly(DotBias):
    """``mu + b_u + b_i`` with ridge-regularised biases (Surprise's ``BaselineOnly``).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        global_mean: ``mu`` (set to the weighted training mean by the fit).
        reg_user: ridge of the user biases (Surprise's ``reg_u``).
        reg_item: ridge of the item biases (Surprise's ``reg_i``).
        n_iter: alternating steps of the fit (Surprise's ``n_epochs``).

    Example:
        >>> BaselineOnly(3, 4).user_factors.shape
        torch.Size([3, 0])
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        global_mean: float = 0.0,
        reg_user: float = BASELINE_REG[0],
        reg_item: float = BASELINE_REG[1],
        n_iter: int = 10,
    ) -> None:
        super().__init__(n_users, n_items, 0, None, global_mean, 0.0, 0.0)
        for name, v in (("reg_user", reg_user), ("reg_item", reg_item)):
            if not float(v) >= 0:
                raise ConfigError(f"expected {name} >= 0, received {v!r}")
        if not isinstance(n_iter, int) or n_iter < 1:
            raise ConfigError(f"expected n_iter an integer >= 1, received {n_iter!r}")
        self.reg_user, self.reg_item, self.n_iter = float(reg_user), float(reg_item), n_iter

    def config(self) -> dict[str, Any]:
        return self._config(
            global_mean=self.global_mean,
            reg_user=self.reg_user,
            reg_item=self.reg_item,
            n_iter=self.n_iter,
        )


@torch.no_grad()
def fit_closed_form(model: RatingModel, train: Interactions) -> None:
    """Fit a :class:`BaselineOnly` on ``train`` in place: ``mu`` the weighted mean rating,
    the biases by :func:`~recfit.models.base.fit_baseline` with the model's ridges (rows of
    weight 0 count nowhere; a user or item without rows keeps bias 0)."""
    m = cast(BaselineOnly, model)  # the family's closed form: its models only
    mu, bu, bi, _, _ = fit_baseline(
        train.user, train.item, train.rating, train.weights(), m.n_users, m.n_items,
        reg=(m.reg_user, m.reg_item), n_iter=m.n_iter,
    )  # fmt: skip
    m.global_mean = mu
    m.user_bias.copy_(torch.from_numpy(bu))
    m.item_bias.copy_(torch.from_numpy(bi))


register_family(Family(
    name="baseline", task="rating", model_class=BaselineOnly, output="rating",
    reads=frozenset(), trainers=("closed_form",), adapter="dot", closed_form=fit_closed_form,
    defaults={}, build=sized_build(BaselineOnly, prepare=mean_rating),
    summary="Surprise's BaselineOnly: mu + b_u + b_i, ridge biases by alternating exact steps",
))  # fmt: skip
