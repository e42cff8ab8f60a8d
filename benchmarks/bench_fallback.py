"""The baseline for never-trained users and items: before / after on R1, R2, R4 and a cold split.

A rating model answers a pair whose user or item had no training row of positive weight
with its baseline (global mean plus the known side's bias) instead of its untrained
embeddings. Both answers come from the *same* trained model: "before" is the model's own
output for every row (what recfit predicted before the baseline existed), "after" is
``Learner.predict`` (the baseline on those rows). Printed per protocol: the rows that fell
back, then MSE / RMSE over all test rows before and after, and RMSE over the fallback rows
alone.

Protocols: R1 (ml-100k random 80/20, split seed 0: one seed, quicker than bench_r1's five),
R2 (ml-100k u1), R4 (ml-1m random 90/10, seed 0), ml-1m's temporal 90/10 split (new users
arrive over time), each with ``recfit train``'s defaults; and a *cold split*: 10 % of the items held out entirely (every row in the test part) plus a
random 10 % of the other rows, where the baseline matters, for several model families.

Usage::

    python benchmarks/bench_fallback.py [--data-dir DIR] [--part r1|r2|r4|temporal|cold|cold-1m|all]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

import numpy as np

from _args import add_data_dir
from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.data.sources import load_dataset, split_dataset
from recfit.models import RatingClassifier
from recfit.tasks.rating import build_learner, fit_learner
from recfit.train import Learner


def _both(learn: Learner, test: Interactions) -> dict[str, Any]:
    model = learn.model
    after = learn.predict(test)
    fb = learn.fallback(test)
    saved = model.train_user_count.clone()
    model.train_user_count.fill_(-1)  # no record: every row through the embeddings
    try:
        before = learn.predict(test)
    finally:
        model.train_user_count.copy_(saved)
    r = test.rating.astype(np.float64)

    def mse(p: np.ndarray, m: np.ndarray) -> float:
        return float(np.mean((p[m].astype(np.float64) - r[m]) ** 2)) if m.any() else math.nan

    every = np.ones(len(r), dtype=bool)
    return {
        "n": len(r),
        "n_fallback": int(fb.sum()),
        "mse_before": mse(before, every),
        "mse_after": mse(after, every),
        "rmse_fb_before": math.sqrt(mse(before, fb)) if fb.any() else math.nan,
        "rmse_fb_after": math.sqrt(mse(after, fb)) if fb.any() else math.nan,
        "mean_fb_before": float(before[fb].mean()) if fb.any() else math.nan,
        "mean_fb_after": float(after[fb].mean()) if fb.any() else math.nan,
    }


def _print(label: str, res: dict[str, Any], seconds: float) -> None:
    print(
        f"{label}: {res['n_fallback']:,} of {res['n']:,} test rows fell back; "
        f"MSE {res['mse_before']:.4f} -> {res['mse_after']:.4f} "
        f"(RMSE {math.sqrt(res['mse_before']):.4f} -> {math.sqrt(res['mse_after']):.4f}); "
        f"fallback rows: RMSE {res['rmse_fb_before']:.4f} -> {res['rmse_fb_after']:.4f}, "
        f"mean prediction {res['mean_fb_before']:.3f} -> {res['mean_fb_after']:.3f} "
        f"[{seconds:.0f} s, load {os.getloadavg()[0]:.1f}]",
        flush=True,
    )


def _run(cfg: RatingConfig, train: Interactions, test: Interactions) -> tuple[Learner, float]:
    t0 = time.perf_counter()
    learn = build_learner(cfg, train, None, progress=False)
    fit_learner(learn, cfg)
    return learn, time.perf_counter() - t0


def protocol(label: str, dataset: str, split: str, data_dir: str) -> None:
    data = load_dataset(dataset, data_dir=data_dir)
    cfg = RatingConfig(dataset=dataset, data_dir=data_dir, split=split, seed=0)
    sp = split_dataset(data, split, seed=0, data_dir=data_dir)
    learn, secs = _run(cfg, sp.train, sp.test)
    _print(f"{label} ({learn.model.registry_name}, defaults)", _both(learn, sp.test), secs)


def cold_split(data: Interactions, seed: int = 0) -> tuple[Interactions, Interactions]:
    """10 % of the items held out entirely, plus a random 10 % of the other rows."""
    rng = np.random.default_rng(seed)
    cold_items = rng.permutation(data.n_items)[: data.n_items // 10]
    cold = np.isin(data.item, cold_items)
    test = cold | (rng.random(len(data)) < 0.1)
    return data.take(np.flatnonzero(~test)), data.take(np.flatnonzero(test))


COLD_FAMILIES: dict[str, dict[str, Any]] = {
    "defaults (model auto)": {},
    "dot (fastai: y_range (0, 5.5), wd 0.1)": {
        "model": "dot", "y_range": (0.0, 5.5), "wd": 0.1, "reg": 0.0, "epochs": 5,
    },
    "mf": {"model": "mf"},
    "nn": {"model": "nn", "y_range": (0.0, 5.5), "epochs": 5},
}  # fmt: skip


def cold(dataset: str, data_dir: str, families: list[str]) -> None:
    data = load_dataset(dataset, data_dir=data_dir)
    train, test = cold_split(data)
    for name in families:
        cfg = RatingConfig(dataset=dataset, data_dir=data_dir, seed=0, **COLD_FAMILIES[name])
        learn, secs = _run(cfg, train, test)
        _print(f"cold {dataset} {name} [{learn.model.registry_name}]", _both(learn, test), secs)
    if dataset == "ml-100k":  # ratings as classes: the expected rating falls back too
        from recfit.tasks.classification import train_classifier

        t0 = time.perf_counter()
        fit = train_classifier(train, None, epochs=5, progress=False, seed=0)
        assert isinstance(fit.learner.model, RatingClassifier)
        _print(f"cold {dataset} classifier (expected rating)", _both(fit.learner, test),
               time.perf_counter() - t0)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    parts = ["r1", "r2", "r4", "temporal", "cold", "cold-1m", "all"]
    ap.add_argument("--part", default="all", choices=parts)
    args = ap.parse_args()
    p, d = args.part, args.data_dir
    if p in ("r1", "all"):
        protocol("R1 ml-100k 80/20 seed 0", "ml-100k", "random:0.2", d)
    if p in ("r2", "all"):
        protocol("R2 ml-100k u1", "ml-100k", "u1", d)
    if p in ("r4", "all"):
        protocol("R4 ml-1m 90/10 seed 0", "ml-1m", "random:0.1", d)
    if p in ("temporal", "all"):  # new users and items appear over time
        protocol("ml-1m temporal 90/10", "ml-1m", "temporal:0.1", d)
    if p in ("cold", "all"):
        cold("ml-100k", d, list(COLD_FAMILIES))
    if p in ("cold-1m", "all"):
        cold("ml-1m", d, ["defaults (model auto)"])


if __name__ == "__main__":
    main()
