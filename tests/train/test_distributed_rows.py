"""Row-wise training across ranks: only the touched rows' gradients are exchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recfit._cpu import cpu_cores
from recfit.models import DotBias
from recfit.models.losses import MSELoss
from recfit.train import kernels
from recfit.train.execution import Execution
from recfit.train.sparse import RowAdagrad, RowAdamW, RowOptimizer

from .test_distributed import _torchrun

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def _batches(n_users: int, n_items: int, n: int, steps: int) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(5)
    return [
        {
            "user": torch.from_numpy(rng.integers(0, n_users, n)),
            "item": torch.from_numpy(rng.integers(0, n_items, n)),
            "rating": torch.from_numpy(rng.integers(1, 6, n).astype(np.float32)),
            "weight": torch.from_numpy(rng.choice([0.0, 0.5, 1.0, 2.0], n).astype(np.float32)),
        }
        for _ in range(steps)
    ]


def _params(m: DotBias) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


@needs_numba
@pytest.mark.parametrize("cls", [RowAdamW, RowAdagrad])
@pytest.mark.parametrize("y_range", [(0.0, 5.5), None])
def test_gradient_then_update_kernels_are_the_fused_step_bit_for_bit(
    cls: type[RowOptimizer], y_range: tuple[float, float] | None
) -> None:
    a, b = (DotBias(60, 40, 5, y_range=y_range, seed=2) for _ in range(2))
    oa, ob = cls(a, lr=0.02, weight_decay=0.1), cls(b, lr=0.02, weight_decay=0.1)
    for batch in _batches(60, 40, 300, 6):
        w = float(batch["weight"].sum())
        out_a, loss_a, pen_a = oa.compiled_step(batch, w, 0.05)
        rows, out_b, loss_b, pen_b = ob.compiled_grads(batch, w, 0.05)
        ob.compiled_apply([(i.copy(), g.copy()) for i, g in rows])
        assert torch.equal(out_a, out_b)
        assert loss_a == pytest.approx(loss_b, rel=1e-12) and pen_a == pytest.approx(pen_b)
    oa.flush()
    ob.flush()
    for pa, pb in zip(_params(a), _params(b), strict=True):
        assert torch.equal(pa, pb)


@needs_numba
def test_split_gradients_summed_are_the_whole_batch_gradients() -> None:
    m = DotBias(30, 20, 4, y_range=(0.0, 5.5), seed=3)
    opt = RowAdamW(m)
    batch = _batches(30, 20, 200, 1)[0]
    w = float(batch["weight"].sum())

    def dense(rows: list[tuple[np.ndarray, np.ndarray]], side: int, n: int) -> np.ndarray:
        out = np.zeros((n, 5), np.float64)
        np.add.at(out, rows[side][0], rows[side][1])
        return out

    whole = [(i.copy(), g.copy()) for i, g in opt.compiled_grads(batch, w, 0.1)[0]]
    parts = [
        [
            (i.copy(), g.copy())
            for i, g in opt.compiled_grads({k: v[lo:hi] for k, v in batch.items()}, w, 0.1)[0]
        ]
        for lo, hi in ((0, 70), (70, 200))
    ]
    for side, n in ((0, 30), (1, 20)):
        summed = sum(dense(p, side, n) for p in parts)
        np.testing.assert_allclose(summed, dense(whole, side, n), rtol=1e-5, atol=1e-7)


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
