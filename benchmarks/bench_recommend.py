"""Benchmark the Recommender's queries on MovieLens 1M.

Builds a Recommender for each model family (``dot``: DotBias 50 factors with
``y_range``; ``nn``: EmbeddingNN) on a random 80% training split of ml-1m (6,040 users x
3,706 items), then times, median of ``--repeats`` runs:

1. ``recommend`` for all 6,040 users at once, top-20, each user's training items
   excluded (dot: exact chunked top-k through ExactIndex; nn: the MLP over every
   (user, item) pair);
2. ``similar_items`` for all 3,706 items, top-10 by cosine;
3. ``recommend`` for one user (latency of a single request);
4. ``recommend_for_ratings`` (fold-in) from 20 ratings;
5. ``recommend_all`` streamed to a Parquet file (top-20, chunks of 1,024 users).

Weights are the initialisation plus ``--epochs`` of training (default 0): speed does not
depend on what the model learned. Save/load time of the bundle is printed too.

Usage:
    python benchmarks/bench_recommend.py [--data-dir DIR] [--repeats 5] [--families dot,nn]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recfit.data import movielens, random_split
from recfit.models import create_model
from recfit.recommender import Recommender
from recfit.train.learner import Learner


def find_data_dir(arg: str | None) -> Path | None:
    for cand in (arg, os.environ.get("RECFIT_DATA_DIR"), "../shared/datasets"):
        if cand and (Path(cand) / "ml-1m" / "ratings.dat").exists():
            return Path(cand)
    return None


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--families", default="dot,nn")
    ap.add_argument("--epochs", type=int, default=0)
    args = ap.parse_args()
    data_dir = find_data_dir(args.data_dir)
    if data_dir is None:
        raise SystemExit("ml-1m not found: pass --data-dir or set RECFIT_DATA_DIR")
    data = movielens("ml-1m", data_dir=data_dir)
    split = random_split(data, 0.2, seed=42)
    train = split.train
    print(f"ml-1m: {len(train):,} training ratings, {data.n_users:,} users, "
          f"{data.n_items:,} items; torch threads {torch.get_num_threads()}")  # fmt: skip
    users = data.users.id(np.unique(train.user)).tolist()
    items = data.items.id(np.flatnonzero(np.bincount(train.item, minlength=data.n_items))).tolist()
    rng = np.random.default_rng(0)
    u0 = int(train.user[0])
    own = train.item[train.user == u0][:20]
    ratings = list(
        zip(data.items.id(own).tolist(), train.rating[train.user == u0][:20].tolist(), strict=True)
    )
    for family in args.families.split(","):
        kw: dict[str, Any] = (
            {"n_factors": 50, "y_range": (0.0, 5.5)} if family == "dot" else {"y_range": (0.0, 5.5)}
        )
        model = create_model(family, train, seed=0, **kw)
        if args.epochs:
            Learner(model, train, bs=1024, progress=False).fit_one_cycle(args.epochs, 5e-3)
        rec = Recommender(model, data.users, data.items, train, item_info=data.item_features,
                          rating_scale=data.rating_scale)  # fmt: skip
        rec.recommend(users[:10], n=20)  # warm the caches (index build)
        rec.similar_items(items[:10], n=10)
        t_all = median_time(lambda r=rec: r.recommend(users, n=20), args.repeats)
        t_sim = median_time(lambda r=rec: r.similar_items(items, n=10), args.repeats)
        one = [users[int(k)] for k in rng.integers(0, len(users), 50)]
        t_one = statistics.median(
            median_time(lambda u=u, r=rec: r.recommend(u, n=20), 1) for u in one
        )
        t_fold = median_time(lambda r=rec: r.recommend_for_ratings(ratings, n=20), args.repeats)
        with tempfile.TemporaryDirectory() as d:
            out = Path(d)
            t_batch = median_time(
                lambda r=rec, o=out: r.recommend_all(20, o / "recs.parquet"),
                max(1, args.repeats // 2),
            )
            t_save = median_time(lambda r=rec, o=out: r.save(o / "bundle"), 3)
            t_load = median_time(lambda o=out: Recommender.load(o / "bundle"), 3)
        print(f"\n[{family}] median of {args.repeats}")
        print(f"  recommend, all {len(users):,} users, top-20, seen excluded: {t_all:8.3f} s "
              f"({len(users) / t_all:,.0f} users/s)")  # fmt: skip
        print(f"  similar_items, all {len(items):,} items, top-10:            {t_sim:8.3f} s")
        print(f"  recommend, one user (median of 50 users):               {t_one * 1e3:8.2f} ms")
        print(f"  recommend_for_ratings, 20 ratings (fold-in):            {t_fold * 1e3:8.2f} ms")
        print(f"  recommend_all -> parquet, top-20:                        {t_batch:8.3f} s")
        print(f"  bundle save / load:                          {t_save:8.3f} s / {t_load:.3f} s")


if __name__ == "__main__":
    main()
