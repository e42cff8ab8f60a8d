"""The compiled distributed row-wise step: ranks own users, only items' pairs travel."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.models import DotBias
from recfit.train import kernels
from recfit.train.batches import TensorData
from recfit.train.distributed import DistContext
from recfit.train.sparse import RowAdagrad, RowAdamW, RowOptimizer
from recfit.train.sparse_dist import SHARED_DIR, OwnedRows, owned_batches

from .test_distributed import _torchrun

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def _batch(rng: np.random.Generator, nu: int, ni: int, n: int) -> dict[str, torch.Tensor]:
    return {
        "user": torch.from_numpy(rng.integers(0, nu, n)),
        "item": torch.from_numpy(rng.integers(0, ni, n)),
        "rating": torch.from_numpy(rng.integers(1, 6, n).astype(np.float32)),
        "weight": torch.from_numpy(rng.choice([0.0, 0.5, 1.0, 2.0], n).astype(np.float32)),
    }


def _rank_batches(batch: dict[str, torch.Tensor], world: int, n_items: int):
    """Each rank's ratings of ``batch`` as :func:`owned_batches` cuts them."""
    mine = [batch["user"] % world == r for r in range(world)]
    cap = torch.tensor(min(max(int(m.sum()) for m in mine), n_items))
    total = torch.tensor(len(batch["user"]))
    return [{**{k: v[m] for k, v in batch.items()}, "pairs_cap": cap, "rows_total": total}
            for m in mine]  # fmt: skip


def _ranks_step(owned: list[OwnedRows], batch: dict[str, torch.Tensor], w: float, reg: float):
    """One step of every simulated rank: kernels, the all-gather by hand, the items' update."""
    parts = _rank_batches(batch, len(owned), owned[0].n_items)
    steps = [o.step(b, w, reg, 1) for o, b in zip(owned, parts, strict=True)]
    cap1 = int(parts[0]["pairs_cap"]) + 1  # every rank's buffer padded to the most pairs
    assert all(o.cap1 == cap1 and s[1] < cap1 for o, s in zip(owned, steps, strict=True))
    recv = np.concatenate([o.send[:cap1] for o in owned])
    for o in owned:
        o.apply(recv.copy(), cap1)
    return steps


def _replicate(models: list[DotBias]) -> None:
    world = len(models)
    for r, m in enumerate(models):
        for other in models:
            other.user_factors.data[r::world] = m.user_factors.data[r::world]
            other.user_bias.data[r::world] = m.user_bias.data[r::world]


@needs_numba
@settings(max_examples=12, deadline=None)
@given(
    world=st.integers(2, 4),
    adam=st.booleans(),
    squash=st.booleans(),
    n=st.integers(1, 400),
    seed=st.integers(0, 10_000),
)
def test_ranks_owning_users_follow_the_single_process_step(
    world: int, adam: bool, squash: bool, n: int, seed: int
) -> None:
    nu, ni, k = 37, 23, 5
    cls: type[RowOptimizer] = RowAdamW if adam else RowAdagrad
    y_range = (0.0, 5.5) if squash else None
    single = DotBias(nu, ni, k, y_range=y_range, seed=4)
    models = [DotBias(nu, ni, k, y_range=y_range, seed=4) for _ in range(world)]
    o_single = cls(single, lr=0.03, weight_decay=0.1)
    opts = [cls(m, lr=0.03, weight_decay=0.1) for m in models]
    owned = [OwnedRows(o, DistContext(r, world, r, "gloo", torch.device("cpu")))
             for r, o in enumerate(opts)]  # fmt: skip
    rng = np.random.default_rng(seed)
    for step in range(4):
        batch = _batch(rng, nu, ni, n)
        w = max(float(batch["weight"].sum()), 1e-3)
        out, loss, pen = o_single.compiled_step(batch, w, 0.05, 1)
        res = _ranks_step(owned, batch, w, 0.05)
        assert sum(r[2] for r in res) == pytest.approx(loss, rel=1e-5, abs=1e-7)
        assert sum(r[3] for r in res) == pytest.approx(pen, rel=1e-5, abs=1e-7)
        users, items = batch["user"].numpy(), batch["item"].numpy()
        for r, o in enumerate(owned):
            mine = users % world == r
            assert res[r][0] == int(mine.sum())  # this rank's ratings, in batch order
            np.testing.assert_allclose(o.out[: res[r][0]], out.numpy()[mine], rtol=1e-4,
                                       atol=1e-5)  # fmt: skip
            # the items of its own users' ratings travel, each once, and nothing else
            assert int(o.send[0, 0]) == len(np.unique(items[mine]))
            assert set(o.send[1 : 1 + o.send[0, 0], -1].tolist()) == set(items[mine].tolist())
        if step == 0:  # one step from the same weights: every user row as one process's
            for r, m in enumerate(models):
                np.testing.assert_array_equal(
                    m.user_factors.detach().numpy()[r::world],
                    single.user_factors.detach().numpy()[r::world],
                )
    for o in [o_single, *opts]:
        o.flush()
    _replicate(models)
    for m in models[1:]:  # items updated from the same pairs: identical replicas
        for a, b in zip(m.parameters(), models[0].parameters(), strict=True):
            assert torch.equal(a, b)
    for a, b in zip(models[0].parameters(), single.parameters(), strict=True):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-4, atol=2e-5)


@needs_numba
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 300),
    bs=st.integers(1, 64),
    world=st.integers(1, 4),
    drop_last=st.booleans(),
    skip=st.integers(0, 3),
)
def test_owned_batches_are_each_ranks_part_of_the_global_batches(
    n: int, bs: int, world: int, drop_last: bool, skip: int
) -> None:
    rng = np.random.default_rng(n)
    nu, ni = 13, 9
    d = Interactions.from_arrays(rng.integers(0, nu, n), rng.integers(0, ni, n),
                                 rng.integers(1, 6, n).astype(float),
                                 weight=rng.choice([0.5, 1.0, 3.0], n).astype(np.float32))  # fmt: skip
    td = TensorData.from_interactions(d)
    full = list(td.epoch(bs, torch.Generator().manual_seed(3), drop_last))
    skip = min(skip, len(full))
    opt = RowAdagrad(DotBias(d.n_users, d.n_items, 2))
    parts = [
        list(owned_batches(opt, DistContext(r, world, r, "gloo", torch.device("cpu")), td, bs,
                           torch.Generator().manual_seed(3), drop_last, skip=skip))
        for r in range(world)
    ]  # fmt: skip
    assert all(len(p) == len(full) - skip for p in parts)
    for b, want in enumerate(full[skip:]):
        mine = [want["user"] % world == r for r in range(world)]
        for r in range(world):
            got = parts[r][b]
            for k in ("user", "item", "rating", "weight"):
                assert torch.equal(got[k], want[k][mine[r]]), k
            assert float(got["weight_total"]) == pytest.approx(float(want["weight"].sum()))
            assert int(got["rows_total"]) == len(want["user"])
            assert int(got["pairs_cap"]) == min(max(int(m.sum()) for m in mine), d.n_items)


@needs_numba
@settings(max_examples=10, deadline=None)
@given(world=st.integers(2, 4), n=st.integers(1, 300), seed=st.integers(0, 10_000))
def test_items_grouped_by_owner_keep_their_order_and_gradients(
    world: int, n: int, seed: int
) -> None:
    nu, ni, k = 31, 47, 4
    rng = np.random.default_rng(seed)
    batch = _rank_batches(_batch(rng, nu, ni, n), world, ni)[0]  # rank 0's ratings
    w = max(float(batch["weight"].sum()), 1e-3)
    owned = [OwnedRows(RowAdamW(DotBias(nu, ni, k, seed=4), weight_decay=0.1),
                       DistContext(0, world, 0, "gloo", torch.device("cpu"))) for _ in range(2)]  # fmt: skip
    owned[1].items_shared = True  # its items written grouped by their owner item % world
    plain, grouped = (o.step(batch, w, 0.05, 1)[1] for o in owned)
    assert plain == grouped
    a, b = owned[0].send[1 : 1 + plain], owned[1].send[1 : 1 + plain]
    seg = owned[1].send[0, 1 : world + 2]
    owner = a[:, -1] % world
    assert seg.tolist() == [0, *np.cumsum(np.bincount(owner, minlength=world)).tolist()]
    np.testing.assert_array_equal(b, a[np.argsort(owner, kind="stable")])  # first order kept


@needs_numba
def test_a_rank_s_buffers_hold_its_part_of_a_batch_not_the_global_batch() -> None:
    world, nu, ni, n = 4, 40, 9, 400
    rng = np.random.default_rng(1)
    d = Interactions.from_arrays(rng.integers(0, nu, n), rng.integers(0, ni, n),
                                 rng.integers(1, 6, n).astype(float))  # fmt: skip
    td = TensorData.from_interactions(d)
    for r in range(world):
        ctx = DistContext(r, world, r, "gloo", torch.device("cpu"))
        opt = RowAdagrad(DotBias(d.n_users, d.n_items, 3))
        for batch in owned_batches(opt, ctx, td, n, torch.Generator().manual_seed(3)):
            ctx.owned.step(batch, float(batch["weight_total"]), 0.05, 1)
            mine = len(batch["user"])
        own = ctx.owned
        assert own.buf.cap <= max(mine, world * d.n_items) < n
        assert own.out.shape[0] == mine and own.send.shape[0] <= d.n_items + 1
        assert own.recv.shape[0] <= world * (d.n_items + 1)


_WORKER = r"""
import hashlib, json, sys
import numpy as np, torch
from recfit.data import Interactions
from recfit.models import DotBias
from recfit.train import distributed as D, sparse_dist
from recfit.train.callbacks import Callback
from recfit.train.checkpoint import capture
from recfit.train.execution import Execution
from recfit.train.learner import Learner
from recfit.train.sparse_dist import Exchanged

out = sys.argv[1]


def digest(tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


class Capture(Callback):
    "Capture a checkpoint mid-epoch on every rank (the users' rows come from their owners)."
    def after_batch(self):
        if self.learn.train_iter == 7:
            tensors, _ = capture(self.learn, epoch_end=False)
            self.digest = digest([v for k, v in sorted(tensors.items()) if k.startswith(("model", "opt"))])


with D.session("cpu") as ctx:
    assert ctx is not None and ctx.backend == "gloo"
    expected = {"pairs": 0}
    step = sparse_dist.compiled_step

    def counted(opt, ctx_, batch, *a, **k):  # the pairs this rank must send: its users' items
        u, i = batch["user"].numpy(), batch["item"].numpy()
        expected["pairs"] += len(np.unique(i[u % ctx_.world == ctx_.rank]))
        return step(opt, ctx_, batch, *a, **k)

    sparse_dist.compiled_step = counted
    rng = np.random.default_rng(0)
    nu, ni, n = 150, 80, 9000
    u, i = rng.integers(0, nu, n), rng.integers(0, ni, n)
    if len(sys.argv) > 2:  # two users rate every item: with 3 ranks, rank 2 owns no rating
        nu, ni = 2, n // 2
        perm = rng.permutation(n)
        u, i = np.repeat(np.arange(nu), ni)[perm], np.tile(np.arange(ni), nu)[perm]
    bu, bi = rng.normal(0, 0.5, nu), rng.normal(0, 0.5, ni)
    r = np.clip(np.round(3.5 + bu[u] + bi[i] + rng.normal(0, 0.7, n)), 1, 5)
    d = Interactions.from_arrays(u, i, r, weight=rng.choice([0.5, 1.0, 2.0], n).astype(np.float32))
    train, valid = d.take(np.arange(8000)), d.take(np.arange(8000, n))
    res = {}
    for transport in ("shared", "gloo"):
        ctx.shared_memory = transport == "shared"
        expected["pairs"] = 0
        def make():
            m = DotBias(nu, ni, 8, y_range=(0, 5.5), seed=1)
            return Learner(m, train, valid, bs=700, reg=0.05, wd=0.01, opt="adagrad",
                           metrics=("rmse",), progress=False, execution=Execution(row_wise=True))
        cap = Capture()
        dl = D.attach(make(), ctx).add_cb(cap)
        dl.fit_one_cycle(2, 5e-2)
        single = make()
        single.fit_one_cycle(2, 5e-2)
        diff = max(float((a - b).detach().abs().max()) for a, b in
                   zip(dl.model.parameters(), single.model.parameters()))
        ex = ctx.exchanged
        res[transport] = {
            "path": dl.path.name, "shared": ctx.owned.shared is not None,
            "rmse": dl.evaluate(valid)["rmse"], "single_rmse": single.evaluate(valid)["rmse"],
            "param_diff": diff, "hash": digest(dl.model.parameters()),
            "state_hash": digest([*dl.opt.sum_sq, *dl.opt.row_decay]),
            "capture": cap.digest, "steps": ex.steps, "rows": ex.rows_sent,
            "expected_rows": expected["pairs"], "sent": ex.bytes_sent, "received": ex.bytes_received,
            "replicated": ex.bytes_replicated,
        }
        ctx.exchanged = Exchanged()
    with open(f"{out}/rank{ctx.rank}.json", "w") as f:
        json.dump(res, f)
"""


def _shared_files() -> set[str]:
    if not os.path.isdir(SHARED_DIR):
        return set()
    return {f for f in os.listdir(SHARED_DIR) if f.startswith("recfit-dist-")}


@needs_numba
@pytest.mark.slow
@pytest.mark.parametrize(("nproc", "few_users"), [(2, False), (3, False), (3, True)])
def test_gloo_ranks_owning_users_train_like_one_process(
    tmp_path: Path, nproc: int, few_users: bool
) -> None:
    """``few_users``: a rank that owns no user of a batch still meets the others (it
    used to skip opening the shared buffers, a collective, and hang or read stale pairs)."""
    before = _shared_files()
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    extra = ["few_users"] if few_users else []
    res = _torchrun(str(script), str(tmp_path), *extra, nproc=nproc, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _shared_files() <= before  # the shared buffers leave nothing behind
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(nproc)]
    row_b = (8 + 2) * 4
    for transport in ("shared", "gloo"):
        r0 = ranks[0][transport]
        assert r0["path"] == "compiled"
        assert r0["shared"] == (transport == "shared" and os.path.isdir(SHARED_DIR))
        assert len({r[transport]["hash"] for r in ranks}) == 1  # identical weights
        assert len({r[transport]["state_hash"] for r in ranks}) == 1  # and optimiser state
        assert len({r[transport]["capture"] for r in ranks}) == 1  # mid-epoch checkpoints too
        assert r0["param_diff"] < 1e-4  # the single-process trajectory
        assert abs(r0["rmse"] - r0["single_rmse"]) < 0.002
        steps = 2 * -(-8000 // 700)
        for r in ranks:
            x = r[transport]
            assert x["steps"] == steps
            assert x["rows"] == x["expected_rows"]  # only its users' items travel
            assert x["replicated"] > 0
            if r0["shared"]:  # the pairs and a header row, read by every rank
                assert x["sent"] == (x["rows"] + steps) * row_b
                assert x["received"] == sum(y[transport]["sent"] for y in ranks)
            else:  # padded to the busiest rank's pairs
                assert x["sent"] >= (x["rows"] + steps) * row_b
                assert x["received"] == nproc * x["sent"]
