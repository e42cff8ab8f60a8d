"""Classification on half-star data: speed per rating and expected-rating MSE.

There is no half-star MovieLens release offline (only ml-100k and ml-1m), so this script
builds two proxies in memory from them, reproducibly (nothing is written to disk):

* ``half-100k``: ml-100k with half stars. Each user is a "half-star user" with
  probability 1/2 (seeded); each rating of such a user is lowered by half a star with
  probability 1/2 (seeded per rating). Ratings then run 0.5..5 in half steps, ten levels,
  and users differ in how they use the scale (in ml-latest-small many users never give a
  half star). Limit: the half steps carry no information beyond the whole stars (the
  lowering is random), so about 1/32 of MSE is noise no model can remove.
* ``shape-small``: ml-latest-small's shape (610 users, 9,724 items, 100,836 ratings):
  610 ml-1m users drawn at random (the first seeded draw with at least 100,836 ratings,
  then subsampled to 100,836), each movie split
  into ``ceil(n_i / m)`` copies (``m`` chosen so that there are 9,724 items, each rating
  assigned to a copy at random), then half stars as above. Limit: the copies of a movie
  are similar items with flat popularity, where the real release has a long tail of
  items rated once or twice.

For each data set (integer ml-100k too) and each split seed, on a random 80/20 split:
the classification default and OrdRec (``--models``) with their fit seconds per training
rating, the expected-rating and argmax MSE, and the regression default (SVD++) on the
same split. Speed: fit seconds per rating against integer ml-100k's in the same run
(ratios), with the load average.

    python benchmarks/bench_halfstar.py --seeds 0 1 2
    python benchmarks/bench_halfstar.py --speed-only --speed 3   # the speed part alone

The speed part comes first: each classification model fits 2 epochs on each data set in
turn, 3 rounds, and the ratio of its fit seconds per rating to int-100k's is taken within
each round (the same load); the accuracy part then trains the full defaults per seed
(its fit seconds are printed too, but they depend on the load of the moment).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recfit.config import ClassificationConfig, RatingConfig
from recfit.data import Interactions
from recfit.models import OrdRec
from recfit.runs import train_run
from recfit.train.callbacks import Callback

SMALL_USERS, SMALL_ITEMS, SMALL_RATINGS = 610, 9_724, 100_836
"""ml-latest-small's counts (the public release with half stars)."""


def read_ml100k(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(
        data_dir / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "ts"]
    )


def read_ml1m(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(
        data_dir / "ml-1m" / "ratings.dat", sep="::", engine="python",
        names=["user", "item", "rating", "ts"],
    )  # fmt: skip


def half_stars(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Half of the users (seeded) lower each rating by 0.5 with probability 1/2."""
    rng = np.random.default_rng(seed)
    users = np.unique(df.user.to_numpy())
    half_users = users[rng.random(len(users)) < 0.5]
    lower = df.user.isin(half_users).to_numpy() & (rng.random(len(df)) < 0.5)
    out = df.copy()
    out["rating"] = df.rating.to_numpy(dtype=np.float64) - 0.5 * lower
    return out


def small_shape(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """ml-latest-small's shape from ml-1m: 610 users (the first seeded draw with at
    least 100,836 ratings), 100,836 ratings, 9,724 items (or a few fewer)."""
    rng = np.random.default_rng(seed)
    all_users = np.unique(df.user.to_numpy())
    while True:  # the first draw (seeded) with at least SMALL_RATINGS ratings
        users = rng.choice(all_users, SMALL_USERS, replace=False)
        sub = df[df.user.isin(users)]
        if len(sub) >= SMALL_RATINGS:
            break
    if len(sub) > SMALL_RATINGS:
        sub = sub.iloc[np.sort(rng.choice(len(sub), SMALL_RATINGS, replace=False))]
    sub = sub.reset_index(drop=True)
    counts = sub.item.value_counts()
    lo, hi = 1.0, float(counts.max())
    for _ in range(60):  # m such that sum(ceil(n_i / m)) is SMALL_ITEMS (or just below)
        mid = (lo + hi) / 2
        if int(np.ceil(counts.to_numpy() / mid).sum()) > SMALL_ITEMS:
            lo = mid
        else:
            hi = mid
    copies = np.ceil(counts / hi).astype(np.int64)
    n_copies = copies.reindex(sub.item).to_numpy()
    which = (rng.random(len(sub)) * n_copies).astype(np.int64)
    out = sub.copy()
    out["item"] = sub.item.to_numpy() * 1000 + which
    return out


def interactions(df: pd.DataFrame, name: str) -> Interactions:
    r = df.rating.to_numpy(dtype=np.float64)
    scale = (0.5, 5.0) if (r != np.round(r)).any() else (1.0, 5.0)
    return Interactions.from_arrays(
        df.user.to_numpy(), df.item.to_numpy(), r, timestamp=df.ts.to_numpy(),
        rating_scale=scale, name=name,
    )  # fmt: skip


def datasets(data_dir: Path, which: list[str]) -> dict[str, Interactions]:
    out: dict[str, Interactions] = {}
    ml100k = read_ml100k(data_dir)
    if "int-100k" in which:
        out["int-100k"] = interactions(ml100k, "int-100k")
    if "half-100k" in which:
        out["half-100k"] = interactions(half_stars(ml100k), "half-100k")
    if "shape-small" in which:
        out["shape-small"] = interactions(
            half_stars(small_shape(read_ml1m(data_dir))), "shape-small"
        )
    return out


MODELS: dict[str, dict[str, Any]] = {
    "classifier": {},  # the task's default
    "ordrec": {"model": "ordrec"},  # its family defaults (implicit term on)
    "ordrec-mf": {"model": "ordrec", "implicit": False},  # the biased-MF score only
    "ordrec-torch": {"model": "ordrec"},  # the implicit term by PyTorch operations
}
"""Classification models by name; ``regression`` is the regression default (SVD++).
``ordrec-torch`` is ``ordrec`` with the implicit term's rows updated by PyTorch
operations instead of the compiled kernels (``OrdRec.fused_kernel = False``; its ``y`` rows
step at every step, ``implicit_every`` aside), the reference the kernels are timed against."""


class FitCPU(Callback):
    """The process's CPU seconds over the fit (all its threads): less disturbed by other
    processes on a loaded machine than wall time, though they still share the caches."""

    cpu = 0.0

    def before_fit(self) -> None:
        self._t0 = time.process_time()

    def after_fit(self) -> None:
        self.cpu = time.process_time() - self._t0


def run_one(data: Interactions, kind: str, seed: int, extra: dict[str, Any]) -> dict[str, Any]:
    if kind == "regression":
        cfg: Any = RatingConfig(seed=seed, model="svdpp")
    else:
        cfg = ClassificationConfig(seed=seed, **{**MODELS[kind], **extra})
    t0 = time.perf_counter()
    OrdRec.fused_kernel = kind != "ordrec-torch"
    timer = FitCPU()
    try:
        res = train_run(cfg, data=data, progress=False, callbacks=[timer])
    finally:
        OrdRec.fused_kernel = True
    m = res.metrics
    n = len(res.split.train)
    return {
        "fit": res.learner.fit_seconds, "wall": time.perf_counter() - t0, "n_train": n,
        "cpu": timer.cpu,
        "mse": m["mse"], "mse_argmax": m.get("mse_argmax", float("nan")),
    }  # fmt: skip


def speed(data: dict[str, Interactions], models: list[str], reps: int, epochs: int) -> None:
    """Fit seconds per rating and epoch of each classification model, alternating the
    data sets within each round (same run, same load); medians of the ratios to int-100k."""
    print(f"\nspeed: {epochs} epochs a fit, {reps} rounds, data sets alternated in each round")
    for kind in [k for k in models if k != "regression"]:
        # compile (or load from the cache) the model's kernels apart from the timed fits
        run_one(data["int-100k"].take(np.arange(5_000)), kind, 0, {"epochs": 1})
        ratios: dict[str, list[float]] = {n: [] for n in data if n != "int-100k"}
        cpu_ratios: dict[str, list[float]] = {n: [] for n in ratios}
        per: dict[str, list[float]] = {n: [] for n in data}
        cpu: dict[str, list[float]] = {n: [] for n in data}
        for rnd in range(reps):
            for name, d in data.items():
                r = run_one(d, kind, rnd, {"epochs": epochs})
                per[name].append(r["fit"] / (r["n_train"] * epochs))
                cpu[name].append(r["cpu"] / (r["n_train"] * epochs))
            for name in ratios:
                ratios[name].append(per[name][-1] / per["int-100k"][-1])
                cpu_ratios[name].append(cpu[name][-1] / cpu["int-100k"][-1])
        cells = "  ".join(f"{n} {1e6 * statistics.median(v):.2f} us" for n, v in per.items())
        rel = "  ".join(
            f"{n}/int-100k {statistics.median(v):.2f}x ({', '.join(f'{x:.2f}' for x in v)})"
            for n, v in ratios.items()
        )
        cpu_rel = "  ".join(
            f"{n} {statistics.median(v):.2f}x ({', '.join(f'{x:.2f}' for x in v)})"
            for n, v in cpu_ratios.items()
        )
        print(f"{kind:11s} per rating-epoch: {cells}  |  {rel}  |  CPU seconds: {cpu_rel}  "
              f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("RECFIT_DATA_DIR", "/work/shared/datasets"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--data", nargs="+", default=["int-100k", "half-100k", "shape-small"])
    p.add_argument(
        "--models", nargs="+", default=["classifier", "ordrec", "ordrec-mf", "regression"]
    )
    p.add_argument("--speed", type=int, default=3, help="rounds of the speed part (0: none)")
    p.add_argument("--speed-epochs", type=int, default=2)
    p.add_argument("--speed-only", action="store_true", help="skip the accuracy part")
    args = p.parse_args(argv)
    if "int-100k" not in args.data:
        p.error("--data must include int-100k (the reference of the ratios)")
    data = datasets(Path(args.data_dir), args.data)
    for name, d in data.items():
        print(f"{name}: {len(d):,} ratings, {d.n_users:,} users, {d.n_items:,} items, "
              f"{len(np.unique(d.rating))} levels", flush=True)  # fmt: skip
    if args.speed:
        speed(data, args.models, args.speed, args.speed_epochs)
    if args.speed_only:
        return 0
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for name, d in data.items():  # alternate the data sets within each seed
            for kind in args.models:
                r = run_one(d, kind, seed, {})
                r.update(data=name, model=kind, seed=seed, load=os.getloadavg()[0])
                rows.append(r)
                print(f"seed {seed} {name:12s} {kind:11s} fit {r['fit']:6.2f} s "
                      f"({1e6 * r['fit'] / r['n_train']:5.2f} us/rating)  mse {r['mse']:.4f}  "
                      f"argmax {r['mse_argmax']:.4f}  load {r['load']:.2f}", flush=True)  # fmt: skip
    frame = pd.DataFrame(rows)
    print("\nmedians over seeds (fit us per training rating; ratio to int-100k, same model):")
    base = {k: statistics.median(frame[(frame.data == "int-100k") & (frame.model == k)].fit
                                 / frame[(frame.data == "int-100k") & (frame.model == k)].n_train)
            for k in args.models if "int-100k" in data}  # fmt: skip
    for (name, kind), g in frame.groupby(["data", "model"], sort=False):
        per = statistics.median(g.fit / g.n_train)
        reg = frame[(frame.data == name) & (frame.model == "regression")]
        ratio = f"{per / base[kind]:.2f}x" if kind in base else "-"
        gap = (f"{statistics.median(g.mse.to_numpy() - reg.mse.to_numpy()):+.4f}"
               if len(reg) == len(g) else "-")  # fmt: skip
        print(f"{name:12s} {kind:11s} {1e6 * per:6.2f} us/rating ({ratio})  mse "
              f"{statistics.median(g.mse):.4f} (vs regression {gap})  argmax "
              f"{statistics.median(g.mse_argmax):.4f}")  # fmt: skip
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
