"""A NumPy-only EASE (Steck 2019) on protocol T2: an independent check of recfit's EASE.

``B = I - P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹`` (so ``diag(B) = 0``),
scores ``X · B``, on the binary user x item matrix of the shared split's training
positives. λ is chosen on the training positives only: 10 % of them cut at random
(seed 0) are ranked by a fit on the other 90 % over the grid ``LAMBDAS``, the best
NDCG@20 wins (training items excluded), then the model is fitted again on every
training positive. Scored by ``common.ranking_metrics``, the function that scores
every library. No SciPy, no recfit: NumPy (and its BLAS) only.

Usage: ``python benchmarks/peers/peer_ease_numpy.py T2 [--quick]``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ.get("BENCH_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("BENCH_THREADS", "1"))

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import common_args, emit, encode, load_ratings, load_split, ranking_metrics, selected

LAMBDAS = (100.0, 200.0, 400.0, 800.0, 1600.0)
INNER = 0.1


def dense(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """The binary float32 user x item matrix of the pairs."""
    x = np.zeros((n_users, n_items), dtype=np.float32)
    x[users, items] = 1.0
    return x


def ease(x: np.ndarray, lam: float, gram: np.ndarray | None = None) -> np.ndarray:
    """EASE's item-item weights ``B`` (float32, zero diagonal) of the binary ``x``."""
    g = (x.T @ x).astype(np.float64) if gram is None else gram.copy()
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def choose_lambda(
    u: np.ndarray, i: np.ndarray, n_users: int, n_items: int, seed: int = 0
) -> tuple[float, dict[float, float]]:
    """λ with the best NDCG@20 on a 10 % cut of the training positives ``(u, i)``."""
    rng = np.random.default_rng(seed)
    cut = np.zeros(len(u), dtype=bool)
    cut[rng.choice(len(u), size=round(INNER * len(u)), replace=False)] = True
    x = dense(u[~cut], i[~cut], n_users, n_items)
    gram = (x.T @ x).astype(np.float64)
    scores: dict[float, float] = {}
    for lam in LAMBDAS:
        b = ease(x, lam, gram)
        m = ranking_metrics(x @ b, u[cut], i[cut], u[~cut], i[~cut], n_bootstrap=0)
        scores[lam] = m["ndcg@20"]
    return max(scores, key=lambda k: scores[k]), scores


def main() -> None:
    protocol = sys.argv[1]
    if protocol != "T2":
        raise SystemExit(f"expected protocol T2, received {protocol}")
    args = common_args(sys.argv[2:])
    d = load_ratings("ml-1m")
    users, u = encode(d["user"])
    items, i = encode(d["item"])
    for part in selected(args, protocol):
        train_rows, test_rows = load_split(protocol, part)
        tu, ti = u[train_rows], i[train_rows]
        t0 = time.perf_counter()
        lam, inner = choose_lambda(tu, ti, len(users), len(items))
        choose_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        x = dense(tu, ti, len(users), len(items))
        b = ease(x, lam)
        fit = time.perf_counter() - t1
        t2 = time.perf_counter()
        m = ranking_metrics(x @ b, u[test_rows], i[test_rows], tu, ti)
        eval_s = time.perf_counter() - t2
        emit(
            "numpy-ease", np.__version__, protocol, part,
            f"EASE (NumPy reference, lambda {lam:g} from a 10 % inner cut)", m, fit,
            eval_seconds=eval_s, choose_seconds=choose_s, ease_lambda=lam,
            inner_ndcg20={str(k): v for k, v in inner.items()},
            threads=int(os.environ.get("BENCH_THREADS", "1")),
        )  # fmt: skip


if __name__ == "__main__":
    main()
