"""What the recommended lists are, beside how well they rank: catalogue coverage and the
mean popularity of the recommended items.

Inputs are those of :mod:`recfit.metrics.ranking`: ``retrieved`` is an ``(n_queries, K)``
matrix of item ids, best first, ``-1`` for padding (never counted). ``popularity`` holds
one value per item id of the catalogue (``len(popularity)`` is the catalogue size), such
as the share of training users who have the item (:func:`item_popularity`).

* ``coverage@k``: the share of the catalogue that appears in at least one query's top
  ``k``: ``|∪_q top_k(q)| / n_items``. A property of the whole set of lists, so it has no
  per-query value and no bootstrap interval; queries with weight 0 are left out.
* ``mean_popularity@k``: per query, the mean popularity of the (non-padding) items in its
  top ``k`` (0 for an empty list), averaged over queries like every ranking metric
  (weighted by ``weights``), with a per-query bootstrap interval.

Neither says a list is good: high coverage and low popularity mean the lists reach
further into the catalogue, at whatever cost in recall. Their directions in
:mod:`recfit.metrics.registry` (coverage ``max``, popularity ``min``) state which way
is "less concentrated", kind ``list``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recfit.errors import DataError
from recfit.metrics.ranking import _bootstrap, _check_k, _check_retrieved, _check_weights

__all__ = [
    "LIST_METRICS",
    "catalogue_coverage_at_k",
    "item_popularity",
    "list_report",
    "mean_popularity_at_k",
    "per_query_popularity",
]

#: The metric names of :func:`list_report` (each reported as ``<name>@k``).
LIST_METRICS = ("coverage", "mean_popularity")


def _check_popularity(popularity: Any) -> np.ndarray:
    p = np.asarray(popularity, dtype=np.float64).reshape(-1)
    if len(p) == 0 or not np.isfinite(p).all():
        raise DataError(
            f"expected one finite popularity per catalogue item, received {len(p)} values"
            + ("" if np.isfinite(p).all() else " with non-finite ones"),
            column="popularity",
        )
    return p


def _top(retrieved: Any, k: int, n_items: int) -> np.ndarray:
    r = _check_retrieved(retrieved)
    _check_k(k, r.shape[1])
    r = r[:, :k]
    if r.size and r.max() >= n_items:
        raise DataError(
            f"expected item ids < the catalogue size {n_items}, received {int(r.max())}",
            column="retrieved",
        )
    return r


def item_popularity(items: Any, users: Any, n_items: int) -> np.ndarray:
    """The share of users with each item: ``|{u : (u, i) given}| / |{u}|``, per item id.

    A (user, item) pair given twice counts once.

    Example:
        >>> item_popularity([0, 0, 1, 0], [5, 6, 6, 5], n_items=3).tolist()
        [1.0, 0.5, 0.0]
    """
    i = np.asarray(items, dtype=np.int64).reshape(-1)
    u = np.asarray(users, dtype=np.int64).reshape(-1)
    if len(i) != len(u):
        raise DataError(f"expected {len(i)} users, one per item, received {len(u)}", column="users")
    if not len(u):
        return np.zeros(n_items)
    if u.min() < 0 or i.min() < 0:
        raise DataError("expected user and item indices >= 0, received negative ones")
    width = max(int(i.max()) + 1, n_items)
    pairs = np.sort(u * width + i)
    pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]  # distinct pairs
    counts = np.bincount(pairs % width, minlength=n_items)[:n_items].astype(np.float64)
    n_users = int(np.count_nonzero(np.bincount(u)))
    out: np.ndarray = counts / n_users
    return out


def per_query_popularity(retrieved: Any, popularity: Any, k: int) -> np.ndarray:
    """Each query's mean popularity of its top ``k`` items (padding skipped; 0 if none).

    Example:
        >>> per_query_popularity([[0, 1], [2, -1]], [0.5, 0.1, 0.9], k=2).tolist()
        [0.3, 0.9]
    """
    pop = _check_popularity(popularity)
    r = _top(retrieved, k, len(pop))
    real = r >= 0
    total = np.where(real, pop[np.maximum(r, 0)], 0.0).sum(1)
    n = real.sum(1)
    out: np.ndarray = np.divide(total, n, out=np.zeros(len(r)), where=n > 0)
    return out


def mean_popularity_at_k(retrieved: Any, popularity: Any, k: int, *, weights: Any = None) -> float:
    """Mean over queries of :func:`per_query_popularity`, weighted by ``weights``.

    Example:
        >>> round(mean_popularity_at_k([[0, 1], [2, -1]], [0.5, 0.1, 0.9], k=2), 6)
        0.6
    """
    per = per_query_popularity(retrieved, popularity, k)
    w = _check_weights(weights, len(per))
    return float((w * per).sum() / w.sum()) if w.sum() > 0 else float("nan")


def catalogue_coverage_at_k(retrieved: Any, n_items: int, k: int, *, weights: Any = None) -> float:
    """The share of the ``n_items`` catalogue found in some query's top ``k``.

    Queries with weight 0 are left out; padding (``-1``) is not an item.

    Example:
        >>> catalogue_coverage_at_k([[0, 1], [1, -1]], n_items=4, k=2)
        0.5
    """
    r = _top(retrieved, k, n_items)
    w = _check_weights(weights, len(r))
    ids = r[w > 0]
    return float(len(np.unique(ids[ids >= 0])) / n_items)


def list_report(
    retrieved: Any,
    popularity: Any,
    ks: Sequence[int],
    weights: Any = None,
    *,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """``coverage@k`` and ``mean_popularity@k`` (with ``mean_popularity@k_ci``) for each k.

    Queries are those of ``retrieved`` with weight > 0 (pass the evaluated queries only,
    as :func:`~recfit.metrics.ranking.ranking_report` counts them). The bootstrap draws
    the same resamples as :func:`~recfit.metrics.ranking.ranking_report` with the same
    ``seed`` and queries.

    Example:
        >>> rep = list_report([[0, 1], [2, 1]], [0.5, 0.1, 0.9, 0.0], ks=(1, 2), n_bootstrap=0)
        >>> rep["coverage@1"], rep["coverage@2"], round(rep["mean_popularity@1"], 6)
        (0.5, 0.75, 0.7)
    """
    pop = _check_popularity(popularity)
    r = _check_retrieved(retrieved)
    w = _check_weights(weights, r.shape[0])
    keep = w > 0
    out: dict[str, Any] = {}
    per_k: list[np.ndarray] = []
    for k in ks:
        out[f"coverage@{k}"] = catalogue_coverage_at_k(r, len(pop), k, weights=w)
        per = per_query_popularity(r, pop, k)
        per_k.append((w * per)[keep])
        den = float(w[keep].sum())
        out[f"mean_popularity@{k}"] = float(per_k[-1].sum() / den) if den > 0 else float("nan")
    if n_bootstrap > 0:
        if keep.any():
            nums = np.stack(per_k, axis=1)
            dens = np.repeat(w[keep][:, None], len(per_k), axis=1)
            lo, hi = _bootstrap(nums, dens, n_bootstrap, ci, seed)
        else:
            lo = hi = np.full(len(per_k), np.nan)
        for k, a, b in zip(ks, lo, hi, strict=True):
            out[f"mean_popularity@{k}_ci"] = (float(a), float(b))
    return out
