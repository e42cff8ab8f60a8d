"""Repeated (user, item) pairs: every loader applies one ``duplicates=`` policy.

* ``"error"`` (default): raise, with the number of duplicate rows and the first few;
* ``"last"``: keep the last row of each pair, in file order;
* ``"mean"``: keep one row per pair (at the position of its last row, with that row's
  timestamp) whose rating, and weight if any, is the mean over the pair's rows;
* ``"sum"``: as ``"mean"``, but the rating is the sum over the pair's rows (implicit
  data: clicks or plays of one item add up; the weight stays the mean).

Merging emits a :class:`~recfit.errors.DataWarning` with the count.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from recfit.data.vocab import Vocabulary
from recfit.errors import ConfigError, DataError, DataWarning

__all__ = ["DuplicatePolicy", "check_policy", "merge_duplicates"]

DuplicatePolicy = Literal["error", "last", "mean", "sum"]

_SHOWN = 5


def check_policy(duplicates: str) -> None:
    """Raise :class:`ConfigError` unless ``duplicates`` is a :data:`DuplicatePolicy`."""
    if duplicates not in ("error", "last", "mean", "sum"):
        raise ConfigError(
            f"expected duplicates='error', 'last', 'mean' or 'sum', received {duplicates!r}"
        )


def merge_duplicates(
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    w: np.ndarray | None,
    ts: np.ndarray | None,
    users: Vocabulary,
    items: Vocabulary,
    *,
    duplicates: str,
    columns: tuple[str, str] = ("user", "item"),
    source: str | None = None,
    line_offset: int | None = None,
    stacklevel: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, int]:
    """Apply the ``duplicates=`` policy to index arrays: ``(u, i, r, w, ts, n_merged)``.

    Every loader (files, frames and the MovieLens releases) goes through this, so a
    repeated (user, item) pair is never kept silently. ``line_offset`` turns a 0-based
    data row into the file's 1-based line number for the error.

    Raises:
        DataError: a repeated pair under ``duplicates="error"``.
        ConfigError: an unknown policy.
    """
    check_policy(duplicates)
    if len(u) < 2:
        return u, i, r, w, ts, 0
    key = u.astype(np.int64) * np.int64(max(1, len(items))) + i
    step = key[1:] - key[:-1]
    if bool((step > 0).all()):  # sorted without repeats: the common case of a release
        return u, i, r, w, ts, 0
    if bool((step >= 0).all()):
        has_dup = True
    else:
        srt = np.sort(key)
        has_dup = bool((srt[1:] == srt[:-1]).any())
        del srt
    del step
    if not has_dup:
        return u, i, r, w, ts, 0
    keep, n_dup, n_pairs = _resolve_duplicates(
        key, u, i, r, w, users, items, columns, duplicates, source, line_offset
    )
    rows, r, w = keep
    u, i, r = u[rows], i[rows], r[rows]
    w = None if w is None else w[rows]
    ts = None if ts is None else ts[rows]
    warnings.warn(
        f"merged {n_dup} duplicate rows of {n_pairs} (user, item) pairs with "
        f"duplicates={duplicates!r}" + (f" in {source}" if source else ""),
        DataWarning,
        stacklevel=stacklevel,
    )
    return u, i, r, w, ts, n_dup


def _resolve_duplicates(
    key: np.ndarray,
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    w: np.ndarray | None,
    users: Vocabulary,
    items: Vocabulary,
    columns: tuple[str, str],
    policy: str,
    source: str | None,
    line_offset: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], int, int]:
    """Rows to keep (and merged ratings/weights for "mean" and "sum"), duplicate and pair
    counts."""
    order = np.argsort(key, kind="stable")
    sk = key[order]
    repeat = np.empty(len(sk), dtype=bool)  # this sorted position repeats the previous one
    repeat[0] = False
    np.equal(sk[1:], sk[:-1], out=repeat[1:])
    n_dup = int(repeat.sum())
    is_start = ~repeat
    n_pairs = int((is_start[:-1] & repeat[1:]).sum())
    if policy == "error":
        pos = np.arange(len(sk))
        first_pos = np.maximum.accumulate(np.where(is_start, pos, 0))
        dup_rows = order[repeat]
        firsts = order[first_pos[repeat]]
        shown_order = np.argsort(dup_rows, kind="stable")[:_SHOWN]
        shown = "; ".join(
            f"row {int(dup_rows[j])} (user {users.id([u[dup_rows[j]]]).tolist()[0]!r}, "
            f"item {items.id([i[dup_rows[j]]]).tolist()[0]!r}) repeats row {int(firsts[j])}"
            for j in shown_order
        )
        more = " ..." if n_dup > _SHOWN else ""
        first_row = int(dup_rows[shown_order[0]])
        raise DataError(
            f"expected one rating per (user, item) pair, received {n_dup} duplicate rows "
            f"in {n_pairs} pairs: {shown}{more} (pass duplicates='last' or 'mean' to merge)",
            file=source,
            row=first_row,
            line=None if line_offset is None else first_row + line_offset,
            column=f"{columns[0]},{columns[1]}",
        )
    is_last = np.empty(len(sk), dtype=bool)
    is_last[-1] = True
    np.not_equal(sk[1:], sk[:-1], out=is_last[:-1])
    last_rows = order[is_last]
    if policy == "last":
        return (np.sort(last_rows), r, w), n_dup, n_pairs
    # mean (sum): one value per group, placed at the group's last row
    gid = np.cumsum(is_start) - 1
    cnt = np.bincount(gid).astype(np.float64)
    sum_r = np.bincount(gid, weights=r[order].astype(np.float64))
    r2 = r.copy()
    r2[last_rows] = (sum_r if policy == "sum" else sum_r / cnt).astype(np.float32)
    w2 = None
    if w is not None:
        mean_w = np.bincount(gid, weights=w[order].astype(np.float64)) / cnt
        w2 = w.copy()
        w2[last_rows] = mean_w.astype(np.float32)
    return (np.sort(last_rows), r2, w2), n_dup, n_pairs
