"""Ranking metrics of retrieved top-k lists: exact, weighted, with bootstrap intervals.

Every function takes the same two inputs:

* ``retrieved``: an ``(n_queries, K)`` integer matrix of item ids, best first, as returned
  by :class:`recfit.index.ExactIndex` (id ``-1`` is padding and never a hit). For a
  full-catalogue evaluation, retrieve from an index over every item; whether the user's
  training items were excluded is the caller's choice, and :func:`ranking_report`
  records it, so every figure says which mode it used.
* ``relevant``: the relevant items of each query, an :class:`recfit.index.ItemSets`
  (CSR; its optional ``values`` are graded relevances, used as NDCG gains) or a list of
  one id array per query.

Notation for one query ``q`` at cutoff ``k``: ``R`` is its set of relevant items,
``h_j = 1`` when the item at rank ``j`` (1-based) is in ``R``, ``hits = Σ_{j≤k} h_j``.

Two recalls, named apart: ``recall@k`` is ``hits / |R|`` (protocol T2, the peer harness
and implicit's evaluation: below 1 whenever ``|R| > k``); ``capped_recall@k`` is
``hits / min(k, |R|)`` (the "Recall@k" of the Mult-VAE / EASE papers and of protocol
T3: 1 for a perfect list).

Ranking metrics are per query (per user): each query is one unit of the average, of
the bootstrap and of ``weights`` (a user weight), whatever its number of relevant items;
only :func:`top_k_accuracy` is a micro average over (query, item) pairs.

Edge cases, the same for every metric:

* **No relevant items.** A query with ``R`` empty is skipped: it is left out of every
  average and counted as ``n_skipped`` by :func:`ranking_report`. If no query can be
  evaluated, the metric is ``nan``.
* **Fewer than k candidates.** Padding (``-1``) counts as a miss; Precision@k still
  divides by ``k``. ``retrieved`` must have at least ``k`` columns (ConfigError), so a
  top-20 list cannot silently be scored at 100.
* **Duplicates.** A duplicate in ``relevant`` counts once (its largest grade is kept); an
  item repeated in a retrieved list is a hit only at its first rank.
* **Weights.** ``weights`` (one per query, ``>= 0``) average as ``Σ w·m / Σ w`` over the
  evaluated queries; a weight of 2 is the same as the query appearing twice, and a
  weight of 0 removes the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from recfit.errors import ConfigError, DataError
from recfit.index import ItemSets

__all__ = [
    "RANKING_METRICS",
    "capped_recall_at_k",
    "hit_rate_at_k",
    "map_at_k",
    "mrr",
    "ndcg_at_k",
    "per_query_metrics",
    "precision_at_k",
    "ranking_report",
    "recall_at_k",
    "top_k_accuracy",
]

Gain = Literal["linear", "exponential"]

#: The metric names of :func:`per_query_metrics` and :func:`ranking_report`.
RANKING_METRICS = (
    "recall",
    "capped_recall",
    "precision",
    "ndcg",
    "map",
    "mrr",
    "hit_rate",
    "top_k_accuracy",
)


# --------------------------------------------------------------------------- inputs
def _check_retrieved(retrieved: Any) -> np.ndarray:
    r = np.asarray(retrieved)
    if r.ndim != 2 or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise DataError(
            f"expected retrieved ids as a 2-d integer (n_queries, k) matrix, "
            f"received shape {r.shape} dtype {r.dtype}",
            column="retrieved",
        )
    r = r.astype(np.int64, copy=False)
    if r.size and r.min() < -1:
        raise DataError(
            f"expected item ids >= 0 or -1 for padding, received {int(r.min())}",
            column="retrieved",
        )
    return r


def _check_k(k: int, width: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"expected k as an integer >= 1, received {k!r}")
    if k > width:
        raise ConfigError(f"expected retrieved lists of at least k={k} columns, received {width}")


def _check_relevant(relevant: Any, n_queries: int) -> ItemSets:
    sets = relevant if isinstance(relevant, ItemSets) else ItemSets.from_lists(relevant)
    if sets.n_queries != n_queries:
        raise DataError(
            f"expected one relevant set per query ({n_queries}), received {sets.n_queries}",
            column="relevant",
        )
    if len(sets.indices) and sets.indices.min() < 0:
        raise DataError(
            f"expected relevant item ids >= 0, received {int(sets.indices.min())}",
            column="relevant",
        )
    if sets.values is not None and len(sets.values):
        v = sets.values
        if not np.isfinite(v).all() or v.min() < 0:
            raise DataError(
                "expected finite relevance grades >= 0, received "
                f"{'non-finite values' if not np.isfinite(v).all() else float(v.min())}",
                column="relevant.values",
            )
    return sets


def _check_weights(weights: Any, n_queries: int) -> np.ndarray:
    if weights is None:
        return np.ones(n_queries)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != n_queries:
        raise DataError(f"expected {n_queries} query weights, received {len(w)}", column="weights")
    if len(w) and (not np.isfinite(w).all() or w.min() < 0):
        raise DataError(
            "expected finite query weights >= 0, received "
            f"{'non-finite values' if not np.isfinite(w).all() else float(w.min())}",
            column="weights",
        )
    return w


class _Ranked:
    """Hits, gains and ideal gains of each query, computed once for all metrics."""

    def __init__(self, retrieved: np.ndarray, rel: ItemSets, gain: Gain) -> None:
        if gain not in ("linear", "exponential"):
            raise ConfigError(f"expected gain in ('linear', 'exponential'), received {gain!r}")
        nq, width = retrieved.shape
        rows = rel.row_ids()
        grades = np.ones(len(rel.indices)) if rel.values is None else rel.values
        m = int(max(rel.indices.max(initial=0), retrieved.max(initial=0))) + 1
        keys = rows * m + rel.indices
        # Unique (query, item) pairs; among duplicates keep the largest grade.
        order = np.lexsort((-grades, keys))
        keys, grades, rows = keys[order], grades[order], rows[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        keys, grades, rows = keys[first], grades[first], rows[first]
        if gain == "exponential":
            grades = np.exp2(grades) - 1.0
        self.n_rel = np.bincount(rows, minlength=nq).astype(np.int64)

        # Hits in the retrieved lists (padding and later repeats are misses).
        qk = np.arange(nq, dtype=np.int64)[:, None] * m + retrieved
        pos = np.searchsorted(keys, qk)
        pos_c = np.minimum(pos, max(len(keys) - 1, 0))
        hit = (retrieved >= 0) & (keys[pos_c] == qk) if len(keys) else retrieved < -1
        if width > 1:
            srt = np.argsort(retrieved, axis=1, kind="stable")
            vals = np.take_along_axis(retrieved, srt, 1)
            dup_sorted = np.zeros_like(hit)
            dup_sorted[:, 1:] = vals[:, 1:] == vals[:, :-1]
            dup = np.zeros_like(hit)
            np.put_along_axis(dup, srt, dup_sorted, 1)
            hit &= ~dup
        self.hit = hit
        self.gains = np.where(hit, grades[pos_c] if len(keys) else 0.0, 0.0)

        # Ideal gains: each query's grades sorted descending, first `width` of them.
        by_grade = np.lexsort((-grades, rows))
        g_sorted, r_sorted = grades[by_grade], rows[by_grade]
        starts = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(self.n_rel, out=starts[1:])
        rank = np.arange(len(r_sorted)) - starts[r_sorted]
        keep = rank < width
        self.ideal = np.zeros((nq, width))
        self.ideal[r_sorted[keep], rank[keep]] = g_sorted[keep]
        self.discount = 1.0 / np.log2(np.arange(2, width + 2))

    def at(self, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(numerator, denominator) per query of each metric at cutoff k.

        For per-query metrics the denominator is 1 where the query is evaluated; for
        top-k accuracy (a micro average over (query, item) pairs) it is ``|R|``.
        """
        hit = self.hit[:, :k]
        n_rel = self.n_rel
        ok = n_rel > 0
        one = ok.astype(np.float64)
        hits = hit.sum(1).astype(np.float64)
        safe_rel = np.maximum(n_rel, 1)
        capped = np.minimum(safe_rel, k)
        disc = self.discount[:k]
        dcg = (self.gains[:, :k] * disc).sum(1)
        idcg = (self.ideal[:, :k] * disc).sum(1)
        ndcg = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
        cum = np.cumsum(hit, axis=1)
        prec_j = cum / np.arange(1, k + 1)
        ap = (prec_j * hit).sum(1) / capped
        any_hit = hit.any(1)
        first = np.argmax(hit, axis=1)
        rr = np.where(any_hit, 1.0 / (first + 1), 0.0)
        z = np.where(ok, 1.0, 0.0)
        return {
            "recall": (z * hits / safe_rel, one),
            "capped_recall": (z * hits / capped, one),
            "precision": (z * hits / k, one),
            "ndcg": (z * ndcg, one),
            "map": (z * ap, one),
            "mrr": (z * rr, one),
            "hit_rate": (z * any_hit, one),
            "top_k_accuracy": (hits, n_rel.astype(np.float64)),
        }


def _prepare(
    retrieved: Any, relevant: Any, ks: Sequence[int], weights: Any, gain: Gain
) -> tuple[_Ranked, np.ndarray]:
    r = _check_retrieved(retrieved)
    for k in ks:
        _check_k(k, r.shape[1])
    rel = _check_relevant(relevant, r.shape[0])
    w = _check_weights(weights, r.shape[0])
    return _Ranked(r[:, : max(ks)], rel, gain), w


def _mean(num: np.ndarray, den: np.ndarray, w: np.ndarray) -> float:
    d = float((w * den).sum())
    return float((w * num).sum()) / d if d > 0 else float("nan")


def _one(
    name: str, retrieved: Any, relevant: Any, k: int, weights: Any, gain: Gain = "linear"
) -> float:
    ranked, w = _prepare(retrieved, relevant, [k], weights, gain)
    num, den = ranked.at(k)[name]
    return _mean(num, den, w)


# --------------------------------------------------------------------------- metrics
def recall_at_k(retrieved: Any, relevant: Any, k: int, *, weights: Any = None) -> float:
    """Recall@k: the share of each query's relevant items found in its top k.

    ``Recall@k(q) = hits@k(q) / |R_q|`` (as in protocol T2: hits over *all* the user's
    relevant items, so it is below 1 whenever ``|R_q| > k``), averaged over queries with
    ``R_q`` non-empty, weighted by ``weights``. Some libraries divide by ``min(k, |R_q|)``
    instead, which reaches 1 for a perfect list: that is :func:`capped_recall_at_k`.

    Example:
        >>> recall_at_k([[1, 2, 3], [4, 5, 6]], [[2, 9], [7]], k=2)
        0.25
    """
    return _one("recall", retrieved, relevant, k, weights)


def capped_recall_at_k(retrieved: Any, relevant: Any, k: int, *, weights: Any = None) -> float:
    """Capped Recall@k: hits over ``min(k, |R_q|)``, so a perfect list scores 1.

    ``CappedRecall@k(q) = hits@k(q) / min(k, |R_q|)``, averaged over queries with ``R_q``
    non-empty, weighted by ``weights``. This is the "Recall@k" of Liang et al. (Mult-VAE)
    and Steck (EASE), protocol T3's; it equals :func:`recall_at_k` for queries with at
    most ``k`` relevant items.

    Example:
        >>> capped_recall_at_k([[1, 2, 3]], [[1, 2, 3, 4, 5]], k=2)  # recall@2 is 0.4
        1.0
    """
    return _one("capped_recall", retrieved, relevant, k, weights)


def precision_at_k(retrieved: Any, relevant: Any, k: int, *, weights: Any = None) -> float:
    """Precision@k: the share of the top k that is relevant.

    ``Precision@k(q) = hits@k(q) / k``, averaged over queries with relevant items. The
    denominator is ``k`` even when the list is padded (fewer than ``k`` candidates).

    Example:
        >>> precision_at_k([[1, 2, 3, -1]], [[1, 3, 8]], k=4)
        0.5
    """
    return _one("precision", retrieved, relevant, k, weights)


def hit_rate_at_k(retrieved: Any, relevant: Any, k: int, *, weights: Any = None) -> float:
    """HitRate@k: the share of queries with at least one relevant item in the top k.

    ``HitRate@k(q) = 1[hits@k(q) > 0]``, averaged over queries with relevant items.

    Example:
        >>> hit_rate_at_k([[1, 2], [3, 4]], [[2], [5]], k=2)
        0.5
    """
    return _one("hit_rate", retrieved, relevant, k, weights)


def ndcg_at_k(
    retrieved: Any, relevant: Any, k: int, *, weights: Any = None, gain: Gain = "linear"
) -> float:
    """NDCG@k: discounted cumulative gain over the best possible, binary or graded.

    ``DCG@k(q) = Σ_{j≤k} g(item_j) / log2(j + 1)`` with ``g`` the item's grade (1 for
    every relevant item when ``relevant`` has no ``values``; 0 for non-relevant items),
    or ``2^grade - 1`` with ``gain="exponential"``. ``IDCG@k(q)`` is the DCG of the
    query's relevant items sorted by grade, best first; ``NDCG = DCG / IDCG`` (0 when
    ``IDCG`` is 0, e.g. every grade is 0), averaged over queries with relevant items.

    Example:
        >>> round(ndcg_at_k([[5, 1, 2]], [[1]], k=3), 4)  # 1/log2(3)
        0.6309
    """
    return _one("ndcg", retrieved, relevant, k, weights, gain)


def map_at_k(retrieved: Any, relevant: Any, k: int, *, weights: Any = None) -> float:
    """MAP@k: mean over queries of the average precision at k.

    ``AP@k(q) = Σ_{j≤k} Precision@j(q) · h_j / min(k, |R_q|)``, so a list with every
    relevant item (or k of them) on top scores 1. Averaged over queries with relevant
    items.

    Example:
        >>> map_at_k([[1, 7, 2]], [[1, 2]], k=3)  # (1/1 + 2/3) / 2
        0.8333333333333333
    """
    return _one("map", retrieved, relevant, k, weights)


def mrr(retrieved: Any, relevant: Any, k: int | None = None, *, weights: Any = None) -> float:
    """MRR: mean reciprocal rank of the first relevant item (within the top k).

    ``RR(q) = 1 / rank of the first hit`` (0 when no relevant item is in the top ``k``;
    ``k`` defaults to the whole retrieved list), averaged over queries with relevant
    items.

    Example:
        >>> mrr([[3, 1, 2], [4, 5, 6]], [[1], [9]])
        0.25
    """
    r = _check_retrieved(retrieved)
    return _one("mrr", r, relevant, r.shape[1] if k is None else k, weights)


def top_k_accuracy(retrieved: Any, relevant: Any, k: int, *, weights: Any = None) -> float:
    """Top-k categorical accuracy as keras-rs defines it, over (query, item) pairs.

    For each (query, relevant item) pair, 1 if the item is among the query's top k, else
    0; averaged over pairs, each pair weighing its query's weight:
    ``Σ_q w_q · hits@k(q) / Σ_q w_q · |R_q|``. This is a micro average, so users with
    many relevant items count more than in :func:`recall_at_k` (which averages per
    user). Protocol T1's "top-100 accuracy" is this with ``k=100``, the relevant pairs
    being the test ratings of 5 stars and training items not excluded.

    Example:
        >>> top_k_accuracy([[1, 2], [3, 4]], [[2, 8, 9], [3]], k=2)
        0.5
    """
    return _one("top_k_accuracy", retrieved, relevant, k, weights)


def per_query_metrics(
    retrieved: Any, relevant: Any, k: int, *, gain: Gain = "linear"
) -> dict[str, np.ndarray]:
    """Each metric of :data:`RANKING_METRICS` at cutoff ``k``, one value per query.

    Queries without relevant items get ``nan``. ``top_k_accuracy`` here is the share of
    the query's relevant items in its top k (that is, its recall); its mean over queries
    is the recall, and the pair-weighted mean is :func:`top_k_accuracy`.

    Example:
        >>> m = per_query_metrics([[1, 2], [3, 4]], [[2], []], k=2)
        >>> m["mrr"].tolist()
        [0.5, nan]
    """
    ranked, _ = _prepare(retrieved, relevant, [k], None, gain)
    ok = ranked.n_rel > 0
    out: dict[str, np.ndarray] = {}
    for name, (num, den) in ranked.at(k).items():
        safe = np.where(ok, den, 1.0)
        out[name] = np.where(ok, num / safe, np.nan)
    return out


# --------------------------------------------------------------------------- report
def _bootstrap(
    nums: np.ndarray,
    dens: np.ndarray,
    n_bootstrap: int,
    level: float,
    seed: int,
    chunk_elems: int = 2_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap of ratio estimates ``Σ num / Σ den`` over resampled rows.

    ``nums`` and ``dens`` are ``(n, n_metrics)`` with the weights already applied.
    Returns (lo, hi), each ``(n_metrics,)``.
    """
    n = nums.shape[0]
    rng = np.random.default_rng(seed)
    stats = np.empty((n_bootstrap, nums.shape[1]))
    b_chunk = max(1, chunk_elems // max(n, 1))
    for b0 in range(0, n_bootstrap, b_chunk):
        b = min(b_chunk, n_bootstrap - b0)
        draws = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b, dtype=np.int64)[:, None] * n + draws).reshape(-1)
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        den = counts @ dens
        num = counts @ nums
        stats[b0 : b0 + b] = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(stats, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def _key(name: str, k: int) -> str:
    return f"top_{k}_accuracy" if name == "top_k_accuracy" else f"{name}@{k}"


def ranking_report(
    retrieved: Any,
    relevant: Any,
    ks: Sequence[int] = (10, 20, 100),
    weights: Any = None,
    *,
    exclude_seen: bool,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    gain: Gain = "linear",
    seed: int = 0,
) -> dict[str, Any]:
    """Every ranking metric at every cutoff, with bootstrap intervals and the protocol.

    Keys: ``recall@k``, ``precision@k``, ``ndcg@k``, ``map@k``, ``mrr@k``,
    ``hit_rate@k`` and ``top_{k}_accuracy`` for each ``k`` in ``ks`` (definitions in
    the functions of the same names), each with ``<key>_ci``: a ``(lo, hi)`` percentile
    bootstrap interval at level ``ci``, resampling the evaluated queries (users) with
    replacement ``n_bootstrap`` times (no ``_ci`` keys when ``n_bootstrap`` is 0). Also:
    ``exclude_seen`` (whether training items were excluded from ``retrieved``, given by
    the caller and stated in every report), ``n_queries`` (queries evaluated: with
    relevant items and weight > 0), ``n_skipped`` (queries without relevant items),
    ``ks``, ``gain``, ``n_bootstrap``, ``ci`` and ``seed``.

    Args:
        retrieved: ``(n_queries, K)`` item ids, best first, ``-1`` for padding;
            ``K >= max(ks)``.
        relevant: relevant items per query (``ItemSets`` with optional grades, or a
            list of id arrays).
        ks: the cutoffs.
        weights: optional weight per query (>= 0).
        exclude_seen: whether ``retrieved`` excluded each user's training items.
        n_bootstrap: bootstrap resamples (0 for none).
        ci: the confidence level of the intervals.
        gain: NDCG gain, ``"linear"`` or ``"exponential"``.
        seed: seed of the bootstrap.

    Example:
        >>> rep = ranking_report([[1, 2], [3, 4]], [[2], [5]], ks=(1, 2), exclude_seen=True,
        ...                      n_bootstrap=200)
        >>> rep["recall@2"], rep["hit_rate@1"], rep["exclude_seen"], rep["n_queries"]
        (0.5, 0.0, True, 2)
        >>> rep["recall@2_ci"]
        (0.0, 1.0)
    """
    if not isinstance(exclude_seen, bool | np.bool_):
        raise ConfigError(f"expected exclude_seen as a bool, received {exclude_seen!r}")
    ks = [int(k) for k in ks] if not isinstance(ks, int) else [ks]
    if not ks:
        raise ConfigError("expected at least one cutoff in ks, received none")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ConfigError(f"expected n_bootstrap as an integer >= 0, received {n_bootstrap!r}")
    if not 0.0 < ci < 1.0:
        raise ConfigError(f"expected ci in (0, 1), received {ci!r}")
    ranked, w = _prepare(retrieved, relevant, ks, weights, gain)
    evaluated = (ranked.n_rel > 0) & (w > 0)
    names: list[str] = []
    nums: list[np.ndarray] = []
    dens: list[np.ndarray] = []
    for k in ks:
        for name, (num, den) in ranked.at(k).items():
            names.append(_key(name, k))
            nums.append((w * num)[evaluated])
            dens.append((w * den)[evaluated])
    num_m = np.stack(nums, axis=1)
    den_m = np.stack(dens, axis=1)
    tot_den = den_m.sum(0)
    values = np.divide(num_m.sum(0), tot_den, out=np.full(len(names), np.nan), where=tot_den > 0)
    report: dict[str, Any] = {}
    for name, v in zip(names, values, strict=True):
        report[name] = float(v)
    if n_bootstrap > 0:
        n_eval = int(evaluated.sum())
        if n_eval:
            lo, hi = _bootstrap(num_m, den_m, n_bootstrap, ci, seed)
        else:
            lo = hi = np.full(len(names), np.nan)
        for name, a, b in zip(names, lo, hi, strict=True):
            report[f"{name}_ci"] = (float(a), float(b))
    report.update(
        exclude_seen=bool(exclude_seen),
        n_queries=int(evaluated.sum()),
        n_skipped=int((ranked.n_rel == 0).sum()),
        ks=list(ks),
        gain=gain,
        n_bootstrap=n_bootstrap,
        ci=ci,
        seed=seed,
    )
    return report
