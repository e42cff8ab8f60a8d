"""The adapter contract: what the :class:`~recfit.recommender.Recommender` needs from a model family.

The Recommender never reaches into a model's parameters itself. It asks an *adapter*,
chosen by the model's family: ``family_of(model).adapter`` (see
:mod:`recfit.models.registry`) is the key an adapter class is registered under
(``"dot"``, ``"svdpp"``, ``"nn"``, ``"two_tower"``, ``"generic"``...). An adapter works on
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
``item_similarity(i)`` optional: ``[len(i), n_items]`` item-item similarities of a
                       family that has them directly (top-N item models); ``None``
                       otherwise
``user_vectors()``     ``[n_users, d]`` user representations (cosine similarity)
``source(query)``      optional: which part of the model answers similar items or a
                       fold-in when not the whole model (a blend's member), in words
``retrieval(rows)``    optional: ``(queries, candidates, finish)`` when scores are a
                       monotone function of a dot product (exact chunked top-k through
                       :class:`~recfit.index.ExactIndex`); ``None`` otherwise
=====================  =================================================================

**Adding an adapter.** A new family usually reuses an existing key (a bias-only model
is a dot model without factors). Otherwise subclass :class:`ModelAdapter`, implement the
methods above (``retrieval`` may return ``None``; ``item_vectors``, ``user_vectors`` and
``fold_in`` may raise :class:`~recfit.errors.ConfigError` saying the family cannot do
it), register it with ``@register_adapter("your_key")`` in
:mod:`recfit.recommender.adapters`, and name ``"your_key"`` as the family's ``adapter``.
A family with side features (two-tower) finds its fitted feature spaces and per-index
feature arrays in the :class:`AdapterContext` (``ctx.feature_spaces``,
``ctx.features["user"]`` ...), which the bundle saves and restores. The key
``"generic"`` is :class:`GenericAdapter`: predictions and recommendations through
``forward`` (and ``to_rating``, so a classifier's logits become ratings), no similarity
and no fold-in.

Example:
    >>> import torch
    >>> from recfit.models import RatingClassifier
    >>> m = RatingClassifier(3, 4, layers=(4,)).eval()
    >>> a = adapter_for(m, AdapterContext.default(3, 4))
    >>> type(a).__name__, tuple(a.score_all(a.user_rows(torch.tensor([0, 1]))).shape)
    ('GenericAdapter', (2, 4))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor

from recfit.errors import ConfigError
from recfit.models.base import OutputKind, RatingModel, output_kind
from recfit.models.registry import family_of

__all__ = [
    "ADAPTERS",
    "AdapterContext",
    "GenericAdapter",
    "ModelAdapter",
    "RetrievalForm",
    "adapter_for",
    "register_adapter",
    "solve",
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

    supports_similarity: bool = True
    """Whether :meth:`item_vectors` and :meth:`user_vectors` answer (an adapter may say
    no for one model, e.g. a dot model without factors)."""
    supports_fold_in: bool = True
    direct_item_similarity: bool = False
    """Whether similar items come from :meth:`item_similarity` (an item-item model)
    instead of the cosine of :meth:`item_vectors`."""
    keys: ClassVar[tuple[str, ...]] = ()
    """The adapter keys it is registered under (:func:`register_adapter`)."""
    any_family: ClassVar[bool] = False
    """Whether it answers for a model of any family (else only for families naming one
    of its ``keys`` as their ``adapter``)."""
    no_item_vectors: ClassVar[str] = (
        "it answers predictions and top-N lists only; similar items need a family with item "
        "vectors, such as dot, mf or svdpp"
    )
    """Why :meth:`item_vectors` does not answer, said in its error (an adapter that
    never has item vectors says which families it serves)."""

    def __init__(self, model: RatingModel, ctx: AdapterContext) -> None:
        fam = family_of(model)
        if not self.any_family and fam.adapter not in self.keys:
            raise ConfigError(
                f"expected a model of a family whose adapter is one of {list(self.keys)} "
                f"for {type(self).__name__}, received family {fam.name!r} (adapter "
                f"{fam.adapter!r})"
            )
        self.model = model
        self.ctx = ctx

    @property
    def family(self) -> str:
        """The model's family name."""
        return family_of(self.model).name

    @property
    def output_kind(self) -> OutputKind:
        """What the family predicts: ``"rating"`` or ``"score"`` (see
        :func:`recfit.models.output_kind`)."""
        return output_kind(self.model)

    def source(self, query: Literal["similar", "fold_in"]) -> str | None:
        """Which part of the model answers ``query`` (similar items and users, or a new
        user's predicted ratings), in words, when it is not the whole model (a blend's
        member: :class:`~recfit.recommender.blend_adapter.BlendAdapter`); ``None`` (the
        default): the model itself."""
        return None

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
            f"({self.no_item_vectors})"
        )

    def item_similarity(self, item_idx: Tensor) -> Tensor | None:
        """``[len(item_idx), n_items]`` similarity of each item to every item where the
        family defines one directly (an item-item model), else ``None`` (the default:
        similar items compare :meth:`item_vectors` by cosine)."""
        return None

    def user_vectors(self) -> Tensor:
        """``[n_users, d]`` user representations compared by cosine similarity."""
        raise ConfigError(
            f"expected a model family with user representations, received {self.family!r} "
            "(similar users need a family with user vectors, such as dot, mf or svdpp)"
        )

    def fold_in(
        self, item_idx: Tensor, ratings: Tensor, weights: Tensor, *, reg: float = 1.0
    ) -> Tensor:
        """A row for a new user who gave ``ratings`` (original scale) to ``item_idx``."""
        raise ConfigError(
            f"expected a model family that supports fold-in, received {self.family!r} "
            "(a new user from a few ratings needs a family with fold-in, such as dot, mf or "
            "svdpp; a top-N family folds in from items)"
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
    """Class decorator: register this adapter under the keys ``names`` (the value of a
    family's ``adapter``).

    Example:
        >>> @register_adapter("toy")
        ... class ToyAdapter(GenericAdapter):
        ...     pass
        >>> ADAPTERS.pop("toy").__name__, ToyAdapter.keys
        ('ToyAdapter', ('toy',))
    """

    def deco(cls: A) -> A:
        cls.keys = tuple(names)
        for name in names:
            ADAPTERS[name] = cls
        return cls

    return deco


def adapter_for(model: RatingModel, ctx: AdapterContext) -> ModelAdapter:
    """The adapter registered under the key ``model``'s family names
    (``family_of(model).adapter``, see :mod:`recfit.models.registry`).

    Raises:
        ConfigError: the model belongs to no registered family, or no adapter is
            registered under its family's key.
    """
    fam = family_of(model)
    cls = ADAPTERS.get(fam.adapter)
    if cls is None:
        raise ConfigError(
            f"expected an adapter registered under {fam.adapter!r} (the adapter of family "
            f"{fam.name!r}), received none among {sorted(ADAPTERS)}"
        )
    return cls(model, ctx)


def solve(lhs: Tensor, rhs: Tensor) -> Tensor:
    """``lhs⁻¹ rhs`` (``torch.linalg.solve``), typed."""
    out: Tensor = torch.linalg.solve(lhs, rhs)
    return out


@register_adapter("generic")
class GenericAdapter(ModelAdapter):
    """Any :class:`~recfit.models.RatingModel`: scores through ``forward`` and ``to_rating``.

    A user row is the user's index (as a ``[B, 1]`` float tensor); ``score_all`` runs
    ``forward`` on every (user, item) pair in blocks. Similarity and fold-in raise
    :class:`~recfit.errors.ConfigError` until the family registers its own adapter.
    """

    supports_similarity = False
    supports_fold_in = False
    any_family = True
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
