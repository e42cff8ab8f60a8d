"""A factorization machine (Rendle 2010) over user id, item id and side features.

Each rating row is a sparse vector ``x`` of *fields*: the user's id, the item's id and
the side features of both (MovieLens: the user's age, gender, occupation and zip
prefix; the item's genres and release year), each field one-hot (a multi-valued field
such as genres shares 1 among its values). The prediction is

    x = mu + w0 + Σ_j w_j x_j + Σ_{j<l} <v_j, v_l> x_j x_l

(the pair sum computed as ``½ (|Σ_j v_j x_j|² - Σ_j |v_j|² x_j²)``), squashed into
``y_range`` by the scaled sigmoid like :class:`~recfit.models.DotBias` when one is given
(then ``mu`` is 0), else plus ``mu``, the mean training rating.

The side features come from the data's feature tables (``Interactions.user_features``,
``item_features``) through :mod:`recfit.data.features`: MovieLens releases by their
ready-made spaces (without titles and crosses), other tables by
:func:`~recfit.data.features.space_for_table` (text columns left out). The spaces are
adapted on the feature tables (no rating is read). Every user's and item's field indices
and values are stored in the model as buffers (``user_fields``, ``user_values``,
``item_fields``, ``item_values``), so a prediction needs only ``(user, item)`` and a saved
model or a bundle predicts without the data. A missing feature value counts as absent
(value 0); data without feature tables gives the ids only (a biased MF with the FM's
pair term). Users and items without a training row are answered by the baseline, as for
every rating family.

The family ``fm`` trains by the Learner (trainer ``sgd``); ``reg`` penalises the
looked-up rows ``Σ_j x_j (|v_j|² + w_j²)`` of each batch.

Example:
    >>> import dataclasses, pandas as pd
    >>> from recfit.data import Interactions
    >>> d = Interactions.from_arrays([1, 2, 2], [7, 7, 8], [4.0, 2.0, 5.0])
    >>> d = dataclasses.replace(d, user_features=pd.DataFrame({"job": ["a", "b"]}))
    >>> m = create_fm(d, n_factors=4)
    >>> m.feature_names, m.user_fields.shape, m.item_fields.shape
    (['job'], torch.Size([2, 2]), torch.Size([2, 1]))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from recfit.data.features import (
    FeatureSpace,
    movielens_item_space,
    movielens_user_space,
    space_for_table,
)
from recfit.data.interactions import Interactions
from recfit.errors import BundleError, ConfigError
from recfit.models.base import Batch, RatingModel, squash
from recfit.models.ials import check_positive
from recfit.models.registry import Family, family, register_family, weighted_mean
from recfit.models.search import Param

__all__ = ["FM_SEARCH", "FactorizationMachine", "SideFields", "create_fm", "side_fields"]

FM_SEARCH: dict[str, Param] = {
    "n_factors": Param(8, 128, integer=True, log=True),
    "lr": Param(1e-3, 5e-2, log=True),
    "wd": Param(0.0, 0.3),
    "reg": Param(1e-3, 0.3, log=True),
    "epochs": Param(3, 20, integer=True),
}
"""The settings worth tuning and their ranges."""

_DROPPED = ("title", "gender_x_age")
"""Features of the ready-made MovieLens spaces the FM leaves out (free text, a cross:
the FM's pair term crosses every two fields already)."""


@dataclass(frozen=True)
class SideFields:
    """Side features as FM fields: per row of a feature table, a fixed number of
    ``(index, value)`` pairs; indices count from 0 over every feature's values.

    Attributes:
        index: ``int64 [n_rows, width]`` field indices.
        value: ``float32 [n_rows, width]`` values (0: absent).
        size: how many indices the features take.
        names: the features, in order.
    """

    index: np.ndarray
    value: np.ndarray
    size: int
    names: tuple[str, ...]


def _space(table: pd.DataFrame, side: str, name: str) -> FeatureSpace:
    if name in ("ml-100k", "ml-1m") or (side == "item" and name.startswith("ml-")):
        ready = movielens_user_space(name) if side == "user" else movielens_item_space(name)
        specs = {k: v for k, v in ready.features.items() if k not in _DROPPED}
        if all((getattr(v, "column", None) or k) in table.columns for k, v in specs.items()):
            return FeatureSpace(specs)
    inferred = space_for_table(table)
    return FeatureSpace({k: v for k, v in inferred.features.items() if v.kind != "text"})


def side_fields(
    table: pd.DataFrame | None, side: str, name: str = "", n_rows: int | None = None
) -> SideFields:
    """The FM fields of a feature table (``side``: ``"user"`` or ``"item"``; ``name``: the
    data set's name, which picks MovieLens's ready-made spaces), one row per row of the
    table; ``None`` or a table without columns gives no field (``n_rows`` rows).

    Example:
        >>> t = pd.DataFrame({"tags": [("a", "b"), ("a",), ()], "size": ["s", "m", None]})
        >>> f = side_fields(t, "item")
        >>> f.names, f.index.tolist(), f.value.tolist()
        (('tags', 'size'), [[2, 3, 7], [2, 0, 6], [0, 0, 0]], [[0.5, 0.5, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    """
    n = (0 if table is None else len(table)) if n_rows is None else n_rows
    if table is None or not len(table.columns):
        return SideFields(np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32), 0, ())
    space = _space(table, side, name)
    arrays = space.adapt(table).transform(table)
    info = space.output_info()
    index, value, offset = [], [], 0
    for feat, fi in info.items():
        idx = arrays[feat].reshape(n, -1)
        if fi.cardinality is None:  # a rescaled float: one field, its value
            index.append(np.full((n, 1), offset, np.int64))
            value.append(arrays[feat].reshape(n, 1).astype(np.float32))
            offset += 1
            continue
        present = arrays[f"{feat}_mask"] if fi.masked else idx > 0
        present = present & (idx > 0)
        count = present.sum(1, keepdims=True)
        value.append(np.where(present, 1.0 / np.maximum(count, 1), 0.0).astype(np.float32))
        index.append(np.where(present, idx + offset, 0).astype(np.int64))
        offset += fi.cardinality
    return SideFields(np.concatenate(index, 1), np.concatenate(value, 1), offset, tuple(info))


class FactorizationMachine(RatingModel):
    """A second-order factorization machine over ids and side features (see the module
    documentation).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        n_factors: width of every field's factor vector.
        n_features: indices taken by the side features of both sides.
        user_width: side-feature fields per user.
        item_width: side-feature fields per item.
        feature_names: the side features (for the record).
        y_range: ``(lo, hi)`` of the scaled sigmoid, or ``None`` for a linear output.
        global_mean: ``mu`` (with ``y_range`` None: the mean training rating).
        init_std: std of the normal initial factors.
        seed: seeds the initial factors.
        fields: the side fields (:func:`side_fields`) of the users and the items, stored in
            the buffers (``None``: zeros, as a model rebuilt from its config before its
            weights are loaded).

    Raises:
        ConfigError: a size out of range or fields of the wrong shape (naming them).
    """

    user_fields: Tensor
    user_values: Tensor
    item_fields: Tensor
    item_values: Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 32,
        *,
        n_features: int = 0,
        user_width: int = 0,
        item_width: int = 0,
        feature_names: list[str] | tuple[str, ...] = (),
        y_range: tuple[float, float] | None = None,
        global_mean: float = 0.0,
        init_std: float = 0.01,
        seed: int = 0,
        fields: tuple[SideFields, SideFields] | None = None,
    ) -> None:
        super().__init__()
        for name, n in (("n_users", n_users), ("n_items", n_items), ("n_factors", n_factors)):
            check_positive(name, n, integer=True)
        for name, n in (("n_features", n_features), ("user_width", user_width),
                        ("item_width", item_width)):  # fmt: skip
            check_positive(name, n, integer=True, zero=True)
        check_positive("init_std", init_std, zero=True)
        if y_range is not None and not float(y_range[0]) < float(y_range[1]):
            raise ConfigError(f"expected y_range (lo, hi) with hi > lo, received {y_range!r}")
        self.n_users, self.n_items, self.n_factors = int(n_users), int(n_items), int(n_factors)
        self.n_features, self.feature_names = int(n_features), list(feature_names)
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))
        self.global_mean, self.init_std, self.seed = float(global_mean), float(init_std), int(seed)
        total = self.n_users + self.n_items + self.n_features
        g = torch.Generator().manual_seed(self.seed)
        self.factors = nn.Parameter(torch.randn(total, self.n_factors, generator=g) * init_std)
        self.weights = nn.Parameter(torch.zeros(total))
        self.bias = nn.Parameter(torch.zeros(()))
        # the id is every row's first field; the side features follow, after both id ranges
        ids_u = torch.arange(self.n_users).unsqueeze(1)
        ids_i = torch.arange(self.n_items).unsqueeze(1) + self.n_users
        self.register_buffer("user_fields", torch.cat([ids_u, torch.zeros(n_users, user_width, dtype=torch.long)], 1))  # fmt: skip
        self.register_buffer("item_fields", torch.cat([ids_i, torch.zeros(n_items, item_width, dtype=torch.long)], 1))  # fmt: skip
        self.register_buffer("user_values", torch.ones(n_users, 1 + user_width))
        self.register_buffer("item_values", torch.ones(n_items, 1 + item_width))
        self.user_values[:, 1:] = 0.0
        self.item_values[:, 1:] = 0.0
        self._register_record(self.n_users, self.n_items)
        if fields is not None:
            self.set_fields(*fields)

    def config(self) -> dict[str, Any]:
        return self._config(
            n_factors=self.n_factors, n_features=self.n_features,
            user_width=self.user_fields.shape[1] - 1, item_width=self.item_fields.shape[1] - 1,
            feature_names=list(self.feature_names),
            y_range=None if self.y_range is None else list(self.y_range),
            global_mean=self.global_mean, init_std=self.init_std, seed=self.seed,
        )  # fmt: skip

    @torch.no_grad()
    def set_fields(self, users: SideFields, items: SideFields) -> None:
        """Store the users' and items' side fields (one row per user, per item)."""
        start = self.n_users + self.n_items
        for side, f, n, fields, values in (
            ("user", users, self.n_users, self.user_fields, self.user_values),
            ("item", items, self.n_items, self.item_fields, self.item_values),
        ):
            want = (n, fields.shape[1] - 1)
            if f.index.shape != want or f.value.shape != want:
                raise ConfigError(
                    f"expected {side} fields of shape {want}, received {f.index.shape} "
                    f"indices and {f.value.shape} values"
                )
            if f.index.size and (int(f.index.min()) < 0 or int(f.index.max()) >= self.n_features):
                raise ConfigError(
                    f"expected {side} field indices in [0, {self.n_features}), received "
                    f"{int(f.index.min())}..{int(f.index.max())}"
                )
            fields[:, 1:] = torch.from_numpy(f.index) + start
            values[:, 1:] = torch.from_numpy(f.value)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        total = len(self.weights)
        for name, t in (("user_fields", self.user_fields), ("item_fields", self.item_fields)):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= total):
                raise BundleError(
                    f"expected {name} in [0, {total}), received {int(t.min())}..{int(t.max())}"
                )

    def _rows(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Each row's field indices and values ``[B, F]``: the user's, then the item's."""
        u, i = batch["user"].clamp_min(0), batch["item"].clamp_min(0)
        idx = torch.cat([self.user_fields.index_select(0, u), self.item_fields.index_select(0, i)], 1)  # fmt: skip
        val = torch.cat([self.user_values.index_select(0, u), self.item_values.index_select(0, i)], 1)  # fmt: skip
        return idx, val

    def forward(self, batch: Batch) -> Tensor:
        idx, val = self._rows(batch)
        b, f = idx.shape
        v = self.factors.index_select(0, idx.reshape(-1)).view(b, f, -1) * val.unsqueeze(-1)
        s = v.sum(1)
        pair = 0.5 * (s.square().sum(1) - v.square().sum((1, 2)))
        lin = (self.weights.index_select(0, idx.reshape(-1)).view(b, f) * val).sum(1)
        x = self.bias + lin + pair
        if self.global_mean:
            x = x + self.global_mean
        return squash(x, self.y_range)

    def penalty(self, batch: Batch) -> Tensor:
        """``Σ_j x_j (|v_j|² + w_j²)`` per row over its fields."""
        idx, val = self._rows(batch)
        b, f = idx.shape
        flat = idx.reshape(-1)
        sq = self.factors.index_select(0, flat).square().sum(1) + self.weights.index_select(0, flat).square()  # fmt: skip
        out: Tensor = (sq.view(b, f) * val).sum(1)
        return out


def _build(settings: Mapping[str, Any], train: Interactions) -> RatingModel:
    users = side_fields(train.user_features, "user", train.name, train.n_users)
    items = side_fields(train.item_features, "item", train.name, train.n_items)
    kw: dict[str, Any] = {
        "n_users": train.n_users, "n_items": train.n_items,
        "n_features": users.size + items.size, "user_width": users.index.shape[1],
        "item_width": items.index.shape[1], "feature_names": [*users.names, *items.names],
        **settings,
    }  # fmt: skip
    if kw.get("y_range") is None:
        kw.setdefault("global_mean", weighted_mean(train))
    shifted = SideFields(items.index + users.size, items.value, items.size, items.names)
    model = FactorizationMachine(**kw, fields=(users, shifted))
    model.record_training(train.user, train.item, train.rating, train.weights())
    return model


def create_fm(train: Interactions, **settings: Any) -> FactorizationMachine:
    """A :class:`FactorizationMachine` sized for ``train`` with its side fields
    (``settings``: constructor arguments or config fields)."""
    return cast(FactorizationMachine, family("fm").build(settings, train))


register_family(Family(
    name="fm", task="rating", model_class=FactorizationMachine, output="rating",
    reads=frozenset({"n_factors", "y_range", "seed"}),
    trainers=("sgd",), adapter="generic",
    # chosen on inner cuts of the training rows: docs/families.md
    defaults={},
    build=_build,
    summary="factorization machine (Rendle 2010) over user id, item id and side features "
    "(MovieLens: age, gender, occupation, zip prefix, genres, year)",
    search=FM_SEARCH,
))  # fmt: skip
