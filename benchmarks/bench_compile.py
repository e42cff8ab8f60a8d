"""First fit with an empty kernel cache against a warm one: where compile time goes.

``--workload ml-1m`` (the default): the default rating run of ``recfit train -d ml-1m``
(``train_run``: the row-wise kernel is compiled ahead in a background thread while the data
loads and splits), each in a fresh process. Per run: the process's wall time, the wall
time from ``train_run``'s start to the fit's end (data, split, compile wait and fit),
``compile_seconds`` (the fit's wait for the kernel) and ``fit_seconds``; then the ratios
empty / warm (median of the warm runs). Target: the first run's fit (compile wait + fit)
at most 2x a warm one's. ``--no-ahead`` measures without the background compile.

``--workload small``: the same small row-wise fit (BiasedMF, 20,000 synthetic ratings, 500 x 300, 16
factors, 2 epochs, the compiled step) in fresh processes, first with an empty numba cache
folder (``RECFIT_CACHE_DIR`` pointed at a new temporary folder), then ``--runs - 1`` more
times with that folder warm. Prints, per run, the wall time of the ``fit`` call,
``Learner.fit_seconds`` and ``Learner.compile_seconds`` (compiling or loading the kernels,
done before the fit's timer starts), then the medians of the warm runs.

Usage::

    python benchmarks/bench_compile.py [--runs 4] [--workload ml-1m|small] [--no-ahead]
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

CHILD = """
import json, time
import numpy as np
from recfit.data import Interactions
from recfit.models import BiasedMF
from recfit.train import Learner
from recfit.train.execution import Execution
rng = np.random.default_rng(0)
n = 20_000
d = Interactions.from_arrays(
    rng.integers(0, 500, n), rng.integers(0, 300, n), rng.integers(1, 6, n).astype(float)
)
learn = Learner(
    BiasedMF(500, 300, 16, global_mean=3.0), d, bs=256, progress=False,
    execution=Execution(row_wise=True, compiled=True),
)
t = time.perf_counter()
learn.fit_one_cycle(2, 0.02)
print(json.dumps({"wall": time.perf_counter() - t, "fit": learn.fit_seconds,
                  "compile": learn.compile_seconds}))
"""

ML1M = """
import json, sys, time
t_proc = time.perf_counter()
from recfit.config import validate_config
from recfit.runs import train_run
from recfit.train import kernels
if sys.argv[1] == "0":
    kernels.compile_ahead = lambda: None
cfg = validate_config({"dataset": "ml-1m", "seed": 42})
t = time.perf_counter()
res = train_run(cfg, progress=False)
run_wall = time.perf_counter() - t
print(json.dumps({"run": run_wall, "fit": res.metrics["fit_seconds"],
                  "compile": res.details["compile_seconds"], "rmse": res.metrics["rmse"],
                  "t_proc": t_proc}))
"""


def ml1m(args: argparse.Namespace) -> int:
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, ml-1m default run,"
          f" compile ahead {'off' if args.no_ahead else 'on'}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="recfit-cache-") as cache:
        env = {**os.environ, "RECFIT_CACHE_DIR": cache}
        env.pop("NUMBA_CACHE_DIR", None)
        for i in range(args.runs):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", ML1M, "0" if args.no_ahead else "1"], env=env,
                check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip
            r = json.loads(out.strip().splitlines()[-1])
            r["proc"] = time.perf_counter() - t0
            r["fit_wall"] = r["compile"] + r["fit"]
            rows.append(r)
            label = "empty cache" if i == 0 else "warm cache "
            print(
                f"{label}: process {r['proc']:.2f} s, train_run {r['run']:.2f} s, fit wall "
                f"{r['fit_wall']:.2f} s = compile wait {r['compile']:.2f} + fit "
                f"{r['fit']:.2f}, rmse {r['rmse']:.4f}, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    if len(rows) > 1:
        first, warm = rows[0], rows[1:]
        for key, what in (("fit_wall", "fit wall"), ("run", "train_run"), ("proc", "process")):
            w = statistics.median(r[key] for r in warm)
            print(f"{what}: empty {first[key]:.2f} s, warm median {w:.2f} s, ratio "
                  f"{first[key] / w:.2f}")  # fmt: skip
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--workload", choices=("ml-1m", "small"), default="ml-1m")
    ap.add_argument("--no-ahead", action="store_true", help="no background compile")
    args = ap.parse_args()
    if args.workload == "ml-1m":
        return ml1m(args)
    print(f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="recfit-cache-") as cache:
        env = {**os.environ, "RECFIT_CACHE_DIR": cache}
        env.pop("NUMBA_CACHE_DIR", None)
        rows = []
        for i in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            rows.append(r)
            label = "empty cache" if i == 0 else "warm cache "
            print(
                f"{label}: fit() wall {r['wall']:.2f} s, fit_seconds {r['fit']:.3f}, "
                f"compile_seconds {r['compile']:.2f}"
            )
    warm = rows[1:]
    if warm:
        print(
            "warm median: fit() wall "
            f"{statistics.median(r['wall'] for r in warm):.2f} s, fit_seconds "
            f"{statistics.median(r['fit'] for r in warm):.3f}, compile_seconds "
            f"{statistics.median(r['compile'] for r in warm):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
