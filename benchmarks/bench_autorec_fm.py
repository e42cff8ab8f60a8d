"""I-AutoRec (``autorec``) and the factorization machine (``fm``) on R4 and R2.

Protocols (docs/protocols.md): R4 is ml-1m random 90/10 by split seed, R2 ml-100k's
``u1.base`` / ``u1.test``. Each configuration runs through :func:`recfit.runs.train_run`
(what ``recfit train`` does) with the family's defaults (chosen on inner cuts of the
training rows: docs/families.md); the test rows are evaluated once, after training. Each
line prints the RMSEs, the median, the median fitting seconds (``fit_seconds``) and the
load average; the reference (``recfit train`` with no model flag) runs in the same process
on the same splits, so the ratio of fitting times holds under the machine's load.

With ``--inner`` it scores settings on an inner cut instead (5% of R4's training rows of
split seed 0 held out, or 10% of R2's with ``--part r2``; the test rows are never read):
how the defaults were chosen.

Usage::

    python benchmarks/bench_autorec_fm.py [--part r4|r2|all] [--seeds 0,1,2]
        [--only autorec,fm,reference] [--inner autorec|fm [--part r2]]

Published R4: I-AutoRec 0.831 (500 hidden units), BiasedMF 0.845, GC-MC 0.832.
R2: GC-MC with side features 0.905, GLocal-K 0.8889.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

import numpy as np

from _args import add_data_dir
from recfit.config import RatingConfig
from recfit.data.sources import load_dataset, make_split
from recfit.metrics import rmse
from recfit.runs import train_run
from recfit.tasks.rating import build_learner, fit_learner

CONFIGS: dict[str, dict[str, Any]] = {
    "reference": {"budget": 0},  # model auto by size (dot on R4, svdpp on R2), no search
    "autorec": {"model": "autorec"},
    "fm": {"model": "fm"},
}
LABELS = {
    "reference": "recfit default (model auto)",
    "autorec": "autorec (defaults)",
    "fm": "fm (defaults)",
}
PARTS = {"r4": ("ml-1m", "random:0.1"), "r2": ("ml-100k", "u1")}
#: settings scored with --inner (each beside the family's defaults)
INNER: dict[str, list[dict[str, Any]]] = {
    "autorec": [
        {},
        {"lr": 1.25e-3},
        {"lr": 5e-3},
        {"lr": 5e-3, "reg": 100.0},
        {"lr": 5e-3, "reg": 150.0},
        {"lr": 5e-3, "reg": 1000.0},
        {"lr": 1e-2},
        {"lr": 5e-3, "epochs": 50},
        {"autorec_hidden": 1000},
    ],
    "fm": [{}, {"n_factors": 32}, {"reg": 0.1}, {"epochs": 20}],
}


def bench(part: str, seeds: list[int], data_dir: str, only: list[str]) -> None:
    dataset, split = PARTS[part]
    data = load_dataset(dataset, data_dir=data_dir)
    for name in only:
        rmses, secs, loads = [], [], []
        for seed in seeds:
            cfg = RatingConfig(
                dataset=dataset, data_dir=data_dir, split=split, seed=seed, **CONFIGS[name]
            )
            loads.append(os.getloadavg()[0])
            res = train_run(cfg, data=data, progress=False)
            rmses.append(res.metrics["rmse"])
            secs.append(res.metrics["fit_seconds"])
        print(
            f"{part.upper()} {LABELS[name]}: RMSE " + ", ".join(f"{r:.4f}" for r in rmses)
            + f"; median {statistics.median(rmses):.4f} in {statistics.median(secs):.1f} s "
            f"(load average {statistics.median(loads):.2f})",
            flush=True,
        )  # fmt: skip


def inner(
    name: str, data_dir: str, part: str = "r4", only: list[dict[str, Any]] | None = None
) -> None:
    """Score :data:`INNER`'s settings of family ``name`` on an inner cut of the training
    rows of ``part`` (split seed 0): 5% of R4's (10% of R2's) held out, the test rows
    never read."""
    dataset, split = PARTS[part]
    data = load_dataset(dataset, data_dir=data_dir)
    train = make_split(data, split, seed=0, data_dir=data_dir).train
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(train))
    n_valid = len(train) // (20 if part == "r4" else 10)
    fit, valid = train.take(np.sort(perm[n_valid:])), train.take(np.sort(perm[:n_valid]))
    for extra in INNER[name] if only is None else only:
        load = os.getloadavg()[0]
        cfg = RatingConfig(model=name, seed=0, **extra)
        learn = fit_learner(build_learner(cfg, fit, None, progress=False), cfg)
        score = rmse(learn.predict(valid), valid.rating)
        print(
            f"inner {part.upper()} {name} {extra or 'defaults'}: RMSE {score:.4f} in "
            f"{learn.fit_seconds:.1f} s (load average {load:.2f})",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--part", default="all", choices=["r4", "r2", "all"])
    ap.add_argument("--only", default="reference,autorec,fm")
    ap.add_argument("--inner", default=None, choices=["autorec", "fm"])
    ap.add_argument("--settings", default=None, help="with --inner: one JSON object of settings")
    args = ap.parse_args()
    if args.inner:
        only = None if args.settings is None else [json.loads(args.settings)]
        inner(args.inner, args.data_dir, "r2" if args.part == "r2" else "r4", only)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    only = args.only.split(",")
    if args.part in ("r4", "all"):
        bench("r4", seeds, args.data_dir, only)
    if args.part in ("r2", "all"):
        bench("r2", [seeds[0]], args.data_dir, only)


if __name__ == "__main__":
    main()
