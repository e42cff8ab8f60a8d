"""Shared helpers of the peer benchmarks: data, shared splits, metrics, one JSON line.

This module needs only the standard library and NumPy, so every peer's virtual
environment (fastai, Surprise, implicit, keras-rs) and recfit's own can import it.
The ratings are read from the local MovieLens copies (``$RECFIT_DATA_DIR``, else
``../shared/datasets`` beside the repository), never through a library's downloader.
Every library reads the same rows: the split files under ``benchmarks/results/splits``
hold row positions into the original ratings file (``u.data`` or ``ratings.dat``).

Example:
    >>> import numpy as np
    >>> float(rmse(np.array([1.0, 3.0]), np.array([1.0, 5.0])))
    1.4142135623730951
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PROTOCOLS",
    "RESULTS",
    "SPLITS",
    "data_dir",
    "emit",
    "load_ratings",
    "load_split",
    "mae",
    "part_seed",
    "parts",
    "peak_mb",
    "ranking_metrics",
    "rmse",
    "split_name",
    "synthetic_positives",
    "topk",
    "topk_accuracy",
]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SPLITS = RESULTS / "splits"

#: protocol -> (dataset, parts of the full run, what the parts are)
PROTOCOLS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "R1": ("ml-100k", ("seed42", "seed7", "seed1"), "random 20% validation, split seeds 42/7/1"),
    "R2": (
        "ml-100k",
        ("u1-s0", "u1-s1", "u1-s2"),
        "canonical u1.base / u1.test, training seeds 0/1/2",
    ),
    "R3": ("ml-100k", tuple(f"fold{i}" for i in range(5)), "5-fold cross-validation"),
    "R4": ("ml-1m", ("seed0", "seed1", "seed2"), "random 10% test, split seeds 0/1/2"),
    "R5": ("ml-1m", tuple(f"fold{i}" for i in range(5)), "5-fold cross-validation"),
    "T1": ("ml-100k", ("seed0",), "random 80/20 of all ratings"),
    "T2": ("ml-1m", ("seed0",), "ratings >= 4, random 80/20 of the positives"),
    "S-T": (
        "synthetic (ml-25m shape)",
        ("sweep",),
        "speed: seconds per ALS sweep on synthetic positives of ml-25m's shape",
    ),
}

#: S-T's shape: ml-25m's users and items, about its number of ratings >= 4
ST_SHAPE = (162_541, 59_047, 12_500_000)


def parts(protocol: str, quick: bool) -> tuple[str, ...]:
    """The split parts a run covers (``quick``: the first seed or fold only)."""
    all_parts = PROTOCOLS[protocol][1]
    return all_parts[:1] if quick else all_parts


def data_dir() -> Path:
    """The folder holding ``ml-100k/`` and ``ml-1m/``."""
    for cand in (os.environ.get("RECFIT_DATA_DIR"), str(ROOT.parent / "shared" / "datasets")):
        if cand and (Path(cand) / "ml-100k" / "u.data").exists():
            return Path(cand)
    raise SystemExit("MovieLens not found: set RECFIT_DATA_DIR to the folder with ml-100k/")


def ratings_file(dataset: str) -> Path:
    """The original ratings file of ``dataset``."""
    name = {"ml-100k": "ml-100k/u.data", "ml-1m": "ml-1m/ratings.dat"}[dataset]
    return data_dir() / name


def load_ratings(dataset: str) -> dict[str, np.ndarray]:
    """Raw ``user``, ``item`` ids (int64), ``rating`` (float64), ``timestamp``, in file order."""
    path = ratings_file(dataset)
    text = path.read_text(encoding="latin-1")
    if dataset == "ml-1m":
        text = text.replace("::", "\t")
    arr = np.array(text.split(), dtype=np.int64).reshape(-1, 4)
    return {
        "user": arr[:, 0].copy(),
        "item": arr[:, 1].copy(),
        "rating": arr[:, 2].astype(np.float64),
        "timestamp": arr[:, 3].copy(),
    }


def split_name(part: str) -> str:
    """The split file a part reads: ``u1-s2`` (the u1 split, training seed 2) reads ``u1``.

    Example:
        >>> split_name("u1-s2"), split_name("seed42"), split_name("fold3")
        ('u1', 'seed42', 'fold3')
    """
    head, sep, tail = part.rpartition("-s")
    return head if sep and tail.isdigit() else part


def part_seed(part: str) -> int:
    """The training seed of a part: the split seed (``seed42``: 42), the training seed of
    a fixed split (``u1-s2``: 2), else 0 (folds: the folds are the repetitions).

    Example:
        >>> part_seed("seed42"), part_seed("u1-s2"), part_seed("fold3"), part_seed("u1")
        (42, 2, 0, 0)
    """
    if part.startswith("seed") and part[4:].isdigit():
        return int(part[4:])
    name = split_name(part)
    return int(part[len(name) + 2 :]) if name != part else 0


def load_split(protocol: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, test_rows)``: int64 row positions into the ratings file."""
    path = SPLITS / f"{protocol}_{split_name(part)}.npz"
    if not path.exists():
        raise SystemExit(f"missing split file {path}: run benchmarks/peers/splits.py first")
    with np.load(path) as z:
        return z["train"].astype(np.int64), z["test"].astype(np.int64)


# ----------------------------------------------------------------------------- metrics
def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(pred, float) - np.asarray(target, float)) ** 2)))


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(target, float))))


def topk(
    scores: np.ndarray, k: int, exclude: list[np.ndarray] | None = None, chunk: int = 1024
) -> np.ndarray:
    """Indices of the ``k`` best columns of each row, best first; ``exclude[r]``: columns
    removed from row ``r`` first."""
    n = scores.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for lo in range(0, n, chunk):
        s = np.array(scores[lo : lo + chunk], dtype=np.float64)
        if exclude is not None:
            for r in range(s.shape[0]):
                ex = exclude[lo + r]
                if len(ex):
                    s[r, ex] = -np.inf
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        out[lo : lo + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def topk_accuracy(
    scores: np.ndarray, test_user: np.ndarray, test_item: np.ndarray, k: int = 100
) -> float:
    """Share of test pairs whose item is in its user's top ``k`` (seen items kept).

    ``scores``: ``(n_users, n_items)`` over the whole catalogue; user/item are indices.
    """
    users = np.unique(test_user)
    top = topk(scores[users], k)
    pos = np.full(scores.shape[0], -1, dtype=np.int64)
    pos[users] = np.arange(len(users))
    rows = top[pos[test_user]]
    return float(np.mean((rows == test_item[:, None]).any(axis=1)))


def ranking_metrics(
    scores: np.ndarray,
    test_user: np.ndarray,
    test_item: np.ndarray,
    train_user: np.ndarray,
    train_item: np.ndarray,
    k: int = 20,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Recall, NDCG and hit rate at ``k`` with each user's training items excluded.

    Per user with test positives: recall = hits / all its test positives, NDCG with
    binary gains (ideal over ``min(k, |test|)``), hit rate = any hit; averaged over
    those users. With ``n_bootstrap``, each also gets ``<key>_lo`` and ``<key>_hi``: the
    95 % percentile interval of the mean over ``n_bootstrap`` resamples of the users
    (``seed``), the same resamples for every library.
    """
    users, inv = np.unique(test_user, return_inverse=True)
    rel: list[set[int]] = [set() for _ in users]
    for u, i in zip(inv.tolist(), test_item.tolist(), strict=True):
        rel[u].add(i)
    order = np.argsort(train_user, kind="stable")
    tu, ti = train_user[order], train_item[order]
    starts = np.searchsorted(tu, users, "left")
    ends = np.searchsorted(tu, users, "right")
    exclude = [ti[a:b] for a, b in zip(starts, ends, strict=True)]
    top = topk(scores[users], k, exclude)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    rec, ndcg, hit = [], [], []
    for r, items in enumerate(rel):
        hits = np.array([i in items for i in top[r].tolist()], dtype=float)
        rec.append(hits.sum() / len(items))
        ndcg.append(float((hits * disc).sum() / disc[: min(k, len(items))].sum()))
        hit.append(float(hits.any()))
    out: dict[str, float] = {}
    draws = np.random.default_rng(seed).integers(0, len(rec), size=(n_bootstrap, len(rec)))
    for name, vals in (("recall", rec), ("ndcg", ndcg), ("hit_rate", hit)):
        arr = np.asarray(vals, dtype=np.float64)
        out[f"{name}@{k}"] = float(arr.mean())
        if n_bootstrap > 0:
            lo, hi = np.quantile(arr[draws].mean(axis=1), [0.025, 0.975])
            out[f"{name}@{k}_lo"], out[f"{name}@{k}_hi"] = float(lo), float(hi)
    return out


def synthetic_positives(
    scale: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(user, item, n_users, n_items)``: synthetic positives of ml-25m's shape (S-T).

    ``scale`` shrinks users, items and positives alike (1.0: 162,541 x 59,047, about
    12.5 M distinct pairs before duplicates are removed). Item popularity is Zipf-like
    (``1 / (rank + 10)``), user activity log-normal, both from ``seed``. Written once
    to ``benchmarks/results/splits/ST_<scale>.npz`` so every library reads the same
    pairs, whatever its NumPy.
    """
    path = SPLITS / f"ST_{scale:g}_{seed}.npz"
    n_users, n_items, nnz = (max(2, round(x * scale)) for x in ST_SHAPE)
    if path.exists():
        with np.load(path) as z:
            return z["user"], z["item"], n_users, n_items
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    per_user = np.maximum(1, np.round(activity / activity.sum() * nnz)).astype(np.int64)
    user = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    pop = 1.0 / (np.arange(n_items) + 10.0)
    item = rng.permutation(n_items)[rng.choice(n_items, size=len(user), p=pop / pop.sum())]
    key = np.unique(user * n_items + item)
    user, item = (key // n_items).astype(np.int32), (key % n_items).astype(np.int32)
    SPLITS.mkdir(parents=True, exist_ok=True)
    np.savez(path, user=user, item=item)
    return user, item, n_users, n_items


# ----------------------------------------------------------------------------- output
def peak_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def emit(
    library: str,
    version: str,
    protocol: str,
    part: str,
    model: str,
    metrics: dict[str, float],
    fit_seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """Print one JSON line describing a finished run and return it."""
    rec: dict[str, Any] = {
        "library": library,
        "version": version,
        "dataset": PROTOCOLS[protocol][0],
        "protocol": protocol,
        "part": part,
        "model": model,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "fit_seconds": float(fit_seconds),
        "peak_mb": round(peak_mb(), 1),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    print(json.dumps(rec, sort_keys=True), flush=True)
    return rec


def encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniques, index)``: dense 0-based indices of raw ids (sorted by id)."""
    uniq, idx = np.unique(values, return_inverse=True)
    return uniq, idx.astype(np.int64)


def common_args(argv: list[str] | None = None) -> Any:
    """``--quick`` and ``--parts`` (comma-separated), shared by every peer script."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="first seed / fold only")
    ap.add_argument("--parts", default=None, help="comma-separated parts (seed42,fold0...)")
    ap.add_argument("--models", default=None, help="comma-separated model names")
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_ST_SCALE", "1")),
                    help="S-T: share of ml-25m's shape (users, items, positives)")  # fmt: skip
    ap.add_argument("--sweeps", type=int, default=int(os.environ.get("BENCH_ST_SWEEPS", "3")),
                    help="S-T: ALS sweeps timed")  # fmt: skip
    return ap.parse_args(argv)


def selected(args: Any, protocol: str) -> tuple[str, ...]:
    """The parts chosen by ``args`` for ``protocol``."""
    if args.parts:
        return tuple(p for p in args.parts.split(",") if p)
    return parts(protocol, args.quick)


def wanted(args: Any, model: str) -> bool:
    """Whether ``--models`` selects ``model`` (all when not given)."""
    return not args.models or model in args.models.split(",")


def json_dump(obj: Any) -> str:
    """Stable JSON text."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"
