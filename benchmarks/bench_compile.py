"""First fit with an empty kernel cache against a warm one: where compile time goes.

Runs the same small row-wise fit (BiasedMF, 20,000 synthetic ratings, 500 x 300, 16
factors, 2 epochs, the compiled step) in fresh processes, first with an empty numba cache
folder (``RECFIT_CACHE_DIR`` pointed at a new temporary folder), then ``--runs - 1`` more
times with that folder warm. Prints, per run, the wall time of the ``fit`` call,
``Learner.fit_seconds`` and ``Learner.compile_seconds`` (compiling or loading the kernels,
done before the fit's timer starts), then the medians of the warm runs.

Usage::

    python benchmarks/bench_compile.py [--runs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args()
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
