"""timeSVD++ (``timesvdpp``) and Bayesian MF (``bmf``) on R4 and R2, beside recfit's default.

Protocols (docs/protocols.md): R4 is ml-1m random 90/10 by split seed, R2 ml-100k's
``u1.base`` / ``u1.test``. Each configuration runs through :func:`recfit.runs.train_run`
(what ``recfit train`` does) with the family's defaults (chosen on inner cuts of the
training rows: docs/families.md); the test rows are evaluated once, after training. Each
line prints the RMSEs, the median, the median fitting seconds (``fit_seconds``; compiling
the kernels apart) and the load average; the reference (``recfit train`` with no model
flag) runs in the same process on the same splits, so the ratio of fitting times holds
under the machine's load. With ``--blend`` it also prints the RMSE of a least-squares
blend of the reference, timeSVD++ and BMF fitted on an inner cut of the training rows.

Usage::

    python benchmarks/bench_bayes_time.py [--part r4|r2|all] [--seeds 0,1,2] [--blend]

Published R4: biased MF 0.845, I-AutoRec 0.831, GC-MC 0.832, Sparse FC 0.824, GLocal-K
0.8227. R2: GLocal-K 0.8889, GC-MC 0.905 / 0.910.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import numpy as np

from recfit.config import RatingConfig
from recfit.data.sources import load_dataset
from recfit.runs import train_run

CONFIGS: dict[str, dict[str, Any]] = {
    "recfit size rule (model auto, budget 0)": {"budget": 0},
    "timesvdpp (defaults)": {"model": "timesvdpp"},
    "bmf (defaults)": {"model": "bmf"},
}
PARTS = {"r4": ("ml-1m", "random:0.1"), "r2": ("ml-100k", "u1")}


def _blend_rmse(preds: list[np.ndarray], y: np.ndarray, inner: list[np.ndarray],
                y_inner: np.ndarray) -> float:  # fmt: skip
    """RMSE on the test rows of the ridge blend whose weights were fitted on the inner cut."""
    x = np.stack([*inner, np.ones(len(y_inner))], 1).astype(np.float64)
    w = np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1]), x.T @ y_inner)
    out = np.clip(np.stack([*preds, np.ones(len(y))], 1) @ w, 1, 5)
    return float(np.sqrt(np.mean((out - y) ** 2)))


def bench(part: str, seeds: list[int], data_dir: str, blend: bool) -> None:
    dataset, split = PARTS[part]
    data = load_dataset(dataset, data_dir=data_dir)
    found: dict[str, list[tuple[float, float, float]]] = {k: [] for k in CONFIGS}
    blends: list[float] = []
    for seed in seeds:
        test_preds, inner_preds, y, y_inner = [], [], None, None
        for name, extra in CONFIGS.items():
            cfg = RatingConfig(dataset=dataset, data_dir=data_dir, split=split, seed=seed, **extra)
            load = os.getloadavg()[0]
            res = train_run(cfg, data=data, progress=False)
            compile_s = float(res.learner.compile_seconds)
            found[name].append((res.metrics["rmse"], res.metrics["fit_seconds"], compile_s))
            print(f"  {part} seed {seed} {name}: RMSE {res.metrics['rmse']:.4f}, fit "
                  f"{res.metrics['fit_seconds']:.1f} s, compile {compile_s:.1f} s, load "
                  f"{load:.2f}", flush=True)  # fmt: skip
            if blend:
                sp = res.split
                y = sp.test.rating.astype(np.float64)
                test_preds.append(res.learner.predict(sp.test))
                # the blend's weights: the same config fitted on 90 % of the training rows,
                # scored on the other 10 % (never the test rows)
                inner_cfg = cfg.replace(split="random:0.1", seed=seed + 1000)
                inner = train_run(inner_cfg, data=sp.train, progress=False)
                y_inner = inner.split.test.rating.astype(np.float64)
                inner_preds.append(inner.learner.predict(inner.split.test))
        if blend and y is not None and y_inner is not None:
            blends.append(_blend_rmse(test_preds, y, inner_preds, y_inner))
            print(f"  {part} seed {seed} blend of all three: RMSE {blends[-1]:.4f}", flush=True)
    ref = statistics.median(s for _, s, _ in found["recfit default (model auto)"])
    for name, rows in found.items():
        rmse = [r for r, _, _ in rows]
        fit = statistics.median(s for _, s, _ in rows)
        print(f"{part} {name}: RMSE " + ", ".join(f"{r:.4f}" for r in rmse)
              + f"; median {statistics.median(rmse):.4f} in {fit:.1f} s "
              f"({fit / ref:.2f}x the default's fit; compile "
              f"{statistics.median(c for _, _, c in rows):.1f} s)", flush=True)  # fmt: skip
    if blends:
        print(f"{part} blend (default + timesvdpp + bmf, weights on an inner cut): median "
              f"{statistics.median(blends):.4f}", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("RECFIT_DATA_DIR"))
    ap.add_argument("--part", default="all", choices=["r4", "r2", "all"])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--blend", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    for part in ("r4", "r2") if args.part == "all" else (args.part,):
        bench(part, seeds if part == "r4" else [0], args.data_dir, args.blend)


if __name__ == "__main__":
    main()
