"""The adapter of the ``blend`` family: the blend answers what its members can answer.

A :class:`~recfit.models.blend.Blend` has no representation of its own, so the queries
that need one go to its members, and the answer says which member gave it:

* **predictions and top-N lists of known users**: the blend itself, through ``forward``
  (each member's prediction, its fallback applied, weighted, clipped), as
  :class:`~recfit.recommender.adapter_base.GenericAdapter` does;
* **similar items and similar users**: the vectors of one member, the *vector member*:
  among the members whose family has item vectors (dot, mf, svdpp, nn...), the one with
  the largest blend weight, i.e. the one that carries most of the blend (ties: the
  first; the copies of one model trained with other seeds, as ``model="auto"`` stores
  an average of seeds, count together, and the first copy answers). A blend has no vectors of its own, and the cosine of one member's vectors is
  an honest, named answer; mixing members' vectors would be none of them;
* **fold-in of a new user**: when every member folds in (dot, mf, svdpp, baseline...),
  each member folds the ratings into its own row and the new user's predicted ratings
  are the blend's (the same weights, intercept and clip over the members' fold-in
  predictions). When some member cannot fold in (autorec, bmf, timesvdpp, fm have no
  fold-in), a blend prediction for a new user cannot be made: the *fold-in member*
  (among those that fold in, the one with the largest blend weight) answers alone, in
  its own predicted ratings, and :meth:`BlendAdapter.source` says so (the
  ``reason`` of the answer). Never a different model silently.

A user row is ``[u, r_1, ..., r_k]``: ``u`` the user's index for a known user (the other
columns zero), ``-1`` for a folded-in user, whose member rows ``r_j`` (each member's
adapter's own row, zeros for a member that does not fold in) follow.

Example:
    >>> import torch
    >>> from recfit.data import Interactions
    >>> from recfit.models import create_model
    >>> d = Interactions.from_arrays([0, 0, 1, 1], [0, 1, 0, 2], [5.0, 3.0, 4.0, 2.0])
    >>> m = create_model("blend", d, blend_members=("baseline", "mf"), seed=0).eval()
    >>> a = adapter_for(m, AdapterContext.default(2, 3))
    >>> type(a).__name__, a.supports_fold_in, a.source("fold_in") is None
    ('BlendAdapter', True, True)
    >>> row = a.fold_in(torch.tensor([0]), torch.tensor([5.0]), torch.ones(1))
    >>> tuple(a.score_all(row.unsqueeze(0)).shape)
    (1, 3)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal, cast

import torch
from torch import Tensor

from recfit.errors import ConfigError
from recfit.models.base import RatingModel
from recfit.models.blend import Blend
from recfit.models.registry import family_of
from recfit.recommender.adapter_base import (
    AdapterContext,
    GenericAdapter,
    ModelAdapter,
    adapter_for,
    register_adapter,
)

__all__ = ["BlendAdapter"]

Query = Literal["similar", "fold_in"]


@register_adapter("blend")
class BlendAdapter(GenericAdapter):
    """A :class:`~recfit.models.blend.Blend` (see the module documentation)."""

    any_family = False

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        super().__init__(model, ctx)
        if family_of(model).name != "blend":
            raise ConfigError(f"expected a Blend, received {type(model).__name__}")
        blend = cast(Blend, model)
        self.members_ = blend.member_models()
        self.weights_ = blend.blend_weights.detach().double().cpu()
        self.intercept_ = float(blend.blend_intercept.detach().item())
        self.clip_ = blend.clip
        self.adapters_: list[ModelAdapter] = [adapter_for(m, ctx) for m in self.members_]
        probe = torch.zeros(1, dtype=torch.long)
        rows = [a.user_rows(probe) for a in self.adapters_]
        self.widths_ = [int(r.shape[1]) for r in rows]
        self.dtypes_ = [r.dtype for r in rows]
        self.vector_member = self._heaviest(lambda a: a.supports_similarity)
        self.fold_member = self._heaviest(lambda a: a.supports_fold_in)
        self.full_fold_in = all(a.supports_fold_in for a in self.adapters_)
        self.supports_similarity = self.vector_member is not None
        self.supports_fold_in = self.fold_member is not None

    def _heaviest(self, ok: Callable[[ModelAdapter], bool]) -> int | None:
        """The member with the largest blend weight among those ``ok`` says yes to, the
        weights of the copies of one model that differ only in their seed summed (the
        first copy stands for them)."""
        found = [k for k, a in enumerate(self.adapters_) if ok(a)]
        if not found:
            return None
        keys = [json.dumps({k: v for k, v in m.config().items() if k != "seed"},
                           sort_keys=True, default=str) for m in self.members_]  # fmt: skip
        first = {key: keys.index(key) for key in keys}
        weight = {key: 0.0 for key in keys}
        for key, w in zip(keys, self.weights_.tolist(), strict=True):
            weight[key] += w
        return max(found, key=lambda k: (weight[keys[k]], first[keys[k]] == k, -k))

    def _label(self, k: int) -> str:
        return f"blend member {k} ({family_of(self.members_[k]).name})"

    def source(self, query: Query) -> str | None:
        """Which member answers ``query`` (``"similar"``: similar items and users;
        ``"fold_in"``: a new user's predicted ratings), in words; ``None`` when the
        blend itself answers (fold-in with every member folding in)."""
        if query == "similar" and self.vector_member is not None:
            return (
                f"{self._label(self.vector_member)}: the member with the largest blend weight "
                "among those with item vectors (its copies with other seeds counted together)"
            )
        if query == "fold_in" and self.fold_member is not None and not self.full_fold_in:
            cannot = [
                family_of(m).name
                for m, a in zip(self.members_, self.adapters_, strict=True)
                if not a.supports_fold_in
            ]
            which = (
                f"member {cannot[0]} cannot"
                if len(cannot) == 1
                else (f"members {', '.join(cannot)} cannot")
            )
            return (
                f"{self._label(self.fold_member)} alone, in its own predicted ratings: the "
                f"blend's {which} fold in a new user, so no blend prediction can be made for one"
            )
        return None

    # ------------------------------------------------------------------ rows and scores
    def user_rows(self, user_idx: Tensor) -> Tensor:
        rows = torch.zeros(len(user_idx), 1 + sum(self.widths_), dtype=torch.float64)
        rows[:, 0] = user_idx.double()
        return rows

    def _parts(self, rows: Tensor) -> list[Tensor]:
        out, start = [], 1
        for width, dtype in zip(self.widths_, self.dtypes_, strict=True):
            out.append(rows[:, start : start + width].to(dtype))
            start += width
        return out

    def score_all(self, rows: Tensor) -> Tensor:
        new = rows[:, 0] < 0
        if not bool(new.any()):
            return super().score_all(rows[:, :1])
        out = torch.zeros(rows.shape[0], self.ctx.n_items)
        if bool((~new).any()):
            out[~new] = super().score_all(rows[~new][:, :1])
        out[new] = self._score_new(rows[new])
        return out

    def _score_new(self, rows: Tensor) -> Tensor:
        """Predicted ratings of every item for folded-in rows (see the module docs)."""
        parts = self._parts(rows)
        with torch.inference_mode():
            if not self.full_fold_in:
                k = cast(int, self.fold_member)
                return self.adapters_[k].score_all(parts[k]).float()
            total = torch.full(
                (rows.shape[0], self.ctx.n_items), self.intercept_, dtype=torch.float64
            )
            for w, a, p in zip(self.weights_.tolist(), self.adapters_, parts, strict=True):
                total += w * a.score_all(p).double()
            if self.clip_ is not None:
                total = total.clamp(self.clip_[0], self.clip_[1])
            return total.float()

    # ------------------------------------------------------------------ through a member
    def _member(self, k: int | None, what: str) -> ModelAdapter:
        if k is None:
            names = [family_of(m).name for m in self.members_]
            raise ConfigError(
                f"expected a blend with a member that has {what}, received members "
                f"{', '.join(names)} (dot, mf, svdpp and nn have both)"
            )
        return self.adapters_[k]

    def item_vectors(self) -> Tensor:
        """The item vectors of the vector member (:meth:`source`)."""
        return self._member(self.vector_member, "item vectors").item_vectors()

    def user_vectors(self) -> Tensor:
        """The user vectors of the vector member (:meth:`source`)."""
        return self._member(self.vector_member, "user vectors").user_vectors()

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        """A folded-in row: each member that folds in gives its own row (every member
        when all can, else the fold-in member alone; :meth:`source`)."""
        only = None if self.full_fold_in else self._member(self.fold_member, "fold-in")
        row = torch.zeros(1 + sum(self.widths_), dtype=torch.float64)
        row[0] = -1.0
        start = 1
        for a, width in zip(self.adapters_, self.widths_, strict=True):
            if only is None or a is only:
                r = a.fold_in(item_idx, ratings, weights, reg=reg)
                row[start : start + width] = r.double().reshape(-1)
            start += width
        return row
