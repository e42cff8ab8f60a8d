"""Evaluating retrieval: full-catalogue ranking of every test user
(:class:`~recfit.index.ExactIndex` over every item) scored by
:func:`~recfit.metrics.ranking.ranking_report`; every report says whether each user's
training items were excluded (``exclude_seen``). :class:`RankingMetrics` measures the same
during training, every few epochs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Required, TypedDict, Unpack

import numpy as np
import torch
from torch import Tensor

from recfit.config import RetrievalConfig
from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.index import ExactIndex, ItemSets
from recfit.metrics.ranking import RANKING_METRICS, ranking_report
from recfit.models.retrieval_losses import item_counts
from recfit.models.two_tower import TwoTower
from recfit.train.callbacks import Callback

__all__ = [
    "RankingMetrics",
    "RankingOptions",
    "evaluate_popularity",
    "evaluate_retrieval",
    "evaluate_vectors",
    "filter_positives",
    "ranking_options",
    "retrieval_metrics",
]


# ----------------------------------------------------------------------------- evaluation
def _relevant(test: Interactions, relevant_min_rating: float | None) -> tuple[np.ndarray, ItemSets]:
    keep = test.weights() > 0
    if relevant_min_rating is not None:
        keep &= test.rating >= relevant_min_rating
    users, items = test.user[keep], test.item[keep]
    qusers, inverse = np.unique(users, return_inverse=True)
    return qusers.astype(np.int64), ItemSets.from_pairs(inverse, items, len(qusers))


def evaluate_vectors(
    user_vectors: Tensor | np.ndarray,
    item_vectors: Tensor | np.ndarray,
    test: Interactions,
    *,
    train: Interactions | None = None,
    exclude_seen: bool,
    ks: Sequence[int] = (10, 20, 100),
    relevant_min_rating: float | None = None,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Full-catalogue retrieval of every test user, scored by :func:`ranking_report`.

    The relevant items of a user are its test rows with weight > 0 and (when
    ``relevant_min_rating`` is given) rating >= ``relevant_min_rating``; users without
    any are not queried (they are not in ``n_queries``). Each queried user's vector is
    scored against every item vector with :class:`~recfit.index.ExactIndex`, the
    top ``max(ks)`` kept, after removing the user's training items when
    ``exclude_seen``.

    Args:
        user_vectors: ``(n_users, dim)``, row = user index.
        item_vectors: ``(n_items, dim)``, row = item index.
        test: the held-out interactions.
        train: the training interactions (needed for ``exclude_seen=True``).
        exclude_seen: drop each user's training items from its ranking.
        ks: the cutoffs.
        relevant_min_rating: the smallest rating that counts as relevant (T1: 5).
        n_bootstrap: bootstrap resamples of the users for the intervals (0: none).
        ci: the confidence level.
        seed: seed of the bootstrap.

    Returns:
        :func:`ranking_report`'s dict plus ``relevant_min_rating`` and ``eval_seconds``.

    Raises:
        ConfigError: ``exclude_seen`` without ``train``.

    Example:
        >>> import numpy as np
        >>> d = Interactions.from_arrays([0, 0, 1], [0, 1, 1], [5.0, 4.0, 5.0])
        >>> rep = evaluate_vectors(np.ones((2, 1)), np.array([[2.0], [1.0]]), d,
        ...                        exclude_seen=False, ks=(1,), n_bootstrap=0)
        >>> rep["recall@1"], rep["top_1_accuracy"]
        (0.25, 0.3333333333333333)
    """
    t0 = time.perf_counter()
    if exclude_seen and train is None:
        raise ConfigError(
            "expected the training interactions with exclude_seen=True, received None"
        )
    ks = [int(k) for k in ks]
    qusers, relevant = _relevant(test, relevant_min_rating)
    uv = torch.as_tensor(user_vectors)
    iv = torch.as_tensor(item_vectors)
    index = ExactIndex()
    index.update_candidates(iv)
    exclude = None
    if exclude_seen:
        assert train is not None
        keep = train.weights() > 0
        seen = ItemSets.from_pairs(train.user[keep], train.item[keep], max(train.n_users, len(uv)))
        exclude = seen.rows(qusers)
    q = uv[torch.from_numpy(qusers)] if len(qusers) else uv[:0]
    if len(qusers):
        _, retrieved = index(q, k=max(ks), exclude=exclude)
    else:
        retrieved = np.zeros((0, max(ks)), dtype=np.int64)
    report = ranking_report(
        retrieved,
        relevant,
        ks,
        exclude_seen=exclude_seen,
        n_bootstrap=n_bootstrap,
        ci=ci,
        seed=seed,
    )
    report["relevant_min_rating"] = relevant_min_rating
    report["eval_seconds"] = time.perf_counter() - t0
    return report


class RankingOptions(TypedDict, total=False):
    """How :func:`evaluate_vectors` ranks and scores (``exclude_seen`` required): what
    :func:`evaluate_retrieval` and :func:`evaluate_popularity` pass on."""

    exclude_seen: Required[bool]
    ks: Sequence[int]
    relevant_min_rating: float | None
    n_bootstrap: int
    ci: float
    seed: int


def evaluate_retrieval(
    model: TwoTower,
    test: Interactions,
    *,
    train: Interactions | None = None,
    **options: Unpack[RankingOptions],
) -> dict[str, Any]:
    """:func:`evaluate_vectors` with the model's ``user_vectors()`` and ``item_vectors()``
    (``options`` as there).

    Example:
        >>> from recfit.models.two_tower import CandidateTower, QueryTower
        >>> m = TwoTower(QueryTower(2, layer_sizes=(4,)), CandidateTower(2, layer_sizes=(4,)))
        >>> d = Interactions.from_arrays([0, 1], [0, 1], [5.0, 5.0])
        >>> evaluate_retrieval(m, d, exclude_seen=False, ks=(2,), n_bootstrap=0)["recall@2"]
        1.0
    """
    t0 = time.perf_counter()
    vectors = model.user_vectors().cpu(), model.item_vectors().cpu()
    report = evaluate_vectors(*vectors, test, train=train, **options)
    report["eval_seconds"] = time.perf_counter() - t0
    return report


def evaluate_popularity(
    train: Interactions, test: Interactions, **options: Unpack[RankingOptions]
) -> dict[str, Any]:
    """The popularity baseline: every user gets the items with most training rows
    (``options`` as in :func:`evaluate_vectors`).

    Ties are broken by item index (lower first), like every ExactIndex ranking.

    Example:
        >>> tr = Interactions.from_arrays([0, 1, 1], [0, 0, 1], [5.0, 5.0, 5.0])
        >>> te = Interactions.from_arrays([0], [1], [4.0], users=tr.users, items=tr.items)
        >>> evaluate_popularity(tr, te, exclude_seen=True, ks=(1,), n_bootstrap=0)["recall@1"]
        1.0
    """
    users = np.ones((train.n_users, 1), dtype=np.float32)
    counts = item_counts(train).astype(np.float32)
    return evaluate_vectors(users, counts[:, None], test, train=train, **options)


class RankingMetrics(Callback):
    """Full-catalogue ranking metrics on a validation split, every ``every`` epochs.

    The values (no bootstrap) are added to the epoch's ``learn.history`` record (so
    :class:`~recfit.train.callbacks.EarlyStopping` can monitor e.g. ``recall@20``) and
    kept in :attr:`records` as ``{"epoch": 1-based epoch, metric: value, ...}``.
    Epochs that are not evaluated get ``nan`` in the history.

    Args:
        valid: the validation interactions.
        train: the training interactions (for ``exclude_seen``).
        every: evaluate after every ``every`` epochs (and after the last one).
        options: how to rank, as in :func:`evaluate_vectors` (``exclude_seen``, the
            cutoffs ``ks``, ``relevant_min_rating``; never a bootstrap).

    Example:
        >>> cb = RankingMetrics(Interactions.from_arrays([0], [0], [5.0]), exclude_seen=False)
        >>> cb.every, cb.records
        (1, [])
    """

    order = 10

    def __init__(
        self,
        valid: Interactions,
        train: Interactions | None = None,
        *,
        every: int = 1,
        **options: Unpack[RankingOptions],
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"expected every an integer >= 1, received {every!r}")
        if options["exclude_seen"] and train is None:
            raise ConfigError(
                "expected the training interactions with exclude_seen=True, received None"
            )
        self.valid, self.train, self.every = valid, train, every
        self.options: RankingOptions = {**options, "n_bootstrap": 0}
        self.exclude_seen = options["exclude_seen"]
        self.ks = tuple(options.get("ks", (10, 20, 100)))
        self.relevant_min_rating = options.get("relevant_min_rating")
        self.records: list[dict[str, float]] = []
        self._names = [
            f"top_{k}_accuracy" if name == "top_k_accuracy" else f"{name}@{k}"
            for k in self.ks
            for name in RANKING_METRICS
        ]

    def before_fit(self) -> None:
        self.records = []

    def after_epoch(self) -> None:
        learn = self.learn
        epoch = learn.epoch + 1
        due = epoch % self.every == 0 or epoch == learn.n_epochs
        values: dict[str, float] = {}
        if due:
            model = learn.model
            if not isinstance(model, TwoTower):
                raise ConfigError(f"expected a TwoTower model, received {type(model).__name__}")
            rep = evaluate_retrieval(model, self.valid, train=self.train, **self.options)
            values = {k: float(rep[k]) for k in self._names}
            self.records.append({"epoch": float(epoch), **values})
        if learn.history and learn.history[-1].get("epoch") == learn.epoch:
            rec = learn.history[-1]
            for name in self._names:
                rec[name] = values.get(name, math.nan)


def _is_metric(key: str) -> bool:
    return (
        "@" in key or (key.startswith("top_") and key.endswith("_accuracy"))
    ) and not key.endswith("_ci")


def filter_positives(data: Interactions, threshold: float | None) -> Interactions:
    """The rows of ``data`` rated at least ``threshold`` (``None``: every row): the
    positives a retrieval model trains and is measured on.

    Example:
        >>> d = Interactions.from_arrays([0, 1, 1], [0, 0, 1], [5.0, 3.0, 4.0])
        >>> len(filter_positives(d, 4.0)), len(filter_positives(d, None))
        (2, 3)
    """
    if threshold is None:
        return data
    return data.take(np.flatnonzero(data.rating >= threshold))


def ranking_options(cfg: RetrievalConfig) -> RankingOptions:
    """The :class:`RankingOptions` of a retrieval config (its cutoffs are ``eval_ks``).

    Example:
        >>> ranking_options(RetrievalConfig(exclude_seen=True))["ks"]
        (10, 20, 100)
    """
    return {
        "exclude_seen": cfg.exclude_seen,
        "ks": cfg.eval_ks,
        "relevant_min_rating": cfg.relevant_min_rating,
        "n_bootstrap": cfg.n_bootstrap,
        "seed": cfg.seed,
    }


def retrieval_metrics(
    cfg: RetrievalConfig,
    model: TwoTower,
    test: Interactions,
    train: Interactions,
    fit_seconds: float,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Rank ``test`` once with ``cfg``'s evaluation settings (``train``'s items as each
    user's seen items): the metrics (plus ``fit_seconds`` and ``eval_seconds``) and the
    full report."""
    report = evaluate_retrieval(model, test, train=train, **ranking_options(cfg))
    metrics = {k: float(v) for k, v in report.items() if _is_metric(k)}
    metrics["fit_seconds"] = fit_seconds
    metrics["eval_seconds"] = float(report["eval_seconds"])
    return metrics, report
