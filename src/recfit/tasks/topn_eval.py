"""Evaluating top-N models: full-catalogue ranking of every test user, in batches.

:func:`evaluate_topn` scores each test user against every item with the model's own
scorer (:meth:`~recfit.models.topn.TopNModel.score_users` from the user's training
row; :meth:`~recfit.models.topn.TopNModel.score_history` for a folded-in user, from
the rows it was given), sets the items the user was scored from to ``-inf`` when
``exclude_seen`` (so they are never ranked), keeps the top ``max(ks)`` with
:func:`~recfit.index.top_k_of_scores` (ties by item index, as every recfit ranking),
and measures the lists with :func:`~recfit.metrics.ranking.ranking_report` and
:func:`~recfit.metrics.lists.list_report`.

Definitions (per user ``u`` with test positives ``R_u``, at cutoff ``k``):
``recall@k = hits / |R_u|`` (protocol T2's), ``capped_recall@k = hits / min(k, |R_u|)``
(Mult-VAE / EASE papers, T3), ``ndcg@k`` with binary gains, ``map@k``, ``hit_rate@k``,
``precision@k``, ``mrr@k``, each averaged over users (every user counts once, or by its
``user_weights``); ``coverage@k``: share of the catalogue in some list;
``mean_popularity@k``: mean share of training users who have a listed item. Intervals
(``<key>_ci``) are percentile bootstraps over users. Every test row of weight > 0 is a
relevant item (binary relevance: a row's value or weight does not grade it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recfit.data.interactions import Interactions
from recfit.data.positives import positives_matrix
from recfit.errors import ConfigError, DataError
from recfit.index import ItemSets, top_k_of_scores
from recfit.metrics.lists import item_popularity, list_report
from recfit.metrics.ranking import ranking_report
from recfit.models.topn import TopNModel

__all__ = ["evaluate_topn", "topn_lists"]

BATCH_USERS = 1024
"""Users scored at once (a ``BATCH_USERS x n_items`` float32 block of scores)."""


def _rows(data: Interactions, model: TopNModel) -> sp.csr_matrix:
    return positives_matrix(
        data, n_users=model.n_users, n_items=model.n_items, confidence=model.confidence
    )


def _seen(data: Interactions, n_users: int) -> sp.csr_matrix:
    """Every item of each user's rows of weight > 0 (whatever its value)."""
    keep = data.weights() > 0
    u, i = data.user[keep], data.item[keep]
    ones = np.ones(len(u), dtype=np.float32)
    return sp.csr_matrix((ones, (u, i)), shape=(n_users, data.n_items))


def _check_model(model: Any, train: Interactions) -> TopNModel:
    if not isinstance(model, TopNModel):
        raise ConfigError(f"expected a top-N model, received {type(model).__name__}")
    if train.n_items > model.n_items or train.n_users > model.n_users:
        raise DataError(
            f"expected data within the model's {model.n_users} users and {model.n_items} "
            f"items, received {train.n_users} users and {train.n_items} items"
        )
    return model


def topn_lists(
    model: TopNModel,
    train: Interactions,
    users: Any,
    k: int,
    *,
    exclude_seen: bool = True,
    fold_in: Interactions | None = None,
    fold_in_users: Any = None,
    batch_users: int = BATCH_USERS,
) -> np.ndarray:
    """The top-``k`` item indices of each user in ``users``, best first (``-1``: padding).

    A user in ``fold_in_users`` is scored by ``score_history`` from its rows of
    ``fold_in`` (strong generalisation; of ``train`` when ``fold_in`` is None); any
    other user by ``score_users`` from its rows of ``train``. With ``exclude_seen`` the
    items of the rows a user was scored from are never listed.

    Example:
        >>> from recfit.models.popularity import Popularity
        >>> from recfit.models.topn import fit_topn
        >>> d = Interactions.from_arrays([1, 1, 2, 3], [7, 8, 7, 7], [1.0] * 4)
        >>> m = Popularity(d.n_users, d.n_items)
        >>> fit_topn(m, d)
        >>> topn_lists(m, d, [0, 1], k=2).tolist()  # user 0 has seen both items
        [[-1, -1], [1, -1]]
        >>> topn_lists(m, d, [1], k=2, exclude_seen=False).tolist()
        [[0, 1]]
    """
    m = _check_model(model, train)
    u = np.asarray(users, dtype=np.int64).reshape(-1)
    if len(u) and (u.min() < 0 or u.max() >= m.n_users):
        raise DataError(
            f"expected user indices in [0, {m.n_users}), received {int(u.min())}..{int(u.max())}",
            column="users",
        )
    if isinstance(batch_users, bool) or not isinstance(batch_users, int) or batch_users < 1:
        raise ConfigError(f"expected batch_users an integer >= 1, received {batch_users!r}")
    folded = np.zeros(0, np.int64) if fold_in_users is None else np.asarray(fold_in_users)
    is_fold = np.isin(u, folded.astype(np.int64))
    source = {False: train, True: train if fold_in is None else fold_in}
    out = np.full((len(u), k), -1, dtype=np.int64)
    for flag in (False, True):
        idx = np.flatnonzero(is_fold == flag)
        if not len(idx):
            continue
        x = _rows(source[flag], m)
        seen = _seen(source[flag], m.n_users) if exclude_seen else None
        for b0 in range(0, len(idx), batch_users):
            pos = idx[b0 : b0 + batch_users]
            rows = x[u[pos]]
            scores = m.score_history(rows) if flag else m.score_users(u[pos], rows)
            scores = np.array(scores, dtype=np.float32, copy=True)
            if scores.shape != (len(pos), m.n_items):
                raise DataError(
                    f"expected ({len(pos)}, {m.n_items}) scores from "
                    f"{type(m).__name__}, received {scores.shape}"
                )
            if seen is not None:
                r, c = seen[u[pos]].nonzero()
                scores[r, c] = -np.inf
            out[pos] = top_k_of_scores(scores, k)[1]
    return out


def evaluate_topn(
    model: TopNModel,
    train: Interactions,
    test: Interactions,
    *,
    ks: Sequence[int] = (10, 20, 50),
    exclude_seen: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
    fold_in_users: np.ndarray | None = None,
    fold_in: Interactions | None = None,
    user_weights: Any = None,
    ci: float = 0.95,
    batch_users: int = BATCH_USERS,
) -> dict[str, Any]:
    """Full-catalogue ranking metrics of a top-N model on ``test`` (see the module docs).

    Args:
        model: a fitted top-N model.
        train: the training positives (each user's known items; the items to exclude).
        test: the held-out positives; users with a row of weight > 0 are evaluated.
        ks: the cutoffs.
        exclude_seen: never list the items a user was scored from.
        n_bootstrap: bootstrap resamples of the users for the 95 % intervals (0: none).
        seed: seed of the bootstrap.
        fold_in_users: users scored by ``score_history`` from their given rows (strong
            generalisation, :attr:`recfit.data.split.Split.fold_in_users`); by default
            the users of ``fold_in``.
        fold_in: the folded-in users' given rows (:attr:`recfit.data.split.Split.fold_in`).
        user_weights: optional weight per user index (>= 0); a user's metrics count with
            its weight, 0 removes it. By default every evaluated user counts once.
        ci: the level of the intervals.
        batch_users: users scored at once.

    Returns:
        The keys of :func:`~recfit.metrics.ranking.ranking_report` (``recall@k``,
        ``capped_recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k``... with ``_ci``) and of
        :func:`~recfit.metrics.lists.list_report` (``coverage@k``, ``mean_popularity@k``),
        plus ``n_fold_in_users`` (evaluated users scored by fold-in), ``n_items`` and
        ``eval_seconds``.

    Raises:
        DataError: no test positive, a user outside the model, or a model's scores of
            the wrong shape or with NaN.

    Example:
        >>> from recfit.models.popularity import Popularity
        >>> from recfit.models.topn import fit_topn
        >>> tr = Interactions.from_arrays([1, 1, 2, 3], [7, 8, 7, 7], [1.0] * 4)
        >>> te = Interactions.from_arrays([2], [8], [1.0], users=tr.users, items=tr.items)
        >>> m = Popularity(tr.n_users, tr.n_items)
        >>> fit_topn(m, tr)
        >>> rep = evaluate_topn(m, tr, te, ks=(1,), n_bootstrap=0)
        >>> rep["recall@1"], rep["coverage@1"], rep["n_queries"]
        (1.0, 0.5, 1)
    """
    t0 = time.perf_counter()
    m = _check_model(model, train)
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ConfigError(f"expected cutoffs >= 1 in ks, received {ks}")
    live = test.weights() > 0
    users, inverse = np.unique(test.user[live].astype(np.int64), return_inverse=True)
    if not len(users):
        raise DataError("expected held-out positives to rank, received none", column="test")
    relevant = ItemSets.from_pairs(inverse, test.item[live], len(users))
    if fold_in_users is None and fold_in is not None:
        fold_in_users = np.unique(fold_in.user[fold_in.weights() > 0])
    folded = np.zeros(0, np.int64) if fold_in_users is None else np.asarray(fold_in_users)
    retrieved = topn_lists(
        m, train, users, max(ks), exclude_seen=exclude_seen, fold_in=fold_in,
        fold_in_users=folded, batch_users=batch_users,
    )  # fmt: skip
    weights = None
    if user_weights is not None:
        uw = np.asarray(user_weights, dtype=np.float64).reshape(-1)
        if len(uw) <= int(users.max()):
            raise DataError(
                f"expected one weight per user index ({m.n_users}), received {len(uw)}",
                column="user_weights",
            )
        weights = uw[users]
    report = ranking_report(
        retrieved, relevant, ks, weights, exclude_seen=bool(exclude_seen),
        n_bootstrap=n_bootstrap, ci=ci, seed=seed,
    )  # fmt: skip
    kept = train.weights() > 0
    popularity = item_popularity(train.item[kept], train.user[kept], m.n_items)
    # the same users as ranking_report's (every query has relevant items): same resamples
    w = np.ones(len(users)) if weights is None else weights
    report.update(list_report(retrieved, popularity, ks, w, n_bootstrap=n_bootstrap, ci=ci,
                              seed=seed))  # fmt: skip
    report["n_fold_in_users"] = int((np.isin(users, folded) & (w > 0)).sum())
    report["n_items"] = m.n_items
    report["eval_seconds"] = time.perf_counter() - t0
    return report
