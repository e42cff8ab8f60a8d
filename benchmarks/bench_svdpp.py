"""SVD++'s fused step: the compiled kernels against the PyTorch step, on protocol R1.

Runs ``recfit train``'s default (SVD++ 50 on ml-100k, 6 epochs, bs 64, one-cycle, AdamW)
for each split seed twice in the same process, alternating: with the PyTorch fused step
(``SVDpp.fused_kernel = False``, the reference) and with the compiled kernels. Prints
per seed the validation MSE of both (they must agree within 1e-4), the fit seconds
(``Learner.fit_seconds``, compile time apart), the ratio, and the load average; then the
medians and the floor the dense AdamW step sets alone (the same number of steps of
:class:`recfit.train.optim.AdamW` over the model's parameters). Surprise's SVD++ on the
same protocol takes about 12 s (benchmarks/peers; not run here). Usage::

    python benchmarks/bench_svdpp.py [--data-dir DIR] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from bench_r1 import load_ml100k
from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.models import SVDpp
from recfit.runs import train_run
from recfit.train.optim import AdamW

SURPRISE_SECONDS = 12.0
"""Surprise's SVD++ on R1 (benchmarks/peers), measured before; not rerun here."""


def fit(data: Interactions, seed: int, kernel: bool) -> tuple[float, float, float, int, int]:
    """MSE, fit seconds, compile seconds, steps and the parameter count of one run."""
    SVDpp.fused_kernel = kernel
    try:
        res = train_run(RatingConfig(seed=seed), data=data, progress=False)
    finally:
        SVDpp.fused_kernel = True
    learn = res.learner
    assert res.config.model == "svdpp" and learn.fused and not learn.sparse
    steps = learn.train_iter
    return (
        res.metrics["mse"], learn.fit_seconds, learn.compile_seconds, steps,
        learn.model.n_parameters(),
    )  # fmt: skip


def adamw_floor(model: torch.nn.Module, steps: int) -> float:
    """Seconds of ``steps`` dense AdamW steps over ``model``'s parameters (one thread)."""
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = AdamW(params, lr=1e-3, weight_decay=0.05)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("RECFIT_DATA_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
    ap.add_argument("--data-dir", default=default)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    data = load_ml100k(Path(args.data_dir))
    print(f"R1 default (SVD++ 50, ml-100k, 6 epochs, bs 64); load {os.getloadavg()[0]:.2f}")
    ref_s, ker_s, ratios = [], [], []
    steps = 0
    for seed in args.seeds:
        ref = fit(data, seed, kernel=False)
        ker = fit(data, seed, kernel=True)
        steps = ker[3]
        ref_s.append(ref[1])
        ker_s.append(ker[1])
        ratios.append(ref[1] / ker[1])
        print(
            f"  seed {seed}: MSE PyTorch {ref[0]:.4f} kernel {ker[0]:.4f} "
            f"(diff {abs(ref[0] - ker[0]):.1e}); fit PyTorch {ref[1]:.2f} s, kernel "
            f"{ker[1]:.2f} s (compile {ker[2]:.2f} s apart), x{ref[1] / ker[1]:.2f}; "
            f"load {os.getloadavg()[0]:.2f}"
        )
    model = SVDpp(data.n_users, data.n_items, 50)
    floor = adamw_floor(model, steps)
    print(
        f"  median fit: PyTorch {statistics.median(ref_s):.2f} s, kernel "
        f"{statistics.median(ker_s):.2f} s, speed-up x{statistics.median(ratios):.2f}; "
        f"dense AdamW alone ({steps} steps, {model.n_parameters():,} parameters): "
        f"{floor:.2f} s; Surprise SVD++ (known): {SURPRISE_SECONDS:.0f} s; "
        f"load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
