"""Row-wise training across ranks: only the touched rows' gradients are exchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recfit._cpu import cpu_cores
from recfit.models import DotBias
from recfit.models.losses import MSELoss
from recfit.train import kernels
from recfit.train.execution import Execution

from .test_distributed import _torchrun

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def test_row_wise_path_is_allowed_under_distributed_training() -> None:
    m = DotBias(600, 500, 300)  # over SPARSE_MIN_PARAMS: auto picks the row-wise path
    ex = Execution(row_wise=True)
    path = ex.resolve(m, MSELoss(), "adam", device=torch.device("cpu"), distributed=True)
    assert path.row_wise
    auto = Execution().resolve(m, MSELoss(), "adagrad", device=torch.device("cpu"),
                               distributed=True)  # fmt: skip
    assert auto.row_wise and auto.compiled == kernels.available()


_WORKER = r"""
import hashlib, json, sys
import numpy as np, torch
from recfit.data import Interactions
from recfit.models import DotBias
from recfit.train import distributed as D
from recfit.train.execution import Execution
from recfit.train.learner import Learner
from recfit.train.sparse_dist import Exchanged

out = sys.argv[1]
with D.session("cpu") as ctx:
    assert ctx is not None and ctx.backend == "gloo"
    rng = np.random.default_rng(0)
    nu, ni, n = 120, 90, 12000
    u, i = rng.integers(0, nu, n), rng.integers(0, ni, n)
    bu, bi = rng.normal(0, 0.5, nu), rng.normal(0, 0.5, ni)
    r = np.clip(np.round(3.5 + bu[u] + bi[i] + rng.normal(0, 0.7, n)), 1, 5)
    d = Interactions.from_arrays(u, i, r, weight=rng.choice([0.5, 1.0, 2.0], n).astype(np.float32))
    train, valid = d.take(np.arange(10000)), d.take(np.arange(10000, n))
    res = {}
    for name, opt, compiled in (("compiled_adagrad", "adagrad", "auto"),
                                ("compiled_adam", "adam", "auto"), ("torch_adam", "adam", False)):
        def make():
            m = DotBias(nu, ni, 8, y_range=(0, 5.5), seed=1)
            return Learner(m, train, valid, bs=512, reg=0.05, wd=0.01, opt=opt,
                           metrics=("rmse",), progress=False,
                           execution=Execution(row_wise=True, compiled=compiled))
        dl = D.attach(make(), ctx)
        dl.fit_one_cycle(3, 2e-2 if opt == "adam" else 5e-2)
        single = make()
        single.fit_one_cycle(3, 2e-2 if opt == "adam" else 5e-2)
        h = hashlib.sha256()
        for p in dl.model.parameters():
            h.update(p.detach().numpy().tobytes())
        diff = max(float((a - b).detach().abs().max()) for a, b in
                   zip(dl.model.parameters(), single.model.parameters()))
        ex = ctx.exchanged
        res[name] = {"path": dl.path.name, "threads": dl.execution.num_threads, "rmse": dl.evaluate(valid)["rmse"],
                     "single_rmse": single.evaluate(valid)["rmse"], "param_diff": diff,
                     "hash": h.hexdigest(), "steps": ex.steps, "rows": ex.rows_sent,
                     "train_loss": [x["train_loss"] for x in dl.history],
                     "single_train_loss": [x["train_loss"] for x in single.history]}
        ctx.exchanged = Exchanged()
    with open(f"{out}/rank{ctx.rank}.json", "w") as f:
        json.dump(res, f)
"""


@pytest.mark.slow
def test_four_gloo_ranks_train_row_wise_like_one_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    res = _torchrun(str(script), str(tmp_path), nproc=4, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(4)]
    for name, want_path in (("compiled_adagrad", "compiled"), ("compiled_adam", "compiled"),
                            ("torch_adam", "row-wise")):  # fmt: skip
        r0 = ranks[0][name]
        assert r0["path"] == (want_path if kernels.available() else "row-wise"), name
        assert r0["threads"] == max(1, cpu_cores() // 4)  # 4 ranks share the cores
        assert len({r[name]["hash"] for r in ranks}) == 1, name  # identical weights
        assert r0["param_diff"] < 1e-4, name  # the single-process trajectory
        assert abs(r0["rmse"] - r0["single_rmse"]) < 0.002, name
        assert r0["train_loss"] == pytest.approx(r0["single_train_loss"], rel=1e-4), name
        steps = 3 * -(-10000 // 512)
        assert all(r[name]["steps"] == steps for r in ranks), name
        # only touched rows travel: at most one pair per rating of the shard and side
        assert 0 < r0["rows"] <= steps * 2 * 128, name
