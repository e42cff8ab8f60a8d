"""The row-wise step inside a real fit: this tree's kernels against an earlier commit's.

Runs the default rating run of ``recfit train -d ml-1m`` (``train_run``, seed 42, the thread
policy's threads) in fresh processes, alternating this tree's kernels (``new``) and those of
``--ref`` (``old``: ``kernels.py`` and ``_kernels_numba.py`` taken from git, loaded as a
separate package; the default is the last commit with numba's parallel loops). Per run:
``fit_seconds``, the median wall time of one step call on a full batch, the number of
calls and an MD5 of the fitted weights (equal digests: bit-identical weights); then the
medians per side and new / old. Compiling is done before the fit's timer in both cases
(the ``old`` kernels compile once into a fixed folder under the temporary directory).
Needs ``RECFIT_DATA_DIR`` with ml-1m.

Usage::

    python benchmarks/bench_step.py [--runs 3] [--ref 6ac8e0a^]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import hashlib, json, statistics, sys, time
from recfit.config import validate_config
from recfit.runs import train_run
from recfit.train import kernels
kernels.compile_ahead = lambda: None  # the same start for both sides
if sys.argv[1] == "old":
    sys.path.insert(0, sys.argv[2])
    import refk.kernels as ref
    kernels.row_step, kernels.RowStepBuffers = ref.row_step, ref.RowStepBuffers
step, calls = kernels.row_step, []
def timed(batch, *args, **kw):
    t = time.perf_counter()
    out = step(batch, *args, **kw)
    if batch["user"].shape[0] > 1000:
        calls.append(time.perf_counter() - t)
    return out
kernels.row_step = timed
res = train_run(validate_config({"dataset": "ml-1m", "seed": 42, "budget": 0}), progress=False)
md5 = hashlib.md5()
for p in res.learner.model.parameters():
    md5.update(p.detach().numpy().tobytes())
print(json.dumps({"fit": res.metrics["fit_seconds"], "step_ms": statistics.median(calls) * 1e3,
                  "calls": len(calls), "md5": md5.hexdigest()[:12]}))
"""


def reference_package(ref: str) -> Path:
    """``kernels.py`` and ``_kernels_numba.py`` of ``ref`` as the package ``refk`` in a fixed
    folder (rewritten only when they change, so numba's cache stays valid)."""
    root = (
        Path(tempfile.gettempdir()) / f"recfit-bench-step-{ref.replace('^', 'p').replace('/', '_')}"
    )
    pkg = root / "refk"
    pkg.mkdir(parents=True, exist_ok=True)
    files = {"__init__.py": ""}
    for name in ("kernels.py", "_kernels_numba.py"):
        text = subprocess.run(
            ["git", "show", f"{ref}:src/recfit/train/{name}"], check=True, capture_output=True,
            text=True,
        ).stdout  # fmt: skip
        files[name] = text.replace(
            "from recfit.train import _kernels_numba", "from refk import _kernels_numba"
        )
    for name, text in files.items():
        path = pkg / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ref", default="6ac8e0a^")
    args = ap.parse_args()
    root = reference_package(args.ref)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; ml-1m default fit,"
          f" new = this tree, old = {args.ref}")  # fmt: skip
    rows: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    for i in range(args.runs):
        for side in ("new", "old") if i % 2 == 0 else ("old", "new"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, side, str(root)], check=True, capture_output=True,
                text=True,
            ).stdout  # fmt: skip
            r = json.loads(out.strip().splitlines()[-1])
            rows[side].append(r)
            print(f"{side}: fit {r['fit']:.2f} s, step {r['step_ms']:.3f} ms median of "
                  f"{r['calls']} calls, weights md5 {r['md5']}, load {os.getloadavg()[0]:.2f}",
                  flush=True)  # fmt: skip
    med = {
        s: {k: statistics.median(r[k] for r in rs) for k in ("fit", "step_ms")}
        for s, rs in rows.items()
    }
    for key, what in (("fit", "fit_seconds"), ("step_ms", "step ms per call")):
        print(f"{what}: new {med['new'][key]:.3f}, old {med['old'][key]:.3f}, new / old "
              f"{med['new'][key] / med['old'][key]:.2f}")  # fmt: skip
    same = {r["md5"] for rs in rows.values() for r in rs}
    print(f"weights bit-identical across all runs: {len(same) == 1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
