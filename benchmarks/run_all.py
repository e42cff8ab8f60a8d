"""Run every benchmark script in this folder, one after another, and print their figures.

Usage: ``python benchmarks/run_all.py [name-substring ...]``. Each script prints its own
figures; record them in BENCHMARKS.md with the machine and the command.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    scripts = sorted(
        p for p in here.glob("bench_*.py") if not argv or any(a in p.name for a in argv)
    )
    failed = 0
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)])
        print(f"--- {script.name}: exit {rc} in {time.perf_counter() - t0:.1f} s", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
