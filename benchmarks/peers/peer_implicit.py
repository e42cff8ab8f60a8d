"""implicit's ALS and BPR on protocol T2, and implicit's ALS on the speed protocol S-T.

T2 (ml-1m, ratings >= 4, random 80/20 of the positives): ALS with 64 factors and 15
iterations (docs/protocols.md), BPR with 64 factors and implicit's defaults otherwise
(learning rate 0.01, regularisation 0.01, 100 iterations), both fitted on the binary
user x item matrix of the shared split's training positives (the catalogue is every user
and item in ``ratings.dat``). Recall@20, NDCG@20 and HitRate@20 with each user's
training items excluded are computed by ``common.ranking_metrics`` from the learned
factors (BPR's item bias rides in its factors), the same function that scores recfit.

S-T (speed, synthetic positives of ml-25m's shape from ``common.synthetic_positives``):
implicit's ALS (64 factors, conjugate gradient, its default), the seconds of each sweep
(one user half and one item half) over ``--sweeps`` sweeps; the first is reported apart.

Runs in the ``.bench/implicit`` virtual environment, ``BENCH_THREADS`` threads.

Usage: ``python benchmarks/peers/peer_implicit.py T2|S-T [--quick] [--models ALS,BPR]``
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
from implicit.bpr import BayesianPersonalizedRanking

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    common_args,
    emit,
    encode,
    load_ratings,
    load_split,
    ranking_metrics,
    selected,
    synthetic_positives,
    wanted,
)

THREADS = int(os.environ.get("BENCH_THREADS", "1"))
T2_MODELS = {
    "ALS": (
        "ALS (64 factors, 15 iterations)",
        lambda: AlternatingLeastSquares(
            factors=64, iterations=15, random_state=0, num_threads=THREADS
        ),
    ),
    "BPR": (
        "BPR (64 factors, lr 0.01, reg 0.01, 100 iterations)",
        lambda: BayesianPersonalizedRanking(factors=64, random_state=0, num_threads=THREADS),
    ),
}


def t2(args: object) -> None:
    d = load_ratings("ml-1m")
    users, u = encode(d["user"])
    items, i = encode(d["item"])
    for part in selected(args, "T2"):
        train_rows, test_rows = load_split("T2", part)
        mat = sp.csr_matrix(
            (np.ones(len(train_rows), dtype=np.float32), (u[train_rows], i[train_rows])),
            shape=(len(users), len(items)),
        )
        for name, (desc, make) in T2_MODELS.items():
            if not wanted(args, name):
                continue
            model = make()
            t0 = time.perf_counter()
            model.fit(mat, show_progress=False)
            fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            uf = np.asarray(model.user_factors)
            itf = np.asarray(model.item_factors)
            m = ranking_metrics(
                uf @ itf.T, u[test_rows], i[test_rows], u[train_rows], i[train_rows]
            )
            eval_s = time.perf_counter() - t1
            emit("implicit", implicit.__version__, "T2", part, desc, m, fit,
                 eval_seconds=eval_s, threads=THREADS, variant=name)  # fmt: skip


def speed(args: object) -> None:
    user, item, n_users, n_items = synthetic_positives(args.scale)  # type: ignore[attr-defined]
    mat = sp.csr_matrix(
        (np.ones(len(user), dtype=np.float32), (user, item)), shape=(n_users, n_items)
    )
    sweeps = max(1, int(args.sweeps))  # type: ignore[attr-defined]
    times: list[float] = []
    model = AlternatingLeastSquares(factors=64, iterations=1, random_state=0, num_threads=THREADS)
    # one fit of one iteration initialises the factors; later fits continue from them
    for _ in range(sweeps):
        t0 = time.perf_counter()
        model.fit(mat, show_progress=False)
        times.append(time.perf_counter() - t0)
    per = float(np.median(times[1:])) if len(times) > 1 else times[0]
    emit(
        "implicit", implicit.__version__, "S-T", "sweep", "ALS (64 factors, CG)",
        {"seconds_per_sweep": per, "first_sweep_seconds": times[0]}, sum(times),
        sweeps=times, threads=THREADS, scale=args.scale,  # type: ignore[attr-defined]
        shape=[n_users, n_items, len(user)], variant="ALS",
    )  # fmt: skip


def main() -> None:
    protocol = sys.argv[1]
    args = common_args(sys.argv[2:])
    if protocol == "T2":
        t2(args)
    elif protocol == "S-T":
        speed(args)
    else:
        raise SystemExit(f"expected protocol T2 or S-T, received {protocol}")


if __name__ == "__main__":
    main()
