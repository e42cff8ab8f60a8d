"""Protocol T2 (ml-1m, ratings >= 4 as positives, random 80/20 of those positives).

1. Recall@20, NDCG@20 and HitRate@20 with each user's training items excluded, with 95%
   per-user bootstrap intervals (1,000 resamples), for the two-tower model (in-batch
   softmax with log-Q correction, the ml-1m user and movie features) and the popularity
   baseline. Target: the two-tower model beats popularity with non-overlapping intervals.
2. Speed of a full-catalogue evaluation of ml-1m (6,040 users x 3,706 items: tower
   vectors, exact top-100 with exclusions, ranking report with bootstrap). Target < 5 s,
   median of 5 runs.
3. The top-N families the registry has (task ``topn``: popularity, itemknn, ease, ials,
   bpr, and ``model="auto"``), each through ``recfit.runs.train_run`` with a
   ``TopNConfig`` on the same positives and split: Recall@20, NDCG@20, HitRate@20 with
   95 % per-user intervals (``tasks.topn_eval.evaluate_topn``), fit seconds; then the
   speed of ``evaluate_topn`` on the best of them (ks 10/20/50, 1,000 bootstraps),
   median of ``--eval-runs`` runs. Targets: best Recall@20 >= 0.30 and NDCG@20 >= 0.34,
   fit <= 3 s.

Reference (docs/protocols.md): implicit ALS (64 factors, 15 iterations) Recall@20 0.238,
NDCG@20 0.267 on one such split. The machine's load average is printed (it is shared).

Usage:
    python benchmarks/bench_t2.py [--data-dir DIR] [--seed 0] [--epochs N] [--eval-runs 5]
                                  [--only two-tower|topn] [--families ease,ials]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path
from typing import Any

from recfit.data import movielens
from recfit.tasks.retrieval import (
    evaluate_popularity,
    evaluate_retrieval,
    t2_config,
    train_retrieval,
)

KEYS = ("recall@20", "ndcg@20", "hit_rate@20")


def find_data_dir(arg: str | None) -> Path:
    for cand in (arg, os.environ.get("RECFIT_DATA_DIR"), "../shared/datasets"):
        if cand and (Path(cand) / "ml-1m" / "ratings.dat").exists():
            return Path(cand)
    raise SystemExit("ml-1m not found: pass --data-dir or set RECFIT_DATA_DIR")


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} CPUs"


def row(name: str, rep: dict[str, Any]) -> str:
    cells = []
    for k in KEYS:
        lo, hi = rep[f"{k}_ci"]
        cells.append(f"{k} {rep[k]:.4f} [{lo:.4f}, {hi:.4f}]")
    return f"  {name:<11} " + "  ".join(cells)


def topn(data_dir: Path, seed: int, wanted: list[str] | None, eval_runs: int) -> None:
    """Section 3: the registered top-N families through train_run, then evaluate_topn's speed."""
    from recfit.config import TopNConfig
    from recfit.models.registry import families
    from recfit.runs import train_run
    from recfit.tasks.topn_eval import evaluate_topn

    names = [f.name for f in families("topn")] + ["auto"]
    names = [n for n in names if wanted is None or n in wanted]
    print(f"\n3. Top-N families ({', '.join(names)}), training items excluded")
    best: tuple[float, Any] | None = None
    for name in names:
        cfg = TopNConfig(
            model=name, dataset="ml-1m", data_dir=str(data_dir), positive_min_rating=4.0,
            split="random:0.2", seed=seed, device="cpu",
        )  # fmt: skip
        res = train_run(cfg, progress=False)
        rep = {**res.details, **res.metrics}
        label = name if name != "auto" else f"auto={res.config.model}"
        print(row(label, rep) + f"  fit {res.metrics['fit_seconds']:.2f} s")
        if best is None or rep["recall@20"] > best[0]:
            best = (rep["recall@20"], res)
    if best is None:
        return
    res = best[1]
    times = []
    for _ in range(eval_runs):
        rep = evaluate_topn(res.learner.model, res.split.train, res.split.test, seed=seed)
        times.append(rep["eval_seconds"])
    med = statistics.median(times)
    print(
        f"  evaluate_topn ({res.config.model}; ks 10/20/50, 1,000 bootstraps, "
        f"{rep['n_queries']} users): median {med:.3f} s over {len(times)} runs"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override the T2 preset")
    ap.add_argument("--eval-runs", type=int, default=5)
    ap.add_argument("--only", choices=("two-tower", "topn"), default=None)
    ap.add_argument("--families", default=None, help="top-N families, comma-separated")
    args = ap.parse_args()
    data_dir = find_data_dir(args.data_dir)
    print(f"T2 on ml-1m (positives: rating >= 4), {load()}")
    if args.only != "topn":
        two_tower(data_dir, args)
    if args.only != "two-tower":
        wanted = args.families.split(",") if args.families else None
        topn(data_dir, args.seed, wanted, args.eval_runs)
    print(f"\nafter: {load()}")


def two_tower(data_dir: Path, args: Any) -> None:
    """Sections 1 and 2: the two-tower model against popularity; evaluation speed."""
    data = movielens("ml-1m", data_dir=data_dir, download=False)
    cfg = t2_config(seed=args.seed)
    if args.epochs is not None:
        cfg = cfg.replace(epochs=args.epochs)
    res = train_retrieval(cfg, data, "random:0.2")
    split = res.split
    pop = evaluate_popularity(split.train, split.test, exclude_seen=True, ks=(20,), seed=args.seed)
    print(
        f"\n1. train {len(split.train):,} / test {len(split.test):,} positives, "
        f"{res.report['n_queries']} test users, exclude_seen={res.report['exclude_seen']}"
    )
    print(f"   two-tower: {cfg.epochs} epochs, batch {cfg.bs}, {cfg.opt} lr {cfg.lr}, "
          f"layers {cfg.layer_sizes}, fit {res.metrics['fit_seconds']:.1f} s")  # fmt: skip
    print(row("two-tower", res.report))
    print(row("popularity", pop))
    for k in KEYS:
        apart = res.report[f"{k}_ci"][0] > pop[f"{k}_ci"][1]
        print(f"  {k}: intervals {'do not overlap [PASS]' if apart else 'overlap [FAIL]'}")

    print("\n2. Full-catalogue evaluation, 6,040 x 3,706, top-100, exclusions, 1,000 bootstraps")
    times = []
    for _ in range(args.eval_runs):
        rep = evaluate_retrieval(
            res.model, split.test, train=split.train, exclude_seen=True, ks=(10, 20, 100)
        )
        times.append(rep["eval_seconds"])
    med = statistics.median(times)
    print(f"  median {med:.3f} s over {len(times)} runs [{'PASS' if med < 5 else 'FAIL'} < 5 s]")


if __name__ == "__main__":
    main()
