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
import statistics
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


def _learner(train: Interactions, valid: Interactions, threads: int | None) -> Learner:
    cfg = resolve_config(RatingConfig(dataset="synthetic", n_factors=N_FACTORS, bs=BS), train)
    model = DotBias(train.n_users, train.n_items, n_factors=N_FACTORS, seed=0)
    return Learner(
        model, train, valid, bs=BS, wd=cfg.wd, reg=cfg.reg, opt=cfg.opt, seed=0,
        metrics=("rmse",), progress=False, execution=Execution(num_threads=threads),
    )  # fmt: skip


def _fit(learn: Learner, epochs: int) -> dict[str, Any]:
    cfg = resolve_config(RatingConfig(dataset="synthetic", n_factors=N_FACTORS), learn.train)
    cpu = time.process_time()  # every thread of this process
    learn.fit_one_cycle(epochs, cfg.lr)
    return {
        "cpu_s": time.process_time() - cpu - learn.compile_seconds,
        "path": learn.path.name if learn.path else "?",
        "epoch_s": [h["time"] for h in learn.history],
        "rmse": learn.history[-1]["rmse"],
        "steps": learn.steps_per_epoch,
        "compile_s": learn.compile_seconds,
    }


def _timed(phases: dict[str, float]) -> None:
    """Time the phases of a distributed compiled step: the whole step, its kernel
    (this rank's ratings, its users' update, the items' pairs packed) and the items'
    update; the rest of the step is the exchange (all-gather)."""

    def wrap(owner: Any, name: str, key: str) -> None:
        fn = getattr(owner, name)
        calls = [0]

        def timed(*a: Any, **k: Any) -> Any:
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                calls[0] += 1
                if calls[0] > 1 or key in ("step", "replicate"):  # not the compiling call
                    phases[key] = phases.get(key, 0.0) + time.perf_counter() - t
                    cpu = f"{key}_cpu"
                    phases[cpu] = phases.get(cpu, 0.0) + time.thread_time() - c

        setattr(owner, name, timed)

    wrap(sparse_dist, "compiled_step", "step")
    wrap(sparse_dist.OwnedRows, "step", "kernel")
    wrap(sparse_dist.OwnedRows, "apply", "apply")
    wrap(sparse_dist, "replicate", "replicate")


def worker(data: Path, out: Path, epochs: int) -> None:
    train, valid = _data(data)
    with D.session("cpu") as ctx:
        assert ctx is not None
        learn = D.attach(_learner(train, valid, threads=None), ctx)
        phases: dict[str, float] = {}
        _timed(phases)
        res = _fit(learn, epochs)
        ex = ctx.exchanged
        res.update(phases=phases, exchange_steps=ex.steps, rows_sent=ex.rows_sent,
                   bytes_sent=ex.bytes_sent, bytes_received=ex.bytes_received,
                   bytes_replicated=ex.bytes_replicated,
                   items_shared=bool(ctx.owned is not None and ctx.owned.items_shared),
                   threads=learn.execution.num_threads)  # fmt: skip
        (out / f"rank{ctx.rank}.json").write_text(json.dumps(res))


def _item_pairs(train: Interactions, world: int, seed: int = 0) -> tuple[float, float]:
    """Per step of one epoch at ``world`` ranks owning the users ``user % world``: the
    most distinct items of one rank's ratings (its buffer) and their sum over the ranks
    (the pairs every rank's item update reads), means over the steps."""
    perm = np.random.default_rng(seed).permutation(len(train))
    users, items = train.user[perm].astype(np.int64), train.item[perm].astype(np.int64)
    widths, totals = [], []
    for b in range(0, len(perm) - BS + 1, BS):
        u, i = users[b : b + BS], items[b : b + BS]
        key = np.unique((u % world) * train.n_items + i) // train.n_items
        per = np.bincount(key, minlength=world)
        widths.append(per.max())
        totals.append(per.sum())
    return float(np.mean(widths)), float(np.mean(totals))


def _ranks(data: Path, tmp: str, epochs: int) -> list[dict[str, Any]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
           "--nproc-per-node=2", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{D.free_port()}", __file__,
           "--epochs", str(epochs), "--worker", str(data), tmp]  # fmt: skip
    subprocess.run(cmd, env=env, check=True)
    return [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(2)]


def _ms(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratings", type=int, default=3_000_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the two runs")
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
        del d
        print(f"data: {args.ratings:,} ratings ({time.perf_counter() - t:.1f} s to generate)")
        train, valid = _data(data)
        singles: list[dict[str, Any]] = []
        dists: list[list[dict[str, Any]]] = []
        for rnd in range(args.rounds):  # alternate the two, same data, same machine
            load = os.getloadavg()[0]
            singles.append(_fit(_learner(train, valid, threads=2), args.epochs))
            load_mid = os.getloadavg()[0]
            dists.append(_ranks(data, tmp, args.epochs))
            print(
                f"round {rnd + 1}: load {load:.2f} / {load_mid:.2f} / {os.getloadavg()[0]:.2f}; "
                f"1 process x 2 threads epochs {_ms(singles[-1]['epoch_s'])} s; 2 ranks x "
                f"{dists[-1][0]['threads']} thread epochs {_ms(dists[-1][0]['epoch_s'])} s",
                flush=True,
            )
        pairs2 = _item_pairs(train, 2)
        pairs8 = _item_pairs(train, 8)
    single = singles[-1]
    r0 = dists[-1][0]
    s_ep = statistics.median(e for run in singles for e in run["epoch_s"])
    d_ep = statistics.median(max(r["epoch_s"][e] for r in run) for run in dists
                             for e in range(args.epochs))  # fmt: skip
    steps = single["steps"]
    print(f"model: DotBias {N_FACTORS} factors, bs {BS}, {steps} steps per epoch, "
          f"{len(train):,} training ratings")  # fmt: skip
    cpu1 = statistics.median(run["cpu_s"] / args.epochs for run in singles)
    cpu2 = statistics.median(sum(r["cpu_s"] for r in run) / args.epochs for run in dists)
    print(f"1 process x 2 threads ({single['path']}): RMSE {single['rmse']:.4f}, CPU "
          f"{cpu1:.2f} s per epoch (median)")  # fmt: skip
    for r, res in enumerate(dists[-1]):
        print(f"rank {r} of 2 x {res['threads']} thread ({res['path']}): RMSE {res['rmse']:.4f}")
    print(f"2 ranks: CPU {cpu2:.2f} s per epoch, both ranks (median; {cpu2 / cpu1:.2f}x)")
    print(
        f"median epoch, 2 ranks (slower rank) / 1 process, {args.rounds} rounds x "
        f"{args.epochs} epochs: {d_ep:.2f} / {s_ep:.2f} s = {d_ep / s_ep:.2f}x;  RMSE "
        f"difference {abs(r0['rmse'] - single['rmse']):.4f}"
    )
    n_steps = r0["exchange_steps"]
    per = {k: 1e3 * v / n_steps for k, v in r0["phases"].items()}
    wire = per["step"] - per["kernel"] - per["apply"]
    loop = 1e3 * statistics.median(r0["epoch_s"]) / steps - per["step"]
    print(
        f"rank 0 per step (wall): kernel (its ratings, its users' update, items packed) "
        f"{per['kernel']:.2f} ms, exchange and wait {wire:.2f} ms, items' update "
        f"{per['apply']:.2f} ms, rest of the step (batch, events, sums) {loop:.2f} ms; "
        f"users' rows copied from their owners {per.get('replicate', 0) * n_steps:.0f} ms "
        f"per fit ({r0['bytes_replicated'] / 1e6:.1f} MB received)"
    )
    print(
        f"rank 0 per step (CPU of its thread): kernel {per['kernel_cpu']:.2f} ms, items' "
        f"update {per['apply_cpu']:.2f} ms, whole step {per['step_cpu']:.2f} ms"
    )
    row_b = (N_FACTORS + 2) * 4
    print(
        f"exchanged per step and rank: {r0['rows_sent'] / n_steps:,.0f} (item, gradient) "
        f"pairs, {r0['bytes_sent'] / n_steps / 1e6:.3f} MB sent, "
        f"{r0['bytes_received'] / n_steps / 1e6:.3f} MB received (own buffer included; "
        f"{row_b} B per pair). Dense gradient all-reduce would be "
        f"{(train.n_users + train.n_items) * (N_FACTORS + 1) * 4 / 1e6:.1f} MB"
    )
    # ---- 8 machines, ml-25m, 10 Gbit/s
    steps25 = ML25M // BS
    # compute from CPU time (what the work costs, whatever the load of this machine)
    kern8 = per["kernel_cpu"] * 2 / 8  # each rank's kernel trains 1/world of the ratings
    # here each rank updated its own items of the shared tables (half the pairs); across
    # machines every rank updates every item from every pair
    seen2 = pairs2[1] / (2 if r0["items_shared"] else 1)
    apply8 = per["apply_cpu"] * pairs8[1] / seen2
    buf8 = (pairs8[0] + 1) * row_b  # one rank's buffer: header row, then its pairs
    wire8 = 7 * buf8 / LINK_BYTES_PER_S * 1e3  # ring all-gather: 7/8 of 8 buffers
    lat8 = 7 * HOP_LATENCY_S * 1e3  # one all-gather, 7 hops
    step8 = kern8 + apply8 + wire8 + lat8
    rep8 = r0["bytes_replicated"] / args.epochs * 7 / 8 / LINK_BYTES_PER_S  # s per epoch
    print("expected ml-25m epoch on 8 machines (1 rank each, 10 Gbit/s links):")
    print(
        f"  item pairs per step (this data, mean step): {pairs8[0]:,.0f} from the busiest "
        f"rank, {pairs8[1]:,.0f} over the 8 ranks (2 ranks: {pairs2[0]:,.0f} and "
        f"{pairs2[1]:,.0f}); buffer (1 + {pairs8[0]:,.0f}) x {row_b} B = {buf8 / 1e6:.3f} MB"
    )
    print(
        f"  wire: ring all-gather moves 7 x {buf8 / 1e6:.3f} MB per rank = "
        f"{7 * buf8 / 1e6:.2f} MB / 1.25 GB/s = {wire8:.2f} ms; latency 7 hops x "
        f"{HOP_LATENCY_S * 1e6:.0f} us = {lat8:.2f} ms"
    )
    print(
        f"  compute (CPU time): kernel {per['kernel_cpu']:.2f} ms x 2/8 = {kern8:.2f} ms; "
        f"items' update {per['apply_cpu']:.2f} ms x {pairs8[1]:,.0f}/{seen2:,.0f} pairs "
        f"(every item on every machine) = {apply8:.2f} ms"
    )
    print(
        f"  step {step8:.2f} ms x {steps25:,} steps = {step8 * steps25 / 1e3:.1f} s per "
        f"epoch, + users' rows copied once per epoch {rep8:.2f} s (1 process x 2 threads "
        f"here: {s_ep / steps * steps25:.1f} s, scaled by steps)"
    )
    print(f"  ({torch.__version__}; measured on this machine, not on 8 machines)")


if __name__ == "__main__":
    main()
