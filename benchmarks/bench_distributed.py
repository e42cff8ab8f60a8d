"""Distributed row-wise training: 1 process × 2 threads against 2 gloo ranks × 1 thread.

A synthetic set of ``--ratings`` ratings on the ml-25m shape (162,541 users, 59,047
items; ``recfit.data.synthetic(..., seed=0)``), 90 % trained on and 10 % held out, a
DotBias of 64 factors with what ``recfit train`` picks for it (row-wise Adagrad, compiled
kernel) and ml-25m's batch size (16,384). In the same run it trains

* one process with 2 threads, and
* 2 ranks (torchrun, gloo) with 1 thread each, exchanging only the touched rows
  (:mod:`recfit.train.sparse_dist`),

for ``--epochs`` epochs each and prints the epoch times and their ratio, the held-out
RMSE of both, the bytes exchanged per step and where a rank's step time goes (gradient
kernel, exchange, update kernel). From the bytes per step it then derives the expected
epoch time of ml-25m on 8 machines linked at 10 Gbit/s, with the arithmetic.

Usage::

    python benchmarks/bench_distributed.py [--ratings 3000000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.data.synthetic import synthetic
from recfit.models import DotBias
from recfit.tasks.rating import resolve_config
from recfit.train import Learner, sparse_dist
from recfit.train import distributed as D
from recfit.train.execution import Execution
from recfit.train.sparse import RowOptimizer

N_FACTORS = 64
BS = 16_384
ML25M = 25_000_095
LINK_BYTES_PER_S = 10e9 / 8  # 10 Gbit/s
HOP_LATENCY_S = 50e-6  # one ring hop of a small TCP message (gloo) between machines


def _data(path: Path) -> tuple[Interactions, Interactions]:
    z = np.load(path)
    d = Interactions.from_arrays(z["user"], z["item"], z["rating"])
    cut = int(0.9 * len(d))
    return d.take(np.arange(cut)), d.take(np.arange(cut, len(d)))


def _learner(train: Interactions, valid: Interactions, threads: int) -> Learner:
    cfg = resolve_config(RatingConfig(dataset="synthetic", n_factors=N_FACTORS, bs=BS), train)
    model = DotBias(train.n_users, train.n_items, n_factors=N_FACTORS, seed=0)
    return Learner(
        model, train, valid, bs=BS, wd=cfg.wd, reg=cfg.reg, opt=cfg.opt, seed=0,
        metrics=("rmse",), progress=False, execution=Execution(num_threads=threads),
    )  # fmt: skip


def _fit(learn: Learner, epochs: int) -> dict[str, Any]:
    cfg = resolve_config(RatingConfig(dataset="synthetic", n_factors=N_FACTORS), learn.train)
    learn.fit_one_cycle(epochs, cfg.lr)
    return {
        "path": learn.path.name if learn.path else "?",
        "epoch_s": [h["time"] for h in learn.history],
        "rmse": learn.history[-1]["rmse"],
        "steps": learn.steps_per_epoch,
        "compile_s": learn.compile_seconds,
    }


def _timed(phases: dict[str, float]) -> None:
    """Time the three phases of a distributed row-wise step (grads, exchange, update)."""

    def wrap(owner: Any, name: str, key: str) -> None:
        fn = getattr(owner, name)

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[key] = phases.get(key, 0.0) + time.perf_counter() - t

        setattr(owner, name, timed)

    wrap(RowOptimizer, "compiled_grads", "grads")
    wrap(sparse_dist, "exchange", "exchange")
    wrap(RowOptimizer, "compiled_apply", "apply")


def worker(data: Path, out: Path, epochs: int) -> None:
    train, valid = _data(data)
    with D.session("cpu") as ctx:
        assert ctx is not None
        learn = D.attach(_learner(train, valid, threads=1), ctx)
        phases: dict[str, float] = {}
        _timed(phases)
        res = _fit(learn, epochs)
        ex = ctx.exchanged
        res.update(phases=phases, exchange_steps=ex.steps, rows_sent=ex.rows_sent,
                   bytes_sent=ex.bytes_sent, bytes_received=ex.bytes_received)  # fmt: skip
        (out / f"rank{ctx.rank}.json").write_text(json.dumps(res))


def _shard_rows(train: Interactions, world: int, seed: int = 0) -> tuple[float, float]:
    """Per step of one epoch at ``world`` ranks: the largest rank's touched rows (users +
    items) and the total over the ranks (means over the steps)."""
    perm = np.random.default_rng(seed).permutation(len(train))
    widths, totals = [], []
    for b in range(0, len(perm) - BS + 1, BS):
        rows = perm[b : b + BS]
        per = []
        for r in range(world):
            lo, hi = D.shard_range(BS, r, world)
            part = rows[lo:hi]
            per.append(len(np.unique(train.user[part])) + len(np.unique(train.item[part])))
        widths.append(max(per))
        totals.append(sum(per))
    return float(np.mean(widths)), float(np.mean(totals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratings", type=int, default=3_000_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--worker", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), args.epochs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        d = synthetic(args.ratings, 162_541, 59_047, seed=0, with_timestamps=False)
        data = Path(tmp) / "data.npz"
        np.savez(data, user=d.user, item=d.item, rating=d.rating)
        print(f"data: {len(d):,} ratings ({time.perf_counter() - t:.1f} s to generate)")
        train, valid = _data(data)
        load0 = os.getloadavg()
        single = _fit(_learner(train, valid, threads=2), args.epochs)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
               "--nproc-per-node=2", "--rdzv-backend=c10d",
               f"--rdzv-endpoint=127.0.0.1:{D.free_port()}", __file__,
               "--epochs", str(args.epochs), "--worker", str(data), tmp]  # fmt: skip
        subprocess.run(cmd, env=env, check=True)
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(2)]
        load1 = os.getloadavg()
        width8, total8 = _shard_rows(train, 8)
        total2 = _shard_rows(train, 2)[1]
    r0 = ranks[0]
    s_ep, d_ep = min(single["epoch_s"]), max(min(r["epoch_s"]) for r in ranks)
    steps = single["steps"]
    print(f"load average before/after: {load0[0]:.2f} / {load1[0]:.2f} (2 cores on this box)")
    print(f"model: DotBias {N_FACTORS} factors, bs {BS}, {steps} steps per epoch, "
          f"{len(train):,} training ratings")  # fmt: skip
    print(
        f"1 process x 2 threads ({single['path']}): epochs "
        f"{', '.join(f'{s:.2f}' for s in single['epoch_s'])} s, RMSE {single['rmse']:.4f}"
    )
    for r, res in enumerate(ranks):
        print(
            f"rank {r} of 2 x 1 thread ({res['path']}): epochs "
            f"{', '.join(f'{s:.2f}' for s in res['epoch_s'])} s, RMSE {res['rmse']:.4f}"
        )
    print(
        f"epoch time, 2 ranks / 1 process (best epochs): {d_ep:.2f} / {s_ep:.2f} = "
        f"{d_ep / s_ep:.2f}x;  RMSE difference {abs(r0['rmse'] - single['rmse']):.4f}"
    )
    n_steps = r0["exchange_steps"]
    ph = r0["phases"]
    per = {k: 1e3 * v / n_steps for k, v in ph.items()}
    print(
        f"rank 0 per step: gradient kernel {per['grads']:.2f} ms, exchange "
        f"{per['exchange']:.2f} ms, update kernel {per['apply']:.2f} ms"
    )
    row_b = (N_FACTORS + 2) * 4
    print(
        f"exchanged per step and rank: {r0['rows_sent'] / n_steps:,.0f} (row, gradient) "
        f"pairs, {r0['bytes_sent'] / n_steps / 1e6:.3f} MB sent, "
        f"{r0['bytes_received'] / n_steps / 1e6:.3f} MB received (own buffer included; "
        f"{row_b} B per pair). Dense gradient all-reduce would be "
        f"{(train.n_users + train.n_items) * (N_FACTORS + 1) * 4 / 1e6:.1f} MB"
    )
    # ---- 8 machines, ml-25m, 10 Gbit/s
    steps25 = ML25M // BS
    grad8 = per["grads"] * 2 / 8  # the gradient kernel's work is split over the ranks
    apply8 = per["apply"] * total8 / total2  # the update reads every rank's pairs
    cap8 = 2 * (BS // 8)  # sparse_dist.capacity: each side's rows of the largest shard
    buf8 = (cap8 + 1) * row_b  # one rank's buffer: header row, then cap8 rows
    wire8 = 7 * buf8 / LINK_BYTES_PER_S * 1e3  # ring all-gather: 7/8 of 8 buffers
    lat8 = 7 * HOP_LATENCY_S * 1e3  # one all-gather, 7 hops
    step8 = grad8 + apply8 + wire8 + lat8
    print("expected ml-25m epoch on 8 machines (1 rank each, 10 Gbit/s links):")
    print(
        f"  touched rows per rank-shard of {BS // 8} ratings (this data, max rank, mean "
        f"step): {width8:,.0f}; buffer (1 + {cap8:,}) x {row_b} B = {buf8 / 1e6:.3f} MB"
    )
    print(
        f"  wire: ring all-gather moves 7 x {buf8 / 1e6:.3f} MB per rank = "
        f"{7 * buf8 / 1e6:.2f} MB / 1.25 GB/s = {wire8:.2f} ms; latency 7 hops x "
        f"{HOP_LATENCY_S * 1e6:.0f} us = {lat8:.2f} ms"
    )
    print(
        f"  compute: gradient {per['grads']:.2f} ms x 2/8 = {grad8:.2f} ms; update "
        f"{per['apply']:.2f} ms x {total8:,.0f}/{total2:,.0f} pairs = {apply8:.2f} ms"
    )
    print(
        f"  step {step8:.2f} ms x {steps25:,} steps = {step8 * steps25 / 1e3:.1f} s per "
        f"epoch (1 process x 2 threads here: {s_ep / steps * steps25:.1f} s, scaled by "
        f"steps)"
    )
    print(f"  ({torch.__version__}; measured on this machine, not on 8 machines)")


if __name__ == "__main__":
    main()
