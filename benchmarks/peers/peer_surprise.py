"""scikit-surprise on the rating protocols (R1-R5), every algorithm at its defaults.

NormalPredictor, BaselineOnly, KNNBasic, KNNWithMeans, KNNWithZScore, KNNBaseline, SVD,
SVD++, NMF, SlopeOne and CoClustering, each trained on the shared split's training rows
and scored on its test rows (RMSE, MSE, MAE). The randomised ones (SVD, SVD++, NMF,
CoClustering: ``random_state``; NormalPredictor: NumPy's global generator) are seeded
with the part's training seed (``common.part_seed``: the split seed, or R2's training
seed); the others are deterministic. Predictions Surprise marks ``was_impossible`` keep
its fallback (the global mean), as a user of Surprise gets. One JSON line per (model,
part), with the load average at the start of the fit. Runs in the ``.bench/surprise``
virtual environment.

Usage: ``python benchmarks/peers/peer_surprise.py R3 [--quick] [--models SVD,BaselineOnly]``
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import surprise
from surprise import (
    NMF,
    SVD,
    BaselineOnly,
    CoClustering,
    Dataset,
    KNNBaseline,
    KNNBasic,
    KNNWithMeans,
    KNNWithZScore,
    NormalPredictor,
    Reader,
    SlopeOne,
    SVDpp,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PROTOCOLS,
    common_args,
    emit,
    load_ratings,
    load_split,
    mae,
    part_seed,
    rmse,
    selected,
    wanted,
)

#: name -> a fresh algorithm with its defaults, seeded by the part's training seed
MODELS: dict[str, Callable[[int], Any]] = {
    "NormalPredictor": lambda seed: NormalPredictor(),
    "BaselineOnly": lambda seed: BaselineOnly(verbose=False),
    "KNNBasic": lambda seed: KNNBasic(verbose=False),
    "KNNWithMeans": lambda seed: KNNWithMeans(verbose=False),
    "KNNWithZScore": lambda seed: KNNWithZScore(verbose=False),
    "KNNBaseline": lambda seed: KNNBaseline(verbose=False),
    "SVD": lambda seed: SVD(random_state=seed),
    "SVD++": lambda seed: SVDpp(random_state=seed),
    "NMF": lambda seed: NMF(random_state=seed),
    "SlopeOne": lambda seed: SlopeOne(),
    "CoClustering": lambda seed: CoClustering(random_state=seed),
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
            seed = part_seed(part)
            np.random.seed(seed)  # noqa: NPY002 (NormalPredictor draws from the global one)
            algo = make(seed)
            load0 = os.getloadavg()[0]
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
                fit, predict_seconds=pred_s, seed=seed, load_start=round(load0, 2),
            )  # fmt: skip


def _trainset(d: dict[str, np.ndarray], rows: np.ndarray, reader: Reader) -> surprise.Trainset:
    triples = zip(
        d["user"][rows].tolist(), d["item"][rows].tolist(), d["rating"][rows].tolist(), strict=True
    )
    return Dataset(reader).construct_trainset([(u, i, r, None) for u, i, r in triples])


if __name__ == "__main__":
    main()
