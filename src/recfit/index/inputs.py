"""What both indexes share: checked inputs (metric, sizes, embedding matrices, candidate
ids) and the map between candidate ids and positions."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from recfit.errors import ConfigError, DataError
from recfit.index.itemsets import ItemSets, is_int

__all__ = [
    "IdMap",
    "Metric",
    "as_matrix",
    "check_finite",
    "check_ids",
    "check_metric",
    "check_positive",
    "exclusion_positions",
    "normalise",
]

Metric = Literal["dot", "cosine"]
_METRICS = ("dot", "cosine")


def check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise ConfigError(f"expected metric in {_METRICS}, received {metric!r}")


def check_positive(**values: int | None) -> None:
    """Each named value is an integer >= 1 (``None``: not given, not checked).

    Example:
        >>> check_positive(k=10, nlist=None)
        >>> check_positive(k=0)
        Traceback (most recent call last):
        ...
        recfit.errors.ConfigError: expected k as an integer >= 1, received 0
    """
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"expected {name} as an integer >= 1, received {value!r}")


def as_matrix(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A 2-d float32 tensor (no copy when already one), on ``device`` if given."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.asarray(x)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise DataError(f"expected numeric {name}, received dtype {a.dtype}", column=name)
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim != 2:
        raise DataError(
            f"expected {name} as a 2-d (rows, dim) array, received shape {tuple(t.shape)}",
            column=name,
        )
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    if device is not None and t.device != device:
        t = t.to(device)
    return t


def check_finite(t: torch.Tensor, name: str, block: int = 1 << 20) -> None:
    """Raise unless every value is finite; checks row blocks to bound the temporaries."""
    rows = max(1, block // max(1, t.shape[1]))
    for r0 in range(0, t.shape[0], rows):
        if not bool(torch.isfinite(t[r0 : r0 + rows]).all()):
            raise DataError(f"expected finite {name}, received NaN or infinite values", column=name)


def normalise(t: torch.Tensor) -> torch.Tensor:
    norm: torch.Tensor = t.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return t / norm


def check_ids(ids: Any, n: int) -> np.ndarray | None:
    if ids is None:
        return None
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids).reshape(-1)
    if len(a) != n:
        raise DataError(f"expected {n} candidate ids, received {len(a)}", column="ids")
    if n and not is_int(a):
        raise DataError(f"expected integer candidate ids, received {a.dtype}", column="ids")
    a = a.astype(np.int64)
    if n and a.min() < 0:
        raise DataError(
            f"expected non-negative candidate ids (-1 marks padding), received {int(a.min())}",
            column="ids",
        )
    if len(np.unique(a)) != n:
        raise DataError("expected unique candidate ids, received duplicates", column="ids")
    if np.array_equal(a, np.arange(n)):
        return None
    return a


class IdMap:
    """Maps candidate ids to positions (identity when ids are ``0..n-1``)."""

    def __init__(self, ids: np.ndarray | None, n: int) -> None:
        self.ids = ids
        self.n = n
        if ids is not None:
            self._order = np.argsort(ids, kind="stable")
            self._sorted = ids[self._order]

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found mask) of the given ids."""
        if self.ids is None:
            found = (ids >= 0) & (ids < self.n)
            return np.where(found, ids, 0), found
        j = np.searchsorted(self._sorted, ids)
        j = np.minimum(j, max(self.n - 1, 0))
        found = self._sorted[j] == ids if self.n else np.zeros(len(ids), bool)
        return self._order[j], found

    def to_ids(self, pos: np.ndarray) -> np.ndarray:
        out = pos.astype(np.int64, copy=True)
        if self.ids is not None:
            valid = out >= 0
            out[valid] = self.ids[out[valid]]
        return out


def exclusion_positions(sets: ItemSets, idmap: IdMap) -> ItemSets:
    """The exclusion sets as candidate positions, unknown ids dropped."""
    pos, found = idmap.positions(sets.indices)
    if found.all():
        return ItemSets(sets.indptr, pos)
    rows = sets.row_ids()[found]
    counts = np.bincount(rows, minlength=sets.n_queries)
    indptr = np.zeros(sets.n_queries + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return ItemSets(indptr, pos[found])
