"""Benchmark exact (and approximate) top-k retrieval and the ranking report.

1. ml-1m full-catalogue scoring: 6,040 users x 3,706 items, 64-d embeddings, top-100 with
   each user's training items (a random 80% of the ratings) excluded; median of 5 runs,
   then the ranking report (Recall/NDCG/... at 10, 20, 100 with 1,000 bootstrap
   resamples) on the held-out 20%.
2. 1,000,000 candidates x 64-d, 1,000 queries, top-100, chunked: time and peak RSS
   (the score blocks stay bounded whatever the catalogue size).
3. With faiss installed: HNSW over 50,000 candidates (Gaussian: a hard case for graphs), build and query time, recall@100
   against the exact index.

Embeddings are random (seeded): speed does not depend on what they learned.

Usage:
    python benchmarks/bench_retrieval.py [--data-dir DIR] [--n-large 1000000] [--skip-ann]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recfit.index import ApproximateIndex, ExactIndex, ItemSets
from recfit.metrics.ranking import ranking_report


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def find_data_dir(arg: str | None) -> Path | None:
    for cand in (arg, os.environ.get("RECFIT_DATA_DIR"), "../shared/datasets"):
        if cand and (Path(cand) / "ml-1m" / "ratings.dat").exists():
            return Path(cand)
    return None


def load_ml1m(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = (data_dir / "ml-1m" / "ratings.dat").read_bytes().replace(b"::", b",")
    from io import BytesIO

    df = pd.read_csv(BytesIO(raw), header=None, names=["u", "i", "r", "t"])
    _, user = np.unique(df["u"].to_numpy(), return_inverse=True)
    _, item = np.unique(df["i"].to_numpy(), return_inverse=True)
    return user.astype(np.int64), item.astype(np.int64)


def bench_ml1m(data_dir: Path, runs: int = 5) -> None:
    user, item = load_ml1m(data_dir)
    n_users, n_items = int(user.max()) + 1, int(item.max()) + 1
    rng = np.random.default_rng(0)
    train = rng.random(len(user)) < 0.8
    seen = ItemSets.from_pairs(user[train], item[train], n_users)
    test = ItemSets.from_pairs(user[~train], item[~train], n_users)
    gen = torch.Generator().manual_seed(0)
    users = torch.randn(n_users, 64, generator=gen)
    items = torch.randn(n_items, 64, generator=gen)
    index = ExactIndex()
    index.update_candidates(items)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        _, ids = index(users, 100, exclude=seen)
        times.append(time.perf_counter() - t0)
    print(
        f"ml-1m exact top-100, {n_users} users x {n_items} items x 64-d, "
        f"{len(seen.indices)} training items excluded: median {statistics.median(times):.3f} s "
        f"over {runs} runs (min {min(times):.3f}, max {max(times):.3f})"
    )
    t0 = time.perf_counter()
    rep = ranking_report(ids, test, ks=(10, 20, 100), exclude_seen=True, n_bootstrap=1000)
    t_rep = time.perf_counter() - t0
    print(
        f"ranking_report (7 metrics x 3 cutoffs, 1000 bootstrap resamples over "
        f"{rep['n_queries']} users): {t_rep:.3f} s; recall@20 {rep['recall@20']:.4f} "
        f"CI {tuple(round(x, 4) for x in rep['recall@20_ci'])} (random embeddings)"
    )
    print(f"ml-1m full evaluation (retrieve + report): {statistics.median(times) + t_rep:.3f} s")


def bench_large(n: int, n_queries: int = 1000, dim: int = 64) -> None:
    gen = torch.Generator().manual_seed(1)
    rss0 = peak_rss_mib()  # torch and numpy loaded
    cands = torch.randn(n, dim, generator=gen)
    queries = torch.randn(n_queries, dim, generator=gen)
    index = ExactIndex()
    index.update_candidates(cands)
    rss1 = peak_rss_mib()
    t0 = time.perf_counter()
    _, ids = index(queries, 100)
    dt = time.perf_counter() - t0
    rss2 = peak_rss_mib()
    full = n_queries * n * 4 / 2**20
    print(
        f"{n:,} candidates x {dim}-d, {n_queries} queries, top-100 (chunk_size "
        f"{index.chunk_size}, query_chunk_size {index.query_chunk_size}): {dt:.2f} s; "
        f"peak RSS {rss2:.0f} MiB (candidates {cands.numel() * 4 / 2**20:.0f} MiB, "
        f"+{rss2 - rss1:.0f} MiB while querying; a full score matrix would be {full:.0f} MiB); "
        f"before candidates {rss0:.0f} MiB"
    )
    assert ids.shape == (n_queries, 100)


def bench_ann(n: int = 50_000, n_queries: int = 1000, dim: int = 64) -> None:
    try:
        ann = ApproximateIndex(kind="hnsw")
    except Exception as exc:  # ConfigError without faiss
        print(f"approximate index skipped: {exc}")
        return
    rng = np.random.default_rng(2)
    cands = rng.normal(size=(n, dim)).astype(np.float32)
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    t0 = time.perf_counter()
    ann.update_candidates(cands)
    t_build = time.perf_counter() - t0
    exact = ExactIndex()
    exact.update_candidates(cands)
    t0 = time.perf_counter()
    ann(queries, 100)
    t_ann = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact(queries, 100)
    t_exact = time.perf_counter() - t0
    recall = ann.recall_against(exact, queries, 100)
    print(
        f"faiss HNSW (m={ann.m}, ef_search={ann.ef_search}) over {n:,} x {dim}-d: build "
        f"{t_build:.1f} s, {n_queries} queries top-100 {t_ann:.3f} s vs exact {t_exact:.3f} s, "
        f"recall@100 vs exact {recall:.3f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n-large", type=int, default=1_000_000)
    ap.add_argument("--skip-ann", action="store_true")
    ap.add_argument(
        "--part",
        choices=["all", "ml1m", "large", "ann"],
        default="all",
        help="'all' runs each part in its own process, so each peak RSS is its own",
    )
    args = ap.parse_args()
    if args.part == "all":
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        parts = ["ml1m", "large"] + ([] if args.skip_ann else ["ann"])
        rest = [a for a in sys.argv[1:] if not a.startswith("--part")]
        for part in parts:
            subprocess.run([sys.executable, __file__, "--part", part, *rest], check=True)
        return 0
    if args.part == "ml1m":
        data_dir = find_data_dir(args.data_dir)
        if data_dir is None:
            print("ml-1m not found (set RECFIT_DATA_DIR or --data-dir): skipping part 1")
        else:
            bench_ml1m(data_dir, args.runs)
    elif args.part == "large":
        bench_large(args.n_large)
    else:
        bench_ann()
    return 0


if __name__ == "__main__":
    sys.exit(main())
