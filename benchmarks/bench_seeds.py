"""What averaging more seeds of a family gains, on auto's inner cut of the training rows.

For one protocol and split seed, every family listed trains on auto's inner cut (the 90 %
of the training rows ``recfit.tasks.blend.inner_cut`` keeps; the split's test rows are
never read) with seeds ``seed``, ``seed + 1``, ...; the printout gives each seed's inner
RMSE and the RMSE of the average of the seeds so far, then the two-fold cross-fitted
RMSE (``recfit.models.blend.cross_fitted_rmse``, what auto's blend is chosen by) of a
blend of the first seeds against a blend of the averaged ones. This is the evidence for
auto's seeds stage (``recfit.tasks.auto``: ``BAG_GAIN``, ``BAG_MAX``).

Usage::

    python benchmarks/bench_seeds.py [--protocol r2] [--seed 0]
        [--plan bmf:2,autorec:2,svdpp:3,fm:3,nn:3,timesvdpp:2,dot:3,baseline:1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from _args import add_data_dir
from recfit.config import RatingConfig
from recfit.data.sources import load_dataset, make_split
from recfit.metrics.rating import rmse
from recfit.models.blend import cross_fitted_rmse
from recfit.tasks.blend import inner_cut, member_config, train_on

PROTOCOLS = {
    "r2": ("ml-100k", "u1"),
    "r1": ("ml-100k", "random:0.2"),
    "r4": ("ml-1m", "random:0.1"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--protocol", default="r2", choices=sorted(PROTOCOLS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--plan", default="bmf:2,autorec:2,svdpp:3,fm:3,nn:3,timesvdpp:2,dot:3,baseline:1"
    )
    args = ap.parse_args()
    plan = {k: int(v) for k, v in (x.split(":") for x in args.plan.split(","))}
    dataset, spec = PROTOCOLS[args.protocol]
    data = load_dataset(dataset, data_dir=args.data_dir)
    split = make_split(data, spec, seed=args.seed)
    cut = inner_cut(split.data, split.train_idx, args.seed)
    cfg = RatingConfig(model="svdpp", budget=0, seed=args.seed)
    y, w = cut.test.rating.astype(np.float64), cut.test.weights().astype(np.float64)
    print(f"{args.protocol} seed {args.seed}: inner cut {len(cut.train_idx):,} / "
          f"{len(cut.test_idx):,} rows; load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    first, averaged = {}, {}
    for fam, k in plan.items():
        preds = []
        for j in range(k):
            t0 = time.perf_counter()
            mspec = {"model": fam} if j == 0 else {"model": fam, "seed": args.seed + j}
            learner = train_on(member_config(cfg, mspec), cut, [])
            preds.append(learner.predict(cut.test).astype(np.float64))
            print(f"  {fam:<10} seed {args.seed + j}: {rmse(preds[-1], y, w):.4f}, average of "
                  f"{j + 1}: {rmse(np.mean(preds, 0), y, w):.4f} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
        first[fam], averaged[fam] = preds[0], np.mean(preds, 0)
    names = list(plan)
    one = cross_fitted_rmse(np.stack([first[f] for f in names], 1), y, w, args.seed)
    avg = cross_fitted_rmse(np.stack([averaged[f] for f in names], 1), y, w, args.seed)
    print(
        f"blend of {', '.join(names)}: first seeds {one:.4f}, averaged seeds {avg:.4f}; "
        f"load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
