"""recfit on every shared protocol (R1-R5, T1, T2, S-T), on the shared split rows.

Rating protocols train through ``recfit.tasks.rating.build_learner`` / ``fit_learner``
with a :class:`~recfit.config.RatingConfig` on a :class:`~recfit.data.split.Split` built from
the shared row files; metrics are recfit's own ``Learner.evaluate`` (MSE, RMSE, MAE on
1-5 stars). Retrieval protocols train through ``recfit.tasks.retrieval.train_retrieval``
with the T1 / T2 presets, and are scored with ``common.ranking_metrics`` /
``common.topk_accuracy`` (the functions that score the peers) from the towers' vectors;
recfit's own report is kept beside them as a cross-check. On T2 the top-N families
(``popularity``, ``itemknn``, ``ease``, ``ials``, ``bpr`` and ``model="auto"``, those the
registry has) train through ``recfit.runs.train_run`` with a
:class:`~recfit.config.TopNConfig` (ml-1m, ratings >= 4, ``random:0.2``, seed 0: the
shared T2 rows, checked pair by pair) and are scored by ``common.ranking_metrics`` from
the model's own ``score_users``. S-T times recfit's iALS sweeps on the synthetic
positives of ml-25m's shape that implicit's ALS is timed on. The accuracy grid's rows
(``grid.py``: ``auto`` at its default budget, ``family-<name>`` for each single rating
family) run through the rating task's own steps on R1-R5 when ``--models`` names them.
Runs in the project venv.

Usage: ``python benchmarks/peers/peer_recfit.py R3 [--quick] [--models best,fastai]``
(the grid: ``--models auto,family-svdpp --parts fold0``)
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import recfit
from recfit.config import RatingConfig
from recfit.data import movielens
from recfit.data.split import Split
from recfit.tasks.rating import build_learner, fit_learner, resolve_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PROTOCOLS,
    common_args,
    data_dir,
    emit,
    load_ratings,
    load_split,
    part_seed,
    ranking_metrics,
    selected,
    synthetic_positives,
    topk_accuracy,
    wanted,
)

_FASTAI = {"model": "dot", "n_factors": 50, "y_range": (0.0, 5.5), "epochs": 5, "lr": 5e-3,
           "wd": 0.1, "bs": 64, "opt": "adam"}  # fmt: skip
_BEST = {**_FASTAI, "wd": 0.05, "reg": 0.05}
_DEFAULT = ("recfit train's default (model auto = SVD++ 50, one-cycle 6 x 5e-3, bs 64)", {})

#: protocol -> {name: (description, RatingConfig fields)}
RATING: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "R1": {
        "fastai": ("DotBias 50, fastai's config (wd 0.1, one-cycle 5 x 5e-3, bs 64)", _FASTAI),
        "best": ("DotBias 50, wd 0.05 + reg 0.05, one-cycle 5 x 5e-3, bs 64", _BEST),
        "nn": ("EmbeddingNN (100), fastai's config", {**_FASTAI, "model": "nn"}),
        "default": _DEFAULT,
    },
    "R2": {
        "best": ("DotBias 50, wd 0.05 + reg 0.05, one-cycle 5 x 5e-3, bs 64", _BEST),
        "default": _DEFAULT,
    },
    "R3": {
        "best": ("DotBias 50, wd 0.05 + reg 0.05, one-cycle 5 x 5e-3, bs 64", _BEST),
        "default": _DEFAULT,
    },
    "R5": {
        "best": (
            "recfit train's default (DotBias 50, opt auto: row-wise Adagrad, 5 epochs)",
            {"model": "dot"},
        ),
        "fast": (
            "recfit train's default with 2 epochs (DotBias 50, row-wise Adagrad)",
            {"model": "dot", "epochs": 2},
        ),
    },
}


#: the accuracy grid's recfit rows: each single rating family with its defaults (the
#: registry's rating families but ``blend``, which is auto's), and ``model="auto"`` at
#: its default budget. Run only when ``--models`` names them (``family-svdpp,auto``).
GRID_FAMILIES = ("svdpp", "dot", "mf", "nn", "baseline", "autorec", "timesvdpp", "bmf", "fm")
GRID = ("auto", *(f"family-{f}" for f in GRID_FAMILIES))


def by_size_budget(n_train: int) -> float:
    """The default budget of ``model="auto"`` by the size of the training part:
    ``clip(n_train / 1500, 120, 600)`` seconds (2 minutes for ml-100k's 80,000 training
    ratings, 10 for ml-1m's 900,000).

    Example:
        >>> by_size_budget(80_000), by_size_budget(900_168), by_size_budget(300_000)
        (120.0, 600.0, 200.0)
    """
    return float(min(max(n_train / 1500, 120.0), 600.0))


def auto_budget(n_train: int) -> tuple[float, str]:
    """``(seconds, where from)``: recfit's own default budget when its config has one,
    else :func:`by_size_budget` passed explicitly."""
    try:
        from recfit.config.rating import default_budget  # type: ignore[attr-defined]
    except ImportError:
        return by_size_budget(n_train), "passed explicitly (by size; not recfit's default yet)"
    return float(default_budget(n_train)), "recfit's default budget"


def grid_runs(protocol: str, args: Any) -> None:
    """The grid rows ``--models`` names, on the shared rows, through the rating task's
    steps (what ``recfit train`` runs: auto's search, a blend's fit, each family's
    trainer); one JSON line per part with the load at the start and the end."""
    from recfit.tasks.common import get_task

    names = [n for n in (args.models or "").split(",") if n in GRID]
    if not names:
        return
    data = movielens(PROTOCOLS[protocol][0], data_dir=data_dir(), download=False)
    task = get_task("rating")
    for name in names:
        for part in selected(args, protocol):
            train_rows, test_rows = load_split(protocol, part)
            split = Split(data, train_rows, test_rows, f"{protocol}:{part}")
            fields: dict[str, Any] = {"model": name.removeprefix("family-")}
            desc = f"{fields['model']} (its defaults)"
            if name == "auto":
                fields["budget"], source = auto_budget(len(train_rows))
                desc = f"recfit train's default: model auto, budget {fields['budget']:g} s"
            cfg = RatingConfig(seed=part_seed(part), device="cpu", **fields)
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            cfg = task.prepare(cfg, split)
            learn = task.fit(task.build(cfg, split, callbacks=[], progress=False), cfg)
            wall = time.perf_counter() - t0
            m, details = task.evaluate(learn, cfg, split)
            found = details.get("model_auto", {})
            extra: dict[str, Any] = {}
            if name == "auto":
                extra = {"budget": fields["budget"], "budget_source": source,
                         "chosen": found.get("chosen"), "blend": details.get("blend"),
                         "candidates": [{k: c.get(k) for k in ("label", "rmse", "seconds")}
                                        for c in found.get("candidates", [])]}  # fmt: skip
            emit(
                "recfit", recfit.__version__, protocol, part, f"{name}: {desc}",
                {k: m[k] for k in ("mse", "rmse", "mae")},
                wall - float(learn.compile_seconds), variant=name, seed=cfg.seed,
                resolved_model=cfg.model, compile_seconds=float(learn.compile_seconds),
                wall_seconds=wall, load_start=round(load0, 2),
                recfit_source=str(Path(recfit.__file__).parent), **extra,
            )  # fmt: skip


def rating_runs(protocol: str, args: Any) -> None:
    grid_runs(protocol, args)
    rating = RATING.get(protocol, {})
    if args.models and not any(n in rating for n in args.models.split(",")):
        return
    data = movielens(PROTOCOLS[protocol][0], data_dir=data_dir(), download=False)
    for name, (desc, fields) in rating.items():
        if not wanted(args, name):
            continue
        for part in selected(args, protocol):
            train_rows, test_rows = load_split(protocol, part)
            seed = part_seed(part)
            split = Split(data, train_rows, test_rows, f"{protocol}:{part}")
            cfg = resolve_config(RatingConfig(seed=seed, device="cpu", **fields), split.train)
            learn = build_learner(cfg, split.train, split.test, progress=False)
            t0 = time.perf_counter()
            fit_learner(learn, cfg)
            fit = time.perf_counter() - t0
            m = learn.evaluate(split.test)
            emit(
                "recfit", recfit.__version__, protocol, part, f"{name}: {desc}",
                {k: m[k] for k in ("mse", "rmse", "mae")}, fit,
                variant=name, config=cfg.model_dump(mode="json"),
            )  # fmt: skip


def retrieval_runs(protocol: str, args: Any) -> None:
    from recfit.tasks.retrieval import t1_config, t2_config, train_retrieval

    data = movielens(PROTOCOLS[protocol][0], data_dir=data_dir(), download=False)
    for part in selected(args, protocol):
        train_rows, test_rows = load_split(protocol, part)
        split = Split(data, train_rows, test_rows, f"{protocol}:{part}")
        if protocol == "T1":
            configs = {
                "mse": ("two-tower, keras-rs objective (MSE), 1 layer (32)", t1_config("mse")),
                "softmax": (
                    "two-tower, in-batch softmax (T 0.1, log-Q), 1 layer (32)",
                    t1_config("softmax"),
                ),
            }
        else:
            configs = {"softmax": ("two-tower, in-batch softmax, T2 preset", t2_config())}
        if protocol == "T2" and wanted(args, "popularity"):
            popularity(data, split, part)
        for name, (desc, cfg) in configs.items():
            if not wanted(args, name):
                continue
            res = train_retrieval(cfg.replace(n_bootstrap=0, seed=0), data, split)
            model = res.model
            with torch.inference_mode():
                uv = model.user_vectors().detach().numpy()
                iv = model.item_vectors().detach().numpy()
            scores = uv @ iv.T
            train, test = res.split.train, res.split.test
            t1 = time.perf_counter()
            if protocol == "T1":
                five = test.rating >= 5
                m = {"top_100_accuracy": topk_accuracy(scores, test.user[five], test.item[five])}
                own = {"top_100_accuracy": res.metrics["top_100_accuracy"]}
            else:
                m = ranking_metrics(scores, test.user, test.item, train.user, train.item)
                own = {k: res.metrics[k] for k in m if k in res.metrics}
            emit(
                "recfit", recfit.__version__, protocol, part, f"{name}: {desc}", m,
                res.metrics["fit_seconds"], variant=name, recfit_own_metrics=own,
                eval_seconds=time.perf_counter() - t1,
            )  # fmt: skip


def popularity(data: Any, split: Split, part: str) -> None:
    """The popularity baseline of T2: every user gets the most-rated training items."""
    train, test = split.train, split.test
    t0 = time.perf_counter()
    counts = np.bincount(train.item, minlength=data.n_items).astype(np.float64)
    fit = time.perf_counter() - t0
    scores = np.broadcast_to(counts, (data.n_users, data.n_items))
    m = ranking_metrics(scores, test.user, test.item, train.user, train.item)
    emit("baseline", recfit.__version__, "T2", part, "popularity (training counts)", m, fit,
         variant="popularity")  # fmt: skip


#: T2's top-N runs: name -> (description, TopNConfig fields)
TOPN: dict[str, tuple[str, dict[str, Any]]] = {
    "topn-popularity": ("popularity (top-N family)", {"model": "popularity"}),
    "topn-itemknn": ("item-kNN (top-N family, defaults)", {"model": "itemknn"}),
    "topn-ease": ("EASE (top-N family, defaults)", {"model": "ease"}),
    "topn-ials": ("iALS (top-N family, defaults)", {"model": "ials"}),
    "topn-bpr": ("BPR (top-N family, defaults)", {"model": "bpr"}),
    "topn-auto": ("recfit train --task topn's default (model auto)", {"model": "auto"}),
}


def _pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.sort(users.astype(np.int64) * 1_000_000 + items.astype(np.int64))


def check_shared_rows(split: Split, part: str) -> None:
    """Stop unless ``split`` holds exactly the shared T2 rows of ``part``."""
    raw = load_ratings("ml-1m")
    for name, rows, data in (("train", load_split("T2", part)[0], split.train),
                             ("test", load_split("T2", part)[1], split.test)):  # fmt: skip
        want = _pairs(raw["user"][rows], raw["item"][rows])
        got = _pairs(
            data.users.id(data.user).astype(np.int64), data.items.id(data.item).astype(np.int64)
        )
        if not np.array_equal(want, got):
            raise SystemExit(f"recfit's T2 {name} part differs from the shared split rows")


def topn_runs(args: Any) -> None:
    from recfit.config import TopNConfig
    from recfit.models.registry import families
    from recfit.runs import train_run

    known = {f.name for f in families("topn")}
    for part in selected(args, "T2"):
        for name, (desc, fields) in TOPN.items():
            if not wanted(args, name):
                continue
            if fields["model"] != "auto" and fields["model"] not in known:
                print(f"{name}: no top-N family {fields['model']!r} registered", file=sys.stderr)
                continue
            cfg = TopNConfig(
                dataset="ml-1m", data_dir=str(data_dir()), positive_min_rating=4.0,
                split="random:0.2", seed=0, n_bootstrap=0, device="cpu", **fields,
            )  # fmt: skip
            res = train_run(cfg, progress=False, on_split=partial(check_shared_rows, part=part))
            model: Any = res.learner.model
            train, test = res.split.train, res.split.test
            t1 = time.perf_counter()
            users = np.arange(model.n_users)
            scores = model.score_users(users, model.positives(users))
            m = ranking_metrics(scores, test.user, test.item, train.user, train.item)
            own = {k: res.metrics[k] for k in m if k in res.metrics}
            emit(
                "recfit", recfit.__version__, "T2", part, f"{name}: {desc}", m,
                res.metrics["fit_seconds"], variant=name, recfit_own_metrics=own,
                eval_seconds=time.perf_counter() - t1, model_chosen=res.config.model,
                config=res.config.model_dump(mode="json"),
            )  # fmt: skip


def speed_runs(args: Any) -> None:
    """S-T: recfit's iALS (64 factors) sweeps on the synthetic ml-25m-shape positives."""
    import scipy.sparse as sp

    try:
        from recfit.models.ials import IALS
    except ImportError as exc:
        raise SystemExit(f"recfit has no iALS family yet: {exc}") from None
    user, item, n_users, n_items = synthetic_positives(args.scale)
    x = sp.csr_matrix(
        (np.ones(len(user), dtype=np.float32), (user, item)), shape=(n_users, n_items)
    )
    sweeps = max(1, int(args.sweeps))
    model = IALS(n_users, n_items, n_factors=64, epochs=sweeps)
    t0 = time.perf_counter()
    model.fit_positives(x)
    total = time.perf_counter() - t0
    info = model.fit_info
    times = [float(t) for t in info["sweep_seconds"]]
    per = float(np.median(times[1:])) if len(times) > 1 else times[0]
    emit(
        "recfit", recfit.__version__, "S-T", "sweep", "iALS (64 factors, CG 3 steps)",
        {"seconds_per_sweep": per, "first_sweep_seconds": times[0]}, sum(times),
        sweeps=times, compile_seconds=float(info["compile_seconds"]),
        fit_positives_seconds=total,  # the whole fit: may include the model's own choices
        threads=int(info["threads"]), scale=args.scale, shape=[n_users, n_items, len(user)],
        variant="ials",
    )  # fmt: skip


def main() -> None:
    protocol = sys.argv[1]
    args = common_args(sys.argv[2:])
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    if protocol in RATING or protocol == "R4":
        rating_runs(protocol, args)
    elif protocol in ("T1", "T2"):
        retrieval_runs(protocol, args)
        if protocol == "T2":
            topn_runs(args)
    elif protocol == "S-T":
        speed_runs(args)
    else:
        raise SystemExit(f"expected one of R1 R2 R3 R4 R5 T1 T2 S-T, received {protocol}")


if __name__ == "__main__":
    main()
