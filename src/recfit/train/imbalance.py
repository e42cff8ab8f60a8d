"""Class-imbalance strategies for ratings treated as classes, applied to training rows only.

Ratings are skewed (1 star is rare). Five strategies, chosen by name in :func:`resample`:

=================  ===================================================================
``none``           the training rows as they are (the baseline)
``class_weights``  row weights ×= a per-level weight (inverse or sqrt-inverse frequency,
                   or user-given), normalised so the weighted mean weight is 1
``undersample``    a random subset of the majority levels' rows (imbalanced-learn's
                   ``RandomUnderSampler`` on row positions)
``oversample``     the rows plus random repeats of the minority levels' rows
                   (``RandomOverSampler`` on row positions)
``smote``          the rows plus synthetic *vectors* of the minority levels
                   (imbalanced-learn's ``SMOTE`` on vectorised rows)
=================  ===================================================================

Leakage: every function here takes the **training** part only (an
:class:`~recfit.data.Interactions`, e.g. ``split.train``, never a ``Split``), and what
comes out is built from those rows alone: a subset or a multiset of them, or SMOTE
points interpolated between two training vectors of the same level. Validation and
test rows are never resampled or synthesised; resample after splitting.

Rows of weight 0 do not exist: they are never picked, repeated or used as SMOTE
neighbours, and the resampled outputs leave them out. Random samplers balance *row
counts*; class weights balance *weighted* counts.

SMOTE contract: synthetic rows have no user or item. :func:`smote` returns
``(vectors, levels)``; :func:`resample` takes one vector per training row (for example
:func:`row_vectors`: the concatenated learned user and item embeddings, or side
features) and returns the synthetic vectors with their level indices. A trainer that
uses them feeds the synthetic vectors straight to the model's MLP head (the layer that
consumes the concatenated embeddings) with cross-entropy on the synthetic levels and
weight 1 each, next to the ordinary rows, which go through the embeddings as usual.
Vectors made from learned embeddings are a snapshot: take them from a model trained on
the same training rows (never from one that saw validation rows).

Example:
    >>> from recfit.data import Interactions
    >>> d = Interactions.from_arrays(range(6), range(6), [1, 1, 5, 5, 5, 5])
    >>> class_weights(d.rating).tolist()
    [1.5, 1.5, 0.75, 0.75, 0.75, 0.75]
    >>> r = resample(d, "undersample", seed=0)
    >>> sorted(r.train.rating.tolist()), r.counts_after
    ([1.0, 1.0, 5.0, 5.0], {1.0: 2.0, 5.0: 2.0})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError
from recfit.metrics.decoding import ratings_to_levels

__all__ = [
    "ClassWeightMode",
    "ImbalanceStrategy",
    "Resampled",
    "SamplingStrategy",
    "class_weights",
    "random_sample",
    "resample",
    "row_vectors",
    "smote",
]

ImbalanceStrategy = Literal["none", "class_weights", "undersample", "oversample", "smote"]
ClassWeightMode = Literal["inverse", "sqrt_inverse"]
SamplingStrategy = str | float | Mapping[float, int]
"""imbalanced-learn's ``sampling_strategy``: ``"auto"``, ``"majority"``, ``"not minority"``,
``"not majority"``, ``"all"``, or a mapping ``{rating: number of rows wanted}``."""

_STRATEGIES = ("none", "class_weights", "undersample", "oversample", "smote")


# --------------------------------------------------------------------------- class weights
def class_weights(
    labels: Any,
    mode: ClassWeightMode | Mapping[float, float] = "inverse",
    *,
    weight: Any = None,
    normalize: bool = True,
) -> np.ndarray:
    """Per-row class weights, to be multiplied with the rows' own weights.

    Args:
        labels: the class of each training row: ratings or level indices, shape ``(n,)``.
        mode: ``"inverse"`` (weight ∝ 1 / frequency), ``"sqrt_inverse"``
            (∝ 1 / √frequency) or a mapping ``{label: weight}`` covering every label.
        weight: the rows' existing weights (frequencies are weighted by them; a row of
            weight 0 does not count). ``None`` means all 1.
        normalize: scale so that the mean class weight, weighted by ``weight``, is 1
            (so the effective learning rate is unchanged).

    Returns:
        ``float32`` array of shape ``(n,)``. With ``"inverse"`` and normalisation this is
        scikit-learn's ``compute_class_weight("balanced")``: ``n / (K · count)``.

    Example:
        >>> [round(v, 3) for v in class_weights([1, 1, 2, 2, 2, 2], "sqrt_inverse").tolist()]
        [1.243, 1.243, 0.879, 0.879, 0.879, 0.879]
        >>> class_weights([1, 2, 2], {1: 2.0, 2: 1.0}).tolist()
        [1.5, 0.75, 0.75]
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 1:
        raise DataError(f"expected 1-d labels, received {y.ndim}-d", column="rating")
    if not np.isfinite(y).all():
        row = int(np.argmax(~np.isfinite(y)))
        raise DataError(f"expected finite labels, received {y[row]!r}", row=row, column="rating")
    w = _row_weights(weight, len(y))
    classes, codes = np.unique(y, return_inverse=True)
    freq = np.bincount(codes, weights=w, minlength=len(classes))
    if isinstance(mode, Mapping):
        given: dict[float, float] = {}
        for key, val in mode.items():
            fval = float(val)
            if not (np.isfinite(fval) and fval >= 0):
                raise ConfigError(f"expected class weights >= 0, received {val!r} for {key!r}")
            given[float(key)] = fval
        missing = [
            c
            for c, f in zip(classes.tolist(), freq.tolist(), strict=True)
            if f > 0 and c not in given
        ]
        if missing:
            raise ConfigError(
                f"expected a class weight for every level in the data, received none for "
                f"{[_fmt(c) for c in missing]}"
            )
        per_class = np.array([given.get(c, 0.0) for c in classes.tolist()])
    elif mode == "inverse":
        per_class = _inv(freq)
    elif mode == "sqrt_inverse":
        per_class = _inv(np.sqrt(freq))
    else:
        raise ConfigError(
            f"expected mode 'inverse', 'sqrt_inverse' or a mapping, received {mode!r}"
        )
    out = per_class[codes]
    if normalize:
        total = (w * out).sum()
        if total <= 0:
            raise ConfigError(
                "expected class weights with a positive weighted mean, received all 0"
            )
        out = out * (w.sum() / total)
    return out.astype(np.float32)


def _inv(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    np.divide(1.0, x, out=out, where=x > 0)
    return out


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _row_weights(weight: Any, n: int) -> np.ndarray:
    if weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"expected {n} weights, received shape {w.shape}", column="weight")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"expected finite non-negative weights, received {w[row]!r}", row=row, column="weight"
        )
    return w


# --------------------------------------------------------------------------- samplers
def _require_train(train: Any) -> Interactions:
    if isinstance(train, Interactions):
        return train
    kind = type(train).__name__
    hint = " (pass split.train, never the whole split)" if hasattr(train, "train_idx") else ""
    raise ConfigError(f"expected the training Interactions, received {kind}{hint}")


def _classes(train: Interactions, levels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(grid of rating values, level index of each row)."""
    if levels is None:
        grid, codes = np.unique(train.rating.astype(np.float64), return_inverse=True)
        return grid, codes.astype(np.int64)
    grid = np.asarray(levels, dtype=np.float64)
    return grid, ratings_to_levels(train.rating, grid)


def _imblearn_strategy(strategy: SamplingStrategy, grid: np.ndarray) -> Any:
    if isinstance(strategy, Mapping):
        keys = np.array([float(k) for k in strategy], dtype=np.float64)
        try:
            codes = ratings_to_levels(keys, grid) if len(keys) else np.zeros(0, np.int64)
        except (DataError, ConfigError):
            raise ConfigError(
                f"expected sampling_strategy keys among the ratings {grid.tolist()}, "
                f"received {sorted(keys.tolist())}"
            ) from None
        return {int(c): int(n) for c, n in zip(codes.tolist(), strategy.values(), strict=True)}
    return strategy


def _positive_rows(train: Interactions) -> np.ndarray:
    return np.flatnonzero(train.weights() > 0)


def _fit_sampler(sampler: Any, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    try:
        return sampler.fit_resample(x, y)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise ConfigError(f"expected a sampling setup imbalanced-learn accepts: {exc}") from exc


def random_sample(
    train: Interactions,
    kind: Literal["under", "over"],
    seed: int,
    strategy: SamplingStrategy = "auto",
    *,
    levels: Any = None,
) -> Interactions:
    """Randomly drop rows of the majority levels (``kind="under"``, imbalanced-learn's
    ``RandomUnderSampler``) or repeat rows of the minority levels (``"over"``,
    ``RandomOverSampler``).

    Args:
        train: the training rows only.
        kind: ``"under"`` or ``"over"``.
        seed: random seed; the same seed gives the same rows.
        strategy: imbalanced-learn's ``sampling_strategy`` (default ``"auto"``: every
            level down to the rarest level's count, or up to the most common level's),
            or ``{rating: rows wanted}``.
        levels: the rating grid (default: the distinct ratings in ``train``).

    Returns:
        Under: a subset of the rows of positive weight, in their original order. Over:
        the rows of positive weight followed by the repeated rows (a multiset of the
        training rows; repeats keep their weight).

    Example:
        >>> from recfit.data import Interactions
        >>> d = Interactions.from_arrays(range(4), range(4), [1, 2, 2, 2])
        >>> sorted(random_sample(d, "under", seed=0).rating.tolist())
        [1.0, 2.0]
        >>> random_sample(d, "over", seed=0).rating.tolist()
        [1.0, 2.0, 2.0, 2.0, 1.0, 1.0]
    """
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    if kind not in ("under", "over"):
        raise ConfigError(f"expected kind 'under' or 'over', received {kind!r}")
    train = _require_train(train)
    grid, codes = _classes(train, levels)
    rows = _positive_rows(train)
    y = codes[rows]
    if len(np.unique(y)) < 2:
        raise ConfigError(
            "expected at least 2 rating levels among the training rows of positive weight, "
            f"received {len(np.unique(y))}"
        )
    cls = RandomUnderSampler if kind == "under" else RandomOverSampler
    sampler = cls(sampling_strategy=_imblearn_strategy(strategy, grid), random_state=seed)
    _fit_sampler(sampler, np.arange(len(rows)).reshape(-1, 1), y)
    picked = rows[np.asarray(sampler.sample_indices_, dtype=np.int64)]
    if kind == "under":
        picked = np.sort(picked)
    out = train.take(picked)
    meta = dict(out.meta)
    meta["resample"] = {"strategy": f"{kind}sample", "seed": seed, "rows_in": len(train)}
    return replace(out, meta=meta)


def smote(
    vectors: Any,
    levels: Any,
    seed: int,
    k_neighbors: int = 5,
    strategy: SamplingStrategy = "auto",
    *,
    weight: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic minority vectors by SMOTE (imbalanced-learn), from training vectors only.

    Each synthetic vector lies on the segment between a training vector and one of its
    ``k_neighbors`` nearest training vectors of the same level.

    Args:
        vectors: one vector per training row, shape ``(n, d)``.
        levels: the class of each row (ratings or level indices), shape ``(n,)``.
        seed: random seed.
        k_neighbors: neighbours considered per vector; every level that gets synthetic
            rows needs more than this many rows.
        strategy: imbalanced-learn's ``sampling_strategy`` (keys: values of ``levels``).
        weight: row weights; rows of weight 0 are left out (never a neighbour).

    Returns:
        ``(synthetic_vectors, synthetic_levels)``: only the new rows, shapes ``(m, d)``
        and ``(m,)``, with ``levels``' dtype.

    Example:
        >>> x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0], [13.0], [14.0]])
        >>> y = np.array([1, 1, 1, 5, 5, 5, 5, 5])
        >>> xs, ys = smote(x, y, seed=0, k_neighbors=2)
        >>> ys.tolist(), bool(((xs >= 0) & (xs <= 2)).all())
        ([1, 1], True)
    """
    from imblearn.over_sampling import SMOTE

    x = np.asarray(vectors)
    y = np.asarray(levels)
    if x.ndim != 2 or x.dtype.kind not in "iuf":
        raise DataError(f"expected numeric vectors of shape (n, d), received shape {x.shape}")
    if y.shape != (len(x),):
        raise DataError(f"expected {len(x)} levels (one per vector), received shape {y.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = int(np.argmax(~finite))
        raise DataError("expected finite vectors, received nan or inf", row=row)
    if k_neighbors < 1:
        raise ConfigError(f"expected k_neighbors >= 1, received {k_neighbors}")
    keep = _row_weights(weight, len(x)) > 0
    x, y = x[keep], y[keep]
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(
            f"expected at least 2 levels among the rows of positive weight, received {len(classes)}"
        )
    strat = strategy
    if isinstance(strategy, Mapping):
        unknown = [k for k in strategy if k not in set(classes.tolist())]
        if unknown:
            raise ConfigError(
                f"expected sampling_strategy keys among {classes.tolist()}, received {unknown}"
            )
        pos = {c: i for i, c in enumerate(classes.tolist())}
        strat = {pos[k]: int(n) for k, n in strategy.items()}
    sampler = SMOTE(sampling_strategy=strat, k_neighbors=k_neighbors, random_state=seed)
    counts = np.bincount(codes)
    try:
        x_res, y_res = sampler.fit_resample(x, codes)
    except ValueError as exc:
        raise ConfigError(
            f"expected every level that SMOTE grows to have more than k_neighbors={k_neighbors} "
            f"rows (level counts {dict(zip(classes.tolist(), counts.tolist(), strict=True))}): "
            f"{exc}"
        ) from exc
    n = len(x)
    return np.asarray(x_res[n:], dtype=x.dtype), classes[np.asarray(y_res[n:], dtype=np.int64)]


def row_vectors(train: Interactions, user_vectors: Any, item_vectors: Any = None) -> np.ndarray:
    """One vector per row: ``user_vectors[user]`` concatenated with ``item_vectors[item]``.

    Pass learned embedding tables (``n_users × d_u``, ``n_items × d_i``) or side-feature
    matrices aligned with the vocabularies.

    Example:
        >>> from recfit.data import Interactions
        >>> d = Interactions.from_arrays([0, 1], [0, 0], [1.0, 2.0])
        >>> row_vectors(d, np.eye(2), np.array([[7.0]])).tolist()
        [[1.0, 0.0, 7.0], [0.0, 1.0, 7.0]]
    """
    train = _require_train(train)
    parts: list[np.ndarray] = []
    for side, table, idx, n in (
        ("user", user_vectors, train.user, train.n_users),
        ("item", item_vectors, train.item, train.n_items),
    ):
        if table is None:
            continue
        m = np.asarray(table)
        if m.ndim != 2 or len(m) != n:
            raise DataError(
                f"expected a {side} table of shape ({n}, d), received {m.shape}", column=side
            )
        parts.append(m[idx])
    if not parts:
        raise ConfigError("expected user_vectors or item_vectors, received neither")
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------- entry point
@dataclass(frozen=True, eq=False)
class Resampled:
    """The outcome of :func:`resample`.

    Attributes:
        strategy: the strategy applied.
        train: the rows to train on (reweighted, subsampled, repeated, or as given).
        levels: the rating grid; level ``i`` is rating ``levels[i]``.
        synthetic_vectors: SMOTE's new vectors (``smote`` only), shape ``(m, d)``.
        synthetic_levels: their level indices (``smote`` only), shape ``(m,)``.
        counts_before: weighted row count per rating in the input training rows.
        counts_after: the same after resampling (synthetic rows count 1 each).
        seed: the seed used.
    """

    strategy: ImbalanceStrategy
    train: Interactions
    levels: np.ndarray
    counts_before: dict[float, float]
    counts_after: dict[float, float]
    seed: int
    synthetic_vectors: np.ndarray | None = None
    synthetic_levels: np.ndarray | None = None

    @property
    def synthetic_ratings(self) -> np.ndarray | None:
        """The ratings of the synthetic rows, or ``None``."""
        if self.synthetic_levels is None:
            return None
        out: np.ndarray = self.levels[self.synthetic_levels]
        return out

    @property
    def n_synthetic(self) -> int:
        """Number of synthetic rows."""
        return 0 if self.synthetic_levels is None else len(self.synthetic_levels)


def _counts(
    grid: np.ndarray, codes: np.ndarray, w: np.ndarray, extra: np.ndarray | None = None
) -> dict[float, float]:
    c = np.bincount(codes, weights=w, minlength=len(grid))
    if extra is not None:
        c = c + np.bincount(extra, minlength=len(grid))
    return {float(g): float(v) for g, v in zip(grid.tolist(), c.tolist(), strict=True)}


def resample(
    train: Interactions,
    strategy: ImbalanceStrategy,
    *,
    seed: int = 0,
    levels: Any = None,
    class_weight: ClassWeightMode | Mapping[float, float] = "inverse",
    sampling_strategy: SamplingStrategy = "auto",
    vectors: Any = None,
    k_neighbors: int = 5,
) -> Resampled:
    """Apply one imbalance strategy to the training rows (and only to them).

    Args:
        train: the training part of a split (``split.train``).
        strategy: ``"none"``, ``"class_weights"``, ``"undersample"``, ``"oversample"``
            or ``"smote"``.
        seed: random seed for the samplers.
        levels: the rating grid (e.g. :func:`~recfit.metrics.decoding.levels_for_scale`);
            default: the distinct ratings in ``train``.
        class_weight: ``class_weights`` mode, or ``{rating: weight}``.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for the samplers
            and SMOTE; mapping keys are ratings.
        vectors: for ``"smote"``: one vector per training row, shape ``(len(train), d)``.
        k_neighbors: SMOTE's neighbour count.

    Returns:
        A :class:`Resampled`.

    Example:
        >>> from recfit.data import Interactions
        >>> d = Interactions.from_arrays(range(6), range(6), [1, 1, 5, 5, 5, 5])
        >>> r = resample(d, "class_weights")
        >>> r.train.weights().tolist(), r.counts_after
        ([1.5, 1.5, 0.75, 0.75, 0.75, 0.75], {1.0: 3.0, 5.0: 3.0})
    """
    train = _require_train(train)
    if strategy not in _STRATEGIES:
        raise ConfigError(f"expected strategy one of {list(_STRATEGIES)}, received {strategy!r}")
    grid, codes = _classes(train, levels)
    w = train.weights().astype(np.float64)
    before = _counts(grid, codes, w)

    def done(out: Interactions, **extra: Any) -> Resampled:
        # every output rating is a training rating, hence on the grid
        if len(grid) > 1:
            out_codes = ratings_to_levels(out.rating, grid)
        else:
            out_codes = np.zeros(len(out), dtype=np.int64)
        after = _counts(
            grid, out_codes, out.weights().astype(np.float64), extra.get("synthetic_levels")
        )
        return Resampled(strategy, out, grid, before, after, seed, **extra)

    if strategy == "none":
        return done(train)
    if strategy == "class_weights":
        cw = class_weights(grid[codes], class_weight, weight=w)
        return done(train.with_weights((w * cw).astype(np.float32)))
    if strategy == "undersample":
        return done(random_sample(train, "under", seed, sampling_strategy, levels=grid))
    if strategy == "oversample":
        return done(random_sample(train, "over", seed, sampling_strategy, levels=grid))
    # smote
    if vectors is None:
        raise ConfigError(
            "expected vectors (one per training row) for strategy 'smote', received None"
        )
    x = np.asarray(vectors)
    if x.ndim != 2 or len(x) != len(train):
        raise DataError(
            f"expected vectors of shape ({len(train)}, d), one per training row, received {x.shape}"
        )
    strat: Any = sampling_strategy
    if isinstance(sampling_strategy, Mapping):
        strat = _imblearn_strategy(sampling_strategy, grid)
    sv, sl = smote(x, codes, seed, k_neighbors, strat, weight=w)
    return done(train, synthetic_vectors=sv, synthetic_levels=sl.astype(np.int64))
