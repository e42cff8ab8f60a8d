"""scikit-surprise on the rating protocols (R1, R2, R3, R5), algorithms at their defaults.

SVD, SVD++, BaselineOnly and KNNBaseline, each trained on the shared split's training
rows and scored on its test rows (RMSE, MSE, MAE). Predictions Surprise marks
``was_impossible`` keep its fallback (the global mean), as a user of Surprise gets.
One JSON line per (model, part). Runs in the ``.bench/surprise`` virtual environment.

Usage: ``python benchmarks/peers/peer_surprise.py R3 [--quick] [--models SVD,BaselineOnly]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import surprise
from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader, SVDpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PROTOCOLS,
    common_args,
    emit,
    load_ratings,
    load_split,
    mae,
    rmse,
    selected,
    wanted,
)

MODELS = {
    "SVD": lambda: SVD(random_state=0),
    "SVD++": lambda: SVDpp(random_state=0),
    "BaselineOnly": lambda: BaselineOnly(verbose=False),
    "KNNBaseline": lambda: KNNBaseline(verbose=False),
}


def main() -> None:
    protocol = sys.argv[1]
    args = common_args(sys.argv[2:])
    d = load_ratings(PROTOCOLS[protocol][0])
    reader = Reader(rating_scale=(1, 5))
    for part in selected(args, protocol):
        train_rows, test_rows = load_split(protocol, part)
        for name, make in MODELS.items():
            if not wanted(args, name):
                continue
            trainset = _trainset(d, train_rows, reader)
            algo = make()
            t0 = time.perf_counter()
            algo.fit(trainset)
            fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            pred = np.array(
                [
                    algo.predict(u, i).est
                    for u, i in zip(
                        d["user"][test_rows].tolist(), d["item"][test_rows].tolist(), strict=True
                    )
                ]
            )
            pred_s = time.perf_counter() - t1
            y = d["rating"][test_rows]
            emit(
                "surprise", surprise.__version__, protocol, part, name,
                {"rmse": rmse(pred, y), "mse": rmse(pred, y) ** 2, "mae": mae(pred, y)},
                fit, predict_seconds=pred_s,
            )  # fmt: skip


def _trainset(d: dict[str, np.ndarray], rows: np.ndarray, reader: Reader) -> surprise.Trainset:
    triples = zip(
        d["user"][rows].tolist(), d["item"][rows].tolist(), d["rating"][rows].tolist(), strict=True
    )
    return Dataset(reader).construct_trainset([(u, i, r, None) for u, i, r in triples])


if __name__ == "__main__":
    main()
