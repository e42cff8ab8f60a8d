"""implicit's ALS on protocol T2 (ml-1m, ratings >= 4, random 80/20 of the positives).

ALS with 64 factors and 15 iterations (docs/protocols.md), other settings at their defaults,
fitted on the binary user x item matrix of the shared split's training positives (the
catalogue is every user and item in ``ratings.dat``). Recall@20, NDCG@20 and
HitRate@20 with each user's training items excluded are computed by
``common.ranking_metrics`` from the learned factors, the same function that scores
recfit. Runs in the ``.bench/implicit`` virtual environment.

Usage: ``python benchmarks/peers/peer_implicit.py T2 [--quick]``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's own advice for ALS

import implicit
import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import common_args, emit, encode, load_ratings, load_split, ranking_metrics, selected


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
        mat = sp.csr_matrix(
            (np.ones(len(train_rows), dtype=np.float32), (u[train_rows], i[train_rows])),
            shape=(len(users), len(items)),
        )
        threads = int(os.environ.get("BENCH_THREADS", "1"))
        model = AlternatingLeastSquares(
            factors=64, iterations=15, random_state=0, num_threads=threads
        )
        t0 = time.perf_counter()
        model.fit(mat, show_progress=False)
        fit = time.perf_counter() - t0
        t1 = time.perf_counter()
        uf = np.asarray(model.user_factors)
        itf = np.asarray(model.item_factors)
        m = ranking_metrics(uf @ itf.T, u[test_rows], i[test_rows], u[train_rows], i[train_rows])
        eval_s = time.perf_counter() - t1
        emit(
            "implicit", implicit.__version__, protocol, part, "ALS (64 factors, 15 iterations)",
            m, fit, eval_seconds=eval_s, threads=threads,
        )  # fmt: skip


if __name__ == "__main__":
    main()
