"""R1 in fastai's configuration: the compiled dense epochs against the step-by-step path
and a plain PyTorch loop of the same model, in the same run.

fastai's collab configuration: DotBias 50, y_range (0, 5.5), ``fit_one_cycle(5, 5e-3,
wd=0.1)``, bs 64, AdamW with decoupled weight decay over every row at every step
(fastai's dense embedding gradients), one-cycle momentum 0.95 → 0.85 → 0.95, eps 1e-5;
what ``recfit train --model dot --wd 0.1 --reg 0 --bs 64`` runs. For each split seed,
interleaved:

* ``kernel``: the Learner's default on CPU, each epoch one compiled kernel
  (:mod:`recfit.train.dense_epoch`);
* ``steps``: the same Learner step by step (``Execution(compiled=False)``: the fused
  gradient and :class:`recfit.train.optim.AdamW`, the reference trajectory);
* ``torch``: a plain PyTorch loop: ``nn.Embedding`` tables, autograd, ``torch.optim.AdamW``
  with the same one-cycle LR and momentum per step, the same batches, a validation per
  epoch, one thread (as the peers run).

Prints per seed the validation MSE of each, the fit seconds (wall, compile apart) and the
CPU seconds (steadier on a shared machine), then the medians, the ratios, fastai's
recorded figure (``benchmarks/results/peers.json``, fastai 2.8.12 on this machine; not
rerun) and the bound. Usage::

    python benchmarks/bench_fastai_config.py [--data-dir DIR] [--seeds 42 7 1] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from _args import add_data_dir
from bench_r1 import load_ml100k
from recfit.data import Interactions, make_split
from recfit.models import DotBias
from recfit.train import Execution, Learner
from recfit.train.batches import n_batches
from recfit.train.callbacks import Callback
from recfit.train.schedules import OneCycle, one_cycle_momentum

EPOCHS, LR, WD, BS, FACTORS = 5, 5e-3, 0.1, 64, 50
PEERS = Path(__file__).resolve().parent / "results" / "peers.json"


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


class CpuTime(Callback):
    """The process's CPU seconds from ``before_fit`` to ``after_fit`` (compiling is before)."""

    seconds = 0.0

    def before_fit(self) -> None:
        self.seconds = -time.process_time()

    def after_fit(self) -> None:
        self.seconds += time.process_time()


def recfit_fit(
    train: Interactions, valid: Interactions, seed: int, compiled: bool
) -> dict[str, Any]:
    model = DotBias(train.n_users, train.n_items, FACTORS, y_range=(0.0, 5.5))
    cpu = CpuTime()
    learn = Learner(model, train, valid, bs=BS, wd=WD, reg=0.0, seed=seed, progress=False,
                    callbacks=[cpu], execution=Execution(compiled="auto" if compiled else False))  # fmt: skip
    learn.fit_one_cycle(EPOCHS, LR, wd=WD)
    assert learn.path is not None and learn.path.dense_epochs == compiled
    return {"mse": learn.history[-1]["mse"], "wall": learn.fit_seconds, "cpu": cpu.seconds,
            "compile": learn.compile_seconds}  # fmt: skip


class PlainDot(nn.Module):
    """fastai's EmbeddingDotBias written plainly."""

    def __init__(self, n_users: int, n_items: int, k: int) -> None:
        super().__init__()
        self.u, self.i = nn.Embedding(n_users, k), nn.Embedding(n_items, k)
        self.ub, self.ib = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        for e in (self.u, self.i, self.ub, self.ib):
            nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        x = (self.u(u) * self.i(i)).sum(1) + self.ub(u)[:, 0] + self.ib(i)[:, 0]
        return torch.sigmoid(x) * 5.5


def torch_fit(train: Interactions, valid: Interactions, seed: int) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = PlainDot(train.n_users, train.n_items, FACTORS)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.95, 0.99), eps=1e-5,
                                weight_decay=WD)  # fmt: skip
        u, i = torch.from_numpy(train.user.astype(np.int64)), torch.from_numpy(
            train.item.astype(np.int64))  # fmt: skip
        r = torch.from_numpy(train.rating.astype(np.float32))
        vu, vi = torch.from_numpy(valid.user.astype(np.int64)), torch.from_numpy(
            valid.item.astype(np.int64))  # fmt: skip
        vr = torch.from_numpy(valid.rating.astype(np.float32))
        n = len(r)
        nb = n_batches(n, BS)
        total = EPOCHS * nb
        lrs = OneCycle(LR, total).values()
        moms = one_cycle_momentum(total).values()
        gen = torch.Generator().manual_seed(seed)
        t0, c0 = time.perf_counter(), time.process_time()
        step = 0
        mse = float("nan")
        for _ in range(EPOCHS):
            perm = torch.randperm(n, generator=gen)
            for b in range(nb):
                idx = perm[b * BS : (n if b == nb - 1 else (b + 1) * BS)]
                for g in opt.param_groups:
                    g["lr"], g["betas"] = lrs[step], (moms[step], 0.99)
                loss = ((model(u[idx], i[idx]) - r[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                step += 1
            with torch.no_grad():
                mse = float(((model(vu, vi) - vr) ** 2).mean())
        return {"mse": mse, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                "compile": 0.0}  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def fastai_recorded() -> tuple[float, float, str] | None:
    """fastai EmbeddingDotBias (50) on R1 from the peers' results: median seconds, MSE, load."""
    if not PEERS.exists():
        return None
    rows = [
        r for r in json.loads(PEERS.read_text())["records"]
        if r.get("library") == "fastai" and r.get("variant") == "dot" and r.get("protocol") == "R1"
    ]  # fmt: skip
    if not rows:
        return None
    secs = statistics.median(r["fit_seconds"] for r in rows)
    mse = statistics.median(r["metrics"]["mse"] for r in rows)
    loads = ", ".join(f"{r['load_avg'][0]:.2f}" for r in rows)
    return secs, mse, loads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 1])
    ap.add_argument("--reps", type=int, default=1, help="runs of each per seed")
    args = ap.parse_args()
    data = load_ml100k(Path(args.data_dir))
    print(f"R1, fastai's configuration (DotBias {FACTORS}, one-cycle {EPOCHS} x {LR:g}, wd {WD:g}, "
          f"bs {BS}); load {load()}, {os.cpu_count()} CPUs")  # fmt: skip
    names = ("kernel", "steps", "torch")
    res: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    steps = 0
    for seed in args.seeds:
        split = make_split(data, "random:0.2", seed=seed)
        steps = EPOCHS * n_batches(len(split.train), BS)
        for _ in range(args.reps):
            runs = {
                "kernel": recfit_fit(split.train, split.test, seed, compiled=True),
                "steps": recfit_fit(split.train, split.test, seed, compiled=False),
                "torch": torch_fit(split.train, split.test, seed),
            }
            for k, v in runs.items():
                res[k].append(v)
            print(f"  seed {seed}: " + "; ".join(
                f"{k} MSE {v['mse']:.4f} fit {v['wall']:.3f} s (CPU {v['cpu']:.3f} s)"
                for k, v in runs.items()
            ) + f"; kernel compile {runs['kernel']['compile']:.2f} s apart; load {load()}")  # fmt: skip
    med = {k: {m: statistics.median(r[m] for r in res[k]) for m in ("mse", "wall", "cpu")}
           for k in names}  # fmt: skip
    for k in names:
        print(f"  median {k:6s}: MSE {med[k]['mse']:.4f}, fit {med[k]['wall']:.3f} s, "
              f"CPU {med[k]['cpu']:.3f} s")  # fmt: skip
    kw, kc = med["kernel"]["wall"], med["kernel"]["cpu"]
    print(f"  kernel against step by step: x{med['steps']['wall'] / kw:.1f} (wall), "
          f"x{med['steps']['cpu'] / kc:.1f} (CPU); against the plain PyTorch loop: "
          f"x{med['torch']['wall'] / kw:.1f} (wall), x{med['torch']['cpu'] / kc:.1f} (CPU)")  # fmt: skip
    fa = fastai_recorded()
    if fa is not None:
        print(f"  fastai 2.8.12 (recorded in {PEERS.name}, one thread, load {fa[2]}): median "
              f"{fa[0]:.2f} s, MSE {fa[1]:.4f}: kernel x{fa[0] / kw:.0f} faster (wall)")  # fmt: skip
    params = (data.n_users + data.n_items) * (FACTORS + 1)
    print(f"  bound: {steps} steps x {params:,} weights = {steps * params / 1e6:.0f} M weight "
          f"updates (one division each; 12 bytes of weight and moments per weight); "
          f"kernel {kc / (steps * params) * 1e9:.2f} ns CPU per weight update; load {load()}")  # fmt: skip


if __name__ == "__main__":
    main()
