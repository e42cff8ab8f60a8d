"""Compare the five imbalance strategies on ml-100k (protocol R1) over N seeds.

Runs ``benchmarks/compare_imbalance.toml`` (RatingClassifier, softmax head, 5 epochs)
through :mod:`recfit.experiments` and prints the summary table (mean ± 2σ and paired
differences against the baseline), the wall time and the load average. Resumable: the
runs are kept in ``--out`` (default: a fresh temporary folder).

    .venv/bin/python benchmarks/bench_imbalance.py --runs 10 [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _args import add_data_dir
from recfit.experiments import load_compare_config
from recfit.runs import config_runner

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--config", type=Path, default=HERE / "compare_imbalance.toml")
    add_data_dir(ap)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-imbalance-"))
    spec = load_compare_config(args.config)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    res = spec.run(config_runner(data_dir=args.data_dir), runs=args.runs, out_dir=out)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    metrics = spec.metrics or res.metrics
    res.save(out, [*metrics, "fit_seconds"])
    print(res.table(metrics))
    per = res.runs[res.runs.metric == "fit_seconds"].groupby("config")["value"].mean()
    secs = {
        n: sum(r.seconds for r in res.records if r.config == n) / len(res.seeds)
        for n in res.configs
    }
    print("\nmean seconds per run (training / whole run incl. data split and evaluation):")
    for name in res.configs:
        print(f"  {name:<14} {per[name]:6.2f} / {secs[name]:6.2f}")
    total = sum(r.seconds for r in res.records)
    print(
        f"\n{len(res.configs)} configs x {len(res.seeds)} seeds: {total:.1f} s of runs in all, "
        f"{wall:.1f} s wall "
        f"(this invocation; finished runs are reused); CPU cores {os.cpu_count()}, "
        f"load average before {load0[0]:.2f}, after {load1[0]:.2f}; results in {out}"
    )


if __name__ == "__main__":
    main()
