"""The adapters of recfit's model families (the contract is in
:mod:`recfit.recommender.adapter_base`, whose names this module also exports).

==============  ==================================================================
key             families and what a user row is
==============  ==================================================================
``dot``         ``dot``, ``mf`` (:class:`DotAdapter`): ``[p_u, b_u]``
``svdpp``       ``svdpp`` (:class:`SVDppAdapter`): the effective factors and bias
``nn``          ``nn`` (:class:`NNAdapter`): the user's embedding
``two_tower``   ``two_tower`` (:class:`TwoTowerAdapter`): the user's query vector
``generic``     ``classifier`` (:class:`GenericAdapter`): the user's index
``ordrec``      ``ordrec`` (:class:`OrdRecAdapter`): the user's index; similar items and
                users by its factors
``topn``        every top-N family (:class:`TopNAdapter`): the user's scores
``blend``       ``blend`` (:class:`~recfit.recommender.blend_adapter.BlendAdapter`): the
                user's index, or its members' fold-in rows
==============  ==================================================================

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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from recfit.errors import ConfigError
from recfit.models.base import RatingModel, squash
from recfit.recommender.adapter_base import (
    ADAPTERS,
    AdapterContext,
    GenericAdapter,
    ModelAdapter,
    RetrievalForm,
    adapter_for,
    register_adapter,
    solve,
)

if TYPE_CHECKING:
    from recfit.models.dot import DotBias
    from recfit.models.mlp import EmbeddingNN
    from recfit.models.ordrec import OrdRec
    from recfit.models.svdpp import SVDpp
    from recfit.models.topn import TopNModel
    from recfit.models.two_tower import TwoTower

__all__ = [
    "ADAPTERS",
    "AdapterContext",
    "DotAdapter",
    "GenericAdapter",
    "ModelAdapter",
    "NNAdapter",
    "OrdRecAdapter",
    "RetrievalForm",
    "SVDppAdapter",
    "TopNAdapter",
    "TwoTowerAdapter",
    "adapter_for",
    "check_implicit_lists",
    "check_tower_inputs",
    "register_adapter",
]


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


@register_adapter("dot")
class DotAdapter(ModelAdapter):
    """:class:`~recfit.models.DotBias` and :class:`~recfit.models.BiasedMF` (and, through
    :class:`SVDppAdapter`, :class:`~recfit.models.SVDpp`).

    A user row is ``[p_u, b_u]`` (factors then bias); the score of item ``i`` is
    ``link(mu + b_u + b_i + p_u · q_i)`` where ``link`` is the identity, or
    ``lo + (hi - lo) * sigmoid(x)`` with a ``y_range``. Any family whose model is a
    DotBias may use it (key ``"dot"``); a model without factors (biases only) answers
    predictions, rankings and fold-in (the user's bias alone), but no similarity
    (``supports_similarity`` is false and the vectors raise
    :class:`~recfit.errors.ConfigError`).

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
        model = cast("DotBias", model)
        self._check_stored(model)
        p = model.effective_user_factors().detach().float()
        self.item_factors = model.item_factors.detach().float()
        self.item_bias = model.item_bias.detach().float()
        self.rows_ = torch.cat([p, model.user_bias.detach().float().unsqueeze(1)], 1)
        self.mu = float(model.global_mean)
        self.y_range: tuple[float, float] | None = model.y_range
        self.d = p.shape[1]
        self.supports_similarity = self.d > 0  # no factors (biases only): nothing to compare

    def _check_stored(self, model: DotBias) -> None:
        """Check what the model stores besides its tables before any of it is read."""

    def _link(self, x: Tensor) -> Tensor:
        return squash(x, self.y_range)

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
        self._need_factors("item")
        return self.item_factors

    def user_vectors(self) -> Tensor:
        self._need_factors("user")
        return self.rows_[:, : self.d]

    def _need_factors(self, side: str) -> None:
        if not self.d:
            raise ConfigError(
                f"expected a model with factors for {side} representations, received "
                f"family {self.family!r} with 0 factors (biases only)"
            )

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
            return solve(lhs, a.T @ (w * (r - c)) + prec * m).float()
        lo, hi = self.y_range
        s = ((r - lo) / (hi - lo)).clamp(1e-3, 1 - 1e-3)
        z = torch.log(s) - torch.log1p(-s)
        row = solve(a.T @ (w.unsqueeze(1) * a) + torch.diag(prec), a.T @ (w * (z - c)) + prec * m)
        for _ in range(self.gauss_newton_steps):
            sig = torch.sigmoid(a @ row + c)
            err = r - (lo + (hi - lo) * sig)
            j = ((hi - lo) * sig * (1 - sig)).unsqueeze(1) * a
            lhs = j.T @ (w.unsqueeze(1) * j) + torch.diag(prec)
            step = solve(lhs, j.T @ (w * err) - prec * (row - m))
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
        super().__init__(model, ctx)
        model = cast("SVDpp", model)
        self.explicit_rows = torch.cat(
            [model.user_factors.detach().float(), model.user_bias.detach().float()[:, None]], 1
        )
        self.implicit_factors = model.implicit_factors.detach().float()
        self.alpha = model.alpha

    def _check_stored(self, model: DotBias) -> None:
        check_implicit_lists(cast("SVDpp", model))  # they index the tables

    def _fold_prior(self, item_idx: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        m, v = self._prior(self.explicit_rows)
        rated = torch.unique(item_idx[weights > 0])
        if len(rated):
            y = self.implicit_factors.index_select(0, rated).double().sum(0)
            m = m.clone()
            m[: self.d] += y * len(rated) ** -self.alpha
        return m, v


class _StoredVectors(ModelAdapter):
    """An adapter whose user rows are its stored user vectors ``users_`` and whose item
    vectors are ``items_`` (float32 tables, one row per index)."""

    users_: Tensor
    items_: Tensor

    def user_rows(self, user_idx: Tensor) -> Tensor:
        return self.users_.index_select(0, user_idx.long())

    def item_vectors(self) -> Tensor:
        return self.items_

    def user_vectors(self) -> Tensor:
        return self.users_


@register_adapter("nn")
class NNAdapter(_StoredVectors):
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
        model = cast("EmbeddingNN", model)
        first = model.mlp[0]
        if not isinstance(first, nn.Linear):  # pragma: no cover - EmbeddingNN always has one
            raise ConfigError(f"expected the MLP to start with a Linear layer, received {first}")
        self.users_ = model.user_emb.detach().float()
        self.items_ = model.item_emb.detach().float()
        du = self.users_.shape[1]
        self.w_user = first.weight.detach()[:, :du]
        with torch.inference_mode():
            item_part = self.items_ @ first.weight.detach()[:, du:].T
            if first.bias is not None:
                item_part = item_part + first.bias.detach()
        self.item_part = item_part.clone()
        self.rest = model.mlp[1:]
        self.y_range: tuple[float, float] | None = model.y_range

    def _head(self, h: Tensor) -> Tensor:
        return squash(self.rest(h).squeeze(-1), self.y_range)

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

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        m, v = self._prior(self.users_)
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
class TwoTowerAdapter(_StoredVectors):
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
        tt = cast("TwoTower", model)
        check_tower_inputs(tt.query_tower, "query_tower")
        check_tower_inputs(tt.candidate_tower, "candidate_tower")
        with torch.inference_mode():
            self.users_ = tt.user_vectors().float()
            self.items_ = tt.item_vectors().float()

    def score_all(self, rows: Tensor) -> Tensor:
        return rows @ self.items_.T

    def retrieval(self, rows: Tensor) -> RetrievalForm:
        return rows, self.items_, lambda _r, dots: dots

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        c = self.items_.index_select(0, item_idx.long()).double()
        a = torch.cat([c, torch.ones(len(c), 1, dtype=torch.float64)], 1)
        w, r = weights.double(), ratings.double()
        m, v = self._prior(self.users_)
        prec = torch.cat([reg / v, torch.zeros(1, dtype=torch.float64)])  # intercept is free
        prec[-1] = 1e-8
        lhs = a.T @ (w.unsqueeze(1) * a) + torch.diag(prec)
        rhs = a.T @ (w * r) + prec * torch.cat([m, torch.zeros(1, dtype=torch.float64)])
        return solve(lhs, rhs)[:-1].float()


@register_adapter("ordrec")
class OrdRecAdapter(GenericAdapter):
    """:class:`~recfit.models.OrdRec`: predictions and rankings through ``forward`` (a
    user row is the user's index, as :class:`GenericAdapter`); similar items compare the
    item factors ``q_i`` and similar users the effective user factors (``p_u`` plus the
    implicit term) by cosine: the vectors whose dot product is the score. No fold-in."""

    supports_similarity = True
    any_family = False

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        super().__init__(model, ctx)
        with torch.inference_mode():
            vectors = cast("OrdRec", model)
            self.items_, self.users_ = vectors.item_vectors(), vectors.user_vectors()

    def item_vectors(self) -> Tensor:
        return self.items_

    def user_vectors(self) -> Tensor:
        return self.users_


@register_adapter("topn")
class TopNAdapter(ModelAdapter):
    """Every top-N family (:class:`~recfit.models.topn.TopNModel`): a user row is the
    user's scores of every item, ``[n_items]``.

    Known users are scored by ``score_users`` from the training positives the model
    stored at its fit (the rows it learned from, with their confidence values); a new
    user by ``score_history`` from the items given (fold-in): each item of positive
    weight is one positive (1, or rating × weight when the model's confidence is
    ``"value"``); ``reg`` is not used. Similar items come from the model's
    ``item_similarity`` (a column of EASE's ``B``, of the item-item ``S``); a family
    without one (popularity) has no similarity. There are no user vectors.
    """

    no_item_vectors = "a top-N family without item-item similarities"

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        super().__init__(model, ctx)
        self.topn = cast("TopNModel", model)
        has = self.topn.item_similarity(np.zeros(0, np.int64)) is not None
        self.supports_similarity = self.direct_item_similarity = has

    def user_rows(self, user_idx: Tensor) -> Tensor:
        users = user_idx.long().cpu().numpy()
        scores = self.topn.score_users(users, self.topn.positives(users))
        return torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))

    def score_all(self, rows: Tensor) -> Tensor:
        return rows

    def item_similarity(self, item_idx: Tensor) -> Tensor | None:
        sim = self.topn.item_similarity(item_idx.long().cpu().numpy())
        return None if sim is None else torch.from_numpy(np.ascontiguousarray(sim, np.float32))

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        w = weights.double().cpu().numpy()
        keep = w > 0
        items = item_idx.long().cpu().numpy()[keep]
        if self.topn.confidence == "value":
            values = ratings.double().cpu().numpy()[keep] * w[keep]
        else:
            values = np.ones(len(items))
        x = sp.csr_matrix(
            (values.astype(np.float32), (np.zeros(len(items), np.int64), items)),
            shape=(1, self.ctx.n_items),
        )
        if self.topn.confidence == "binary":
            x.data[:] = 1.0  # an item given twice is one positive
        return torch.from_numpy(np.ascontiguousarray(self.topn.score_history(x)[0], np.float32))
