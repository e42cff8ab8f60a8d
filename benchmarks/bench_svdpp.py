"""SVD++'s training: the compiled path against the PyTorch step, on protocol R1.

Runs ``recfit train``'s default (SVD++ 50 on ml-100k, 6 epochs, bs 64, one-cycle, AdamW)
for each split seed twice in the same process, alternating: with the PyTorch fused step
(``SVDpp.fused_kernel = False``, the reference) and with the compiled path (each epoch
one kernel: :mod:`recfit.train.dense_epoch`; the per-step kernels of
:mod:`recfit.models._kernels_svdpp` where an epoch runs step by step). Prints
per seed the validation MSE of both (they must agree within 1e-4), the fit seconds
(``Learner.fit_seconds``, wall) and the fit's CPU seconds (steadier on a shared machine),
compile time apart, the ratio, and the load average; then the medians and the floor the
dense AdamW step sets alone (the same number of steps of
:class:`recfit.train.optim.AdamW` over the model's parameters). Surprise's SVD++ on the
same protocol takes about 12 s (benchmarks/peers; not run here). Usage::

    python benchmarks/bench_svdpp.py [--data-dir DIR] [--seeds 0 1 2 3 4] [--parts]
    python benchmarks/bench_svdpp.py --peers [R2 R3]

``--parts`` instead splits one kernel fit's CPU seconds into its parts (the profile).
``--peers`` instead runs recfit's default (SVD++, the Learner's default path) and
Surprise's SVD++ (``benchmarks/peers/peer_surprise.py`` in its own virtual environment,
``.bench/surprise``: ``make .bench/surprise/.installed``) side by side, part after part
of the shared splits of R2 (u1) and R3 (five folds): test RMSE and fit seconds of each
(recfit's compile time apart), the ratio, the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _args import add_data_dir
from bench_r1 import load_ml100k
from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.data.split import Split
from recfit.models import SVDpp
from recfit.runs import train_run
from recfit.tasks.rating import build_learner, fit_learner, resolve_config
from recfit.train import dense_epoch, evaluation
from recfit.train.callbacks import Callback
from recfit.train.optim import AdamW

PEERS_DIR = Path(__file__).resolve().parent / "peers"
SURPRISE_PY = Path(__file__).resolve().parents[1] / ".bench" / "surprise" / "bin" / "python"
SURPRISE_SECONDS = 12.0
"""Surprise's SVD++ on R1 (benchmarks/peers), measured before; not rerun here."""


class CpuTime(Callback):
    """The process's CPU seconds from ``before_fit`` to ``after_fit`` (on a shared machine
    steadier than the wall clock: time spent waiting for a core is not counted)."""

    seconds = 0.0

    def before_fit(self) -> None:
        self.seconds = -time.process_time()

    def after_fit(self) -> None:
        self.seconds += time.process_time()


def fit(data: Interactions, seed: int, kernel: bool) -> tuple[float, float, float, float, int]:
    """MSE, fit seconds (wall), fit CPU seconds, compile seconds and the steps of one run."""
    cpu = CpuTime()
    SVDpp.fused_kernel = kernel
    try:
        res = train_run(
            RatingConfig(seed=seed, budget=0), data=data, progress=False, callbacks=[cpu]
        )  # budget 0: model auto is svdpp here, no search
    finally:
        SVDpp.fused_kernel = True
    learn = res.learner
    assert res.config.model == "svdpp" and learn.fused and not learn.sparse
    return (
        res.metrics["mse"],
        learn.fit_seconds,
        cpu.seconds,
        learn.compile_seconds,
        learn.train_iter,
    )


def adamw_floor(model: torch.nn.Module, steps: int) -> float:
    """CPU seconds of ``steps`` dense AdamW steps over ``model``'s parameters (one thread)."""
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = AdamW(params, lr=1e-3, weight_decay=0.05)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.process_time()
        for _ in range(steps):
            opt.step()
        return time.process_time() - t0
    finally:
        torch.set_num_threads(old)


def parts(data: Interactions, seed: int) -> dict[str, float]:
    """CPU seconds of one compiled fit, split into the epochs' kernel, the validations
    and the rest (shuffles, copies in and out of the kernel, the loop, events)."""
    spent = {"epoch kernel": 0.0, "validation": 0.0}
    saved = dense_epoch.DenseEpochs.run, evaluation.evaluate

    def timed(name: str, f: Any) -> Any:
        def run(*a: Any, **kw: Any) -> Any:
            t0 = time.process_time()
            try:
                return f(*a, **kw)
            finally:
                spent[name] += time.process_time() - t0

        return run

    dense_epoch.DenseEpochs.run = timed("epoch kernel", saved[0])  # type: ignore[method-assign]
    evaluation.evaluate = timed("validation", saved[1])
    try:
        total = fit(data, seed, kernel=True)[2]
    finally:
        dense_epoch.DenseEpochs.run, evaluation.evaluate = saved  # type: ignore[method-assign]
    return {**spent, "rest": total - sum(spent.values()), "fit": total}


def recfit_part(data: Interactions, protocol: str, part: str) -> tuple[float, float, float]:
    """Test RMSE, fit seconds and compile seconds of recfit's default on a shared split."""
    sys.path.insert(0, str(PEERS_DIR))
    from common import load_split

    train_rows, test_rows = load_split(protocol, part)
    split = Split(data, train_rows, test_rows, f"{protocol}:{part}")
    cfg = resolve_config(RatingConfig(seed=0, device="cpu"), split.train)
    learn = build_learner(cfg, split.train, split.test, progress=False)
    fit_learner(learn, cfg)
    assert cfg.model == "svdpp" and learn.path is not None
    return learn.evaluate(split.test)["rmse"], learn.fit_seconds, learn.compile_seconds


def surprise_part(protocol: str, part: str) -> tuple[float, float] | None:
    """Test RMSE and fit seconds of Surprise's SVD++ (its own venv), or ``None``."""
    if not SURPRISE_PY.exists():
        return None
    cmd = [str(SURPRISE_PY), str(PEERS_DIR / "peer_surprise.py"), protocol,
           "--models", "SVD++", "--parts", part]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return rec["metrics"]["rmse"], rec["fit_seconds"]


def peers(data: Interactions, protocols: list[str]) -> None:
    parts = {"R2": ["u1"], "R3": [f"fold{i}" for i in range(5)]}
    print(f"SVD++ side by side: recfit's default (Learner path) and Surprise's SVD++ (one "
          f"thread each); load {os.getloadavg()[0]:.2f}")  # fmt: skip
    for protocol in protocols:
        rows = []
        for part in parts[protocol]:
            r_rmse, r_fit, r_comp = recfit_part(data, protocol, part)
            sur = surprise_part(protocol, part)
            if sur is None:
                print("  Surprise is not installed (make .bench/surprise/.installed)")
                return
            rows.append((r_rmse, r_fit, sur[0], sur[1]))
            print(f"  {protocol} {part}: recfit RMSE {r_rmse:.4f} fit {r_fit:.2f} s (compile "
                  f"{r_comp:.2f} s apart); Surprise SVD++ RMSE {sur[0]:.4f} fit {sur[1]:.2f} s; "
                  f"x{sur[1] / r_fit:.1f} faster; load {os.getloadavg()[0]:.2f}")  # fmt: skip
        mean = statistics.fmean
        r_rmse, r_fit = mean(r[0] for r in rows), sum(r[1] for r in rows)
        s_rmse, s_fit = mean(r[2] for r in rows), sum(r[3] for r in rows)
        print(f"  {protocol}: recfit RMSE {r_rmse:.4f} in {r_fit:.2f} s, Surprise SVD++ "
              f"{s_rmse:.4f} in {s_fit:.2f} s: x{s_fit / r_fit:.1f} faster, RMSE "
              f"{r_rmse - s_rmse:+.4f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--parts", action="store_true", help="only split one kernel fit's CPU time")
    ap.add_argument("--peers", nargs="*", choices=["R2", "R3"], default=None,
                    help="only recfit against Surprise's SVD++ on R2 / R3 (default both)")  # fmt: skip
    args = ap.parse_args()
    data = load_ml100k(Path(args.data_dir))
    if args.peers is not None:
        peers(data, args.peers or ["R2", "R3"])
        return
    if args.parts:
        split = parts(data, args.seeds[0])
        print(f"R1 default, seed {args.seeds[0]}, kernel fit: CPU seconds by part "
              f"(load {os.getloadavg()[0]:.2f})")  # fmt: skip
        for name, sec in split.items():
            print(f"  {name:16s} {sec:6.2f} s  {sec / split['fit']:6.1%}")
        return
    print(f"R1 default (SVD++ 50, ml-100k, 6 epochs, bs 64); load {os.getloadavg()[0]:.2f}")
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    steps = 0
    for seed in args.seeds:
        runs = {kernel: fit(data, seed, kernel) for kernel in (False, True)}
        for kernel, r in runs.items():
            wall[kernel].append(r[1])
            cpu[kernel].append(r[2])
        (ref, ker), steps = runs.values(), runs[True][4]
        print(
            f"  seed {seed}: MSE PyTorch {ref[0]:.4f} kernel {ker[0]:.4f} "
            f"(diff {abs(ref[0] - ker[0]):.1e}); fit wall PyTorch {ref[1]:.2f} s, kernel "
            f"{ker[1]:.2f} s; fit CPU PyTorch {ref[2]:.2f} s, kernel {ker[2]:.2f} s "
            f"(x{ref[2] / ker[2]:.2f}); kernel compile {ker[3]:.2f} s apart; "
            f"load {os.getloadavg()[0]:.2f}"
        )
    med = statistics.median
    model = SVDpp(data.n_users, data.n_items, 50)
    floor = adamw_floor(model, steps)
    print(
        f"  median fit wall: PyTorch {med(wall[False]):.2f} s, kernel {med(wall[True]):.2f} s; "
        f"CPU: PyTorch {med(cpu[False]):.2f} s, kernel {med(cpu[True]):.2f} s, "
        f"x{med(cpu[False]) / med(cpu[True]):.2f}"
    )
    print(
        f"  dense AdamW alone ({steps} steps, {model.n_parameters():,} parameters): "
        f"{floor:.2f} CPU s; Surprise SVD++ (known, not run): {SURPRISE_SECONDS:.0f} s; "
        f"load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
