"""Synthetic data at the ml-25m shape: generate, write Parquet, read it back.

Prints the generation time, the write time, the median of 3 reads (Parquet →
Interactions), the peak RSS of each phase (each phase runs in its own process), and the
bytes per rating of the Interactions core arrays.

    .venv/bin/python benchmarks/bench_synthetic.py [--ratings N --users N --items N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ML25M = (25_000_095, 162_541, 59_047)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _gen(path: Path, n: int, n_users: int, n_items: int) -> dict[str, float]:
    from recfit.data.synthetic import synthetic, write_parquet

    t0 = time.perf_counter()
    data = synthetic(n, n_users, n_items, seed=0)
    t1 = time.perf_counter()
    rss_gen = _rss_mb()
    write_parquet(data, path)
    t2 = time.perf_counter()
    return {
        "generate_s": t1 - t0,
        "generate_peak_rss_mb": rss_gen,
        "write_s": t2 - t1,
        "write_peak_rss_mb": _rss_mb(),
        "bytes_per_rating": data.nbytes / len(data),
        "file_mb": path.stat().st_size / 1e6,
    }


def _read(path: Path, n: int) -> dict[str, float]:
    from recfit.data.io import read_parquet

    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        data = read_parquet(path)
        times.append(time.perf_counter() - t0)
        if len(data) != n:
            raise SystemExit(f"expected {n} rows back, read {len(data)}")
        bpr = data.nbytes / len(data)
        del data
    return {
        "read_median_s": statistics.median(times),
        "read_times_s": times,  # type: ignore[dict-item]
        "read_peak_rss_mb": _rss_mb(),
        "read_bytes_per_rating": bpr,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratings", type=int, default=ML25M[0])
    ap.add_argument("--users", type=int, default=ML25M[1])
    ap.add_argument("--items", type=int, default=ML25M[2])
    ap.add_argument("--phase", choices=["all", "gen", "read"], default="all")
    ap.add_argument("--path", type=Path)
    a = ap.parse_args()
    if a.phase == "gen":
        print(json.dumps(_gen(a.path, a.ratings, a.users, a.items)))
        return
    if a.phase == "read":
        print(json.dumps(_read(a.path, a.ratings)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.parquet"
        out: dict[str, float] = {}
        for phase in ("gen", "read"):
            cmd = [sys.executable, __file__, "--phase", phase, "--path", str(path)]
            cmd += ["--ratings", str(a.ratings), "--users", str(a.users), "--items", str(a.items)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            out.update(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"shape: {a.ratings:,} ratings, {a.users:,} users, {a.items:,} items")
    print(f"generate:   {out['generate_s']:.2f} s   peak RSS {out['generate_peak_rss_mb']:.0f} MB")
    print(f"write:      {out['write_s']:.2f} s   peak RSS {out['write_peak_rss_mb']:.0f} MB "
          f"(file {out['file_mb']:.0f} MB)")  # fmt: skip
    times = ", ".join(f"{t:.2f}" for t in out["read_times_s"])  # type: ignore[attr-defined]
    print(f"read:       {out['read_median_s']:.2f} s median of 3 ({times})   "
          f"peak RSS {out['read_peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"bytes/rating (core arrays): {out['bytes_per_rating']:.1f}")
    ok = (
        out["generate_s"] < 60
        and out["generate_peak_rss_mb"] < 2048
        and out["read_median_s"] < 10
        and out["bytes_per_rating"] <= 16
    )
    print(
        "targets (gen < 60 s, gen RSS < 2 GB, read < 10 s, <= 16 B/rating):",
        "met" if ok else "MISSED",
    )


if __name__ == "__main__":
    main()
