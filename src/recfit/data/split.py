"""Train/test splits on index arrays.

Every split returns a :class:`Split`: the parent :class:`Interactions` plus the row
positions of each part. No rows are copied until ``train`` or ``test`` is read, no row
is in two parts, and the same ``seed`` gives the same split.

Users or items in the test part that never occur in the training part ("cold" rows)
follow a policy: ``cold="keep"`` keeps them and counts them; ``cold="drop"`` moves
them out of the test part and counts them (they are reported, never silently lost).

Specs understood by :func:`split_by_spec` (and by :func:`recfit.data.make_split`, which
also takes ml-100k's predefined ``u1`` … ``u5``, ``ua``, ``ub``):

====================  ==========================================================
``random:0.2``        20% of ratings at random
``user:0.2``          20% of each user's ratings at random (at least one kept in train)
``temporal:0.2``      the latest 20% of ratings by timestamp (global cut)
``last:1``            each user's last ``k`` ratings by time (leave-last-k)
``kfold:5:0``         fold 0 of a 5-fold partition of the ratings
``users:0.1:0.8``     strong generalisation: 10% of the users held out; 80% of each
                      one's rows given for fold-in, the other 20% ranked
====================  ==========================================================

Strong generalisation (:func:`strong_generalisation`) makes three parts: the training
rows (no held-out user in them), the held-out users' given rows (``fold_in_idx``, read
as :attr:`Split.fold_in`; a model scores those users from these items only) and their
rows to rank (``test_idx``). :attr:`Split.fold_in_users` names the folded-in users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError

__all__ = [
    "ColdPolicy",
    "Split",
    "kfold",
    "leave_last_k",
    "per_user_split",
    "random_split",
    "split_by_spec",
    "split_from_pairs",
    "strong_generalisation",
    "temporal_split",
]

ColdPolicy = Literal["keep", "drop"]


@dataclass(frozen=True, eq=False)
class Split:
    """Disjoint parts of one :class:`Interactions`, as row positions.

    Attributes:
        data: the parent data; every part shares its vocabularies.
        train_idx: sorted ``int64`` row positions of the training part.
        test_idx: sorted ``int64`` row positions of the test part.
        name: the spec that made the split.
        dropped_idx: rows removed by ``cold="drop"`` (in no part).
        cold: the cold policy applied.
        fold_in_idx: sorted ``int64`` row positions given for fold-in (strong
            generalisation: the held-out users' known rows; empty otherwise).
    """

    data: Interactions
    train_idx: np.ndarray
    test_idx: np.ndarray
    name: str
    dropped_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cold: ColdPolicy = "keep"
    fold_in_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @cached_property
    def train(self) -> Interactions:
        """The training rows."""
        return self.data.take(self.train_idx)

    @cached_property
    def test(self) -> Interactions:
        """The test rows."""
        return self.data.take(self.test_idx)

    @cached_property
    def fold_in(self) -> Interactions:
        """The rows given for fold-in (strong generalisation; empty otherwise)."""
        return self.data.take(self.fold_in_idx)

    @property
    def fold_in_users(self) -> np.ndarray:
        """Sorted ``int64`` indices of the users scored from their fold-in rows only."""
        return np.unique(self.data.user[self.fold_in_idx]).astype(np.int64)

    def with_cold(self, cold: ColdPolicy) -> Split:
        """The same split with the cold policy ``cold`` applied (dropped rows restored first)."""
        test = np.concatenate([self.test_idx, self.dropped_idx])
        return _finish(self.data, self.train_idx, test, self.name, cold, self.fold_in_idx)

    def cold_counts(self) -> dict[str, int]:
        """Test users/items absent from training, and the test rows they hold (a user
        with fold-in rows is not cold)."""
        cold_u, cold_i = _cold_masks(self.data, self.train_idx, self.test_idx, self.fold_in_idx)
        return {
            "cold_users": len(np.unique(self.data.user[self.test_idx][cold_u])),
            "cold_items": len(np.unique(self.data.item[self.test_idx][cold_i])),
            "cold_rows": int((cold_u | cold_i).sum()),
        }

    def summary(self) -> dict[str, Any]:
        """Sizes of each part and the cold users/items, with the policy applied."""
        d = self.data
        out: dict[str, Any] = {
            "split": self.name,
            "ratings": len(d),
            "train": len(self.train_idx),
            "test": len(self.test_idx),
            "train_users": len(np.unique(d.user[self.train_idx])),
            "train_items": len(np.unique(d.item[self.train_idx])),
            "test_users": len(np.unique(d.user[self.test_idx])),
            "test_items": len(np.unique(d.item[self.test_idx])),
            "cold_policy": self.cold,
            "dropped_cold_rows": len(self.dropped_idx),
        }
        if len(self.fold_in_idx):
            out["fold_in"] = len(self.fold_in_idx)
            out["fold_in_users"] = len(self.fold_in_users)
        out.update(self.cold_counts())
        return out


def _cold_masks(
    data: Interactions,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    fold_in_idx: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    seen_u = np.zeros(data.n_users, dtype=bool)
    seen_i = np.zeros(data.n_items, dtype=bool)
    seen_u[data.user[train_idx]] = True
    if fold_in_idx is not None:
        seen_u[data.user[fold_in_idx]] = True
    seen_i[data.item[train_idx]] = True
    return ~seen_u[data.user[test_idx]], ~seen_i[data.item[test_idx]]


def _finish(
    data: Interactions,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    name: str,
    cold: ColdPolicy,
    fold_in_idx: np.ndarray | None = None,
) -> Split:
    if cold not in ("keep", "drop"):
        raise ConfigError(f"expected cold='keep' or 'drop', received {cold!r}")
    train_idx = np.sort(np.asarray(train_idx, dtype=np.int64))
    test_idx = np.sort(np.asarray(test_idx, dtype=np.int64))
    fold_in = np.sort(np.asarray([] if fold_in_idx is None else fold_in_idx, dtype=np.int64))
    dropped = np.zeros(0, dtype=np.int64)
    if cold == "drop" and len(test_idx):
        cold_u, cold_i = _cold_masks(data, train_idx, test_idx, fold_in)
        is_cold = cold_u | cold_i
        dropped = test_idx[is_cold]
        test_idx = test_idx[~is_cold]
    return Split(data, train_idx, test_idx, name, dropped, cold, fold_in)


def _check_frac(frac: float, param: str = "test_frac") -> float:
    if not 0.0 < float(frac) < 1.0:
        raise ConfigError(f"expected {param} in (0, 1), received {frac!r}")
    return float(frac)


def random_split(
    data: Interactions, test_frac: float = 0.2, *, seed: int = 0, cold: ColdPolicy = "keep"
) -> Split:
    """Hold out ``test_frac`` of all ratings at random.

    Example:
        >>> d = Interactions.from_arrays(np.arange(10), np.arange(10), np.ones(10))
        >>> s = random_split(d, 0.3, seed=1)
        >>> len(s.train_idx), len(s.test_idx)
        (7, 3)
    """
    frac = _check_frac(test_frac)
    n = len(data)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(n * frac)
    return _finish(data, perm[n_test:], perm[:n_test], f"random:{frac:g}", cold)


def _group_order(user: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (user, key); returns order, each row's rank within its user, group sizes."""
    order = np.lexsort((key, user))
    u_sorted = user[order]
    counts = np.bincount(u_sorted, minlength=int(user.max()) + 1 if len(user) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(order)) - starts[u_sorted]
    return order, rank, counts[u_sorted]


def per_user_split(
    data: Interactions,
    test_frac: float = 0.2,
    *,
    seed: int = 0,
    min_train: int = 1,
    cold: ColdPolicy = "keep",
) -> Split:
    """Hold out ``test_frac`` of each user's ratings at random, keeping ``min_train`` in train.

    Example:
        >>> d = Interactions.from_arrays([1] * 5 + [2] * 5, np.arange(10), np.ones(10))
        >>> s = per_user_split(d, 0.4, seed=0)
        >>> np.bincount(d.user[s.test_idx]).tolist()
        [2, 2]
    """
    frac = _check_frac(test_frac)
    if min_train < 0:
        raise ConfigError(f"expected min_train >= 0, received {min_train}")
    if not len(data):
        return _finish(data, np.zeros(0), np.zeros(0), f"user:{frac:g}", cold)
    key = np.random.default_rng(seed).random(len(data))
    order, rank, size = _group_order(data.user, key)
    n_test = np.minimum(np.round(size * frac).astype(np.int64), np.maximum(size - min_train, 0))
    is_test = rank < n_test
    return _finish(data, order[~is_test], order[is_test], f"user:{frac:g}", cold)


def _require_time(data: Interactions, spec: str) -> np.ndarray:
    ts = data.timestamp
    if ts is None:
        raise DataError(f"expected timestamps for a {spec} split, received data without them")
    return ts


def temporal_split(
    data: Interactions, test_frac: float = 0.2, *, cold: ColdPolicy = "keep"
) -> Split:
    """Hold out the latest ``test_frac`` of ratings by timestamp (ties by row order).

    Example:
        >>> d = Interactions.from_arrays([1, 1, 2, 2], [1, 2, 1, 2], [1, 2, 3, 4],
        ...                              timestamp=[40, 10, 30, 20])
        >>> temporal_split(d, 0.5).test_idx.tolist()
        [0, 2]
    """
    frac = _check_frac(test_frac)
    ts = _require_time(data, "temporal")
    order = np.argsort(ts, kind="stable")
    n_test = round(len(data) * frac)
    cut = len(data) - n_test
    return _finish(data, order[:cut], order[cut:], f"temporal:{frac:g}", cold)


def leave_last_k(data: Interactions, k: int = 1, *, cold: ColdPolicy = "keep") -> Split:
    """Hold out each user's last ``k`` ratings by time; users with ``<= k`` keep all in train.

    Ties in time are broken by row order, as in :func:`temporal_split`: of two rows with
    the same timestamp, the later row is the later rating.

    Example:
        >>> d = Interactions.from_arrays([1, 1, 1, 2], [1, 2, 3, 1], [1, 2, 3, 4],
        ...                              timestamp=[3, 1, 2, 5])
        >>> leave_last_k(d, 1).test_idx.tolist()
        [0]
        >>> tied = Interactions.from_arrays([1, 1, 1], [1, 2, 3], [1, 2, 3], timestamp=[7, 7, 1])
        >>> leave_last_k(tied, 1).test_idx.tolist()
        [1]
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"expected k as an integer >= 1, received {k!r}")
    ts = _require_time(data, "leave-last-k")
    if not len(data):
        return _finish(data, np.zeros(0), np.zeros(0), f"last:{k}", cold)
    # each row's place in time (ties by row position), then newest first within a user
    when = np.empty(len(data), dtype=np.int64)
    when[np.argsort(ts, kind="stable")] = np.arange(len(data))
    order, rank, size = _group_order(data.user, -when)
    is_test = (rank < k) & (size > k)
    return _finish(data, order[~is_test], order[is_test], f"last:{k}", cold)


def strong_generalisation(
    data: Interactions,
    user_frac: float = 0.1,
    given_frac: float = 0.8,
    *,
    seed: int = 0,
    cold: ColdPolicy = "keep",
) -> Split:
    """Hold out ``user_frac`` of the users; give ``given_frac`` of each one's rows for
    fold-in and rank the rest (strong generalisation).

    The held-out users are drawn at random (by ``seed``) among the users with rows, and
    none of their rows is in the training part. Each held-out user's rows are cut at
    random: ``round(size * (1 - given_frac))`` to rank (``test_idx``), at least one and
    at most ``size - 1`` when the user has two rows or more, and the rest given
    (``fold_in_idx``); a held-out user with a single row only gives it. Cold items (in
    the test part but not in training) follow ``cold``.

    Example:
        >>> d = Interactions.from_arrays(np.repeat(np.arange(10), 5), np.tile(np.arange(5), 10),
        ...                              np.ones(50))
        >>> s = strong_generalisation(d, 0.2, 0.8, seed=0)
        >>> len(s.fold_in_users), len(s.fold_in_idx), len(s.test_idx), len(s.train_idx)
        (2, 8, 2, 40)
        >>> bool(np.isin(d.user[s.train_idx], s.fold_in_users).any())
        False
    """
    uf = _check_frac(user_frac, "user_frac")
    gf = _check_frac(given_frac, "given_frac")
    name = f"users:{uf:g}:{gf:g}"
    rng = np.random.default_rng(seed)
    present = np.unique(data.user)
    held = np.zeros(data.n_users, dtype=bool)
    held[rng.permutation(present)[: round(len(present) * uf)]] = True
    is_held = held[data.user]
    rows = np.flatnonzero(is_held)
    key = rng.random(len(rows))
    order, rank, size = _group_order(data.user[rows], key) if len(rows) else (rows, rows, rows)
    n_test = np.round(size * (1.0 - gf)).astype(np.int64)
    n_test = np.clip(n_test, np.minimum(size - 1, 1), np.maximum(size - 1, 0))
    is_test = rank < n_test
    held_rows = rows[order]
    return _finish(
        data, np.flatnonzero(~is_held), held_rows[is_test], name, cold, held_rows[~is_test]
    )


def kfold(
    data: Interactions, k: int = 5, *, seed: int = 0, cold: ColdPolicy = "keep"
) -> list[Split]:
    """Partition the ratings into ``k`` folds; split ``j`` tests on fold ``j``.

    Example:
        >>> d = Interactions.from_arrays(np.arange(10), np.arange(10), np.ones(10))
        >>> folds = kfold(d, 5, seed=0)
        >>> sorted(np.concatenate([f.test_idx for f in folds]).tolist()) == list(range(10))
        True
    """
    if k < 2:
        raise ConfigError(f"expected k >= 2 folds, received {k}")
    if k > len(data):
        raise ConfigError(f"expected at most {len(data)} folds (one per rating), received {k}")
    perm = np.random.default_rng(seed).permutation(len(data))
    parts = np.array_split(perm, k)
    return [
        _finish(data, np.concatenate(parts[:j] + parts[j + 1 :]), parts[j], f"kfold:{k}:{j}", cold)
        for j in range(k)
    ]


def split_from_pairs(
    data: Interactions,
    train_user_ids: Any,
    train_item_ids: Any,
    test_user_ids: Any,
    test_item_ids: Any,
    *,
    name: str = "predefined",
    cold: ColdPolicy = "keep",
) -> Split:
    """A predefined split given as raw (user id, item id) pairs of each part.

    Every pair must be a row of ``data`` and no pair may be in both parts.

    Raises:
        DataError: a pair is not in ``data`` or is in both parts.
    """
    key = data.user.astype(np.int64) * max(1, data.n_items) + data.item
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]

    def rows(users: Any, items: Any, part: str) -> np.ndarray:
        u = data.users.index(np.asarray(users), unknown="sentinel").astype(np.int64)
        i = data.items.index(np.asarray(items), unknown="sentinel").astype(np.int64)
        k = u * max(1, data.n_items) + i
        pos_c = np.minimum(np.searchsorted(sorted_key, k), max(0, len(sorted_key) - 1))
        ok = (u >= 0) & (i >= 0)
        ok &= sorted_key[pos_c] == k if len(sorted_key) else np.zeros_like(ok)
        if not ok.all():
            bad = int(np.argmax(~ok))
            raise DataError(
                f"expected every {part} pair in the data, received "
                f"({np.asarray(users)[bad]!r}, {np.asarray(items)[bad]!r}) which is not "
                f"({int((~ok).sum())} missing)",
                row=bad,
            )
        return order[pos_c]

    tr = rows(train_user_ids, train_item_ids, "train")
    te = rows(test_user_ids, test_item_ids, "test")
    both = np.intersect1d(tr, te)
    if len(both):
        raise DataError(f"expected disjoint parts, received {len(both)} rows in both")
    return _finish(data, tr, te, name, cold)


def split_by_spec(
    data: Interactions, spec: str, *, seed: int = 0, cold: ColdPolicy = "keep"
) -> Split:
    """Split by a spec string (see the module docs): ``random:0.2``, ``kfold:5:0``, ...

    Example:
        >>> d = Interactions.from_arrays(np.arange(10), np.arange(10), np.ones(10))
        >>> split_by_spec(d, "random:0.2", seed=0).summary()["test"]
        2
    """
    kind, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    numbers: list[float] = []
    for a in args:
        try:
            numbers.append(float(a))
        except ValueError:
            raise ConfigError(
                f"expected a split spec like 'random:0.2', received {spec!r}"
            ) from None
    frac = numbers[0] if numbers else 0.2
    if kind in ("last", "kfold") and any(not x.is_integer() for x in numbers):
        raise ConfigError(f"expected whole numbers in a {kind} split spec, received {spec!r}")
    if kind == "random" and len(numbers) <= 1:
        return random_split(data, frac, seed=seed, cold=cold)
    if kind == "user" and len(numbers) <= 1:
        return per_user_split(data, frac, seed=seed, cold=cold)
    if kind == "temporal" and len(numbers) <= 1:
        return temporal_split(data, frac, cold=cold)
    if kind == "last" and len(numbers) <= 1:
        return leave_last_k(data, int(numbers[0]) if numbers else 1, cold=cold)
    if kind == "users" and len(numbers) <= 2:
        given = numbers[1] if len(numbers) > 1 else 0.8
        return strong_generalisation(
            data, numbers[0] if numbers else 0.1, given, seed=seed, cold=cold
        )
    if kind == "kfold" and len(numbers) <= 2:
        k = int(numbers[0]) if numbers else 5
        j = int(numbers[1]) if len(numbers) > 1 else 0
        if not 0 <= j < k:
            raise ConfigError(f"expected a fold in [0, {k - 1}], received {j} in {spec!r}")
        return kfold(data, k, seed=seed, cold=cold)[j]
    raise ConfigError(
        "expected a split spec random:F, user:F, temporal:F, last:K, kfold:K:J or users:F:G "
        f"(or ml-100k's u1..u5, ua, ub through recfit.data.make_split), received {spec!r}"
    )
