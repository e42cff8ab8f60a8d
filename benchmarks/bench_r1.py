"""Protocol R1 (ml-100k, random 80/20): fastai's configuration and recfit's best default.

Prints, per configuration, the validation MSE of each split seed, the median, and the
median training seconds (``Learner.fit_seconds``) with ratings/s (training ratings x
epochs / seconds). Usage::

    python benchmarks/bench_r1.py [--data-dir DIR] [--part fastai|best|dot|nn|all]

The data directory defaults to $RECFIT_DATA_DIR or ../shared/datasets.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from _args import add_data_dir
from recfit.config import RatingConfig
from recfit.data import Interactions, make_split
from recfit.models import DotBias, EmbeddingNN, RatingModel
from recfit.runs import train_run
from recfit.train import Learner


@dataclass
class Config:
    name: str
    seeds: tuple[int, ...]
    build: Callable[[Interactions], RatingModel] | None  # with the training part; None:
    # exactly `recfit train --seed SEED` (the default config, through train_run)
    epochs: int = 5
    lr: float = 5e-3
    wd: float = 0.1
    reg: float = 0.0
    bs: int = 64
    reference: str = ""


CONFIGS = {
    "fastai": Config(
        "fastai collab (DotBias 50, y_range (0, 5.5), one-cycle 5 x 5e-3, wd 0.1, bs 64)",
        (42, 7, 1),
        lambda d: DotBias(d.n_users, d.n_items, 50, y_range=(0.0, 5.5)),
        reference="fastai 2.8.12: 0.846 / 0.855 / 0.862, ~31 s",
    ),
    "best": Config(
        "best default, as `recfit train` runs it (model auto = SVD++ 50, y_range (0, 5.5), "
        "reg 0.05, wd 0.05, one-cycle 6 x 5e-3, pct_start 0.3)",
        (0, 1, 2, 3, 4),
        None,
        epochs=6,
        reference="target: median <= 0.80",
    ),
    "dot": Config(
        "DotBias 50 with the default's training (y_range (0, 5.5), reg 0.05, wd 0.05)",
        (0, 1, 2, 3, 4),
        lambda d: DotBias(d.n_users, d.n_items, 50, y_range=(0.0, 5.5)),
        wd=0.05,
        reg=0.05,
        reference="the default before SVD++",
    ),
    "nn": Config(
        "EmbeddingNN (layers (100,), y_range (0, 5.5), one-cycle 5 x 5e-3, wd 0.1)",
        (42,),
        lambda d: EmbeddingNN(d.n_users, d.n_items, layers=(100,), y_range=(0.0, 5.5)),
        reference="fastai: 0.852-0.854, ~45 s",
    ),
}


def load_ml100k(data_dir: Path) -> Interactions:
    """ml-100k through recfit.data.movielens when present, else a minimal pandas read."""
    try:
        from recfit.data import movielens  # type: ignore[attr-defined]

        return movielens.load("ml-100k", data_dir=data_dir)  # type: ignore[no-any-return]
    except (ImportError, AttributeError, TypeError):
        df = pd.read_csv(
            data_dir / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "ts"]
        )
        return Interactions.from_arrays(
            df.user.to_numpy(),
            df.item.to_numpy(),
            df.rating.to_numpy(dtype=np.float64),
            timestamp=df.ts.to_numpy(),
            rating_scale=(1.0, 5.0),
            name="ml-100k",
        )


def run(data: Interactions, cfg: Config, seed: int) -> tuple[float, float, int]:
    if cfg.build is None:
        res = train_run(RatingConfig(seed=seed, budget=0), data=data, progress=False)
        assert res.config.model == "svdpp" and res.config.epochs == cfg.epochs
        return res.metrics["mse"], res.learner.fit_seconds, len(res.split.train) * cfg.epochs
    split = make_split(data, "random:0.2", seed=seed)
    learn = Learner(
        cfg.build(split.train), split.train, split.test, bs=cfg.bs, wd=cfg.wd, reg=cfg.reg,
        seed=seed, progress=False,
    )  # fmt: skip
    learn.fit_one_cycle(cfg.epochs, cfg.lr, wd=cfg.wd)
    return learn.history[-1]["mse"], learn.fit_seconds, len(split.train) * cfg.epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--part", default="all", choices=[*CONFIGS, "all"])
    args = ap.parse_args()
    data = load_ml100k(Path(args.data_dir))
    parts = list(CONFIGS) if args.part == "all" else [args.part]
    for key in parts:
        cfg = CONFIGS[key]
        results = [run(data, cfg, s) for s in cfg.seeds]
        mses = [r[0] for r in results]
        secs = statistics.median(r[1] for r in results)
        rate = statistics.median(r[2] / r[1] for r in results)
        print(f"R1 {cfg.name}")
        print("  valid MSE by split seed: " + ", ".join(
            f"{s}: {m:.4f}" for s, m in zip(cfg.seeds, mses, strict=True)
        ))  # fmt: skip
        print(
            f"  median MSE {statistics.median(mses):.4f}; median training {secs:.2f} s; "
            f"{rate:,.0f} ratings/s   ({cfg.reference})"
        )


if __name__ == "__main__":
    main()
