"""Every user's top-n at once: chunked DataFrames, or a Parquet file written chunk by
chunk (see :meth:`recfit.recommender.Recommender.recommend_all`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recfit.recommender.inputs import check_n

if TYPE_CHECKING:
    from recfit.recommender.core import Recommender

__all__ = ["iter_all", "write_all"]


def iter_all(
    rec: Recommender, n: int, *, chunk_size: int, exclude_seen: bool, with_titles: bool
) -> Iterator[pd.DataFrame]:
    """What :meth:`Recommender.iter_recommend_all` yields (see there)."""
    n, chunk_size = check_n(n), check_n(chunk_size, "chunk_size")
    allowed = rec.allowed_items(None, None)
    trained = rec.seen.lengths() > 0
    pop_idx = rec.ranker.popular(n, allowed)
    pop_s = rec.popularity[pop_idx].astype(np.float32)
    for u0 in range(0, rec.n_users, chunk_size):
        uu = np.arange(u0, min(rec.n_users, u0 + chunk_size), dtype=np.int64)
        scores = np.full((len(uu), n), -np.inf, dtype=np.float32)
        idx = np.full((len(uu), n), -1, dtype=np.int64)
        t = trained[uu]
        if t.any():
            ut = uu[t]
            rows = rec.adapter.user_rows(torch.from_numpy(ut))
            excl = rec.seen.rows(ut) if exclude_seen else None
            scores[t], idx[t] = rec.ranker.topk(rows, n, excl, allowed)
        if (~t).any():
            scores[~t, : len(pop_idx)] = pop_s
            idx[~t, : len(pop_idx)] = pop_idx
        valid = idx >= 0
        rank = np.broadcast_to(np.arange(1, n + 1, dtype=np.int32), idx.shape)[valid]
        user_rows = np.repeat(uu[:, None], n, axis=1)[valid]
        frame = pd.DataFrame({
            "user": rec.users.id(user_rows),
            "rank": rank,
            "item": rec.items.id(idx[valid]),
            "score": scores[valid],
            "path": np.where(trained[user_rows], "model", "popular"),
            "kind": np.where(trained[user_rows], rec.output_kind, "popularity"),
        })  # fmt: skip
        if with_titles:
            frame["title"] = rec.titles.titles_of(idx[valid])
        yield frame


def write_all(rec: Recommender, out: str | Path, frames: Iterator[pd.DataFrame]) -> dict[str, Any]:
    """Write ``frames`` to the Parquet file ``out`` through a temporary sibling renamed
    when complete (removed on failure); what :meth:`Recommender.recommend_all` returns."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    t0 = time.perf_counter()
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += len(frame)
        if writer is not None:
            writer.close()
            writer = None
        tmp.replace(path)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return {"path": str(path), "users": rec.n_users, "rows": rows,
            "seconds": time.perf_counter() - t0}  # fmt: skip
