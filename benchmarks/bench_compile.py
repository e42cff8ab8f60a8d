"""First fit with an empty kernel cache against a warm one: where compile time goes.

``--workload ml-1m`` (the default): the ml-1m DotBias row-wise fit (``model="dot"``, what
``auto`` without a search resolves to there), each run in a fresh process, alternating a run
with an empty cache folder (a new ``RECFIT_CACHE_DIR``) and one with a warm folder (filled by
one unreported run first), ``--runs`` of each; medians, and the ratios empty / warm. Two
entry points, both in every run (``--entry``):

* ``cli``: ``python -m recfit train -d ml-1m --model dot --out RUN``, as a user starts it;
  the kernel compiles in a separate process from the first import on. Reported: the
  process's wall time, and the fit's wall time = ``details.compile_seconds`` (the fit's
  wait for the kernel) + ``fit_seconds`` from ``metrics.json``.
* ``api``: ``train_run`` called from Python (the kernel compiles ahead from
  ``train_run``'s start). Reported: the process's wall time, ``train_run``'s wall time
  (data, split, compile wait and fit), and the fit's wall time as above.

Target: the first run's fit wall time (compile wait + fit) at most 2x a warm one's.
``--ahead child`` (the default here) starts ``recfit train``'s child whatever the load
(``RECFIT_COMPILE_AHEAD=1``), ``auto`` as ``recfit train`` does by default (only with a core
free for it), ``thread`` compiles ahead in a thread of the process instead
(``RECFIT_COMPILE_AHEAD=0``: the behaviour before the child), ``off`` not at all (as a fit
called without ``train_run``); ``--ahead child,thread`` alternates both in one run.

``--workload small``: the same small row-wise fit (BiasedMF, 20,000 synthetic ratings, 500 x 300, 16
factors, 2 epochs, the compiled step) in fresh processes, first with an empty numba cache
folder (``RECFIT_CACHE_DIR`` pointed at a new temporary folder), then ``--runs - 1`` more
times with that folder warm. Prints, per run, the wall time of the ``fit`` call,
``Learner.fit_seconds`` and ``Learner.compile_seconds`` (compiling or loading the kernels,
done before the fit's timer starts), then the medians of the warm runs.

Usage::

    python benchmarks/bench_compile.py [--runs 3] [--entry cli,api] [--ahead child]
    python benchmarks/bench_compile.py --workload small [--runs 4]
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

API = """
import json, sys, time
from recfit.config import validate_config
from recfit.runs import train_run
from recfit.train import kernels
if sys.argv[1] == "off":
    kernels.compile_ahead = lambda: None
cfg = validate_config({"dataset": "ml-1m", "model": "dot", "seed": 42})
t = time.perf_counter()
res = train_run(cfg, progress=False)
run_wall = time.perf_counter() - t
print(json.dumps({"run": run_wall, "fit": res.metrics["fit_seconds"],
                  "compile": res.details["compile_seconds"], "rmse": res.metrics["rmse"]}))
"""

ENV_KEYS = ("RECFIT_CACHE_DIR", "NUMBA_CACHE_DIR", "RECFIT_COMPILE_AHEAD")


def _one(entry: str, ahead: str, cache: str, scratch: str) -> dict[str, float]:
    """One fresh process; its figures (seconds, rmse)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["RECFIT_CACHE_DIR"] = cache
    if ahead != "auto":  # auto: the child only with a core free for it (the default)
        env["RECFIT_COMPILE_AHEAD"] = "1" if ahead == "child" else "0"
    if entry == "api":
        cmd = [sys.executable, "-c", API, ahead]
    else:
        out = tempfile.mkdtemp(dir=scratch)
        cmd = [sys.executable, "-m", "recfit", "train", "-d", "ml-1m", "--model", "dot",
               "--seed", "42", "-q", "--out", out, "--force"]  # fmt: skip
    t0, started = time.perf_counter(), time.time()
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    proc = time.perf_counter() - t0
    if entry == "api":
        r = json.loads(res.stdout.strip().splitlines()[-1])
    else:
        m = json.loads((Path(out) / "metrics.json").read_text())
        r = {"fit": m["fit_seconds"], "compile": m["details"]["compile_seconds"],
             "rmse": m["rmse"]}  # fmt: skip
    r["proc"] = proc
    r["fit_wall"] = r["compile"] + r["fit"]
    for mark in Path(cache, "numba").glob("ahead-*.json"):  # a child compiled in this run
        if mark.stat().st_mtime >= started:
            r["child"] = json.loads(mark.read_text())["compile_seconds"]
    return r


def _line(label: str, r: dict[str, float]) -> str:
    run = f", train_run {r['run']:.2f} s" if "run" in r else ""
    run += f", child's compile {r['child']:.2f} s" if "child" in r else ""
    return (f"  {label}: process {r['proc']:.2f} s{run}, fit wall {r['fit_wall']:.2f} s = "
            f"compile wait {r['compile']:.2f} + fit {r['fit']:.2f}, rmse {r['rmse']:.4f}, "
            f"load {os.getloadavg()[0]:.2f}")  # fmt: skip


def ml1m(args: argparse.Namespace) -> int:
    entries = args.entry.split(",")
    aheads = args.ahead.split(",")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, ml-1m DotBias "
          f"row-wise fit, entries {entries}, compile ahead {aheads}, {args.runs} runs each")  # fmt: skip
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="recfit-bench-") as scratch:
        warm = tempfile.mkdtemp(prefix="warm-", dir=scratch)
        _one(entries[0], aheads[0], warm, scratch)  # fills the warm cache; not reported
        for i in range(args.runs):
            for entry in entries:
                for ahead in aheads:
                    for state in ("empty", "warm"):
                        cache = tempfile.mkdtemp(dir=scratch) if state == "empty" else warm
                        r = _one(entry, ahead, cache, scratch)
                        rows.setdefault((entry, ahead, state), []).append(r)
                        print(_line(f"run {i + 1} {entry:3s} {ahead:6s} {state:5s}", r),
                              flush=True)  # fmt: skip
    print(f"medians (load now {os.getloadavg()[0]:.2f}):")
    for entry in entries:
        for ahead in aheads:
            cold, hot = rows[(entry, ahead, "empty")], rows[(entry, ahead, "warm")]
            for key, what in (("fit_wall", "compile wait + fit"), ("run", "train_run"),
                              ("proc", "whole process")):  # fmt: skip
                if key not in cold[0]:
                    continue
                c = statistics.median(r[key] for r in cold)
                w = statistics.median(r[key] for r in hot)
                print(f"  {entry} {ahead:6s} {what:18s}: empty {c:.2f} s, warm {w:.2f} s, "
                      f"ratio {c / w:.2f}")  # fmt: skip
            wait = statistics.median(r["compile"] for r in cold)
            print(f"  {entry} {ahead:6s} {'compile wait':18s}: empty {wait:.2f} s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workload", choices=("ml-1m", "small"), default="ml-1m")
    ap.add_argument("--entry", default="cli,api", help="cli, api or both (comma-separated)")
    ap.add_argument("--ahead", default="child", help="child, auto, thread, off (comma-separated)")
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
