"""Protocols R4 (ml-1m, random 90/10) and R2 (ml-100k u1.base/u1.test): SGD and ALS.

Each configuration runs through :func:`recfit.runs.train_run` (exactly what
``recfit train`` does) for several split seeds and prints each RMSE, the median RMSE,
the median training seconds (``fit_seconds``: fitting only, data loading and
validation excluded) and the load average. Configurations:

* ``sgd (defaults)``: ``recfit train`` with no tuning flag (the RatingConfig defaults:
  row-wise Adagrad on ml-1m, AdamW on ml-100k);
* ``sgd mf``: the same for the linear biased MF (``--model mf``; with ``--opt adam``);
* ``als``: ``recfit train --trainer als --model mf --n-factors 32 --reg-exponent 0.75
  --epochs 15 --reg R`` (R 0.3 on ml-1m, 0.4 on ml-100k): the same model class as
  ``sgd mf``. R1 (ml-100k, random 80/20, split seeds 0-4) reports MSE as well.

Usage::

    python benchmarks/bench_r4.py [--data-dir DIR] [--seeds 0,1,2] [--part r4|r2|r1|all]

References (docs/protocols.md): R4 BiasedMF 0.845, Surprise SVD 0.867 in ~10 s on
this machine; target RMSE <= 0.845 in under 20 s. R2: GLocal-K 0.8889, GC-MC 0.910.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from _args import add_data_dir
from recfit.config import RatingConfig
from recfit.data.sources import load_dataset
from recfit.runs import train_run

_ALS = {"trainer": "als", "model": "mf", "n_factors": 32, "epochs": 15, "reg_exponent": 0.75}
#: protocol -> {name: RatingConfig fields}; ALS's ridge is tuned per data size (reg 0.3 on
#: ml-1m, 0.4 on ml-100k), like SGD's defaults differ between AdamW and row-wise Adagrad
CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "r4": {
        "sgd (model auto by size, budget 0 = dot here)": {"budget": 0},
        "sgd mf (defaults)": {"model": "mf"},
        "sgd mf (adam)": {"model": "mf", "opt": "adam"},
        "als (mf 32, reg 0.3, exponent 0.75, 15 sweeps)": {**_ALS, "reg": 0.3},
    },
    "r2": {
        "sgd (model auto by size, budget 0 = svdpp here)": {"budget": 0},
        "sgd dot": {"model": "dot"},
        "als (mf 32, reg 0.4, exponent 0.75, 15 sweeps)": {**_ALS, "reg": 0.4},
    },
    "r1": {
        "sgd (model auto by size, budget 0 = svdpp here)": {"budget": 0},
        "sgd dot": {"model": "dot"},
        "sgd mf (defaults)": {"model": "mf"},
        "als (mf 32, reg 0.4, exponent 0.75, 15 sweeps)": {**_ALS, "reg": 0.4},
    },
}


def bench(part: str, dataset: str, split: str, seeds: list[int], data_dir: str, label: str) -> None:
    data = load_dataset(dataset, data_dir=data_dir)
    for name, extra in CONFIGS[part].items():
        rmses, secs, loads = [], [], []
        for seed in seeds:
            cfg = RatingConfig(dataset=dataset, data_dir=data_dir, split=split, seed=seed, **extra)
            loads.append(os.getloadavg()[0])
            res = train_run(cfg, data=data, progress=False)
            rmses.append(res.metrics["rmse"])
            secs.append(res.metrics["fit_seconds"])
        print(
            f"{label} {name}: RMSE "
            + ", ".join(f"{r:.4f}" for r in rmses)
            + f"; median {statistics.median(rmses):.4f} (MSE {statistics.median(rmses) ** 2:.4f})"
            + f" in {statistics.median(secs):.1f} s "
            f"(load average {statistics.median(loads):.2f})",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--part", default="all", choices=["r4", "r2", "r1", "all"])
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.part in ("r4", "all"):
        bench("r4", "ml-1m", "random:0.1", seeds, args.data_dir, "R4 ml-1m 90/10")
    if args.part in ("r2", "all"):
        bench("r2", "ml-100k", "u1", [seeds[0]], args.data_dir, "R2 ml-100k u1")
    if args.part in ("r1", "all"):
        bench("r1", "ml-100k", "random:0.2", [0, 1, 2, 3, 4], args.data_dir, "R1 ml-100k 80/20")


if __name__ == "__main__":
    main()
