"""Reliability corpus: bad files, tampered bundles, bad requests and faults, counted by outcome.

Runs the four corpora of ``benchmarks/reliability`` (each builds its own inputs in a
temporary folder: a small model trained in seconds, files it writes itself, a server on
127.0.0.1) and prints, for each corpus and in total, how many inputs ended in each outcome:

- wanted: ``answer`` (a correct answer), ``typed_error`` (a ``RecfitError`` or the CLI's
  message and exit code), ``4xx`` (an HTTP client error with a JSON body);
- failures: ``5xx``, ``untyped_error`` (any other exception or a traceback),
  ``wrong_answer`` (a value changed silently, a file read outside its folder),
  ``mixed_run`` (a run directory holding parts of two runs).

Target: no failure at all, and ``GET /health`` p99 under 100 ms while the heaviest allowed
``/predict`` and fold-in requests run from 50 clients (the ``requests`` corpus reports it).
Exit status 1 when any failure was counted or a target was missed.

Usage::

    python benchmarks/bench_reliability.py [--data-dir DIR] [--only files,bundles,...]
        [--show-failures 20] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reliability import FAILURES, OUTCOMES, Case

CORPORA = ("files", "bundles", "requests", "faults")
HEALTH_P99_TARGET_MS = 100.0


def _data_dir(arg: str | None) -> Path | None:
    for cand in (arg, os.environ.get("RECFIT_DATA_DIR")):
        if cand and Path(cand).is_dir():
            return Path(cand)
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return shared if shared.is_dir() else None


def _table(rows: dict[str, Counter[str]]) -> str:
    cols = [o for o in OUTCOMES if any(c[o] for c in rows.values())] or list(OUTCOMES[:2])
    head = f"| corpus | cases | {' | '.join(cols)} |"
    sep = "|---|---:|" + "---:|" * len(cols)
    lines = [head, sep]
    for name, c in rows.items():
        lines.append(
            f"| {name} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in cols) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--only", default=",".join(CORPORA), help="comma-separated corpora")
    ap.add_argument("--show-failures", type=int, default=20)
    ap.add_argument("--json", default=None, help="write every case here")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CORPORA))
    if unknown:
        ap.error(f"expected corpora among {CORPORA}, received {unknown}")

    data_dir = _data_dir(args.data_dir)
    load = os.getloadavg()
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cpus {os.cpu_count()}"
    )
    cases: list[Case] = []
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="recfit-reliability-") as tmp:
        for name in names:
            module = importlib.import_module(f"benchmarks.reliability.{name}")
            work = Path(tmp) / name
            work.mkdir()
            t0 = time.perf_counter()
            got: list[Case] = module.run(work, data_dir)
            seconds[name] = time.perf_counter() - t0
            print(f"{name}: {len(got)} cases in {seconds[name]:.1f} s", flush=True)
            cases.extend(got)

    by_corpus: dict[str, Counter[str]] = {}
    for c in cases:
        by_corpus.setdefault(c.corpus, Counter())[c.outcome] += 1
    by_corpus["total"] = Counter(c.outcome for c in cases)
    print()
    print(_table(by_corpus))

    figures = {k: v for c in cases for k, v in c.figures.items()}
    if figures:
        print()
        for k, v in sorted(figures.items()):
            print(f"{k}: {v:.4g}")

    failures = [c for c in cases if c.outcome in FAILURES]
    for c in failures[: args.show_failures]:
        print(f"FAILURE {c.corpus}/{c.name}: {c.outcome}: {c.detail[:300]}")
    p99 = figures.get("health_p99_ms")
    missed = p99 is not None and p99 >= HEALTH_P99_TARGET_MS
    if missed:
        print(f"MISSED: GET /health p99 {p99:.1f} ms >= {HEALTH_P99_TARGET_MS:.0f} ms")
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps([c.__dict__ for c in cases], indent=1, default=str), encoding="utf-8"
        )
    return 1 if failures or missed else 0


if __name__ == "__main__":
    sys.exit(main())
