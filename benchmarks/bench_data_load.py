"""Time MovieLens parsing: ml-100k (with metadata), ml-1m, the ml-100k predefined split, and
optionally a synthetic CSV release of a given size (ml-25m has 25,000,095 ratings).

Usage::

    python benchmarks/bench_data_load.py [--data-dir DIR] [--runs 5] [--synthetic-rows N]

The data folder defaults to ``$RECFIT_DATA_DIR`` or ``../shared/datasets`` next to the
repository. Prints the median (and min/max) wall time of ``--runs`` runs for each case.
Targets on a 2-core CPU: ml-100k with metadata < 0.5 s, ml-1m < 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _args import add_data_dir
from recfit.data.grouplens import movielens, predefined_split


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def _synthetic_release(root: Path, rows: int, seed: int = 0) -> None:
    """A CSV release shaped like ml-25m, scaled to ``rows`` ratings."""
    rng = np.random.default_rng(seed)
    n_users = max(1, int(rows * 162_541 / 25_000_095))
    n_items = max(1, int(rows * 59_047 / 25_000_095))
    folder = root / "ml-latest"
    folder.mkdir(parents=True)
    user = np.sort(rng.integers(1, n_users + 1, rows))
    item = rng.zipf(1.3, rows) % n_items + 1
    rating = rng.integers(1, 11, rows) / 2
    ts = rng.integers(789_652_009, 1_574_327_703, rows)
    with (folder / "ratings.csv").open("w") as fh:
        fh.write("userId,movieId,rating,timestamp\n")
        chunk = 1_000_000
        for s in range(0, rows, chunk):
            e = min(rows, s + chunk)
            lines = [
                f"{u},{i},{r:g},{t}\n"
                for u, i, r, t in zip(
                    user[s:e].tolist(),
                    item[s:e].tolist(),
                    rating[s:e].tolist(),
                    ts[s:e].tolist(),
                    strict=True,
                )
            ]
            fh.write("".join(lines))
    with (folder / "movies.csv").open("w") as fh:
        fh.write("movieId,title,genres\n")
        fh.writelines(f'{k},"Movie {k}, The (2000)",Drama|Comedy\n' for k in range(1, n_items + 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(ap)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--synthetic-rows", type=int, default=0)
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    print(f"data dir: {data_dir}; runs: {args.runs}; cpus: {os.cpu_count()}")
    print(f"{'case':<34} {'median s':>9} {'min s':>8} {'max s':>8}  size")
    cases: list[tuple[str, Callable[[], object], str]] = []
    if (data_dir / "ml-100k" / "u.data").exists():
        d = movielens("ml-100k", data_dir, download=False)
        cases.append(
            (
                "ml-100k (ratings + metadata)",
                lambda: movielens("ml-100k", data_dir, download=False),
                f"{len(d):,} ratings",
            )
        )
        cases.append(
            (
                "ml-100k u1 split (data given)",
                lambda: predefined_split("ml-100k", "u1", data_dir, data=d),
                "80,000 / 20,000",
            )
        )
    if (data_dir / "ml-1m" / "ratings.dat").exists():
        cases.append(
            (
                "ml-1m (ratings + metadata)",
                lambda: movielens("ml-1m", data_dir, download=False),
                "1,000,209 ratings",
            )
        )
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.synthetic_rows:
        tmp = tempfile.TemporaryDirectory()
        t0 = time.perf_counter()
        _synthetic_release(Path(tmp.name), args.synthetic_rows)
        print(
            f"(wrote synthetic ml-latest, {args.synthetic_rows:,} rows, in "
            f"{time.perf_counter() - t0:.1f} s)"
        )
        root = Path(tmp.name)
        cases.append(
            (
                "synthetic CSV release",
                lambda: movielens("ml-latest", root, download=False),
                f"{args.synthetic_rows:,} ratings",
            )
        )
    if not cases:
        print("no datasets found; pass --data-dir or --synthetic-rows", file=sys.stderr)
        return 1
    for name, fn, size in cases:
        med, lo, hi = _time(fn, args.runs)
        print(f"{name:<34} {med:>9.3f} {lo:>8.3f} {hi:>8.3f}  {size}", flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
