"""Positives: the users x items matrix top-N models train on.

A positive is a (user, item) pair the user chose: a click, a play, a purchase, or a
rating at or above a threshold. :func:`select_positives` keeps those rows of an
:class:`~recfit.data.interactions.Interactions`; :func:`positives_matrix` turns rows
into a sparse ``users x items`` matrix, ``1.0`` per pair (``"binary"``) or the sum of
the rows' values (``"value"``: play counts, durations as confidence).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError

__all__ = ["Confidence", "positives_matrix", "select_positives"]

Confidence = Literal["binary", "value"]


def select_positives(data: Interactions, min_rating: float | None = None) -> Interactions:
    """The rows that count as positives: every row of weight > 0 whose rating is at
    least ``min_rating`` (``None``: every row).

    Example:
        >>> d = Interactions.from_arrays(["a", "a", "b"], [1, 2, 1], [5.0, 2.0, 4.0])
        >>> select_positives(d, 4).rating.tolist()
        [5.0, 4.0]
    """
    keep = data.weights() > 0
    if min_rating is not None:
        if not np.isfinite(min_rating):
            raise ConfigError(f"expected a finite positive_min_rating, received {min_rating!r}")
        keep &= data.rating >= np.float32(min_rating)
    if bool(keep.all()):
        return data
    return data.take(keep)


def positives_matrix(
    data: Interactions,
    *,
    n_users: int | None = None,
    n_items: int | None = None,
    confidence: Confidence = "binary",
) -> sp.csr_matrix:
    """The ``users x items`` float32 CSR matrix of ``data``'s rows.

    ``"binary"``: 1.0 for every pair that occurs; ``"value"``: the sum of the pair's
    ratings (counts, durations), each multiplied by its row weight. Rows of weight 0 do
    not exist; pairs whose value sums to 0 are dropped. Shape defaults to the data's
    vocabularies; ``n_users`` / ``n_items`` may widen it (never narrow it).

    Example:
        >>> d = Interactions.from_arrays(["a", "a", "b", "a"], [1, 2, 1, 1], [3.0, 1.0, 2.0, 1.0])
        >>> positives_matrix(d).toarray().tolist()
        [[1.0, 1.0], [1.0, 0.0]]
        >>> positives_matrix(d, confidence="value").toarray().tolist()
        [[4.0, 1.0], [2.0, 0.0]]
    """
    if confidence not in ("binary", "value"):
        raise ConfigError(f"expected confidence 'binary' or 'value', received {confidence!r}")
    shape = (_size(n_users, data.n_users, "n_users"), _size(n_items, data.n_items, "n_items"))
    w = data.weights()
    live = w > 0
    user, item = data.user[live], data.item[live]
    if confidence == "binary":
        values = np.ones(len(user), dtype=np.float32)
    else:
        values = data.rating[live] * w[live]
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(live)[np.argmax(bad)])
            raise DataError(
                f"expected finite non-negative values as confidence, received "
                f"{float(data.rating[row])!r}",
                row=row,
                column="rating",
            )
    x = sp.csr_matrix(
        (values.astype(np.float32, copy=False), (user, item)), shape=shape, dtype=np.float32
    )
    x.sum_duplicates()
    if confidence == "binary":
        x.data[:] = 1.0
    x.eliminate_zeros()
    x.sort_indices()
    return x


def _size(given: int | None, own: int, name: str) -> int:
    if given is None:
        return own
    if isinstance(given, bool) or not isinstance(given, int | np.integer) or given < own:
        raise ConfigError(f"expected an integer {name} >= {own}, received {given!r}")
    return int(given)
