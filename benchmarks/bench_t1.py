"""Protocol T1 (ml-100k, keras-rs Deep Recommenders): top-100 accuracy and speed.

1. keras-rs's objective (MSE on the rating rescaled to [0, 1]) with towers of 1, 2 and 3
   dense layers ((32,), (64, 32), (128, 64, 32)), Adagrad 0.05, batch 1000, 30 epochs,
   the keras-rs features (user id, age bucket, gender, gender x age, occupation; movie
   id, title tokens, genres). Target: top-100 accuracy >= 0.30 for each depth
   (keras-rs: 0.31 / 0.309 / 0.301).
2. recfit's best objective (in-batch softmax, temperature 0.1, log-Q correction,
   accidental hits removed), same features, optimiser and metric. Target: >= 0.40,
   median over 5 seeds.
3. The popularity baseline on the same metric, for context.

Top-100 accuracy = share of test ratings of 5 stars whose movie is among the user's top
100 of the whole catalogue, items seen in training NOT excluded. Each seed draws its own
random 80/20 split. Figures are medians over seeds; fit time is the 30 epochs alone.
The machine's load average is printed before and after (the machine is shared).

Usage:
    python benchmarks/bench_t1.py [--data-dir DIR] [--seeds 5] [--mse-seeds 1] [--epochs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from recfit.data import movielens
from recfit.data.sources import make_split
from recfit.tasks.retrieval import evaluate_popularity, t1_config, train_retrieval

DEPTHS = ((32,), (64, 32), (128, 64, 32))
KERAS = {1: 0.31, 2: 0.309, 3: 0.301}


def find_data_dir(arg: str | None) -> Path:
    for cand in (arg, os.environ.get("RECFIT_DATA_DIR"), "../shared/datasets"):
        if cand and (Path(cand) / "ml-100k" / "u.data").exists():
            return Path(cand)
    raise SystemExit("ml-100k not found: pass --data-dir or set RECFIT_DATA_DIR")


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the softmax runs")
    ap.add_argument("--mse-seeds", type=int, default=1, help="seeds of each MSE depth")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    data = movielens("ml-100k", data_dir=find_data_dir(args.data_dir), download=False)
    print(f"T1 on ml-100k ({len(data):,} ratings), {args.epochs} epochs, batch 1000")
    print(f"before: {load()}")

    print("\n1. MSE objective (keras-rs parity), target top-100 accuracy >= 0.30")
    for sizes in DEPTHS:
        accs, fits = [], []
        for seed in range(args.mse_seeds):
            cfg = t1_config("mse", layers=sizes, epochs=args.epochs, seed=seed, n_bootstrap=0)
            res = train_retrieval(cfg, data, "random:0.2")
            accs.append(res.metrics["top_100_accuracy"])
            fits.append(res.metrics["fit_seconds"])
        acc, fit = statistics.median(accs), statistics.median(fits)
        ok = "PASS" if acc >= 0.30 else "FAIL"
        print(
            f"  {len(sizes)} layer(s) {sizes!s:<14} top-100 accuracy {acc:.4f} "
            f"(keras-rs {KERAS[len(sizes)]}) [{ok}]  fit {fit:.1f} s "
            f"[{'PASS' if fit < 30 else 'FAIL'} < 30 s]  runs {len(accs)}"
        )

    print("\n2. In-batch softmax (T=0.1, log-Q, accidental hits removed), target >= 0.40")
    accs, fits, evals, pops = [], [], [], []
    for seed in range(args.seeds):
        cfg = t1_config("softmax", epochs=args.epochs, seed=seed, n_bootstrap=1000)
        res = train_retrieval(cfg, data, "random:0.2")
        accs.append(res.metrics["top_100_accuracy"])
        fits.append(res.metrics["fit_seconds"])
        evals.append(res.metrics["eval_seconds"])
        split = make_split(data, "random:0.2", seed=seed)
        pop = evaluate_popularity(
            split.train, split.test, exclude_seen=False, ks=(100,), relevant_min_rating=5.0,
            n_bootstrap=0,
        )  # fmt: skip
        pops.append(pop["top_100_accuracy"])
        lo, hi = res.report["top_100_accuracy_ci"]
        print(
            f"  seed {seed}: top-100 accuracy {accs[-1]:.4f} (95% CI {lo:.3f}-{hi:.3f}), "
            f"recall@20 {res.metrics['recall@20']:.4f}, fit {fits[-1]:.1f} s"
        )
    med = statistics.median(accs)
    print(
        f"  median over {len(accs)} seeds: {med:.4f} [{'PASS' if med >= 0.40 else 'FAIL'}]  "
        f"fit {statistics.median(fits):.1f} s, evaluation {statistics.median(evals):.3f} s"
    )
    print(f"\n3. Popularity baseline top-100 accuracy: median {statistics.median(pops):.4f}")
    print(f"\nafter: {load()}")
    t = time.strftime("%Y-%m-%d %H:%M")
    print(f"({t}; exclude_seen=False for every figure, as T1 defines it)")


if __name__ == "__main__":
    main()
