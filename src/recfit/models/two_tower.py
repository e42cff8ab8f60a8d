"""Two-tower retrieval: a query (user) tower and a candidate (item) tower with side features.

The towers (:mod:`recfit.models.towers`) embed each id and its side features and apply
dense layers; the score of a (user, item) pair is the dot product of the two towers'
outputs. The towers keep the features as buffers looked up by index, so a batch stays
``user, item, rating, weight`` like every other recfit model. This module holds the model,
the default feature spaces of a table and its family's registration.

``TwoTower.forward`` also keeps the query and candidate embeddings of its last call
(:attr:`TwoTower.last_`) so that in-batch losses (see :mod:`recfit.models.retrieval_losses`)
can build the batch's score matrix without running the towers twice.

Example:
    >>> import torch
    >>> q = QueryTower(5, {"age": {"kind": "index", "cardinality": 3}}, layer_sizes=(8, 4))
    >>> c = CandidateTower(7, {"genres": {"kind": "sequence", "cardinality": 4, "width": 2}},
    ...                    layer_sizes=(4,))
    >>> m = TwoTower(q, c)
    >>> m({"user": torch.tensor([0, 4]), "item": torch.tensor([6, 1])}).shape
    torch.Size([2])
    >>> tuple(m.user_vectors().shape), tuple(m.item_vectors().shape)
    ((5, 4), (7, 4))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recfit.data.features import (
    FeatureSpace,
    movielens_item_space,
    movielens_user_space,
    space_for_table,
)
from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError
from recfit.models.base import Batch, RatingModel
from recfit.models.registry import Family, register_family
from recfit.models.towers import (
    CandidateTower,
    InputKind,
    QueryTower,
    Tower,
    inputs_from_space,
)

__all__ = [
    "CandidateTower",
    "InputKind",
    "QueryTower",
    "Tower",
    "TwoTower",
    "adapt_space",
    "default_space",
    "inputs_from_space",
]


def _space(value: FeatureSpace | Mapping[str, Any] | str | None) -> FeatureSpace | None:
    if value is None or isinstance(value, FeatureSpace):
        return value
    if isinstance(value, str):
        return FeatureSpace.from_json(value)
    if isinstance(value, Mapping):
        return FeatureSpace.from_dict(value)
    raise ConfigError(f"expected a FeatureSpace, its dict or JSON, or None, received {value!r}")


def _tower(value: Tower | Mapping[str, Any], cls: type[Tower]) -> Tower:
    if isinstance(value, Tower):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a {cls.__name__} or its config, received {value!r}")
    try:
        return cls(**dict(value))
    except TypeError as e:
        raise ConfigError(
            f"expected valid {cls.__name__} arguments, received {dict(value)!r}: {e}"
        ) from e


# ----------------------------------------------------------------------------- spaces
def default_space(table: pd.DataFrame | None, name: str | None, side: str) -> FeatureSpace | None:
    """The default (unfitted) feature space of a user or item table.

    MovieLens releases get :func:`~recfit.data.features.movielens_user_space` /
    :func:`~recfit.data.features.movielens_item_space`; other tables get
    :func:`~recfit.data.features.space_for_table`; no table gives ``None``.

    Example:
        >>> sorted(default_space(pd.DataFrame({"x": [1.0]}), "ml-1m", "item").features)
        ['genres', 'title', 'year']
    """
    if table is None:
        return None
    if side not in ("user", "item"):
        raise ConfigError(f"expected side 'user' or 'item', received {side!r}")
    if name in ("ml-100k", "ml-1m") and side == "user":
        return movielens_user_space(name)
    if isinstance(name, str) and name.startswith("ml-") and side == "item":
        return movielens_item_space(name)
    return space_for_table(table)


def adapt_space(
    space: FeatureSpace,
    table: pd.DataFrame,
    present: np.ndarray | None = None,
    keep: Sequence[str] | None = None,
) -> tuple[FeatureSpace, dict[str, np.ndarray]]:
    """Fit ``space`` on the rows ``present`` of ``table`` (the training ids) and transform all.

    Args:
        space: an unfitted space.
        table: the feature table, one row per vocabulary index.
        present: indices of the ids seen in training (``None``: every row).
        keep: feature names to keep (``None``: all; crosses need their components).

    Returns:
        the fitted space and the transformed arrays of every row of ``table``.
    """
    if keep is not None:
        missing = [k for k in keep if k not in space.features]
        if missing:
            raise ConfigError(
                f"expected features among {sorted(space.features)}, received {missing}"
            )
        space = FeatureSpace({k: v for k, v in space.features.items() if k in keep})
    fit_rows = table if present is None else table.iloc[np.unique(present)]
    space.adapt(fit_rows.reset_index(drop=True))
    return space, space.transform(table.reset_index(drop=True))


# ----------------------------------------------------------------------------- model
class TwoTower(RatingModel):
    """Query tower × candidate tower → dot-product score, with whole-vocabulary vectors.

    ``forward(batch)`` returns ``⟨query(user), candidate(item)⟩`` per row. The model is
    a retrieval scorer: with the MSE objective of :mod:`recfit.models.retrieval_losses` the score
    approximates the rating rescaled to ``[0, 1]``; with a softmax objective it is a
    logit (not a rating).

    Args:
        query_tower: a :class:`QueryTower` or its ``config()``.
        candidate_tower: a :class:`CandidateTower` or its ``config()``.
        user_space: the fitted user :class:`FeatureSpace` (or its dict / JSON) kept with
            the model to transform a new user's raw features; ``None`` for none.
        item_space: the same for items.

    Raises:
        ConfigError: the towers' output widths differ.
    """

    output_kind = "score"

    def __init__(
        self,
        query_tower: QueryTower | Mapping[str, Any],
        candidate_tower: CandidateTower | Mapping[str, Any],
        user_space: FeatureSpace | Mapping[str, Any] | str | None = None,
        item_space: FeatureSpace | Mapping[str, Any] | str | None = None,
    ) -> None:
        super().__init__()
        self.query_tower = _tower(query_tower, QueryTower)
        self.candidate_tower = _tower(candidate_tower, CandidateTower)
        qd, cd = self.query_tower.output_dim, self.candidate_tower.output_dim
        if qd != cd:
            raise ConfigError(
                f"expected towers of the same output width, received query {qd}, candidate {cd}"
            )
        self.user_space = _space(user_space)
        self.item_space = _space(item_space)
        self.n_users = self.query_tower.n_ids
        self.n_items = self.candidate_tower.n_ids
        self.last_: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        """``(user, item, query_vectors, candidate_vectors)`` of the last forward call."""

    @classmethod
    def from_data(
        cls,
        train: Interactions,
        *,
        embedding_dim: int = 32,
        layer_sizes: Sequence[int] = (32,),
        query_layer_sizes: Sequence[int] | None = None,
        user_space: FeatureSpace | Literal["auto"] | None = "auto",
        item_space: FeatureSpace | Literal["auto"] | None = "auto",
        user_features: Sequence[str] | None = None,
        item_features: Sequence[str] | None = None,
        use_ids: bool = True,
        seed: int = 0,
    ) -> TwoTower:
        """Build a model sized for ``train``'s vocabularies, features fitted on ``train``.

        Feature spaces are adapted on the feature-table rows of the users / items that
        occur in ``train`` only, then every row is transformed and stored in the towers.

        Args:
            train: the training interactions (with ``user_features`` / ``item_features``
                tables for side features).
            embedding_dim: width of every embedding table.
            layer_sizes: dense layers of the candidate tower (and of the query tower
                unless ``query_layer_sizes`` is given).
            query_layer_sizes: dense layers of the query tower.
            user_space: an unfitted space, ``"auto"`` (:func:`default_space`) or ``None``
                (no user features).
            item_space: the same for items.
            user_features: keep only these user features (``None``: all).
            item_features: keep only these item features.
            use_ids: embed the ids too.
            seed: seed of the initialisation.

        Example:
            >>> from recfit.data import Interactions
            >>> d = Interactions.from_arrays([1, 2, 2], [7, 7, 8], [4.0, 2.0, 5.0])
            >>> m = TwoTower.from_data(d, layer_sizes=(8,))
            >>> m.n_users, m.n_items, m.query_tower.inputs
            (2, 2, {})
        """
        sides: dict[str, tuple[FeatureSpace | None, dict[str, np.ndarray]]] = {}
        for side, spec, table, idx, keep in (
            ("user", user_space, train.user_features, train.user, user_features),
            ("item", item_space, train.item_features, train.item, item_features),
        ):
            space: FeatureSpace | None
            if isinstance(spec, str):
                if spec != "auto":
                    raise ConfigError(
                        f"expected {side}_space 'auto', a FeatureSpace or None, received {spec!r}"
                    )
                space = default_space(table, train.name, side)
            else:
                space = spec
            if space is None or table is None:
                sides[side] = (None, {})
                continue
            space, arrays = adapt_space(space, table, idx, keep)
            sides[side] = (space, arrays)
        q_layers = layer_sizes if query_layer_sizes is None else query_layer_sizes
        towers: list[Tower] = []
        for kind, n_ids, side, sizes, tower_seed in (
            (QueryTower, train.n_users, "user", q_layers, seed),
            (CandidateTower, train.n_items, "item", layer_sizes, seed + 1),
        ):
            fitted, arrays = sides[side]
            tower = kind(
                n_ids,
                inputs_from_space(fitted) if fitted is not None else None,
                embedding_dim=embedding_dim,
                layer_sizes=sizes,
                use_id=use_ids,
                seed=tower_seed,
            )
            if arrays:
                tower.set_features(arrays)
            towers.append(tower)
        q, c = towers
        return cls(
            cast(QueryTower, q),
            cast(CandidateTower, c),
            user_space=sides["user"][0],
            item_space=sides["item"][0],
        )

    def config(self) -> dict[str, Any]:
        return {
            "name": self.registry_name,
            "query_tower": self.query_tower.config(),
            "candidate_tower": self.candidate_tower.config(),
            "user_space": None if self.user_space is None else self.user_space.to_dict(),
            "item_space": None if self.item_space is None else self.item_space.to_dict(),
        }

    @property
    def output_dim(self) -> int:
        """Width of the query and candidate vectors."""
        return self.query_tower.output_dim

    def forward(self, batch: Batch) -> Tensor:
        u, i = batch["user"], batch["item"]
        q: Tensor = self.query_tower(u)
        c: Tensor = self.candidate_tower(i)
        self.last_ = (u, i, q, c)
        return (q * c).sum(1)

    def penalty(self, batch: Batch) -> Tensor:
        """Sum of squares of the user and item id embedding rows of each row."""
        return self.query_tower.id_penalty(batch["user"]) + self.candidate_tower.id_penalty(
            batch["item"]
        )

    def _vectors(
        self, tower: Tower, idx: Tensor | np.ndarray | Sequence[int] | None, bs: int
    ) -> Tensor:
        dev = next(self.parameters()).device
        if idx is None:
            ids = torch.arange(tower.n_ids, device=dev)
        else:
            ids = (
                torch.as_tensor(np.asarray(idx) if not isinstance(idx, Tensor) else idx)
                .to(dev)
                .long()
            )
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= tower.n_ids):
                raise DataError(
                    f"expected indices in [0, {tower.n_ids}), received "
                    f"{int(ids.min())}..{int(ids.max())}"
                )
        was = self.training
        self.eval()
        try:
            with torch.inference_mode():
                parts = [tower(ids[s : s + bs]) for s in range(0, len(ids), bs)]
        finally:
            self.train(was)
        if not parts:
            return torch.zeros(0, tower.output_dim, device=dev)
        return torch.cat(parts)

    def user_vectors(
        self, users: Tensor | np.ndarray | Sequence[int] | None = None, bs: int = 65536
    ) -> Tensor:
        """Query vectors ``(n, dim)`` of ``users`` (indices; ``None``: every user)."""
        return self._vectors(self.query_tower, users, bs)

    def item_vectors(
        self, items: Tensor | np.ndarray | Sequence[int] | None = None, bs: int = 65536
    ) -> Tensor:
        """Candidate vectors ``(n, dim)`` of ``items`` (indices; ``None``: every item)."""
        return self._vectors(self.candidate_tower, items, bs)


_SETTING_ARGS = {"n_factors": "embedding_dim", "layers": "layer_sizes"}
"""Config fields of this family named otherwise by :meth:`TwoTower.from_data`."""


def _build(settings: Mapping[str, Any], train: Interactions) -> TwoTower:
    """:meth:`TwoTower.from_data` from config settings (``n_factors``: the embedding
    width, ``layers``: the dense layers) and other ``from_data`` arguments; an empty
    ``user_features`` / ``item_features`` selection means no feature space on that side."""
    kw = {_SETTING_ARGS.get(k, k): v for k, v in settings.items()}
    if "layer_sizes" in kw:
        kw["layer_sizes"] = tuple(kw["layer_sizes"])
    for side in ("user", "item"):
        if kw.get(f"{side}_features") == () or kw.get(f"{side}_features") == []:
            kw.setdefault(f"{side}_space", None)
    try:
        return TwoTower.from_data(train, **kw)
    except TypeError as e:
        raise ConfigError(
            f"expected valid arguments for TwoTower.from_data, received {sorted(kw)}: {e}"
        ) from e


register_family(Family(
    name="two_tower", task="retrieval", model_class=TwoTower, output="score",
    reads=frozenset({"n_factors", "layers", "seed"}),
    trainers=("sgd",), adapter="two_tower",
    defaults={}, build=_build,
    summary="query and candidate towers with side features, scored by a dot product",
))  # fmt: skip
