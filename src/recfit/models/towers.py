"""The towers of a two-tower model: an id embedding and side features → dense layers.

Each tower embeds its id and its features, concatenates the pieces and applies dense
layers (``layer_sizes``; ReLU between them, none after the last), as in the keras-rs
*Deep Recommenders* example. Features are the output of a fitted
:class:`~recfit.data.features.FeatureSpace` over the user (or item) table, one row per
vocabulary index, kept as **buffers** (saved with the weights) and looked up by index
inside ``forward``. Per feature:

* single-valued categorical, discretised or crossed (``int64`` ``(n,)``) → an embedding;
* text tokens and multi-valued categoricals (``int64`` ``(n, width)`` with a boolean
  mask) → the **masked mean** of the token embeddings (a row without tokens gives a
  zero vector; padded positions never change the result);
* rescaled floats (``float32`` ``(n,)``) → passed as one input column each.

Example:
    >>> import torch
    >>> q = QueryTower(5, {"age": {"kind": "index", "cardinality": 3}}, layer_sizes=(8, 4))
    >>> q(torch.tensor([0, 4])).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from recfit.data.features import FeatureSpace
from recfit.errors import ConfigError, DataError

__all__ = [
    "CandidateTower",
    "InputKind",
    "QueryTower",
    "Tower",
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


def _column(
    features: Mapping[str, np.ndarray | Tensor], key: str, what: str, shape: tuple[int, ...]
) -> Tensor:
    """``features[key]`` as a tensor of ``shape`` (``what`` names it in errors)."""
    if key not in features:
        raise DataError(
            f"expected {what} among the given features, received {sorted(features)}",
            column=key,
        )
    value = features[key]
    x = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    if tuple(x.shape) != shape:
        raise DataError(f"expected {what} of shape {shape}, received {tuple(x.shape)}", column=key)
    return x


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
            buf = getattr(self, _buf(name))
            x = _column(features, name, f"feature {name!r}", tuple(buf.shape))
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
                m = _column(features, mkey, f"mask {mkey!r} of feature {name!r}", tuple(buf.shape))
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
                emb = self.embeddings[name]
                assert isinstance(emb, nn.Embedding)
                parts.append(_masked_mean(x, features[name + "_mask"], emb.weight))
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
        """Output vectors ``(len(idx), output_dim)`` of the ids ``idx`` (stored features).

        An id that occurs several times is encoded once (rows are independent: the
        same vectors, and the same gradients summed over its rows)."""
        if len(idx) < 2:
            return self.encode_features(self.features_at(idx), idx)
        ids, inv = torch.unique(idx, return_inverse=True)
        if len(ids) == len(idx):
            return self.encode_features(self.features_at(idx), idx)
        # index_select: its backward sums the rows in order (indexing's does not on 2+ threads)
        return self.encode_features(self.features_at(ids), ids).index_select(0, inv)

    def id_penalty(self, idx: Tensor) -> Tensor:
        """Per-row sum of squares of the id embedding rows (zeros without an id table)."""
        if self.id_embedding is None:
            return torch.zeros(idx.shape[0], device=idx.device)
        e: Tensor = self.id_embedding(idx)
        return (e * e).sum(1)


def _masked_mean(x: Tensor, mask: Tensor, weight: Tensor) -> Tensor:
    """The mean of the rows of ``weight`` at the tokens ``x[i][mask[i]]`` of each row
    ``i`` (zeros for a row without tokens), as one bag per row over the kept tokens only
    (padding costs nothing forward or backward)."""
    keep = mask.to(torch.bool)
    n = keep.sum(1)
    offsets = torch.cumsum(n, 0) - n
    return F.embedding_bag(x[keep], weight, offsets, mode="mean")


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
