"""The arguments of a Recommender, checked: the model (copied for serving), each user's
training (seen) items, item popularity, ids (one or many) and list lengths."""

from __future__ import annotations

from typing import Any

import numpy as np

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError
from recfit.index import ItemSets
from recfit.models.base import RatingModel
from recfit.models.registry import build_model

__all__ = [
    "as_list",
    "check_model_sizes",
    "check_n",
    "popularity_of",
    "seen_sets",
    "serving_copy",
]


def as_list(values: Any) -> list[Any]:
    """One id or many → a list of ids.

    Example:
        >>> as_list(5), as_list("a"), as_list(np.array([[1], [2]])), as_list((3, 4))
        ([5], ['a'], [1, 2], [3, 4])
    """
    if isinstance(values, str | bytes | int | float | np.generic) or values is None:
        return [values]
    if isinstance(values, np.ndarray):
        return values.reshape(-1).tolist()
    return list(values)


def check_n(n: Any, name: str = "n") -> int:
    """``n`` as an ``int`` >= 1.

    Raises:
        ConfigError: anything else (``bool`` included).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"expected {name} as an integer >= 1, received {n!r}")
    return int(n)


def seen_sets(seen: ItemSets | Interactions, n_users: int, n_items: int) -> ItemSets:
    """Each user's training items as :class:`~recfit.index.ItemSets` of item indices: from
    training interactions (rows of weight 0 do not count, repeats once) or checked sets.

    Raises:
        DataError: another type, not one set per user, or an index out of range.
    """
    if isinstance(seen, Interactions):
        keep = seen.weights() > 0
        u, i = seen.user[keep], seen.item[keep]
        pairs = np.unique(u.astype(np.int64) * n_items + i)  # sorted, duplicates dropped
        return ItemSets.from_pairs(pairs // n_items, pairs % n_items, n_users)
    if not isinstance(seen, ItemSets):
        raise DataError(
            f"expected seen items as ItemSets or Interactions, received {type(seen).__name__}",
            column="seen",
        )
    if seen.n_queries != n_users:
        raise DataError(
            f"expected one seen-item set per user ({n_users}), received {seen.n_queries}",
            column="seen",
        )
    if len(seen.indices) and (seen.indices.min() < 0 or seen.indices.max() >= n_items):
        raise DataError(
            f"expected seen item indices in [0, {n_items}), received "
            f"{int(seen.indices.min())}..{int(seen.indices.max())}",
            column="seen",
        )
    return seen


def popularity_of(popularity: Any, seen: ItemSets, n_items: int) -> np.ndarray:
    """``float64`` popularity per item: as given, or how many users have each item in
    ``seen``.

    Raises:
        DataError: not one finite value per item.
    """
    if popularity is None:
        return np.bincount(seen.indices, minlength=n_items).astype(np.float64)
    pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
    if len(pop) != n_items or not np.isfinite(pop).all():
        raise DataError(
            f"expected {n_items} finite popularity values, received {len(pop)}",
            column="popularity",
        )
    return pop


def check_model_sizes(model: Any, n_users: int, n_items: int) -> None:
    """``model`` is a :class:`~recfit.models.RatingModel` sized for the vocabularies.

    Raises:
        ConfigError: another type, or ``n_users`` / ``n_items`` that differ.
    """
    if not isinstance(model, RatingModel):
        raise ConfigError(f"expected a RatingModel, received {type(model).__name__}")
    for side, size in (("n_users", n_users), ("n_items", n_items)):
        got = getattr(model, side, size)
        if isinstance(got, int) and got != size:
            raise ConfigError(
                f"expected a model with {side}={size} (the vocabulary), received {got}"
            )


def serving_copy(model: RatingModel, seen: ItemSets | Interactions) -> RatingModel:
    """A fresh copy of ``model`` from its config and weights, on the CPU, in evaluation
    mode and frozen: later training of ``model`` changes nothing, and transient state
    (e.g. a last batch with autograd history) is not copied. A rating model without a
    training record gets one from ``seen`` when those are the training interactions."""
    m = build_model(model.config())
    m.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    m.eval().requires_grad_(False)
    if hasattr(m, "train_user_count") and not m.has_record and isinstance(seen, Interactions):
        # which users and items were trained, and the baseline for the others
        m.record_training(seen.user, seen.item, seen.rating, seen.weights())
    return m
