"""SVD++'s fused step: the compiled kernels against the PyTorch step, on protocol R1.

Runs ``recfit train``'s default (SVD++ 50 on ml-100k, 6 epochs, bs 64, one-cycle, AdamW)
for each split seed twice in the same process, alternating: with the PyTorch fused step
(``SVDpp.fused_kernel = False``, the reference) and with the compiled kernels. Prints
per seed the validation MSE of both (they must agree within 1e-4), the fit seconds
(``Learner.fit_seconds``, wall) and the fit's CPU seconds (steadier on a shared machine),
compile time apart, the ratio, and the load average; then the medians and the floor the
dense AdamW step sets alone (the same number of steps of
:class:`recfit.train.optim.AdamW` over the model's parameters). Surprise's SVD++ on the
same protocol takes about 12 s (benchmarks/peers; not run here). Usage::

    python benchmarks/bench_svdpp.py [--data-dir DIR] [--seeds 0 1 2 3 4] [--parts]

``--parts`` instead splits one kernel fit's CPU seconds into its parts (the profile).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench_r1 import load_ml100k
from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.models import SVDpp
from recfit.runs import train_run
from recfit.train.callbacks import Callback
from recfit.train.optim import AdamW

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
        res = train_run(RatingConfig(seed=seed), data=data, progress=False, callbacks=[cpu])
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
    """CPU seconds of one kernel fit, split into the two kernels, the optimiser step and
    the rest (the loop, loss, events, the Python around the kernels, validation)."""
    from recfit.models import _kernels_svdpp as kern

    spent = {"forward kernel": 0.0, "backward kernel": 0.0, "AdamW step": 0.0}
    saved = kern.forward, kern.backward, AdamW.step

    def timed(name: str, f: Any) -> Any:
        def run(*a: Any) -> Any:
            t0 = time.process_time()
            try:
                return f(*a)
            finally:
                spent[name] += time.process_time() - t0

        return run

    kern.forward = timed("forward kernel", kern.forward)
    kern.backward = timed("backward kernel", kern.backward)
    AdamW.step = timed("AdamW step", AdamW.step)  # type: ignore[method-assign]
    try:
        total = fit(data, seed, kernel=True)[2]
    finally:
        kern.forward, kern.backward, AdamW.step = saved  # type: ignore[method-assign]
    return {**spent, "rest": total - sum(spent.values()), "fit": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("RECFIT_DATA_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
    ap.add_argument("--data-dir", default=default)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--parts", action="store_true", help="only split one kernel fit's CPU time")
    args = ap.parse_args()
    data = load_ml100k(Path(args.data_dir))
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
