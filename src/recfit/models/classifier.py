"""Ratings as classes: embeddings → MLP → a distribution over the rating levels.

:class:`RatingClassifier` is fastai's ``CollabNN`` with one output per rating level:
user and item embeddings are concatenated, go through an MLP body (``Linear → ReLU →
BatchNorm1d → Dropout`` per hidden layer, like :class:`~recfit.models.EmbeddingNN`) and a
*head*:

* ``head="softmax"``: one logit per level (multinomial, trained by cross-entropy);
* ``head="ordinal"``: a cumulative-link (proportional-odds, CORAL-style) head that
  respects the order of the levels: one shared score ``g(x)`` and ``K - 1`` ordered
  thresholds ``θ_0 < θ_1 < … < θ_{K-2}`` (kept ordered by construction:
  ``θ_k = θ_0 + Σ softplus(δ)``). ``P(y > k) = σ(g(x) - θ_k)`` is non-increasing in ``k``,
  so ``p_k = P(y > k-1) - P(y > k)`` is a proper distribution. Its output is
  ``log p_k``, and the same cross-entropy (the negative log-likelihood of the level)
  trains it.

For both heads ``softmax(forward(batch))`` is the predicted distribution
(:meth:`RatingClassifier.to_proba`). ``to_rating`` decodes it to a rating in the data's
units: ``decode="expected"`` (the expected rating, the MSE-optimal choice) or
``"argmax"`` (the rating of the most likely level). The Learner reports both decodings
(``mse_expected``, ``mse_argmax``) whatever ``decode`` is.

SMOTE on vectors: :meth:`RatingClassifier.features` gives the concatenated embeddings of a
batch and :meth:`RatingClassifier.head` maps such vectors to the output, so synthetic
vectors can be trained through the head directly (see :mod:`recfit.train.imbalance`).

Example:
    >>> import torch
    >>> m = RatingClassifier(10, 20, levels=[1, 2, 3, 4, 5], layers=(8,)).eval()
    >>> out = m({"user": torch.tensor([1, 2]), "item": torch.tensor([3, 4])})
    >>> out.shape, m.to_proba(out).sum(1).round(decimals=5).tolist()
    (torch.Size([2, 5]), [1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from recfit.errors import ConfigError
from recfit.metrics.decoding import levels_for_scale
from recfit.models.base import Batch
from recfit.models.dot import _trunc_normal
from recfit.models.mlp import EmbeddingBody
from recfit.models.registry import Family, register_family, sized_build

__all__ = [
    "Decode",
    "Head",
    "LevelModel",
    "LevelOutput",
    "RatingClassifier",
    "check_levels",
    "decode_levels",
    "level_fallback",
    "levels_for_data",
    "ordinal_log_proba",
    "prepare_levels",
]

Head = Literal["softmax", "ordinal"]
Decode = Literal["expected", "argmax"]
_PROB_FLOOR = 1e-12


@runtime_checkable
class LevelModel(Protocol):
    """A model whose output is a distribution over rating levels.

    ``levels`` lists the rating of each level (lowest first) and ``to_proba(output)``
    turns ``forward``'s output into probabilities of shape ``[B, K]``. The Learner gives
    such models ``predict_proba`` and the level metrics (accuracy, F1, decodings).
    """

    levels: list[float]

    def to_proba(self, output: Tensor) -> Tensor:
        """Probabilities of the levels, shape ``[B, K]``."""
        ...


def check_levels(levels: Any) -> list[float]:
    """``levels`` as a list of at least 2 finite, strictly increasing floats."""
    try:
        grid = [float(v) for v in levels]
    except (TypeError, ValueError):
        raise ConfigError(f"expected a sequence of rating levels, received {levels!r}") from None
    if len(grid) < 2 or not np.isfinite(grid).all() or (np.diff(grid) <= 0).any():
        raise ConfigError(
            f"expected at least 2 finite, strictly increasing rating levels, received {levels!r}"
        )
    return grid


class LevelOutput:
    """What the classification families share: the output is one log-probability (or
    logit) per level, ``softmax(output)`` the distribution, decoded to a rating by
    ``decode``; cross-entropy trains it. A model using it sets ``level_values`` (a
    buffer of the levels' ratings) and ``decode``."""

    default_loss: ClassVar[str] = "cross_entropy"
    level_values: Tensor
    decode: Decode

    def to_proba(self, output: Tensor) -> Tensor:
        """The predicted distribution over the levels: ``softmax(output)``, shape ``[B, K]``."""
        return torch.softmax(output, dim=1)

    def to_rating(self, output: Tensor) -> Tensor:
        """Decode to ratings: the expected rating, or the rating of the most likely level."""
        return decode_levels(self.to_proba(output.float()), self.level_values, self.decode)

    def fallback_output(self, rating: Tensor) -> Tensor:
        """Level log-probabilities whose expected rating is ``rating`` (clamped into the
        levels): the mass is split between the two levels around it, so ``argmax``
        decodes to the nearer one. Used for pairs with an unknown user or item."""
        return level_fallback(rating, self.level_values)


class RatingClassifier(LevelOutput, EmbeddingBody):
    """Embeddings → MLP → one output per rating level (softmax or ordinal head).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        levels: the rating of each level, increasing (e.g.
            :func:`~recfit.metrics.levels_for_scale`: 5 levels for 1..5 stars, 10 for
            half stars).
        emb_sizes: ``(user_width, item_width)``; default by fastai's
            :func:`~recfit.models.emb_sz_rule`.
        layers: hidden layer sizes of the MLP body (may be empty: a linear head on the
            embeddings).
        dropout: dropout after each hidden layer.
        emb_dropout: dropout on the concatenated embeddings.
        batch_norm: batch norm after each hidden activation.
        head: ``"softmax"`` or ``"ordinal"`` (cumulative link with ordered thresholds).
        decode: what ``to_rating`` returns: ``"expected"`` rating or ``"argmax"`` level.
        biases: add learned user and item biases to the output (one per level for the
            softmax head, one score offset for the ordinal head); they capture how each
            user uses the scale and how each item is liked, and are part of the feature
            vectors (so SMOTE interpolates them too).
        seed: seed of the initialisation.

    Example:
        >>> RatingClassifier(3, 4, levels=[1, 2, 3], head="ordinal").config()["head"]
        'ordinal'
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        levels: Sequence[float] = (1.0, 2.0, 3.0, 4.0, 5.0),
        emb_sizes: Sequence[int] | None = None,
        layers: Sequence[int] = (100,),
        dropout: float | Sequence[float] = 0.0,
        emb_dropout: float = 0.0,
        batch_norm: bool = True,
        head: Head = "softmax",
        decode: Decode = "expected",
        biases: bool = True,
        n_factors: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if head not in ("softmax", "ordinal"):
            raise ConfigError(f"expected head 'softmax' or 'ordinal', received {head!r}")
        if decode not in ("expected", "argmax"):
            raise ConfigError(f"expected decode 'expected' or 'argmax', received {decode!r}")
        grid = check_levels(levels)
        if not isinstance(n_factors, int) or n_factors < 0:
            raise ConfigError(f"expected n_factors an integer >= 0, received {n_factors!r}")
        self.levels, self.n_levels, self.n_factors = grid, len(grid), n_factors
        self.head_kind, self.decode, self.biases = head, decode, bool(biases)
        self.register_buffer("level_values", torch.tensor(grid, dtype=torch.float32), False)
        args = (n_users, n_items, emb_sizes, layers, dropout, emb_dropout, batch_norm, seed)
        k = len(grid)
        with torch.random.fork_rng(devices=[]):
            mods, n_in, g = self._init_body(*args)
            self.body = nn.Sequential(*mods)
            n_in += n_factors
            self.out = nn.Linear(n_in, k if head == "softmax" else 1, bias=head == "softmax")
        if n_factors:  # GMF branch: p_u ⊙ q_i joins the MLP body's output (NeuMF style)
            self.user_factors = nn.Parameter(_trunc_normal((n_users, n_factors), 0.01, g))
            self.item_factors = nn.Parameter(_trunc_normal((n_items, n_factors), 0.01, g))
        if self.biases:  # per-level (softmax) or scalar (ordinal) user and item biases
            width = k if head == "softmax" else 1
            self.user_bias = nn.Parameter(torch.zeros(n_users, width))
            self.item_bias = nn.Parameter(torch.zeros(n_items, width))
        if head == "ordinal":
            # thresholds θ_0 < … < θ_{K-2}, spread over [-1.5, 1.5] at the start
            span = 3.0 / max(1, k - 2)
            gaps = torch.full((k - 2,), float(np.log(np.expm1(span))))
            self.theta0 = nn.Parameter(torch.tensor([-1.5]))
            self.theta_gaps = nn.Parameter(gaps)
        self._register_record(n_users, n_items)

    # ------------------------------------------------------------------ contract
    def config(self) -> dict[str, Any]:
        return self._body_config(
            levels=list(self.levels),
            head=self.head_kind,
            decode=self.decode,
            biases=self.biases,
            n_factors=self.n_factors,
        )

    @property
    def feature_dim(self) -> int:
        """Width of a feature vector: embeddings, then the user and item bias columns."""
        width = self.emb_sizes[0][1] + self.emb_sizes[1][1]
        if self.biases:
            width += 2 * (self.n_levels if self.head_kind == "softmax" else 1)
        return width + 2 * self.n_factors

    def features(self, batch: Batch) -> Tensor:
        """The vector of each row, shape ``[B, feature_dim]``: the concatenated user and
        item embeddings, then (with ``biases``) the user and item bias columns."""
        u, i = batch["user"], batch["item"]
        parts = self.embeddings(batch)
        if self.biases:
            parts += [self.user_bias.index_select(0, u), self.item_bias.index_select(0, i)]
        if self.n_factors:
            parts += [self.user_factors.index_select(0, u), self.item_factors.index_select(0, i)]
        return torch.cat(parts, dim=1)

    def thresholds(self) -> Tensor:
        """The ordered thresholds ``θ`` of the ordinal head, shape ``[K - 1]``."""
        if self.head_kind != "ordinal":
            raise ConfigError(f"expected an ordinal head, received head {self.head_kind!r}")
        return torch.cat([self.theta0, self.theta0 + torch.cumsum(F.softplus(self.theta_gaps), 0)])

    def _score(self, x: Tensor) -> Tensor:
        """MLP output plus the bias columns: ``[B, K]`` logits or the ``[B, 1]`` ordinal score."""
        n_emb = self.emb_sizes[0][1] + self.emb_sizes[1][1]
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise ConfigError(
                f"expected feature vectors of shape [B, {self.feature_dim}], received "
                f"{tuple(x.shape)}"
            )
        h = self.body(self.emb_drop(x[:, :n_emb]))
        f = self.n_factors
        if f:
            pq = x[:, x.shape[1] - 2 * f :]
            h = torch.cat([h, pq[:, :f] * pq[:, f:]], dim=1)
        score: Tensor = self.out(h)
        if self.biases:
            bw = (x.shape[1] - 2 * f - n_emb) // 2
            score = score + x[:, n_emb : n_emb + bw] + x[:, n_emb + bw : n_emb + 2 * bw]
        return score

    def cumulative_proba(self, x: Tensor) -> Tensor:
        """``P(y > k)`` for ``k = 0..K-2`` from feature vectors ``x`` (ordinal head only);
        non-increasing along ``k`` by construction. Shape ``[B, K - 1]``."""
        return torch.sigmoid(self._score(x) - self.thresholds().unsqueeze(0))

    def head(self, x: Tensor) -> Tensor:
        """Map feature vectors (as from :meth:`features`, or synthetic ones) to the output:
        logits (softmax head) or level log-probabilities (ordinal head), shape ``[B, K]``."""
        if self.head_kind == "softmax":
            return self._score(x)
        # P(y <= k) = 1 - P(y > k), as σ(θ_k - g) (exact in the tails, unlike 1 - σ)
        return ordinal_log_proba(torch.sigmoid(self.thresholds().unsqueeze(0) - self._score(x)))

    def forward(self, batch: Batch) -> Tensor:
        return self.head(self.features(batch))

    def penalty(self, batch: Batch) -> Tensor:
        """Sum of squares of the looked-up user and item embedding (and bias) rows."""
        x = self.features(batch)
        return (x * x).sum(1)


def decode_levels(proba: Tensor, grid: Tensor, decode: Decode) -> Tensor:
    """Ratings from level probabilities ``[B, K]`` on the levels ``grid``: the expected
    rating (``decode="expected"``) or the rating of the most likely level (``"argmax"``).

    Example:
        >>> p = torch.tensor([[0.6, 0.0, 0.4]])
        >>> grid = torch.tensor([1.0, 2.0, 3.0])
        >>> round(float(decode_levels(p, grid, "expected")[0]), 4)
        1.8
    """
    grid = grid.to(proba.device)
    if decode == "argmax":
        return grid[proba.argmax(dim=1)]
    return proba @ grid


def ordinal_log_proba(below: Tensor) -> Tensor:
    """The level log-probabilities ``[B, K]`` of an ordinal (cumulative-link) head from
    its cumulative probabilities ``below[:, k] = P(y <= k)``, ``k = 0..K-2``
    (non-decreasing along ``k``): ``log(P(y <= k) - P(y <= k - 1))``, floored at
    ``log 1e-12``.

    Example:
        >>> [round(v, 4) for v in ordinal_log_proba(torch.tensor([[0.25, 0.75]])).exp()[0].tolist()]
        [0.25, 0.5, 0.25]
    """
    zeros = torch.zeros_like(below[:, :1])
    p = torch.cat([below, zeros + 1.0], 1) - torch.cat([zeros, below], 1)
    return torch.log(p.clamp_min(_PROB_FLOOR))


def level_fallback(rating: Tensor, grid: Tensor) -> Tensor:
    """Level log-probabilities whose expected rating is ``rating`` (clamped into the
    levels ``grid``): the mass is split between the two levels around it."""
    grid = grid.to(rating.device)
    r = rating.float().clamp(grid[0], grid[-1])
    hi = torch.searchsorted(grid, r).clamp(1, len(grid) - 1)
    lo = hi - 1
    frac = (r - grid[lo]) / (grid[hi] - grid[lo])
    p = torch.zeros(len(r), len(grid), device=rating.device)
    p.scatter_(1, lo.unsqueeze(1), (1 - frac).unsqueeze(1))
    p.scatter_add_(1, hi.unsqueeze(1), frac.unsqueeze(1))
    return torch.log(p.clamp_min(_PROB_FLOOR))


def levels_for_data(data: Any) -> list[float]:
    """The rating levels of an :class:`~recfit.data.Interactions`: its ``rating_scale``
    (or the observed range) on a grid of whole stars, or of half stars when some rating
    of positive weight is not whole.

    Example:
        >>> from recfit.data import Interactions
        >>> levels_for_data(Interactions.from_arrays([0, 1], [0, 1], [1.0, 5.0]))
        [1.0, 2.0, 3.0, 4.0, 5.0]
        >>> len(levels_for_data(Interactions.from_arrays([0, 1], [0, 1], [0.5, 4.5],
        ...                                              rating_scale=(0.5, 5))))
        10
    """
    rating = np.asarray(data.rating, dtype=np.float64)
    keep = np.asarray(data.weights()) > 0
    r = rating[keep]
    if len(r) == 0:
        raise ConfigError("expected ratings of positive weight to find the levels, received none")
    scale = data.rating_scale if data.rating_scale is not None else (float(r.min()), float(r.max()))
    lo, hi = float(scale[0]), float(scale[1])
    step = 1.0 if np.all(r == np.round(r)) and lo.is_integer() and hi.is_integer() else 0.5
    return [float(v) for v in levels_for_scale((lo, hi), step)]


def prepare_levels(kw: dict[str, Any], train: Any) -> None:
    """A ``prepare`` for :func:`~recfit.models.registry.sized_build`: ``levels`` defaults
    to :func:`levels_for_data` of the training rows."""
    kw.setdefault("levels", levels_for_data(train))


register_family(Family(
    name="classifier", task="classification", model_class=RatingClassifier, output="rating",
    reads=frozenset(
        {"n_factors", "layers", "dropout", "batch_norm", "head", "decode", "biases", "seed"}
    ),
    trainers=("sgd",), adapter="generic",
    defaults={}, build=sized_build(RatingClassifier, prepare=prepare_levels),
    summary="ratings as classes: embeddings, MLP, softmax or ordinal head over the levels",
))  # fmt: skip
