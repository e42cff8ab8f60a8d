"""fastai ``collab_learner`` on protocol R1 (ml-100k, shared random 20% validation).

docs/protocols.md's configuration: ``n_factors=50``, ``y_range=(0, 5.5)``, bs 64,
``fit_one_cycle(5, 5e-3, wd=0.1)``. Two variants: ``dot`` (EmbeddingDotBias) and
``nn`` (``use_nn=True``, one hidden layer of 100). The data loaders are built exactly as
``CollabDataLoaders.from_df`` builds them (``TabularCollab`` with ``Categorify``), but
with the shared split rows instead of fastai's ``RandomSplitter``. The validation MSE is
computed from ``get_preds`` on the validation rows. Runs in ``.bench/fastai``.

Usage: ``python benchmarks/peers/peer_fastai.py R1 [--quick] [--models dot,nn]``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import fastai
import numpy as np
import pandas as pd
import torch
from fastai.collab import TabularCollab, collab_learner
from fastai.data.block import TransformBlock
from fastai.tabular.core import Categorify
from fastai.torch_core import set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import common_args, emit, load_ratings, load_split, mae, rmse, selected, wanted


def main() -> None:
    protocol = sys.argv[1]
    if protocol != "R1":
        raise SystemExit(f"expected protocol R1, received {protocol}")
    args = common_args(sys.argv[2:])
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    d = load_ratings("ml-100k")
    df = pd.DataFrame({"user": d["user"], "item": d["item"], "rating": d["rating"]})
    for variant in ("dot", "nn"):
        if not wanted(args, variant):
            continue
        for part in selected(args, protocol):
            train_rows, test_rows = load_split(protocol, part)
            seed = int(part.removeprefix("seed"))
            set_seed(seed, reproducible=True)
            to = TabularCollab(
                df, [Categorify], ["user", "item"], y_names=["rating"],
                y_block=TransformBlock(), splits=(list(train_rows), list(test_rows)),
            )  # fmt: skip
            dls = to.dataloaders(path=".", bs=64)
            kw = {"use_nn": True, "layers": [100]} if variant == "nn" else {}
            learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), **kw)
            t0 = time.perf_counter()
            with learn.no_bar(), learn.no_logging():
                learn.fit_one_cycle(5, 5e-3, wd=0.1)
            fit = time.perf_counter() - t0
            preds, targ = learn.get_preds(ds_idx=1)
            p = preds.numpy().ravel().astype(np.float64)
            y = targ.numpy().ravel().astype(np.float64)
            if not np.array_equal(np.sort(y), np.sort(d["rating"][test_rows])):
                raise SystemExit("fastai's validation rows differ from the shared split")
            emit(
                "fastai", fastai.__version__, protocol, part,
                "EmbeddingNN (layers [100])" if variant == "nn" else "EmbeddingDotBias (50)",
                {"mse": rmse(p, y) ** 2, "rmse": rmse(p, y), "mae": mae(p, y)}, fit,
                variant=variant, torch=torch.__version__, threads=torch.get_num_threads(),
            )  # fmt: skip


if __name__ == "__main__":
    main()
