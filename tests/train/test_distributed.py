"""Distributed training: shards, exact metric reduction, DDP/fused equivalence, torchrun."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.runs import train_run
from recfit.train import distributed
from recfit.train.batches import TensorData
from recfit.train.distributed import free_port, launch_command, shard_range

runner = CliRunner()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 500), st.integers(1, 9))
def test_shard_ranges_partition_the_rows(n: int, world: int) -> None:
    ranges = [shard_range(n, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    sizes = [hi - lo for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 80), st.integers(1, 17), st.integers(1, 4), st.booleans(), st.integers(0, 5))
def test_sharded_epoch_rebuilds_the_global_batches(
    n: int, bs: int, world: int, drop_last: bool, skip: int
) -> None:
    rng = np.random.default_rng(n)
    d = Interactions.from_arrays(
        np.arange(n), np.arange(n) % 7, rng.integers(1, 6, n).astype(float),
        weight=rng.choice([0.5, 1.0, 2.0], n).astype(np.float32),
    )  # fmt: skip
    td = TensorData.from_interactions(d)
    full = list(td.epoch(bs, torch.Generator().manual_seed(3), drop_last))
    skip = min(skip, len(full))
    parts = [
        list(td.epoch(bs, torch.Generator().manual_seed(3), drop_last, skip=skip, shard=(r, world)))
        for r in range(world)
    ]
    assert all(len(p) == len(full) - skip for p in parts)
    for b, want in enumerate(full[skip:]):
        got = torch.cat([p[b]["user"] for p in parts])
        assert torch.equal(got, want["user"])  # same rows, same order
        for p in parts:  # every rank knows the global Σw, bit-exactly
            assert torch.equal(p[b]["weight_total"], want["weight"].sum())
            assert int(p[b]["rows_total"]) == len(want["user"])  # the global batch's rows


def test_launch_command_and_free_port() -> None:
    port = free_port()
    cmd = launch_command(3, ["train", "-q"], port=port)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=3" in cmd and f"--rdzv-endpoint=127.0.0.1:{port}" in cmd
    assert cmd[-4:] == ["-m", "recfit", "train", "-q"]
    with pytest.raises(ConfigError, match="expected --nproc an integer >= 1"):
        launch_command(0, [])


def test_cli_nproc_forwards_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_launch(nproc: int, args: list[str]) -> int:
        seen.update(nproc=nproc, args=args)
        return 0

    monkeypatch.setattr(distributed, "launch", fake_launch)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    res = runner.invoke(app, ["train", "--nproc", "2", "--epochs", "3", "--lr", "0.01", "-q",
                              "--out", "runs/x", "--checkpoint-every", "50"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert seen["nproc"] == 2 and seen["args"][0] == "train" and "--nproc" not in seen["args"]
    args = seen["args"]
    for flag, value in (("--epochs", "3"), ("--lr", "0.01"), ("--checkpoint-every", "50")):
        assert args[args.index(flag) + 1] == value
    assert "--quiet" in args or "-q" in args
    assert "--exclude-seen" not in args and "--include-seen" not in args  # not given
    res = runner.invoke(app, ["train", "--nproc", "2", "--include-seen"])
    assert res.exit_code == 0, res.output
    assert "--include-seen" in seen["args"]


def test_session_without_torchrun_is_a_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session("cpu") as ctx:
        assert ctx is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with (
        pytest.raises(ConfigError, match="expected the torchrun environment"),
        distributed.session("cpu"),
    ):
        pass


# ---------------------------------------------------------------- two real processes
_WORKER = r"""
import json, sys
import numpy as np, torch
import torch.distributed as dist
from recfit.data import Interactions
from recfit.models import DotBias, EmbeddingNN
from recfit.train import distributed as D
from recfit.train.execution import Execution
from recfit.train.learner import Learner

out = sys.argv[1]
with D.session("cpu") as ctx:
    assert ctx is not None and ctx.world == 2 and ctx.backend == "gloo"
    rng = np.random.default_rng(0)
    n = 3001
    d = Interactions.from_arrays(
        rng.integers(0, 40, n), rng.integers(0, 50, n), rng.integers(1, 6, n).astype(float),
        weight=rng.choice([0.0, 0.5, 1.0, 3.0], n).astype(np.float32))
    train, valid = d.take(np.arange(2400)), d.take(np.arange(2400, n))
    metrics = ("mse", "rmse", "mae", "r2")
    res = {}
    for name, kind, fused in (("fused", "dot", "auto"), ("ddp", "dot", False), ("nn", "nn", False)):
        def make(model=None):
            if model is None and kind == "dot":
                model = DotBias(d.n_users, d.n_items, 6, y_range=(0, 5.5), seed=1)
            elif model is None:
                model = EmbeddingNN(d.n_users, d.n_items, (6, 5), layers=(12,), batch_norm=False,
                                    seed=1)
            return Learner(model, train, valid, bs=64, reg=0.02, metrics=metrics,
                           execution=Execution(fused=fused),
                           progress=False)
        dl = D.attach(make(), ctx)
        dl.fit_one_cycle(2, 1e-2)
        ev = dl.evaluate(valid)
        exact = make(dl.model).evaluate(valid)  # one process, same weights
        # what a mean of per-rank means would report (the thing not to do)
        lo, hi = D.shard_range(len(valid), ctx.rank, ctx.world)
        local = make(dl.model).evaluate(valid.take(np.arange(lo, hi)))["mse"]
        t = torch.tensor([local], dtype=torch.float64)
        dist.all_reduce(t)
        single = make()
        single.fit_one_cycle(2, 1e-2)
        diff = max(float((a - b).detach().abs().max()) for a, b in
                   zip(dl.model.parameters(), single.model.parameters()))
        res[name] = {"dist": ev, "exact": exact, "mean_of_means": float(t[0]) / ctx.world,
                     "param_diff": diff, "single": single.evaluate(valid),
                     "train_loss": [h["train_loss"] for h in dl.history],
                     "single_train_loss": [h["train_loss"] for h in single.history]}
    with open(f"{out}/rank{ctx.rank}.json", "w") as f:
        json.dump(res, f)
"""


def _torchrun(*args: str, timeout: int = 300, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={nproc}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_ranks_evaluate_exactly_and_train_like_one_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    res = _torchrun(str(script), str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name in ("fused", "ddp", "nn"):
        r0, r1 = ranks[0][name], ranks[1][name]
        assert r0["dist"] == r1["dist"]  # every rank gets the same numbers
        for k, v in r0["exact"].items():  # exact reduction: sums, not means of means
            assert r0["dist"][k] == pytest.approx(v, rel=1e-12, abs=1e-15), (name, k)
        assert abs(r0["mean_of_means"] - r0["exact"]["mse"]) > 1e-4  # (a naive mean is off)
        # the same global batches: 2 ranks follow the single-process trajectory
        assert r0["param_diff"] < 1e-4, name
        assert r0["dist"]["mse"] == pytest.approx(r0["single"]["mse"], abs=1e-5)
        assert r0["train_loss"] == pytest.approx(r0["single_train_loss"], rel=1e-5)


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_match_one_process_on_ml100k(
    tmp_path: Path, data_dir: Path
) -> None:
    flags = ["--dataset", "ml-100k", "--data-dir", str(data_dir), "--epochs", "3", "--bs", "256",
             "--lr", "0.01", "--n-factors", "32", "--device", "cpu", "--seed", "7", "-q",
             "--budget", "0"]  # fmt: skip
    run = tmp_path / "run"
    res = _torchrun("-m", "recfit", "train", *flags, "--out", str(run), timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run directory:") == 1  # only rank 0 reports and writes
    assert "2 ranks (gloo)" in " ".join(res.stdout.split())  # rich may wrap the line
    got = json.loads((run / "metrics.json").read_text())
    cfg = RatingConfig(dataset="ml-100k", data_dir=str(data_dir), epochs=3, bs=256, lr=0.01,
                      n_factors=32, device="cpu", seed=7, budget=0)  # fmt: skip
    single = train_run(cfg, progress=False).metrics
    assert abs(got["mse"] - single["mse"]) < 0.01
    assert (run / "checkpoint.safetensors").exists() and (run / "history.csv").exists()
