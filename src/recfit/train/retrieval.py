"""Training and evaluating two-tower retrieval models with the :class:`~recfit.train.Learner`.

Objectives (each a :class:`~recfit.models.losses.Loss`: one value per row, which the
Learner averages as ``Σ w·ℓ / Σ w``, so sample weights count in every one):

* :class:`RescaledMSELoss`: ``(score - (rating - lo) / (hi - lo))²``, the keras-rs *Deep
  Recommenders* objective (rating rescaled to ``[0, 1]``), kept for parity.
* :class:`InBatchSoftmaxLoss`: sampled softmax over the batch's candidates. Row ``i``
  of a batch has logits ``l_ij = q_i·c_j / T - log Q_j`` over the batch's items ``j``
  (plus optional extra sampled negatives), with

  - temperature ``T``;
  - **log-Q correction**: ``Q_j = B·p(j) + M·p_neg(j)``, the expected number of times
    item ``j`` appears among the ``B`` in-batch candidates (``p(j)``: its share of the
    training rows) and the ``M`` extra negatives (``p_neg``: their sampling
    distribution); without extra negatives this is ``log p(j)`` up to a constant;
  - **accidental hits removed**: a column holding the row's own positive item
    (another row of the same item, or a sampled negative equal to it) is masked out,
    so the positive is never its own negative;
  - optional **hard-negative mining**: only the ``num_hard_negatives`` highest-scoring
    negatives of each row enter its softmax;
  - optional **extra negatives**: ``num_negatives`` items per batch drawn uniformly or
    by popularity (``count ** popularity_alpha``), shared by the rows.

  ``ℓ_i = logsumexp_j l_ij - l_ii``. A row of weight 0 is absent: its loss counts zero
  and its item is removed from the other rows' negatives.

Evaluation is full-catalogue retrieval (:class:`~recfit.index.ExactIndex` over every
item) scored by :func:`~recfit.metrics.ranking.ranking_report`; every report says whether
each user's training items were excluded (``exclude_seen``).

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> rng = np.random.default_rng(0)
    >>> d = Interactions.from_arrays(rng.integers(0, 30, 600), rng.integers(0, 40, 600),
    ...                              rng.integers(1, 6, 600).astype(float), rating_scale=(1, 5))
    >>> res = train_retrieval(RetrievalConfig(epochs=2, bs=64, eval_ks=(10,), n_bootstrap=0),
    ...                       d, "random:0.2")
    >>> sorted(k for k in res.metrics if k.endswith("@10"))[:3]
    ['hit_rate@10', 'map@10', 'mrr@10']
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from recfit.data.interactions import Interactions
from recfit.data.split import Split, make_split
from recfit.errors import ConfigError, DataError
from recfit.index import ExactIndex, ItemSets
from recfit.metrics.ranking import RANKING_METRICS, ranking_report
from recfit.models.losses import Loss
from recfit.models.two_tower import TwoTower
from recfit.train.callbacks import Callback
from recfit.train.learner import Learner
from recfit.train.schedules import Constant

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "InBatchSoftmaxLoss",
    "RankingMetrics",
    "RescaledMSELoss",
    "RetrievalConfig",
    "RetrievalResult",
    "compare_depths",
    "evaluate_popularity",
    "evaluate_retrieval",
    "evaluate_vectors",
    "item_counts",
    "plot_metric_by_epoch",
    "retrieval_metrics",
    "t1_config",
    "t2_config",
    "train_retrieval",
]


# ----------------------------------------------------------------------------- losses
class RescaledMSELoss(Loss):
    """``(score - (rating - lo) / (hi - lo))²``: keras-rs's deep-recommender objective.

    Args:
        rating_scale: ``(lo, hi)``; ml-100k's ``(1, 5)`` gives the target ``(r - 1) / 4``.

    Example:
        >>> import torch
        >>> RescaledMSELoss((1, 5))(torch.tensor([0.5, 1.0]), {"rating": torch.tensor([3.0, 5.0])})
        tensor([0., 0.])
    """

    name = "mse_rescaled"

    def __init__(self, rating_scale: tuple[float, float] = (1.0, 5.0)) -> None:
        lo, hi = (float(v) for v in rating_scale)
        if not hi > lo:
            raise ConfigError(
                f"expected rating_scale (lo, hi) with hi > lo, received {rating_scale!r}"
            )
        self.lo, self.hi = lo, hi

    def target(self, rating: Tensor) -> Tensor:
        """The rescaled rating ``(rating - lo) / (hi - lo)``."""
        return (rating - self.lo) / (self.hi - self.lo)

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        d = output - self.target(batch["rating"]).to(output.dtype)
        return d * d

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        return 2.0 * (output - self.target(batch["rating"]).to(output.dtype))

    def __repr__(self) -> str:
        return f"RescaledMSELoss(rating_scale=({self.lo}, {self.hi}))"


def item_counts(train: Interactions) -> np.ndarray:
    """Training rows (weight > 0) per item index, ``int64`` of length ``n_items``.

    Example:
        >>> d = Interactions.from_arrays([1, 2, 2], [7, 7, 8], [4.0, 2.0, 5.0])
        >>> item_counts(d).tolist()
        [2, 1]
    """
    keep = train.weights() > 0
    return np.bincount(train.item[keep], minlength=train.n_items).astype(np.int64)


class InBatchSoftmaxLoss(Loss):
    """Sampled softmax over in-batch (and optional extra) candidates; see the module docs.

    Args:
        model: the :class:`~recfit.models.two_tower.TwoTower` being trained (the loss
            reads its last query/candidate vectors and embeds extra negatives).
        temperature: divides every logit (> 0).
        item_counts: training rows per item (:func:`item_counts`): enables the log-Q
            correction and popularity sampling; ``None``: no correction.
        logq: apply the log-Q correction (needs ``item_counts``).
        remove_accidental_hits: mask columns holding the row's own item.
        num_hard_negatives: keep only this many hardest negatives per row (``None``: all).
        num_negatives: extra negatives sampled per batch (0: none).
        negative_sampling: ``"uniform"`` over the catalogue or ``"popularity"``
            (``count ** popularity_alpha``; needs ``item_counts``).
        popularity_alpha: exponent of the popularity sampler.

    Example:
        >>> import torch
        >>> from recfit.models.two_tower import CandidateTower, QueryTower, TwoTower
        >>> m = TwoTower(QueryTower(3, layer_sizes=(4,)), CandidateTower(5, layer_sizes=(4,)))
        >>> b = {"user": torch.tensor([0, 1, 2]), "item": torch.tensor([0, 3, 3])}
        >>> InBatchSoftmaxLoss(m, temperature=0.5)(m(b), b).shape
        torch.Size([3])
    """

    name = "softmax"

    def __init__(
        self,
        model: TwoTower,
        *,
        temperature: float = 0.1,
        item_counts: np.ndarray | None = None,
        logq: bool = True,
        remove_accidental_hits: bool = True,
        num_hard_negatives: int | None = None,
        num_negatives: int = 0,
        negative_sampling: Literal["uniform", "popularity"] = "uniform",
        popularity_alpha: float = 1.0,
    ) -> None:
        if not isinstance(model, TwoTower):
            raise ConfigError(f"expected a TwoTower model, received {type(model).__name__}")
        if not (
            isinstance(temperature, int | float) and temperature > 0 and math.isfinite(temperature)
        ):
            raise ConfigError(f"expected temperature > 0, received {temperature!r}")
        if num_hard_negatives is not None and (
            not isinstance(num_hard_negatives, int) or num_hard_negatives < 1
        ):
            raise ConfigError(
                f"expected num_hard_negatives an integer >= 1 or None, received {num_hard_negatives!r}"
            )
        if not isinstance(num_negatives, int) or num_negatives < 0:
            raise ConfigError(f"expected num_negatives an integer >= 0, received {num_negatives!r}")
        if negative_sampling not in ("uniform", "popularity"):
            raise ConfigError(
                f"expected negative_sampling 'uniform' or 'popularity', received {negative_sampling!r}"
            )
        counts: Tensor | None = None
        if item_counts is not None:
            c = np.asarray(item_counts, dtype=np.float64).reshape(-1)
            if len(c) != model.n_items or (len(c) and (c.min() < 0 or not np.isfinite(c).all())):
                raise DataError(
                    f"expected {model.n_items} finite item counts >= 0, received {len(c)} values",
                    column="item_counts",
                )
            counts = torch.from_numpy(c)
        if (logq or negative_sampling == "popularity") and counts is None:
            if negative_sampling == "popularity" and num_negatives > 0:
                raise ConfigError(
                    "expected item_counts for popularity-sampled negatives, received None"
                )
            logq = False
        self.model = model
        self.temperature = float(temperature)
        self.logq = bool(logq)
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.num_hard_negatives = num_hard_negatives
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.popularity_alpha = float(popularity_alpha)
        n = model.n_items
        self._p_pos: Tensor | None = None
        if counts is not None:
            total = float(counts.sum())
            self._p_pos = (counts / total if total > 0 else torch.full((n,), 1.0 / n)).float()
        if negative_sampling == "popularity" and counts is not None:
            w = counts.pow(self.popularity_alpha)
            self._p_neg = (w / w.sum()).float()
        else:
            self._p_neg = torch.full((n,), 1.0 / n)

    def __repr__(self) -> str:
        return (
            f"InBatchSoftmaxLoss(temperature={self.temperature}, logq={self.logq}, "
            f"remove_accidental_hits={self.remove_accidental_hits}, "
            f"num_hard_negatives={self.num_hard_negatives}, num_negatives={self.num_negatives}, "
            f"negative_sampling={self.negative_sampling!r})"
        )

    def _vectors(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        last = self.model.last_
        if last is None or last[0] is not batch["user"] or last[1] is not batch["item"]:
            self.model(batch)
            last = self.model.last_
            assert last is not None
        return last[2], last[3]

    def sample_negatives(self, device: torch.device) -> Tensor:
        """``num_negatives`` item indices from the negative sampler (torch's global RNG)."""
        p = self._p_neg
        if self.negative_sampling == "uniform":
            idx = torch.randint(0, len(p), (self.num_negatives,))
        else:
            idx = torch.multinomial(p, self.num_negatives, replacement=True)
        return idx.to(device)

    def _operands(
        self, q: Tensor, c: Tensor, items: Tensor, weight: Tensor | None, negatives: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(qs, cs, mask)`` with ``qs @ cs.T`` the logits before masking.

        The temperature and the log-Q correction are folded into the operands
        (``[q / T, 1] · [c, -log Q]ᵀ``), so no elementwise pass over the matrix is spent
        on them. ``mask`` (or ``None``) marks the logits to drop (never the diagonal).
        """
        b = q.shape[0]
        cols = items
        if negatives is not None and len(negatives):
            c = torch.cat([c, self.model.candidate_tower(negatives)])
            cols = torch.cat([items, negatives])
        m = len(cols) - b
        qs = q / self.temperature
        if self.logq and self._p_pos is not None:
            p_pos = self._p_pos.to(q.device)[cols]
            expected = b * p_pos + m * self._p_neg.to(q.device)[cols] if m else p_pos
            corr = -torch.log(expected.clamp_min(1e-30)).to(q.dtype)
            qs = torch.cat([qs, torch.ones_like(qs[:, :1])], dim=1)
            c = torch.cat([c, corr.unsqueeze(1)], dim=1)
        mask: Tensor | None = None
        if self.remove_accidental_hits:
            mask = items.unsqueeze(1) == cols.unsqueeze(0)
        if weight is not None and bool((weight == 0).any()):
            absent = torch.zeros(len(cols), dtype=torch.bool, device=q.device)
            absent[:b] = weight == 0
            wide = absent.unsqueeze(0).expand(b, len(cols))
            mask = wide.clone() if mask is None else mask | wide
        if mask is not None:
            diag = torch.arange(b, device=q.device)
            mask[diag, diag] = False
        return qs, c, mask

    def logits(
        self, q: Tensor, c: Tensor, items: Tensor, weight: Tensor | None, negatives: Tensor | None
    ) -> Tensor:
        """The ``(B, B + M)`` logit matrix with corrections and masks (−inf) applied;
        the positive of row ``i`` is column ``i``."""
        qs, cs, mask = self._operands(q, c, items, weight, negatives)
        s = qs @ cs.T
        return s if mask is None else s.masked_fill(mask, -math.inf)

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        q, c = self._vectors(batch)
        q, c = q.to(output.dtype), c.to(output.dtype)
        negatives = self.sample_negatives(q.device) if self.num_negatives > 0 else None
        items, weight = batch["item"], batch.get("weight")
        if self.num_hard_negatives is None:
            qs, cs, mask = self._operands(q, c, items, weight, negatives)
            rows, cols = (None, None) if mask is None else mask.nonzero(as_tuple=True)
            out: Tensor = _SoftmaxCE.apply(qs, cs, rows, cols)  # type: ignore[no-untyped-call]
            return out
        s = self.logits(q, c, items, weight, negatives)
        b = s.shape[0]
        diag = torch.arange(b, device=s.device)
        pos = s[diag, diag]
        if s.shape[1] == 1:
            return torch.zeros_like(pos)
        neg = s.index_put((diag, diag), torch.tensor(-math.inf, dtype=s.dtype, device=s.device))
        k = min(self.num_hard_negatives, s.shape[1] - 1)
        top = torch.topk(neg, k, dim=1).values
        return torch.logsumexp(torch.cat([pos.unsqueeze(1), top], dim=1), dim=1) - pos


class _SoftmaxCE(torch.autograd.Function):
    """Row-wise ``logsumexp(qs @ cs.T) - diag`` with dropped entries, in one fused pass.

    Same numbers as ``cross_entropy(masked_fill(qs @ cs.T), arange(B))`` with fewer
    passes over the ``B × N`` matrix: it is exponentiated in place and kept as the
    softmax for the backward pass (``dS = (P - I) · g``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, qs: Tensor, cs: Tensor, rows: Tensor | None, cols: Tensor | None
    ) -> Tensor:
        b = qs.shape[0]
        s = qs @ cs.T
        diag = torch.arange(b, device=s.device)
        pos = s[diag, diag].clone()
        if rows is not None and cols is not None and len(rows):
            s[rows, cols] = -math.inf
        m = s.max(1, keepdim=True).values
        torch.exp(s.sub_(m), out=s)
        z = s.sum(1, keepdim=True)
        s.div_(z)
        ctx.save_for_backward(qs, cs, s)
        return (m + z.log()).squeeze(1) - pos

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, None, None]:  # type: ignore[override]
        qs, cs, p = ctx.saved_tensors
        b = qs.shape[0]
        d = p * g.unsqueeze(1)
        diag = torch.arange(b, device=p.device)
        d[diag, diag] -= g
        return d @ cs, d.T @ qs, None, None


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


def evaluate_retrieval(
    model: TwoTower,
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
    """:func:`evaluate_vectors` with the model's ``user_vectors()`` and ``item_vectors()``.

    Example:
        >>> from recfit.models.two_tower import CandidateTower, QueryTower
        >>> m = TwoTower(QueryTower(2, layer_sizes=(4,)), CandidateTower(2, layer_sizes=(4,)))
        >>> d = Interactions.from_arrays([0, 1], [0, 1], [5.0, 5.0])
        >>> evaluate_retrieval(m, d, exclude_seen=False, ks=(2,), n_bootstrap=0)["recall@2"]
        1.0
    """
    t0 = time.perf_counter()
    report = evaluate_vectors(
        model.user_vectors().cpu(),
        model.item_vectors().cpu(),
        test,
        train=train,
        exclude_seen=exclude_seen,
        ks=ks,
        relevant_min_rating=relevant_min_rating,
        n_bootstrap=n_bootstrap,
        ci=ci,
        seed=seed,
    )
    report["eval_seconds"] = time.perf_counter() - t0
    return report


def evaluate_popularity(
    train: Interactions,
    test: Interactions,
    *,
    exclude_seen: bool,
    ks: Sequence[int] = (10, 20, 100),
    relevant_min_rating: float | None = None,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The popularity baseline: every user gets the items with most training rows.

    Ties are broken by item index (lower first), like every ExactIndex ranking.

    Example:
        >>> tr = Interactions.from_arrays([0, 1, 1], [0, 0, 1], [5.0, 5.0, 5.0])
        >>> te = Interactions.from_arrays([0], [1], [4.0], users=tr.users, items=tr.items)
        >>> evaluate_popularity(tr, te, exclude_seen=True, ks=(1,), n_bootstrap=0)["recall@1"]
        1.0
    """
    counts = item_counts(train).astype(np.float32)
    return evaluate_vectors(
        np.ones((train.n_users, 1), dtype=np.float32),
        counts[:, None],
        test,
        train=train,
        exclude_seen=exclude_seen,
        ks=ks,
        relevant_min_rating=relevant_min_rating,
        n_bootstrap=n_bootstrap,
        ci=ci,
        seed=seed,
    )


class RankingMetrics(Callback):
    """Full-catalogue ranking metrics on a validation split, every ``every`` epochs.

    The values (no bootstrap) are added to the epoch's ``learn.history`` record (so
    :class:`~recfit.train.callbacks.EarlyStopping` can monitor e.g. ``recall@20``) and
    kept in :attr:`records` as ``{"epoch": 1-based epoch, metric: value, ...}``.
    Epochs that are not evaluated get ``nan`` in the history.

    Args:
        valid: the validation interactions.
        train: the training interactions (for ``exclude_seen``).
        exclude_seen: drop each user's training items from its ranking.
        ks: the cutoffs.
        relevant_min_rating: the smallest relevant rating (``None``: every row).
        every: evaluate after every ``every`` epochs (and after the last one).

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
        exclude_seen: bool,
        ks: Sequence[int] = (10, 20, 100),
        relevant_min_rating: float | None = None,
        every: int = 1,
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"expected every an integer >= 1, received {every!r}")
        if exclude_seen and train is None:
            raise ConfigError(
                "expected the training interactions with exclude_seen=True, received None"
            )
        self.valid, self.train, self.exclude_seen = valid, train, exclude_seen
        self.ks, self.relevant_min_rating, self.every = tuple(ks), relevant_min_rating, every
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
            rep = evaluate_retrieval(
                model,
                self.valid,
                train=self.train,
                exclude_seen=self.exclude_seen,
                ks=self.ks,
                relevant_min_rating=self.relevant_min_rating,
                n_bootstrap=0,
            )
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


# ----------------------------------------------------------------------------- config
_OBJECTIVES = ("mse", "softmax")
_OPTS = ("adagrad", "adam")
_SCHEDULES = ("constant", "one_cycle")


@dataclass(frozen=True)
class RetrievalConfig:
    """Everything one retrieval run needs (frozen; :meth:`from_dict` rejects unknown keys).

    Attributes:
        objective: ``"mse"`` (:class:`RescaledMSELoss`) or ``"softmax"``
            (:class:`InBatchSoftmaxLoss`).
        embedding_dim: width of every embedding table.
        layer_sizes: dense layers of both towers (the last is the vector width).
        user_features, item_features: feature names to keep from the default spaces
            (``None``: all; ``()``: none, ids only).
        use_ids: embed user and item ids.
        positive_min_rating: keep only ratings >= this as (positive) interactions,
            before splitting (protocol T2: 4); ``None`` keeps every rating (T1).
        temperature, logq, remove_accidental_hits, num_hard_negatives, num_negatives,
            negative_sampling, popularity_alpha: the softmax options.
        opt: ``"adagrad"`` (Keras semantics: initial accumulator 0.1, eps 1e-7) or
            ``"adam"``.
        lr, epochs, bs, wd, reg: optimisation (``wd`` decoupled weight decay, ``reg``
            L2 on the id embedding rows of each batch).
        schedule: ``"constant"`` or ``"one_cycle"``.
        eval_ks: cutoffs of the final report.
        relevant_min_rating: test ratings >= this are relevant (T1: 5; ``None``: all).
        exclude_seen: exclude each user's training items when ranking.
        eval_every: also compute ranking metrics on the test split every this many
            epochs into the history (0: only at the end).
        n_bootstrap: bootstrap resamples for the final intervals.
        seed: seeds the initialisation, batch order and sampled negatives (and the split
            when one is made from a spec).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    objective: Literal["mse", "softmax"] = "softmax"
    embedding_dim: int = 32
    layer_sizes: tuple[int, ...] = (32,)
    user_features: tuple[str, ...] | None = None
    item_features: tuple[str, ...] | None = None
    use_ids: bool = True
    positive_min_rating: float | None = None
    temperature: float = 0.1
    logq: bool = True
    remove_accidental_hits: bool = True
    num_hard_negatives: int | None = None
    num_negatives: int = 0
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    popularity_alpha: float = 1.0
    opt: Literal["adagrad", "adam"] = "adagrad"
    lr: float = 0.05
    epochs: int = 30
    bs: int = 1000
    wd: float = 0.0
    reg: float = 0.0
    schedule: Literal["constant", "one_cycle"] = "constant"
    eval_ks: tuple[int, ...] = (10, 20, 100)
    relevant_min_rating: float | None = None
    exclude_seen: bool = False
    eval_every: int = 0
    n_bootstrap: int = 1000
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        def setf(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.objective not in _OBJECTIVES:
            raise ConfigError(
                f"expected objective among {_OBJECTIVES}, received {self.objective!r}"
            )
        if self.opt not in _OPTS:
            raise ConfigError(f"expected opt among {_OPTS}, received {self.opt!r}")
        if self.schedule not in _SCHEDULES:
            raise ConfigError(f"expected schedule among {_SCHEDULES}, received {self.schedule!r}")
        for name in ("layer_sizes", "eval_ks"):
            v = getattr(self, name)
            if isinstance(v, int) or not v or not all(isinstance(x, int) and x >= 1 for x in v):
                raise ConfigError(
                    f"expected {name} a non-empty tuple of integers >= 1, received {v!r}"
                )
            setf(name, tuple(v))
        for name in ("user_features", "item_features"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, str) or not all(isinstance(x, str) for x in v):
                    raise ConfigError(f"expected {name} a tuple of names or None, received {v!r}")
                setf(name, tuple(v))
        for name, lo in (
            ("embedding_dim", 1),
            ("epochs", 0),
            ("bs", 1),
            ("num_negatives", 0),
            ("eval_every", 0),
            ("n_bootstrap", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"expected {name} an integer >= {lo}, received {v!r}")
        for name in ("lr", "temperature"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v > 0 and math.isfinite(v)):
                raise ConfigError(f"expected {name} > 0, received {v!r}")
        for name in ("wd", "reg"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"expected {name} >= 0, received {v!r}")

    def replace(self, **changes: Any) -> RetrievalConfig:
        """A copy with ``changes`` applied and validated.

        Example:
            >>> RetrievalConfig().replace(layer_sizes=[64, 32]).layer_sizes
            (64, 32)
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"expected RetrievalConfig fields, received unknown keys {unknown}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RetrievalConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`.

        Example:
            >>> RetrievalConfig.from_dict(RetrievalConfig(epochs=3).to_dict()).epochs
            3
        """
        return cls().replace(**dict(d))


def t1_config(objective: Literal["mse", "softmax"] = "mse", **changes: Any) -> RetrievalConfig:
    """Protocol T1 (ml-100k, keras-rs Deep Recommenders): features, optimiser and metric.

    User id, age bucket, gender, gender×age cross, occupation; movie id, title tokens,
    genres; Adagrad 0.05, batch 1000, 30 epochs; top-100 accuracy on 5-star test
    ratings with seen items not excluded. ``objective="mse"`` is keras-rs's objective;
    ``"softmax"`` is recfit's (in-batch softmax, its settings in ``changes``).

    Example:
        >>> t1_config(layer_sizes=(64, 32)).relevant_min_rating
        5.0
    """
    base = RetrievalConfig(
        objective=objective,
        user_features=("age", "gender", "occupation", "gender_x_age"),
        item_features=("title", "genres"),
        opt="adagrad",
        lr=0.05,
        epochs=30,
        bs=1000,
        eval_ks=(10, 20, 100),
        relevant_min_rating=5.0,
        exclude_seen=False,
    )
    return base.replace(**changes)


def t2_config(**changes: Any) -> RetrievalConfig:
    """Protocol T2 (ml-1m, ratings >= 4 as positives, training items excluded).

    recfit's settings for it: in-batch softmax with log-Q correction, the default
    ml-1m features, Adam 0.005, batch 1024, 5 epochs.

    Example:
        >>> t2_config().exclude_seen, t2_config().positive_min_rating
        (True, 4.0)
    """
    base = RetrievalConfig(
        objective="softmax",
        opt="adam",
        lr=0.005,
        bs=1024,
        epochs=5,
        positive_min_rating=4.0,
        relevant_min_rating=None,
        exclude_seen=True,
        eval_ks=(10, 20, 100),
    )
    return base.replace(**changes)


# ----------------------------------------------------------------------------- training
@dataclass
class RetrievalResult:
    """What :func:`train_retrieval` produced.

    Attributes:
        config: the resolved configuration.
        model: the trained :class:`~recfit.models.two_tower.TwoTower`.
        learner: the :class:`~recfit.train.Learner` that trained it (``history``...).
        split: the split used (after the positive filter, when there is one).
        metrics: ranking metrics by name (``top_100_accuracy``, ``recall@20``,
            ``ndcg@20``, ``hit_rate@20``...) plus ``fit_seconds`` and ``eval_seconds``.
        report: the full :func:`ranking_report` (intervals under ``<name>_ci``,
            ``exclude_seen``, ``n_queries``...).
        epoch_metrics: per evaluated epoch, the ranking metrics (``eval_every`` > 0).
    """

    config: RetrievalConfig
    model: TwoTower
    learner: Learner
    split: Split
    metrics: dict[str, float]
    report: dict[str, Any]
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)


def _keras_adagrad(lr: float) -> Callable[[Any], torch.optim.Optimizer]:
    def make(params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=0.1, eps=1e-7)

    return make


def _filter_positives(data: Interactions, threshold: float | None) -> Interactions:
    if threshold is None:
        return data
    return data.take(np.flatnonzero(data.rating >= threshold))


def retrieval_metrics(
    cfg: RetrievalConfig,
    model: TwoTower,
    test: Interactions,
    train: Interactions,
    fit_seconds: float,
    *,
    filter_positives: bool = False,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Rank ``test`` once with ``cfg``'s evaluation settings (``train``'s items as each
    user's seen items): the metrics (plus ``fit_seconds`` and ``eval_seconds``) and the
    full report. ``filter_positives`` first keeps only ratings of at least
    ``cfg.positive_min_rating`` on both sides, as :func:`train_retrieval` does to a split."""
    if filter_positives:
        test = _filter_positives(test, cfg.positive_min_rating)
        train = _filter_positives(train, cfg.positive_min_rating)
    report = evaluate_retrieval(
        model,
        test,
        train=train,
        exclude_seen=cfg.exclude_seen,
        ks=cfg.eval_ks,
        relevant_min_rating=cfg.relevant_min_rating,
        n_bootstrap=cfg.n_bootstrap,
        seed=cfg.seed,
    )
    metrics = {k: float(v) for k, v in report.items() if _is_metric(k)}
    metrics["fit_seconds"] = fit_seconds
    metrics["eval_seconds"] = float(report["eval_seconds"])
    return metrics, report


def train_retrieval(
    config: RetrievalConfig | Mapping[str, Any] | None = None,
    data: Interactions | None = None,
    split: Split | str = "random:0.2",
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = False,
    **changes: Any,
) -> RetrievalResult:
    """Train a two-tower model on ``data`` and evaluate full-catalogue retrieval.

    Args:
        config: a :class:`RetrievalConfig` (or its dict); ``changes`` override fields.
        data: the interactions (with feature tables for side features).
        split: a :class:`~recfit.data.split.Split` of ``data`` or a spec
            (``"random:0.2"``...) applied, with ``config.seed``, after the positive filter.
            With a ``Split`` and ``positive_min_rating``, both parts are filtered.
        callbacks: extra Learner callbacks.
        progress: progress bars (``None``: only on a terminal).

    Returns:
        a :class:`RetrievalResult`; ``metrics["top_100_accuracy"]`` etc.

    Raises:
        ConfigError: a bad configuration; DataError: no training rows.
    """
    if data is None:
        raise ConfigError("expected interactions to train on, received None (parameter 'data')")
    if config is None:
        cfg = RetrievalConfig()
    elif isinstance(config, RetrievalConfig):
        cfg = config
    else:
        cfg = RetrievalConfig.from_dict(config)
    if changes:
        cfg = cfg.replace(**changes)
    if isinstance(split, str):
        the_split = make_split(
            _filter_positives(data, cfg.positive_min_rating), split, seed=cfg.seed
        )
        train, test = the_split.train, the_split.test
    elif isinstance(split, Split):
        the_split = split
        train = _filter_positives(split.train, cfg.positive_min_rating)
        test = _filter_positives(split.test, cfg.positive_min_rating)
    else:
        raise ConfigError(f"expected a Split or a split spec, received {type(split).__name__}")
    model = TwoTower.from_data(
        train,
        embedding_dim=cfg.embedding_dim,
        layer_sizes=cfg.layer_sizes,
        user_features=cfg.user_features,
        item_features=cfg.item_features,
        user_space=None if cfg.user_features == () else "auto",
        item_space=None if cfg.item_features == () else "auto",
        use_ids=cfg.use_ids,
        seed=cfg.seed,
    )
    loss: Loss
    if cfg.objective == "mse":
        scale = train.rating_scale
        if scale is None:
            lo, hi = float(np.min(train.rating)), float(np.max(train.rating))
            scale = (lo, hi if hi > lo else lo + 1.0)
        loss = RescaledMSELoss(scale)
    else:
        loss = InBatchSoftmaxLoss(
            model,
            temperature=cfg.temperature,
            item_counts=item_counts(train),
            logq=cfg.logq,
            remove_accidental_hits=cfg.remove_accidental_hits,
            num_hard_negatives=cfg.num_hard_negatives,
            num_negatives=cfg.num_negatives,
            negative_sampling=cfg.negative_sampling,
            popularity_alpha=cfg.popularity_alpha,
        )
    cbs: list[Callback] = list(callbacks)
    tracker: RankingMetrics | None = None
    if cfg.eval_every > 0:
        tracker = RankingMetrics(
            test,
            train,
            exclude_seen=cfg.exclude_seen,
            ks=cfg.eval_ks,
            relevant_min_rating=cfg.relevant_min_rating,
            every=cfg.eval_every,
        )
        cbs.insert(0, tracker)
    opt: Any = _keras_adagrad(cfg.lr) if cfg.opt == "adagrad" else "adam"
    learner = Learner(
        model,
        train,
        None,
        loss=loss,
        metrics=(),
        opt=opt,
        bs=cfg.bs,
        wd=cfg.wd,
        reg=cfg.reg,
        device=cfg.device,
        seed=cfg.seed,
        callbacks=cbs,
        progress=progress,
    )
    t0 = time.perf_counter()
    if cfg.schedule == "one_cycle":
        learner.fit_one_cycle(cfg.epochs, cfg.lr)
    else:
        learner.fit(cfg.epochs, schedule=Constant(cfg.lr))
    fit_seconds = time.perf_counter() - t0
    metrics, report = retrieval_metrics(cfg, model, test, train, fit_seconds)
    return RetrievalResult(
        cfg,
        model,
        learner,
        the_split,
        metrics,
        report,
        [] if tracker is None else list(tracker.records),
    )


# ----------------------------------------------------------------------------- comparisons
def plot_metric_by_epoch(
    curves: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "top_100_accuracy"
) -> Figure:
    """One line per label: ``metric`` against the (1-based) epoch, like keras-rs's plot.

    Args:
        curves: label → records ``{"epoch": e, metric: value, ...}`` (as in
            :attr:`RetrievalResult.epoch_metrics`).
        metric: the metric to plot.

    Example:
        >>> fig = plot_metric_by_epoch({"1 layer": [{"epoch": 5, "top_100_accuracy": 0.2}]})
        >>> fig.axes[0].get_ylabel()
        'top_100_accuracy'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for label, recs in curves.items():
        xs = [r["epoch"] for r in recs if metric in r]
        ys = [r[metric] for r in recs if metric in r]
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_title(f"{metric} vs epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if curves:
        ax.legend()
    return fig


def compare_depths(
    data: Interactions,
    split: Split | str = "random:0.2",
    depths: Sequence[Sequence[int]] = ((32,), (64, 32), (128, 64, 32)),
    config: RetrievalConfig | None = None,
    *,
    metric: str = "top_100_accuracy",
    every: int = 5,
    progress: bool | None = False,
) -> tuple[dict[str, RetrievalResult], Figure]:
    """Train one model per tower depth and plot ``metric`` vs epoch for each.

    Args:
        data: the interactions.
        split: a split or a spec (the same split is used for every depth).
        depths: the ``layer_sizes`` to compare.
        config: the shared configuration (default :func:`t1_config`).
        metric: the metric plotted.
        every: evaluate every this many epochs.

    Returns:
        ``({"1 layer": result, "2 layers": ...}, figure)``.
    """
    cfg = t1_config() if config is None else config
    cfg = cfg.replace(eval_every=every)
    the_split = split
    if isinstance(split, str):
        the_split = make_split(
            _filter_positives(data, cfg.positive_min_rating), split, seed=cfg.seed
        )
        cfg = cfg.replace(positive_min_rating=None)
    results: dict[str, RetrievalResult] = {}
    for sizes in depths:
        n = len(sizes)
        label = f"{n} layer" + ("s" if n != 1 else "")
        if label in results:
            label = f"{label} {tuple(sizes)}"
        results[label] = train_retrieval(
            cfg.replace(layer_sizes=tuple(sizes)), data, the_split, progress=progress
        )
    fig = plot_metric_by_epoch({k: r.epoch_metrics for k, r in results.items()}, metric)
    return results, fig
