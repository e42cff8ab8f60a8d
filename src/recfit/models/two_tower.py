"""Two-tower retrieval: a query (user) tower and a candidate (item) tower with side features.

Each tower embeds its id and its features, concatenates the pieces and applies dense
layers (``layer_sizes``; ReLU between them, none after the last), as in the keras-rs
*Deep Recommenders* example. The score of a (user, item) pair is the dot product of the
two towers' outputs.

Features are the output of a fitted :class:`~recfit.data.features.FeatureSpace` over
the user (or item) table, one row per vocabulary index. Each tower keeps them as
**buffers** (saved with the weights) and looks them up by index inside ``forward``, so
a batch stays ``user, item, rating, weight`` like every other recfit model. Per feature:

* single-valued categorical, discretised or crossed (``int64`` ``(n,)``) → an embedding;
* text tokens and multi-valued categoricals (``int64`` ``(n, width)`` with a boolean
  mask) → the **masked mean** of the token embeddings (a row without tokens gives a
  zero vector; padded positions never change the result);
* rescaled floats (``float32`` ``(n,)``) → passed as one input column each.

``TwoTower.forward`` also keeps the query and candidate embeddings of its last call
(:attr:`TwoTower.last_`) so that in-batch losses (see :mod:`recfit.train.retrieval`)
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

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

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
from recfit.errors import ConfigError, DataError
from recfit.models.base import Batch, RatingModel
from recfit.models.registry import Family, register_family

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

InputKind = Literal["index", "sequence", "float"]
_KINDS = ("index", "sequence", "float")
_INPUT_KEYS = {"kind", "cardinality", "width"}


# ----------------------------------------------------------------------------- inputs
def inputs_from_space(space: FeatureSpace) -> dict[str, dict[str, Any]]:
    """The tower input description of a fitted space: name → kind, cardinality, width.

    Raises:
        ConfigError: the space is not fitted.

    Example:
        >>> import pandas as pd
        >>> from recfit.data.features import StringCategorical
        >>> s = FeatureSpace({"job": StringCategorical()}).adapt(pd.DataFrame({"job": ["a"]}))
        >>> inputs_from_space(s)
        {'job': {'kind': 'index', 'cardinality': 3, 'width': 1}}
    """
    out: dict[str, dict[str, Any]] = {}
    for name, info in space.output_info().items():
        if info.cardinality is None:
            out[name] = {"kind": "float", "cardinality": None, "width": 1}
        elif info.masked:
            out[name] = {"kind": "sequence", "cardinality": info.cardinality, "width": info.width}
        else:
            out[name] = {"kind": "index", "cardinality": info.cardinality, "width": 1}
    return out


def _check_inputs(inputs: Any, where: str) -> dict[str, dict[str, Any]]:
    if inputs is None:
        return {}
    if isinstance(inputs, Sequence) and not isinstance(inputs, str):
        # the config's form: a list of {"name": ..., "kind": ...} (order is kept by JSON)
        pairs: dict[str, Any] = {}
        for entry in inputs:
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ConfigError(
                    f"expected {where} inputs as {{name, kind, ...}}, received {entry!r}"
                )
            pairs[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
        inputs = pairs
    if not isinstance(inputs, Mapping):
        raise ConfigError(f"expected {where} inputs as a mapping, received {inputs!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in inputs.items():
        if not isinstance(name, str) or not name or not isinstance(spec, Mapping):
            raise ConfigError(
                f"expected {where} input name → {{kind, cardinality, width}}, received "
                f"{name!r}: {spec!r}"
            )
        unknown = sorted(set(spec) - _INPUT_KEYS)
        if unknown:
            raise ConfigError(
                f"expected keys {sorted(_INPUT_KEYS)}, received {unknown} in {name!r}"
            )
        kind = spec.get("kind")
        if kind not in _KINDS:
            raise ConfigError(f"expected kind among {_KINDS} for {name!r}, received {kind!r}")
        card = spec.get("cardinality")
        width = spec.get("width", 1)
        if kind != "float" and (not isinstance(card, int) or isinstance(card, bool) or card < 1):
            raise ConfigError(
                f"expected cardinality an integer >= 1 for {where} input {name!r}, received {card!r}"
            )
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ConfigError(
                f"expected width an integer >= 1 for {where} input {name!r}, received {width!r}"
            )
        out[name] = {
            "kind": kind,
            "cardinality": None if kind == "float" else int(card),  # type: ignore[arg-type]
            "width": int(width) if kind == "sequence" else 1,
        }
    return out


def _check_layers(layer_sizes: Any, where: str) -> list[int]:
    if isinstance(layer_sizes, int) or not isinstance(layer_sizes, Sequence) or not layer_sizes:
        raise ConfigError(
            f"expected {where} layer_sizes a non-empty sequence of integers, received "
            f"{layer_sizes!r}"
        )
    sizes = list(layer_sizes)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ConfigError(f"expected {where} layer sizes >= 1, received {layer_sizes!r}")
    return sizes


def _buf(name: str) -> str:
    return "f_" + name


def _mask(name: str) -> str:
    return "m_" + name


# ----------------------------------------------------------------------------- towers
class Tower(nn.Module):
    """One tower: id embedding + feature embeddings → concatenation → dense layers.

    Args:
        n_ids: vocabulary size of the tower's id (users or items).
        inputs: feature name → ``{"kind": "index" | "sequence" | "float",
            "cardinality": int | None, "width": int}`` (see :func:`inputs_from_space`),
            or a list of such dicts with a ``"name"`` key (the order of the inputs is the
            order of the concatenation; ``config()`` writes this list form).
        embedding_dim: width of every embedding table (keras-rs: 32).
        layer_sizes: dense layer widths; the last one is the output width.
        use_id: embed the id itself (``False``: a pure feature tower).
        seed: seed of the initialisation (embeddings uniform in ±0.05 and Glorot-uniform
            dense weights with zero biases, as Keras initialises them).

    Raises:
        ConfigError: a bad size or input description, or neither id nor inputs.
    """

    kind_name = "tower"

    def __init__(
        self,
        n_ids: int,
        inputs: Mapping[str, Any] | None = None,
        *,
        embedding_dim: int = 32,
        layer_sizes: Sequence[int] = (32,),
        use_id: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        where = self.kind_name
        if not isinstance(n_ids, int) or isinstance(n_ids, bool) or n_ids < 1:
            raise ConfigError(f"expected n_ids an integer >= 1 in {where}, received {n_ids!r}")
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ConfigError(
                f"expected embedding_dim an integer >= 1 in {where}, received {embedding_dim!r}"
            )
        self.n_ids, self.embedding_dim, self.use_id = n_ids, embedding_dim, bool(use_id)
        self.inputs = _check_inputs(inputs, where)
        self.layer_sizes = _check_layers(layer_sizes, where)
        self.seed = int(seed)
        if not self.use_id and not self.inputs:
            raise ConfigError(
                f"expected use_id=True or at least one input in {where}, received neither"
            )
        g = torch.Generator().manual_seed(self.seed)
        self.id_embedding: nn.Embedding | None = None
        if self.use_id:
            self.id_embedding = nn.Embedding(n_ids, embedding_dim)
        self.embeddings = nn.ModuleDict()
        in_dim = embedding_dim if self.use_id else 0
        for name, spec in self.inputs.items():
            if spec["kind"] == "float":
                self.register_buffer(_buf(name), torch.zeros(n_ids, dtype=torch.float32))
                in_dim += 1
                continue
            self.embeddings[name] = nn.Embedding(spec["cardinality"], embedding_dim)
            in_dim += embedding_dim
            if spec["kind"] == "index":
                self.register_buffer(_buf(name), torch.zeros(n_ids, dtype=torch.int64))
            else:
                w = spec["width"]
                self.register_buffer(_buf(name), torch.zeros((n_ids, w), dtype=torch.int64))
                self.register_buffer(_mask(name), torch.zeros((n_ids, w), dtype=torch.bool))
        self.in_dim = in_dim
        layers: list[nn.Linear] = []
        prev = in_dim
        for size in self.layer_sizes:
            layers.append(nn.Linear(prev, size))
            prev = size
        self.dense = nn.ModuleList(layers)
        self._init_weights(g)

    @property
    def output_dim(self) -> int:
        """Width of the tower's output vectors."""
        return self.layer_sizes[-1]

    def _init_weights(self, g: torch.Generator) -> None:
        with torch.no_grad():
            tables = [self.id_embedding] if self.id_embedding is not None else []
            for emb in [*tables, *self.embeddings.values()]:
                assert isinstance(emb, nn.Embedding)
                emb.weight.uniform_(-0.05, 0.05, generator=g)
            for lin in self.dense:
                assert isinstance(lin, nn.Linear)
                limit = math.sqrt(6.0 / (lin.in_features + lin.out_features))
                lin.weight.uniform_(-limit, limit, generator=g)
                lin.bias.zero_()

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready)."""
        return {
            "n_ids": self.n_ids,
            "inputs": [{"name": k, **v} for k, v in self.inputs.items()],
            "embedding_dim": self.embedding_dim,
            "layer_sizes": list(self.layer_sizes),
            "use_id": self.use_id,
            "seed": self.seed,
        }

    # -- features
    def set_features(self, features: Mapping[str, np.ndarray | Tensor]) -> None:
        """Fill the feature buffers from a space's ``transform`` output (one row per id).

        Raises:
            DataError: a feature is missing, or has the wrong shape or out-of-range values.
        """
        for name, spec in self.inputs.items():
            if name not in features:
                raise DataError(
                    f"expected feature {name!r} among the given features, received "
                    f"{sorted(features)}",
                    column=name,
                )
            buf = getattr(self, _buf(name))
            x = torch.as_tensor(
                np.asarray(features[name])
                if not isinstance(features[name], Tensor)
                else features[name]
            )
            if tuple(x.shape) != tuple(buf.shape):
                raise DataError(
                    f"expected feature {name!r} of shape {tuple(buf.shape)}, received "
                    f"{tuple(x.shape)}",
                    column=name,
                )
            if spec["kind"] != "float":
                if x.numel() and (int(x.min()) < 0 or int(x.max()) >= spec["cardinality"]):
                    raise DataError(
                        f"expected feature {name!r} indices in [0, {spec['cardinality']}), "
                        f"received {int(x.min())}..{int(x.max())}",
                        column=name,
                    )
            elif not torch.isfinite(x.float()).all():
                raise DataError(f"expected finite values of feature {name!r}", column=name)
            buf.copy_(x.to(buf.dtype))
            if spec["kind"] == "sequence":
                mkey = name + "_mask"
                if mkey not in features:
                    raise DataError(
                        f"expected the mask {mkey!r} with feature {name!r}, received none",
                        column=mkey,
                    )
                m = torch.as_tensor(
                    np.asarray(features[mkey])
                    if not isinstance(features[mkey], Tensor)
                    else features[mkey]
                )
                if tuple(m.shape) != tuple(buf.shape):
                    raise DataError(
                        f"expected mask {mkey!r} of shape {tuple(buf.shape)}, received "
                        f"{tuple(m.shape)}",
                        column=mkey,
                    )
                getattr(self, _mask(name)).copy_(m.to(torch.bool))

    def features_at(self, idx: Tensor) -> dict[str, Tensor]:
        """The stored features of the ids ``idx`` (masks under ``name + "_mask"``)."""
        out: dict[str, Tensor] = {}
        for name, spec in self.inputs.items():
            out[name] = getattr(self, _buf(name)).index_select(0, idx)
            if spec["kind"] == "sequence":
                out[name + "_mask"] = getattr(self, _mask(name)).index_select(0, idx)
        return out

    # -- encoding
    def encode_features(self, features: Mapping[str, Tensor], idx: Tensor | None = None) -> Tensor:
        """Tower output for explicit (transformed) features; ``idx`` the ids or ``None``.

        With ``idx=None`` the id embedding contributes zeros: the answer for an id the
        model has never seen (cold start), from its features alone.
        """
        if idx is None and not self.inputs:
            raise DataError(
                f"expected ids or features to encode in {self.kind_name}, received neither"
            )
        parts: list[Tensor] = []
        n = -1
        if self.id_embedding is not None and idx is not None:
            parts.append(self.id_embedding(idx))
        for name, spec in self.inputs.items():
            if name not in features:
                raise DataError(f"expected feature {name!r} among {sorted(features)}", column=name)
            x = features[name]
            n = x.shape[0]
            if spec["kind"] == "float":
                parts.append(x.to(torch.float32).unsqueeze(1))
            elif spec["kind"] == "index":
                parts.append(self.embeddings[name](x))
            else:
                m = features[name + "_mask"].to(torch.float32)
                e = self.embeddings[name](x) * m.unsqueeze(2)
                parts.append(e.sum(1) / m.sum(1, keepdim=True).clamp_min(1.0))
        if self.id_embedding is not None and idx is None:
            dev = self.id_embedding.weight.device
            parts.insert(0, torch.zeros(n, self.embedding_dim, device=dev))
        h = torch.cat(parts, dim=1)
        last = len(self.dense) - 1
        for j, lin in enumerate(self.dense):
            h = lin(h)
            if j < last:
                h = torch.relu(h)
        return h

    def forward(self, idx: Tensor) -> Tensor:
        """Output vectors ``(len(idx), output_dim)`` of the ids ``idx`` (stored features)."""
        return self.encode_features(self.features_at(idx), idx)

    def id_penalty(self, idx: Tensor) -> Tensor:
        """Per-row sum of squares of the id embedding rows (zeros without an id table)."""
        if self.id_embedding is None:
            return torch.zeros(idx.shape[0], device=idx.device)
        e: Tensor = self.id_embedding(idx)
        return (e * e).sum(1)


class QueryTower(Tower):
    """The user side of a :class:`TwoTower` (see :class:`Tower` for the arguments).

    Example:
        >>> QueryTower(3, layer_sizes=(16, 8)).output_dim
        8
    """

    kind_name = "QueryTower"


class CandidateTower(Tower):
    """The item side of a :class:`TwoTower` (see :class:`Tower` for the arguments).

    Example:
        >>> CandidateTower(3, {"year": {"kind": "float"}}).in_dim
        33
    """

    kind_name = "CandidateTower"


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
    a retrieval scorer: with the MSE objective of :mod:`recfit.train.retrieval` the score
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
        uspace, uarr = sides["user"]
        ispace, iarr = sides["item"]
        q = QueryTower(
            train.n_users,
            inputs_from_space(uspace) if uspace is not None else None,
            embedding_dim=embedding_dim,
            layer_sizes=q_layers,
            use_id=use_ids,
            seed=seed,
        )
        c = CandidateTower(
            train.n_items,
            inputs_from_space(ispace) if ispace is not None else None,
            embedding_dim=embedding_dim,
            layer_sizes=layer_sizes,
            use_id=use_ids,
            seed=seed + 1,
        )
        if uarr:
            q.set_features(uarr)
        if iarr:
            c.set_features(iarr)
        return cls(q, c, user_space=uspace, item_space=ispace)

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


register_family(
    Family(
        name="two_tower",
        task="retrieval",
        model_class=TwoTower,
        output="score",
        reads=frozenset({"n_factors", "layers", "seed"}),
        trainers=("sgd",),
        adapter="two_tower",
        defaults={},
        build=_build,
        summary="query and candidate towers with side features, scored by a dot product",
    )
)
