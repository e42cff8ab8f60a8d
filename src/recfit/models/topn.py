"""The base of the top-N families: models that rank items for users from positives.

A top-N model learns from the ``users x items`` matrix ``X`` of positives
(:func:`recfit.data.positives.positives_matrix`: clicks, plays, purchases, ratings at or
above a threshold) and scores every item for a user from that user's row of ``X``. Its
predictions are ranking scores (``output_kind`` ``"score"``), never ratings.

:class:`TopNModel` is the contract every top-N family follows:

* ``fit_positives(X, seed=0)`` trains in place: it checks ``X``, stores it as the
  model's training rows (buffers ``pos_indptr``, ``pos_items``, ``pos_values``: a CSR
  matrix, so a saved model scores its training users by itself) and calls the family's
  :meth:`TopNModel.fit_weights`;
* ``score_users(users, X_rows)`` scores training users (indices) given exactly their
  training rows (``(len(users), n_items)`` float32);
* ``score_history(X_rows)`` scores new users from their items alone (fold-in);
* ``item_similarity(items)`` (optional) the similarity of each given item to every item
  (a column of EASE's ``B`` or of the item-item ``S``), or ``None``;
* ``forward(batch)`` scores aligned (user, item) pairs from the stored rows, so the
  generic machinery (bundles, the registry's checks) works as for any model.

:func:`fit_topn` is the families' ``closed_form``: it builds ``X`` from the training
interactions with the model's ``confidence`` and calls ``fit_positives``.

Example:
    >>> from recfit.data import Interactions
    >>> from recfit.models.popularity import Popularity
    >>> d = Interactions.from_arrays([1, 1, 2, 3], [7, 8, 7, 7], [1.0, 1.0, 1.0, 1.0])
    >>> m = Popularity(d.n_users, d.n_items)
    >>> fit_topn(m, d)
    >>> m.score_history(m.positives()[:1]).tolist()
    [[3.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recfit.data.interactions import Interactions
from recfit.data.positives import positives_matrix
from recfit.errors import ConfigError, DataError
from recfit.metrics.ranking import ndcg_at_k, recall_at_k
from recfit.models.base import Batch, OutputKind, RatingModel
from recfit.models.registry import Family, register_family, sized_build

__all__ = [
    "TOPN_READS",
    "Confidence",
    "TopNModel",
    "fit_topn",
    "inner_split",
    "rank_scores",
    "register_topn_family",
    "validate_scores",
]

Confidence = Literal["binary", "value"]

TOPN_READS = frozenset({"confidence", "seed"})
"""Config fields every top-N model reads (a family adds its own)."""


class TopNModel(RatingModel):
    """Base class of the top-N families (see the module documentation).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        confidence: how :func:`fit_topn` builds ``X``: ``"binary"`` (1 per positive
            pair) or ``"value"`` (the summed values: counts, durations).
        seed: seed of anything random in the fit (inner validation cuts, initial
            factors).
        n_positives: length of the stored training rows (set by the fit; a saved
            model's config carries it so the buffers are sized before loading).
    """

    output_kind: ClassVar[OutputKind] = "score"
    block_users: ClassVar[int] = 1024
    """Users scored at once by :meth:`forward`."""
    family_settings: ClassVar[tuple[str, ...]] = ()
    """The family's own constructor arguments, each stored as the attribute of its name
    (what :meth:`family_config` reports)."""

    pos_indptr: Tensor
    pos_items: Tensor
    pos_values: Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        confidence: Confidence = "binary",
        seed: int = 0,
        n_positives: int = 0,
    ) -> None:
        super().__init__()
        for name, v in (("n_users", n_users), ("n_items", n_items), ("n_positives", n_positives)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise ConfigError(f"expected {name} an integer >= 0, received {v!r}")
        if confidence not in ("binary", "value"):
            raise ConfigError(f"expected confidence 'binary' or 'value', received {confidence!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ConfigError(f"expected seed an integer, received {seed!r}")
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.confidence: Confidence = confidence
        self.seed = int(seed)
        self.fit_info: dict[str, Any] = {}
        """What the last fit found (e.g. the chosen ridge and its inner scores); not saved."""
        self.register_buffer("pos_indptr", torch.zeros(self.n_users + 1, dtype=torch.long))
        self.register_buffer("pos_items", torch.zeros(int(n_positives), dtype=torch.int32))
        self.register_buffer("pos_values", torch.zeros(int(n_positives), dtype=torch.float32))
        self.init_weights()

    def init_weights(self) -> None:
        """Register the family's own buffers, sized from the settings (called last by
        the constructor; the default: none)."""

    # ------------------------------------------------------------------ contract
    def config(self) -> dict[str, Any]:
        return self._config(
            confidence=self.confidence,
            seed=self.seed,
            n_positives=int(self.pos_items.numel()),
            **self.family_config(),
        )

    def family_config(self) -> dict[str, Any]:
        """The family's own constructor arguments (for :meth:`config`): here each of
        :attr:`family_settings` with the value of the attribute of that name."""
        return {name: getattr(self, name) for name in self.family_settings}

    def fit_positives(self, X: sp.csr_matrix, *, seed: int = 0) -> None:
        """Train in place on the positives ``X`` (``n_users x n_items``): store ``X`` as
        the training rows, then :meth:`fit_weights`.

        Raises:
            DataError: ``X`` is not a matrix of this model's shape with finite
                non-negative values.
        """
        x = self.check_rows(X, rows=self.n_users, where="fit_positives")
        self.pos_indptr = torch.from_numpy(x.indptr.astype(np.int64))
        self.pos_items = torch.from_numpy(x.indices.astype(np.int32))
        self.pos_values = torch.from_numpy(x.data.astype(np.float32))
        self.fit_info = {}
        with torch.no_grad():
            self.fit_weights(x, seed=int(seed))

    def search(
        self, evaluate: Callable[[float], dict[str, float]], start: float, *, most: int
    ) -> float:
        """The setting with the best inner Recall@20 on a factor-2 grid: from ``start``
        upwards while it rises, else downwards while it rises (at most ``most``
        evaluations of ``evaluate(value) -> {"recall": ...}``). Every score is recorded
        in :attr:`fit_info` (``inner``: value → scores)."""
        scores: dict[float, dict[str, float]] = {}

        def recall(v: float) -> float:
            if v not in scores:
                scores[v] = evaluate(v)
            return scores[v]["recall"]

        best = start
        for step in (2.0, 0.5):  # upwards first; downwards when upwards did not help
            while len(scores) < most and recall(best * step) > recall(best):
                best *= step
            if best != start:
                break
        self.fit_info["inner"] = {f"{v:g}": sc for v, sc in sorted(scores.items())}
        self.fit_info["inner_metric"] = "recall@20"
        return best

    def fit_weights(self, X: sp.csr_matrix, *, seed: int) -> None:  # pragma: no cover
        """The family's fit on the checked positives ``X`` (float32 CSR, sorted indices)."""
        raise NotImplementedError

    def score_users(self, users: np.ndarray, X_rows: sp.csr_matrix) -> np.ndarray:
        """``(len(users), n_items)`` float32 scores of training users (indices) given
        exactly their training rows (the default: :meth:`score_history` of the rows)."""
        x = self.check_rows(X_rows, rows=len(users), where="score_users")
        return self.score_history(x)

    def score_history(self, X_rows: sp.csr_matrix) -> np.ndarray:  # pragma: no cover
        """``(n_rows, n_items)`` float32 scores of users known only by their rows of
        positives (fold-in)."""
        raise NotImplementedError

    def item_similarity(self, items: np.ndarray) -> np.ndarray | None:
        """``(len(items), n_items)`` similarity of each item to every item, or ``None``
        when the family defines none (the default)."""
        return None

    # ------------------------------------------------------------------ helpers
    def positives(self, users: np.ndarray | None = None) -> sp.csr_matrix:
        """The stored training rows (of ``users``, in that order; all by default)."""
        x = sp.csr_matrix(
            (self.pos_values.numpy(), self.pos_items.numpy(), self.pos_indptr.numpy()),
            shape=(self.n_users, self.n_items),
        )
        return x if users is None else cast(sp.csr_matrix, x[np.asarray(users, dtype=np.int64)])

    def check_rows(self, X: Any, *, rows: int, where: str) -> sp.csr_matrix:
        """``X`` as a float32 CSR matrix with sorted indices, checked: ``rows`` rows,
        ``n_items`` columns, finite non-negative values."""
        if not sp.issparse(X):
            raise DataError(f"expected a scipy sparse matrix for {where}, received {type(X)}")
        if X.shape != (rows, self.n_items):
            raise DataError(
                f"expected a matrix of shape ({rows}, {self.n_items}) for {where}, "
                f"received {X.shape}"
            )
        x = sp.csr_matrix(X, dtype=np.float32)
        if x.nnz and (not np.isfinite(x.data).all() or float(x.data.min()) < 0):
            raise DataError(f"expected finite non-negative values in {where}'s matrix")
        if not x.has_sorted_indices:
            x = x.sorted_indices()
        return x

    def forward(self, batch: Batch) -> Tensor:
        """Scores of aligned (user, item) pairs, from the stored training rows."""
        user, item = batch["user"].long().cpu(), batch["item"].long().cpu()
        for name, idx, n in (("user", user, self.n_users), ("item", item, self.n_items)):
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise DataError(
                    f"expected {name} indices in [0, {n}), received "
                    f"{int(idx.min())}..{int(idx.max())}"
                )
        out = torch.zeros(len(user), dtype=torch.float32)
        uniq, inv = torch.unique(user, return_inverse=True)
        for b0 in range(0, len(uniq), self.block_users):
            us = uniq[b0 : b0 + self.block_users].numpy()
            rows = (inv >= b0) & (inv < b0 + len(us))
            scores = torch.from_numpy(self.score_users(us, self.positives(us)))
            out[rows] = scores[inv[rows] - b0, item[rows]]
        return out.to(batch["user"].device)


def fit_topn(model: RatingModel, train: Interactions) -> None:
    """The top-N families' ``closed_form``: ``X = positives_matrix(train)`` with the
    model's ``confidence`` and sizes, then ``model.fit_positives(X, seed=model.seed)``.

    Raises:
        ConfigError: ``model`` is not a top-N model.
    """
    if not isinstance(model, TopNModel):
        raise ConfigError(f"expected a top-N model, received {type(model).__name__}")
    x = positives_matrix(
        train, n_users=model.n_users, n_items=model.n_items, confidence=model.confidence
    )
    model.fit_positives(x, seed=model.seed)


def register_topn_family(
    name: str,
    model_class: type[TopNModel],
    reads: frozenset[str],
    summary: str,
    defaults: dict[str, Any] | None = None,
) -> None:
    """Register a top-N family: a ``score`` model of task ``topn`` built as
    ``model_class(n_users, n_items, **settings)``, trained by :func:`fit_topn` (trainer
    ``closed_form``) and served by the ``topn`` recommender adapter."""
    register_family(Family(
        name=name, task="topn", model_class=model_class, output="score", reads=reads,
        trainers=("closed_form",), adapter="topn", closed_form=fit_topn,
        defaults=defaults or {}, build=sized_build(model_class), summary=summary,
    ))  # fmt: skip


def inner_split(
    X: sp.csr_matrix, frac: float = 0.1, *, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """An inner validation cut of the training positives: ``frac`` of ``X``'s non-zeros
    drawn at random by ``seed`` go to the validation matrix, the rest to the fit matrix
    (both of ``X``'s shape, disjoint, summing to ``X``).

    Example:
        >>> x = sp.csr_matrix(np.ones((4, 5), np.float32))
        >>> a, b = inner_split(x, 0.25, seed=1)
        >>> a.nnz, b.nnz, (a + b != x).nnz
        (15, 5, 0)
    """
    if not 0 < frac < 1:
        raise ConfigError(f"expected an inner validation share in (0, 1), received {frac!r}")
    coo = sp.coo_matrix(X)
    n = coo.nnz
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * frac)

    def part(rows: np.ndarray) -> sp.csr_matrix:
        rows = np.sort(rows)
        m = sp.csr_matrix(
            (coo.data[rows], (coo.row[rows], coo.col[rows])), shape=X.shape, dtype=np.float32
        )
        m.sort_indices()
        return m

    return part(perm[n_val:]), part(perm[:n_val])


def rank_scores(scores: np.ndarray, exclude: sp.csr_matrix, k: int) -> np.ndarray:
    """The ``k`` best item indices of each row of ``scores`` (best first, ties by index),
    the non-zeros of ``exclude`` (same rows) left out; ``scores`` is overwritten."""
    counts = np.diff(exclude.indptr)
    scores[np.repeat(np.arange(len(counts)), counts), exclude.indices] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    val = np.take_along_axis(scores, top, 1)
    order = np.lexsort((top, -val), axis=1)
    return np.take_along_axis(top, order, 1)


def validate_scores(
    score: Callable[[np.ndarray, sp.csr_matrix], np.ndarray],
    X_fit: sp.csr_matrix,
    X_val: sp.csr_matrix,
    *,
    k: int = 20,
    max_users: int = 3000,
    seed: int = 0,
    block: int = 1024,
) -> dict[str, float]:
    """Recall@k and NDCG@k on the validation positives ``X_val`` of the scores
    ``score(users, X_fit[users])``, each user's ``X_fit`` items excluded (the full
    catalogue ranked, as the top-N evaluation does). At most ``max_users`` of the users
    with validation positives are scored (drawn by ``seed``).

    Returns:
        ``{"recall": ..., "ndcg": ..., "users": n}``.
    """
    users = np.flatnonzero(np.diff(X_val.indptr) > 0)
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    tops = []
    for b0 in range(0, len(users), block):
        u = users[b0 : b0 + block]
        rows = cast(sp.csr_matrix, X_fit[u])
        s = np.array(score(u, rows), dtype=np.float32)
        tops.append(rank_scores(s, rows, k))
    if not tops:
        return {"recall": float("nan"), "ndcg": float("nan"), "users": 0}
    top = np.concatenate(tops)
    rel = [X_val.indices[X_val.indptr[u] : X_val.indptr[u + 1]] for u in users]
    return {
        "recall": recall_at_k(top, rel, k),
        "ndcg": ndcg_at_k(top, rel, k),
        "users": len(users),
    }
