"""Model adapters: what the :class:`~recfit.recommender.Recommender` needs from a model family.

The Recommender never reaches into a model's parameters itself. It asks an *adapter*,
one class per model family, registered under the model's registry name
(``model.registry_name``: ``"dot"``, ``"mf"``, ``"nn"``, ...). An adapter works on
*user rows*: whatever tensor represents one user for that family (for the dot models the
user's factors followed by the user's bias; for ``nn`` the user's embedding). Rows of
known users come from :meth:`ModelAdapter.user_rows`; rows of new users from
:meth:`ModelAdapter.fold_in`. Every query then goes through the same few methods:

=====================  =================================================================
``score(u, i)``        predicted ratings (original scale) of known (user, item) pairs
``predict(u, i)``      the same with the baseline for never-trained users or items, and
                       the mask of those pairs
``output_kind``        ``"rating"`` or ``"score"`` (what the numbers mean)
``score_all(rows)``    ``[B, n_items]`` predicted ratings of every item for B user rows
``user_rows(u)``       the rows of known users (by index)
``fold_in(i, r, w)``   a row for a new user from rated items, ratings and weights
``item_vectors()``     ``[n_items, d]`` item representations (cosine similarity)
``user_vectors()``     ``[n_users, d]`` user representations (cosine similarity)
``retrieval(rows)``    optional: ``(queries, candidates, finish)`` when scores are a
                       monotone function of a dot product (exact chunked top-k through
                       :class:`~recfit.index.ExactIndex`); ``None`` otherwise
=====================  =================================================================

**Adding a model family.** Subclass :class:`ModelAdapter`, implement the methods above
(``retrieval`` may return ``None``; ``item_vectors``, ``user_vectors`` and ``fold_in``
may raise :class:`~recfit.errors.ConfigError` saying the family cannot do it), and
register it with ``@register_adapter("your_registry_name")`` in a module that is imported
with :mod:`recfit.recommender` (add the import to ``recommender/__init__.py``). A family
with side features (two-tower) finds its fitted feature spaces and per-index feature
arrays in the :class:`AdapterContext` (``ctx.feature_spaces``, ``ctx.features["user"]``
...), which the bundle saves and restores. A family without an adapter falls back to
:class:`GenericAdapter`: predictions and recommendations through ``forward`` (and
``to_rating``, so a classifier's logits become ratings), no similarity and no fold-in.

Example:
    >>> import torch
    >>> from recfit.models import BiasedMF
    >>> m = BiasedMF(3, 4, n_factors=2, global_mean=3.0)
    >>> a = adapter_for(m, AdapterContext.default(3, 4))
    >>> type(a).__name__, tuple(a.score_all(a.user_rows(torch.tensor([0, 1]))).shape)
    ('DotAdapter', (2, 4))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from recfit.errors import ConfigError
from recfit.models.base import OutputKind, RatingModel, output_kind
from recfit.models.dot import DotBias
from recfit.models.mlp import EmbeddingNN
from recfit.models.svdpp import SVDpp

__all__ = [
    "ADAPTERS",
    "AdapterContext",
    "DotAdapter",
    "GenericAdapter",
    "ModelAdapter",
    "NNAdapter",
    "RetrievalForm",
    "SVDppAdapter",
    "TwoTowerAdapter",
    "adapter_for",
    "check_implicit_lists",
    "check_tower_inputs",
    "register_adapter",
]

RetrievalForm = tuple[Tensor, Tensor, Callable[[Tensor, Tensor], Tensor]]
"""``(queries [B, d], candidates [n_items, d], finish)``: ``finish(rows, dots)`` turns the
dot products of (a subset of) candidates into predicted ratings, monotonically."""


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter may need besides the model.

    Attributes:
        n_users: the size of the user vocabulary.
        n_items: the size of the item vocabulary.
        trained_users: ``bool`` per user index: the user has training ratings. Fold-in
            priors are fitted on these users' rows only (the others hold their
            initialisation).
        rating_scale: ``(lo, hi)`` of the ratings, when known.
        feature_spaces: fitted :class:`~recfit.data.FeatureSpace` objects by name
            (e.g. ``"user"``, ``"item"``), for families with side features.
        features: per side (``"user"``, ``"item"``), feature name → array with one row
            per vocabulary index (the output of ``FeatureSpace.transform``).
    """

    n_users: int
    n_items: int
    trained_users: np.ndarray
    rating_scale: tuple[float, float] | None = None
    feature_spaces: Mapping[str, Any] = field(default_factory=dict)
    features: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def default(cls, n_users: int, n_items: int) -> AdapterContext:
        """A context where every user counts as trained and nothing else is known.

        Example:
            >>> AdapterContext.default(2, 3).trained_users.tolist()
            [True, True]
        """
        return cls(n_users, n_items, np.ones(n_users, dtype=bool))


class ModelAdapter:
    """How the Recommender talks to one model family (see the module documentation).

    Args:
        model: the trained model, in evaluation mode on the CPU.
        ctx: sizes, trained users, rating scale and side features.
    """

    supports_similarity: ClassVar[bool] = True
    supports_fold_in: ClassVar[bool] = True

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        self.model = model
        self.ctx = ctx

    @property
    def family(self) -> str:
        """The model's registry name."""
        return type(self.model).registry_name or type(self.model).__name__

    @property
    def output_kind(self) -> OutputKind:
        """What the family predicts: ``"rating"`` or ``"score"`` (see
        :func:`recfit.models.output_kind`)."""
        return output_kind(self.model)

    def score(self, user_idx: Tensor, item_idx: Tensor) -> Tensor:
        """Predicted ratings of aligned (user index, item index) pairs, through ``forward``."""
        with torch.inference_mode():
            out = self.model({"user": user_idx.long(), "item": item_idx.long()})
            return self.model.to_rating(out).float()

    def predict(self, user_idx: Tensor, item_idx: Tensor) -> tuple[Tensor, Tensor]:
        """Predictions of aligned pairs and the ``bool`` mask of those answered by the
        model's baseline (user or item never trained; see
        :meth:`~recfit.models.RatingModel.apply_fallback`)."""
        with torch.inference_mode():
            batch = {"user": user_idx.long(), "item": item_idx.long()}
            out, fallback = self.model.apply_fallback(batch, self.model(batch))
            return self.model.to_rating(out).float(), fallback

    def user_rows(self, user_idx: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Rows of known users (by index), the input of :meth:`score_all`."""
        raise NotImplementedError

    def score_all(self, rows: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``[B, n_items]`` predicted ratings of every item for each row."""
        raise NotImplementedError

    def retrieval(self, rows: Tensor) -> RetrievalForm | None:
        """A dot-product form of :meth:`score_all`, or ``None`` (the default)."""
        return None

    def item_vectors(self) -> Tensor:
        """``[n_items, d]`` item representations compared by cosine similarity."""
        raise ConfigError(
            f"expected a model family with item representations, received {self.family!r} "
            "(register a ModelAdapter that implements item_vectors)"
        )

    def user_vectors(self) -> Tensor:
        """``[n_users, d]`` user representations compared by cosine similarity."""
        raise ConfigError(
            f"expected a model family with user representations, received {self.family!r} "
            "(register a ModelAdapter that implements user_vectors)"
        )

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        """A row for a new user who gave ``ratings`` (original scale) to ``item_idx``."""
        raise ConfigError(
            f"expected a model family that supports fold-in, received {self.family!r} "
            "(register a ModelAdapter that implements fold_in)"
        )

    # helpers shared by the factor adapters ------------------------------------
    def _prior(self, table: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and per-column variance of the trained users' rows (float64)."""
        mask = torch.from_numpy(np.asarray(self.ctx.trained_users, dtype=bool))
        rows = table.double()[mask] if bool(mask.any()) else table.double()
        mean = rows.mean(0)
        var = rows.var(0, unbiased=False) if rows.shape[0] > 1 else torch.ones_like(mean)
        return mean, var.clamp_min(1e-8)


A = TypeVar("A", bound=type[ModelAdapter])

ADAPTERS: dict[str, type[ModelAdapter]] = {}
"""Adapter classes by model registry name."""


def register_adapter(*names: str) -> Callable[[A], A]:
    """Class decorator: use this adapter for models registered under ``names``.

    Example:
        >>> @register_adapter("toy")
        ... class ToyAdapter(GenericAdapter):
        ...     pass
        >>> ADAPTERS.pop("toy").__name__
        'ToyAdapter'
    """

    def deco(cls: A) -> A:
        for name in names:
            ADAPTERS[name] = cls
        return cls

    return deco


def adapter_for(model: RatingModel, ctx: AdapterContext) -> ModelAdapter:
    """The registered adapter for ``model``'s family, else :class:`GenericAdapter`."""
    cls = ADAPTERS.get(type(model).registry_name, GenericAdapter)
    return cls(model, ctx)


def _solve(lhs: Tensor, rhs: Tensor) -> Tensor:
    out: Tensor = torch.linalg.solve(lhs, rhs)
    return out


def check_implicit_lists(model: SVDpp) -> None:
    """Check SVD++'s stored lists ``N(u)`` (they index the model's tables): offsets
    non-decreasing from 0 to the list length, items in ``[0, n_items)`` and strictly
    increasing within each user's list, as :meth:`~recfit.models.SVDpp.set_implicit`
    writes them.

    Raises:
        ConfigError: naming the buffer (``implicit_indptr`` or ``implicit_items``).
    """
    indptr, items = model.implicit_indptr.detach().cpu(), model.implicit_items.detach().cpu()
    n_users, n_items = model.user_factors.shape[0], model.item_factors.shape[0]
    if indptr.dim() != 1 or len(indptr) != n_users + 1:
        raise ConfigError(
            f"expected buffer 'implicit_indptr' of {n_users + 1} offsets, received shape "
            f"{list(indptr.shape)}"
        )
    steps = indptr.diff()
    if int(indptr[0]) != 0 or int(indptr[-1]) != len(items) or bool((steps < 0).any()):
        raise ConfigError(
            f"expected buffer 'implicit_indptr' non-decreasing from 0 to {len(items)} (the "
            f"length of 'implicit_items'), received first {int(indptr[0])}, last "
            f"{int(indptr[-1])}, smallest step {int(steps.min()) if len(steps) else 0}"
        )
    if len(items) and (int(items.min()) < 0 or int(items.max()) >= n_items):
        raise ConfigError(
            f"expected buffer 'implicit_items' in [0, {n_items}), received "
            f"{int(items.min())}..{int(items.max())}"
        )
    if len(items) > 1:
        starts = torch.zeros(len(items), dtype=torch.bool)
        starts[indptr[:-1][steps > 0]] = True
        if bool(((items.diff() <= 0) & ~starts[1:]).any()):
            raise ConfigError(
                "expected buffer 'implicit_items' strictly increasing within each user's "
                "list, received a repeated or unordered item"
            )


def check_tower_inputs(tower: nn.Module, where: str) -> None:
    """Check a two-tower tower's stored feature buffers against its embedding tables:
    category indices in ``[0, cardinality)``, one row per id.

    Raises:
        ConfigError: naming the tower and the buffer (``f_<feature>``).
    """
    inputs: Mapping[str, Mapping[str, Any]] = getattr(tower, "inputs", {}) or {}
    n_ids = int(getattr(tower, "n_ids", 0))
    for name, spec in inputs.items():
        buf = getattr(tower, f"f_{name}", None)
        if not isinstance(buf, Tensor):
            continue
        if buf.shape[:1] != (n_ids,):
            raise ConfigError(
                f"expected buffer '{where}.f_{name}' with {n_ids} rows, received shape "
                f"{list(buf.shape)}"
            )
        card = spec.get("cardinality")
        if card is None or not len(buf):
            continue
        lo, hi = int(buf.min()), int(buf.max())
        if lo < 0 or hi >= int(card):
            raise ConfigError(
                f"expected buffer '{where}.f_{name}' in [0, {card}) (the feature's "
                f"cardinality), received {lo}..{hi}"
            )


@register_adapter("dot", "mf")
class DotAdapter(ModelAdapter):
    """:class:`~recfit.models.DotBias` and :class:`~recfit.models.BiasedMF` (and, through
    :class:`SVDppAdapter`, :class:`~recfit.models.SVDpp`).

    A user row is ``[p_u, b_u]`` (factors then bias); the score of item ``i`` is
    ``link(mu + b_u + b_i + p_u · q_i)`` where ``link`` is the identity, or
    ``lo + (hi - lo) * sigmoid(x)`` with a ``y_range``.

    **Fold-in.** With item factors and biases fixed, the new row ``w = [p, b]`` minimises

        Σ_i w_i (r_i − link(mu + b_i + [q_i, 1] · w))² + reg · Σ_j (w_j − m_j)² / v_j

    where ``m`` and ``v`` are the mean and variance of the trained users' rows (a
    Gaussian prior fitted to the users the model learned; ``reg`` plays the part of the
    noise variance, in squared rating units). With the identity link that is one
    regularised least-squares solve (``torch.linalg.solve``, float64). With a sigmoid
    ``y_range`` the same solve on the logit of the rescaled ratings (clamped into
    ``(lo, hi)``) gives a start, then Gauss-Newton steps on the objective above, in
    rating units, finish it.
    """

    gauss_newton_steps: ClassVar[int] = 8

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        super().__init__(model, ctx)
        if not isinstance(model, DotBias):
            raise ConfigError(f"expected a DotBias or BiasedMF, received {type(model).__name__}")
        p = model.effective_user_factors().detach().float()
        self.item_factors = model.item_factors.detach().float()
        self.item_bias = model.item_bias.detach().float()
        self.rows_ = torch.cat([p, model.user_bias.detach().float().unsqueeze(1)], 1)
        self.mu = float(model.global_mean)
        self.y_range: tuple[float, float] | None = model.y_range
        self.d = p.shape[1]

    def _link(self, x: Tensor) -> Tensor:
        if self.y_range is None:
            return x
        lo, hi = self.y_range
        return torch.sigmoid(x) * (hi - lo) + lo

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.rows_.index_select(0, user_idx.long())

    def score_all(self, rows: Tensor) -> Tensor:
        x = rows[:, : self.d] @ self.item_factors.T
        x = x + (rows[:, self.d :] + self.mu) + self.item_bias
        return self._link(x)

    def retrieval(self, rows: Tensor) -> RetrievalForm:
        queries = torch.cat([rows[:, : self.d], torch.ones(rows.shape[0], 1)], 1)
        cands = torch.cat([self.item_factors, self.item_bias.unsqueeze(1)], 1)

        def finish(r: Tensor, dots: Tensor) -> Tensor:
            return self._link(dots + r[:, self.d :] + self.mu)

        return queries, cands, finish

    def item_vectors(self) -> Tensor:
        return self.item_factors

    def user_vectors(self) -> Tensor:
        return self.rows_[:, : self.d]

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        idx = item_idx.long()
        a = torch.cat(
            [self.item_factors.index_select(0, idx).double(), torch.ones(len(idx), 1).double()], 1
        )
        c = self.mu + self.item_bias.index_select(0, idx).double()
        r, w = ratings.double(), weights.double()
        m, v = self._fold_prior(idx, w)
        prec = reg / v
        if self.y_range is None:
            lhs = a.T @ (w.unsqueeze(1) * a) + torch.diag(prec)
            return _solve(lhs, a.T @ (w * (r - c)) + prec * m).float()
        lo, hi = self.y_range
        s = ((r - lo) / (hi - lo)).clamp(1e-3, 1 - 1e-3)
        z = torch.log(s) - torch.log1p(-s)
        row = _solve(a.T @ (w.unsqueeze(1) * a) + torch.diag(prec), a.T @ (w * (z - c)) + prec * m)
        for _ in range(self.gauss_newton_steps):
            sig = torch.sigmoid(a @ row + c)
            err = r - (lo + (hi - lo) * sig)
            j = ((hi - lo) * sig * (1 - sig)).unsqueeze(1) * a
            lhs = j.T @ (w.unsqueeze(1) * j) + torch.diag(prec)
            step = _solve(lhs, j.T @ (w * err) - prec * (row - m))
            row = row + step
            if float(step.abs().max()) < 1e-7:
                break
        return row.float()

    def _fold_prior(self, item_idx: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """Prior mean and variance of a new user's row (float64)."""
        return self._prior(self.rows_)


@register_adapter("svdpp")
class SVDppAdapter(DotAdapter):
    """:class:`~recfit.models.SVDpp`: a :class:`DotAdapter` over the users' effective
    factors (``p_u`` plus the implicit term of the items they rated in training).

    **Fold-in** solves the same objective for the effective row, with the prior centred
    on what the new user's rated items say: the mean of the trained users' explicit rows
    ``[p_u, b_u]`` plus ``[|N|^-alpha · Σ_{j ∈ N} y_j, 0]`` for ``N`` the items rated
    with a positive weight. The variance is that of the explicit rows.
    """

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        if not isinstance(model, SVDpp):
            raise ConfigError(f"expected an SVDpp, received {type(model).__name__}")
        check_implicit_lists(model)
        super().__init__(model, ctx)
        self.explicit_rows = torch.cat(
            [model.user_factors.detach().float(), model.user_bias.detach().float()[:, None]], 1
        )
        self.implicit_factors = model.implicit_factors.detach().float()
        self.alpha = model.alpha

    def _fold_prior(self, item_idx: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        m, v = self._prior(self.explicit_rows)
        rated = torch.unique(item_idx[weights > 0])
        if len(rated):
            y = self.implicit_factors.index_select(0, rated).double().sum(0)
            m = m.clone()
            m[: self.d] += y * len(rated) ** -self.alpha
        return m, v


@register_adapter("nn")
class NNAdapter(ModelAdapter):
    """:class:`~recfit.models.EmbeddingNN`: a user row is the user's embedding.

    ``score_all`` splits the MLP's first linear layer into its user and item halves,
    computes the item half once for the whole catalogue, and runs the rest of the MLP on
    ``[B * n_items]`` sums in blocks (same numbers as ``forward`` in evaluation mode).

    **Fold-in.** A fresh user embedding, started at the trained users' mean, minimises
    the same objective as :class:`DotAdapter` (squared error in rating units plus
    ``reg`` times the Gaussian prior of the trained users' embeddings) by full-batch
    L-BFGS (``fold_in_steps`` iterations, strong-Wolfe line search) with every model
    weight frozen. No randomness is involved: the same ratings give the same row.
    """

    fold_in_steps: ClassVar[int] = 100
    fold_in_restarts: ClassVar[int] = 5
    block_elems: ClassVar[int] = 1 << 22

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        super().__init__(model, ctx)
        if not isinstance(model, EmbeddingNN):
            raise ConfigError(f"expected an EmbeddingNN, received {type(model).__name__}")
        first = model.mlp[0]
        if not isinstance(first, nn.Linear):  # pragma: no cover - EmbeddingNN always has one
            raise ConfigError(f"expected the MLP to start with a Linear layer, received {first}")
        self.user_emb = model.user_emb.detach().float()
        self.item_emb = model.item_emb.detach().float()
        du = self.user_emb.shape[1]
        self.w_user = first.weight.detach()[:, :du]
        with torch.inference_mode():
            item_part = self.item_emb @ first.weight.detach()[:, du:].T
            if first.bias is not None:
                item_part = item_part + first.bias.detach()
        self.item_part = item_part.clone()
        self.rest = model.mlp[1:]
        self.y_range: tuple[float, float] | None = model.y_range

    def _head(self, h: Tensor) -> Tensor:
        out: Tensor = self.rest(h).squeeze(-1)
        if self.y_range is None:
            return out
        lo, hi = self.y_range
        return torch.sigmoid(out) * (hi - lo) + lo

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.user_emb.index_select(0, user_idx.long())

    def score_all(self, rows: Tensor) -> Tensor:
        n_items, hidden = self.item_part.shape
        per = max(1, self.block_elems // max(1, n_items * hidden))
        out = []
        with torch.inference_mode():
            user_part = rows @ self.w_user.T
            for b0 in range(0, rows.shape[0], per):
                up = user_part[b0 : b0 + per]
                h = (up.unsqueeze(1) + self.item_part.unsqueeze(0)).reshape(-1, hidden)
                out.append(self._head(h).reshape(up.shape[0], n_items))
        return torch.cat(out) if out else torch.zeros(0, n_items)

    def item_vectors(self) -> Tensor:
        return self.item_emb

    def user_vectors(self) -> Tensor:
        return self.user_emb

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        m, v = self._prior(self.user_emb)
        m, sd = m.float(), v.sqrt().float()
        items = self.item_part.index_select(0, item_idx.long())
        r, w = ratings.float(), weights.float()
        # whitened coordinates: row = m + sd * z, prior reg * |z|^2 (well conditioned)
        z = torch.zeros_like(m, requires_grad=True)
        w_user = self.w_user * sd  # [hidden, du] scaled columns
        base = items + m @ self.w_user.T

        def closure() -> Tensor:
            pred = self._head(base + z @ w_user.T)
            loss = (w * (r - pred) ** 2).sum() + reg * (z * z).sum()
            (z.grad,) = torch.autograd.grad(loss, [z])  # the model's weights stay frozen
            return loss.detach()

        # the objective has kinks (ReLU) where L-BFGS's curvature pairs go stale: restart
        # it from where it stopped until a restart no longer helps
        last = math.inf
        with torch.enable_grad():
            for _ in range(self.fold_in_restarts):
                opt = torch.optim.LBFGS(
                    [z], lr=1.0, max_iter=self.fold_in_steps, line_search_fn="strong_wolfe",
                    tolerance_grad=1e-9, tolerance_change=1e-12,
                )  # fmt: skip
                opt.step(closure)  # type: ignore[no-untyped-call]
                now = float(closure())
                if now > last - 1e-6 * max(1.0, abs(last)):
                    break
                last = now
        row = m + sd * z.detach()
        if not bool(torch.isfinite(row).all()):  # pragma: no cover - defensive
            raise ConfigError("expected a finite fold-in row, received NaN (check the ratings)")
        return row


@register_adapter("two_tower")
class TwoTowerAdapter(ModelAdapter):
    """:class:`~recfit.models.TwoTower`: a user row is the user's query vector.

    Scores are the model's dot products ``q_u · c_i`` (not ratings: a softmax-trained
    model's scores are logits); ranking goes through :class:`~recfit.index.ExactIndex`.
    Similar items and users compare candidate and query vectors by cosine.

    **Fold-in.** A new user's query vector ``q`` (with a free intercept ``b``) minimises

        Σ_i w_i (r_i − b − q · c_i)² + reg · Σ_j (q_j − m_j)² / v_j

    over the candidate vectors ``c_i`` of the rated items, where ``m``, ``v`` are the mean
    and variance of the trained users' query vectors: ratings above the user's own level
    pull ``q`` towards those items, ratings below push it away, and the prior keeps it
    among the users the model knows. Rankings ignore ``b`` and the scale of the scores.
    """

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        super().__init__(model, ctx)
        for side in ("query_tower", "candidate_tower"):
            tower = getattr(model, side, None)
            if isinstance(tower, nn.Module):
                check_tower_inputs(tower, side)
        with torch.inference_mode():
            self.queries_: Tensor = model.user_vectors().float()  # type: ignore[operator]
            self.cands_: Tensor = model.item_vectors().float()  # type: ignore[operator]

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.queries_.index_select(0, user_idx.long())

    def score_all(self, rows: Tensor) -> Tensor:
        return rows @ self.cands_.T

    def retrieval(self, rows: Tensor) -> RetrievalForm:
        return rows, self.cands_, lambda _r, dots: dots

    def item_vectors(self) -> Tensor:
        return self.cands_

    def user_vectors(self) -> Tensor:
        return self.queries_

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        c = self.cands_.index_select(0, item_idx.long()).double()
        a = torch.cat([c, torch.ones(len(c), 1, dtype=torch.float64)], 1)
        w, r = weights.double(), ratings.double()
        m, v = self._prior(self.queries_)
        prec = torch.cat([reg / v, torch.zeros(1, dtype=torch.float64)])  # intercept is free
        prec[-1] = 1e-8
        lhs = a.T @ (w.unsqueeze(1) * a) + torch.diag(prec)
        rhs = a.T @ (w * r) + prec * torch.cat([m, torch.zeros(1, dtype=torch.float64)])
        return _solve(lhs, rhs)[:-1].float()


class GenericAdapter(ModelAdapter):
    """Any :class:`~recfit.models.RatingModel`: scores through ``forward`` and ``to_rating``.

    A user row is the user's index (as a ``[B, 1]`` float tensor); ``score_all`` runs
    ``forward`` on every (user, item) pair in blocks. Similarity and fold-in raise
    :class:`~recfit.errors.ConfigError` until the family registers its own adapter.
    """

    supports_similarity = False
    supports_fold_in = False
    block_pairs: ClassVar[int] = 1 << 18

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return user_idx.double().unsqueeze(1)

    def score_all(self, rows: Tensor) -> Tensor:
        n = self.ctx.n_items
        users = rows[:, 0].long()
        per = max(1, self.block_pairs // max(1, n))
        items = torch.arange(n)
        out = []
        for b0 in range(0, len(users), per):
            u = users[b0 : b0 + per]
            uu = u.repeat_interleave(n)
            ii = items.repeat(len(u))
            out.append(self.score(uu, ii).reshape(len(u), n))
        return torch.cat(out) if out else torch.zeros(0, n)
