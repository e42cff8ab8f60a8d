"""``recfit tune`` on R4 (ml-1m, random 90/10), against the hand-chosen default in the same run.

Parts:

* ``r4``: the command ``recfit tune -d ml-1m --split random:0.1 --model dot --budget B
  --seed S --out OUT`` (in a subprocess, exactly as a user runs it), and, in the same run,
  ``recfit train``'s default config on the same split (DotBias 50, row-wise Adagrad: R4
  test RMSE 0.8403 on seed 0). Prints the trials reached by state, the search's wall
  seconds, the load average, the inner RMSE of the default and of the best config, and
  the test RMSE of both (the test part is evaluated once for each, after the search).
  Target: the tuned config's test RMSE <= the default's within a 600 s budget.
* ``defaults``: the recheck of ``ROW_WISE_DEFAULTS`` (``lr``, ``wd``, ``reg`` of row-wise
  Adagrad): a search over those three only, DotBias 50 and 5 epochs fixed, on the inner
  cut of R4's training rows (split seeds given by ``--seeds``); prints the inner RMSE of
  the defaults (the first trial) and of the best setting found.

The machine is shared: the budget is wall-clock time, so a loaded machine reaches fewer
trials; the load average is printed beside every figure.

Usage::

    python benchmarks/bench_tune.py --part r4 [--budget 600] [--seed 0] [--out DIR]
    python benchmarks/bench_tune.py --part defaults [--budget 300] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _args import add_data_dir
from recfit.config import RatingConfig
from recfit.config.base import ROW_WISE_DEFAULTS
from recfit.data.sources import load_dataset
from recfit.models.search import Param
from recfit.runs import train_run
from recfit.tasks.common import load_split
from recfit.tasks.tuning import tune

ROW_WISE_SPACE = {
    "lr": Param(0.005, 0.2, log=True),
    "wd": Param(0.0, 0.1),
    "reg": Param(0.002, 0.2, log=True),
}
"""The recheck's space: around ROW_WISE_DEFAULTS (lr 0.03, wd 0, reg 0.02)."""


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def bench_r4(budget: float, seed: int, data_dir: str, out: Path) -> None:
    data = load_dataset("ml-1m", data_dir=data_dir)
    cfg = RatingConfig(dataset="ml-1m", data_dir=data_dir, split="random:0.1", seed=seed,
                       model="dot")  # fmt: skip
    print(f"load average (1/5/15 min) at the start: {_load()}", flush=True)
    default = train_run(cfg, data=data, progress=False)
    print(
        f"default (recfit train --model dot): test RMSE {default.metrics['rmse']:.4f} in "
        f"{default.metrics['fit_seconds']:.1f} s (load {_load()})",
        flush=True,
    )
    cmd = [sys.executable, "-m", "recfit", "tune", "-d", "ml-1m", "--data-dir", data_dir,
           "--split", "random:0.1", "--model", "dot", "--budget", f"{budget:g}", "--seed",
           str(seed), "--out", str(out), "--force"]  # fmt: skip
    print("$ " + " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    s = json.loads((out / "tune.json").read_text())
    final = s["final"]
    n = sum(s["trials"].values())
    print(
        f"\nR4 seed {seed}: {n} trials ({', '.join(f'{v} {k}' for k, v in s['trials'].items())})"
        f" in a {s['budget_s']:g} s budget; search {s['seconds']:.0f} s, whole command "
        f"{wall:.0f} s; load at the end {_load()}\n"
        f"inner RMSE: default {s['default_score']:.4f}, best {s['best_score']:.4f} "
        f"(trial {s['best_trial']}: {s['best_params']})\n"
        f"test RMSE (once each): default {default.metrics['rmse']:.4f}, tuned "
        f"{final['rmse']:.4f} ({final['rmse'] / default.metrics['rmse']:.4f}x; "
        f"target <= default: {'met' if final['rmse'] <= default.metrics['rmse'] else 'NOT met'})"
        f"; tuned fit {final['fit_seconds']:.1f} s",
        flush=True,
    )


def bench_defaults(budget: float, seeds: list[int], data_dir: str) -> None:
    data = load_dataset("ml-1m", data_dir=data_dir)
    for seed in seeds:
        cfg = RatingConfig(dataset="ml-1m", data_dir=data_dir, split="random:0.1", seed=seed,
                           model="dot")  # fmt: skip
        train = load_split(cfg, data).train
        r = tune(cfg, train, budget_s=budget, seed=seed, space=ROW_WISE_SPACE)
        best = r.best_trial
        print(
            f"R4 seed {seed} inner cut ({r.valid_rows:,} rows): ROW_WISE_DEFAULTS "
            f"{ROW_WISE_DEFAULTS} RMSE {r.default_score:.4f}; best of {len(r.trials)} trials "
            f"({r.counts()}) {r.best_score:.4f} at "
            + ", ".join(f"{k}={v:.3g}" for k, v in best.params.items())
            + f" (gain {float(r.default_score or 0) - r.best_score:.4f}; load {_load()})",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--part", default="r4", choices=["r4", "defaults"])
    ap.add_argument("--budget", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.part == "r4":
        out = args.out or Path(tempfile.mkdtemp(prefix="bench_tune_"))
        bench_r4(args.budget or 600.0, args.seed, args.data_dir, out)
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        bench_defaults(args.budget or 300.0, seeds, args.data_dir)


if __name__ == "__main__":
    main()
