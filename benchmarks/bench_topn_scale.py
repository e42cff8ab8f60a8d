"""Top-N factor models at scale: one iALS sweep (64 factors) on the ml-25m shape.

Generates the ml-25m shape with :func:`recfit.data.synthetic.synthetic` (25,000,095
ratings, 162,541 users, 59,047 items, seed 0), keeps the ratings >= 4 as positives
(``--all`` keeps every rating), builds the users x items matrix of positives and times
``--runs`` sweeps (users, then items) of recfit's iALS kernel with 64 factors and a given
ridge (no inner cut), after compiling (compile seconds printed apart). With
``--implicit-python PATH`` (a Python with ``implicit==0.7.3`` installed, e.g. a scratch
virtual environment) the same matrix is saved to a temporary ``.npz`` and implicit's
``AlternatingLeastSquares`` (64 factors, its CPU conjugate-gradient solver) runs the same
number of sweeps on the same threads in that interpreter (each sweep timed by its fit
callback, so its setup is not counted either). Prints seconds per sweep (median), the
peak RSS, the threads and the load average (the machine may be shared). The threads are
those recfit's fit takes: at most ``--threads``, and only the cores not busy with other
processes.

Usage::

    python benchmarks/bench_topn_scale.py [--ratings 25000095] [--runs 3] [--threads 2]
        [--all] [--implicit-python /tmp/impl/bin/python]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from recfit.data.positives import positives_matrix, select_positives
from recfit.data.synthetic import synthetic
from recfit.models.ials import IALS, load_kernels

IMPLICIT = """
import sys, statistics, scipy.sparse as sp, threadpoolctl
threadpoolctl.threadpool_limits(1, "blas")
from implicit.cpu.als import AlternatingLeastSquares
path, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = sp.load_npz(path).tocsr()
m = AlternatingLeastSquares(factors=64, iterations=runs, random_state=0, num_threads=threads)
secs = []
m.fit(x, show_progress=False, callback=lambda it, seconds, loss: secs.append(seconds))
print(statistics.median(secs), " ".join(f"{s:.2f}" for s in secs))
"""


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=25_000_095)
    ap.add_argument("--runs", type=int, default=3, help="sweeps timed (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    ap.add_argument("--all", action="store_true", help="every rating a positive")
    ap.add_argument("--reg", type=float, default=0.01)
    ap.add_argument("--implicit-python", help="a Python with implicit 0.7.3 installed")
    args = ap.parse_args()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    t = time.perf_counter()
    data = synthetic(args.ratings, 162_541, 59_047, seed=0, with_timestamps=False)
    pos = data if args.all else select_positives(data, 4.0)
    x = positives_matrix(pos, n_users=data.n_users, n_items=data.n_items)
    del data, pos
    print(
        f"positives: {x.nnz:,} of {args.ratings:,} ratings ({'all' if args.all else '>= 4'}), "
        f"{x.shape[0]:,} users x {x.shape[1]:,} items (made in {time.perf_counter() - t:.1f} s)"
    )
    compile_s = load_kernels()[1]
    print(f"compile (or load from the cache): {compile_s:.2f} s; {load()}")
    model = IALS(*x.shape, n_factors=64, reg=args.reg, epochs=args.runs)
    with_threads = torch.get_num_threads()
    model.fit_positives(x)
    sweeps = model.fit_info["sweep_seconds"]
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"recfit iALS: median sweep {statistics.median(sweeps):.2f} s "
        f"({' '.join(f'{s:.2f}' for s in sweeps)}), {model.fit_info['threads']} threads "
        f"(asked {with_threads}), cg_steps {model.cg_steps}; peak RSS {rss_gb:.1f} GB; {load()}",
        flush=True,
    )
    if args.implicit_python:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.npz"
            sp.save_npz(path, x.astype(np.float32))
            out = subprocess.run(
                [args.implicit_python, "-c", IMPLICIT, str(path), str(args.runs),
                 str(model.fit_info["threads"])],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
        med, each = out.stdout.strip().split(" ", 1)
        print(
            f"implicit 0.7.3 ALS: median sweep {float(med):.2f} s ({each}), "
            f"{model.fit_info['threads']} threads, cg_steps 3; {load()}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
