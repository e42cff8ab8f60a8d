"""Faults against run directories: kills, a full disk, concurrent runs, ``--out`` reuse.

Every case runs the real command line (``python -m recfit train``) in a child process on
a small synthetic rating file (1-2 epochs, seconds per case), then inspects the run
directory and, where it is unfinished, continues it with ``--resume``:

- ``kill_*``: SIGKILL at a random point of a run (drawn uniformly over a reference
  run's wall time), then ``--resume``; the resumed metrics must equal the reference's.
- ``fsize_*``: a full disk as ``RLIMIT_FSIZE`` in the child (a write past the limit
  fails with EFBIG), on a fresh directory and with ``--force`` over a finished run.
- ``enospc_*``: ``OSError(ENOSPC)`` injected at the k-th ``fsync`` of the child.
- ``concurrent_*``: two and three ``recfit train --out SAME`` at once (and with
  ``--force`` over a finished run).
- ``reuse_*``: ``--out`` onto a finished run with and without ``--force``.

Outcomes: ``mixed_run`` when the parts of the directory (``config.json``, the
checkpoint's config, ``metrics.json``, the bundle's config, ``report.html``) do not all
come from one run (seeds differ, or a finished run misses a part); ``untyped_error``
for a traceback; ``wrong_answer`` when a resumed run's metrics differ from an
uninterrupted one; ``typed_error`` for a refusal with recfit's one-line error (exit 2);
``answer`` for a run that finished (or was resumed to) the right result.

Run standalone: ``python -m benchmarks.reliability.faults [--work DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.reliability import Case, Outcome

__all__ = ["run"]

CORPUS = "faults"
_FLAGS = ["--model", "dot", "--epochs", "2", "--bs", "32", "--n-factors", "16",
          "--device", "cpu", "--checkpoint-every", "150", "-q"]  # fmt: skip
_RUN_FILES = ("config.json", "metrics.json", "history.csv", "report.html", "bundle")

# Inject ENOSPC at the k-th os.fsync of the child (k from RECFIT_FAULT_FSYNC).
_ENOSPC_CHILD = """
import errno, os, sys
_k = int(os.environ["RECFIT_FAULT_FSYNC"]); _n = [0]; _fsync = os.fsync
def fsync(fd):
    _n[0] += 1
    if _n[0] == _k:
        raise OSError(errno.ENOSPC, "No space left on device (injected)")
    return _fsync(fd)
os.fsync = fsync
sys.argv = ["recfit", *sys.argv[1:]]
from recfit.cli import main
main()
"""


def _env() -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(p for p in (str(root / "src"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "recfit", "train", *args]


def _data(work: Path) -> Path:
    from recfit.data.synthetic import synthetic

    p = work / "ratings.csv"
    if not p.exists():
        synthetic(30_000, 300, 400, seed=0).to_frame().to_csv(p, index=False)
    return p


def _train_args(csv: Path, out: Path, seed: int, *extra: str) -> list[str]:
    return _cmd("-d", str(csv), *_FLAGS, "--seed", str(seed), "--out", str(out), *extra)


def _metrics(run: Path) -> dict[str, Any]:
    m = json.loads((run / "metrics.json").read_text())
    m.pop("fit_seconds", None)
    m["details"]["metrics"].pop("fit_seconds", None)
    return m


def inspect_run(run: Path) -> tuple[str, list[str], set[int]]:
    """The directory's state, its problems (parts of two runs, a finished run missing a
    part, a damaged bundle) and the seeds its parts name."""
    from recfit.runs import run_state

    state = run_state(run)
    problems: list[str] = []
    seeds: dict[str, int] = {}
    if state in ("absent", "empty", "other"):
        return state, problems, set()
    try:
        if (run / "config.json").exists():
            seeds["config"] = json.loads((run / "config.json").read_text())["seed"]
        if (run / "checkpoint.safetensors").exists():
            from recfit.train.checkpoint import read_checkpoint

            seeds["checkpoint"] = read_checkpoint(run).meta["config"]["seed"]
        if (run / "metrics.json").exists():
            seeds["metrics"] = json.loads((run / "metrics.json").read_text())["details"]["seed"]
        if (run / "bundle").exists():
            from recfit.recommender import Recommender

            Recommender.load(run)  # every file against the manifest's checksums
            rec = json.loads((run / "bundle" / "recommender.json").read_text())
            seeds["bundle"] = rec["config"]["seed"]
        if (run / "report.html").exists():
            import re

            shown = re.search(r"<td>seed</td><td>(\d+)</td>", (run / "report.html").read_text())
            if shown is None:
                problems.append("report.html shows no seed")
            else:
                seeds["report"] = int(shown[1])
    except Exception as exc:  # a damaged part is a failure of the directory
        problems.append(f"unreadable part: {type(exc).__name__}: {exc}"[:200])
    if state == "finished":
        missing = [n for n in _RUN_FILES if not (run / n).exists()]
        if missing:
            problems.append(f"finished run without {missing}")
    if len(set(seeds.values())) > 1:
        problems.append(f"parts of two runs: {seeds}")
    return state, problems, set(seeds.values())


def _classify(rc: int | None, err: str) -> Outcome:
    if "Traceback" in err:
        return "untyped_error"
    if rc == 0:
        return "answer"
    if rc == 2 and "error:" in err:
        return "typed_error"
    return "untyped_error"


def _worst(*outcomes: Outcome) -> Outcome:
    order = ["mixed_run", "wrong_answer", "untyped_error", "5xx", "typed_error", "4xx", "answer"]
    return min(outcomes, key=order.index)


def _resume(run: Path, ref: dict[str, Any]) -> tuple[Outcome, str]:
    """Continue ``run`` and compare with the uninterrupted reference."""
    res = subprocess.run(_cmd("--resume", str(run), "-q"), env=_env(), capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    outcome = _classify(res.returncode, res.stderr)
    state, problems, _ = inspect_run(run)
    if problems:
        return "mixed_run", f"after --resume: {problems}"
    if outcome == "answer":
        if state != "finished":
            return "wrong_answer", f"--resume exited 0 leaving a {state} directory"
        if _metrics(run) != ref:
            return "wrong_answer", "resumed metrics differ from the uninterrupted run"
        return "answer", "resumed to the uninterrupted run's metrics"
    return outcome, f"--resume: rc {res.returncode}: {res.stderr.strip()[-160:]}"


def _after_failure(run: Path, rc: int | None, err: str, ref: dict[str, Any], what: str) -> Case:
    """Inspect ``run`` after a failed or killed command, then finish it with --resume."""
    first = _classify(rc, err) if rc is not None and rc >= 0 else "answer"
    state, problems, seeds = inspect_run(run)
    if problems:
        return Case(CORPUS, what, "mixed_run", "; ".join(problems))
    if state == "finished":
        ok = _metrics(run) == ref
        outcome: Outcome = "answer" if ok else "wrong_answer"
        return Case(CORPUS, what, _worst(first, outcome),
                    f"rc {rc}; finished before the fault; seeds {sorted(seeds)}")  # fmt: skip
    if state in ("absent", "empty"):
        res = subprocess.run(_cmd("--resume", str(run), "-q"), env=_env(), capture_output=True,
                             text=True, timeout=300)  # fmt: skip
        second = _classify(res.returncode, res.stderr)
        return Case(CORPUS, what, _worst(first, second),
                    f"rc {rc}; {state} directory; --resume rc {res.returncode}")  # fmt: skip
    resumed, detail = _resume(run, ref)
    first_shown = "killed" if rc is None or rc < 0 else f"rc {rc}"
    return Case(CORPUS, what, _worst(first, resumed),
                f"{first_shown}; {state} directory; {detail}")  # fmt: skip


def _wait_for_config(proc: subprocess.Popen[str], run: Path, limit: float = 300) -> float:
    """Poll until ``run/config.json`` exists (or the process ends); when that was."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if (run / "config.json").exists() or proc.poll() is not None:
            break
        time.sleep(0.01)
    return time.perf_counter()


def _wait_for_stage(
    proc: subprocess.Popen[str],
    run: Path,
    inside: str,
    limit: float = 300,
    *,
    checkpoint: bool = False,
) -> None:
    """Poll until the hidden sibling where the finished run is staged exists (and holds
    ``inside``), or the run's first checkpoint (``checkpoint``), or the process ends."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit and proc.poll() is None:
        if checkpoint:
            if (run / "checkpoint.safetensors").exists():
                return
            time.sleep(0.002)
            continue
        for stage in run.parent.glob(f".{run.name}.tmp-*"):
            if not inside or (stage / inside).exists():
                return
        time.sleep(0.002)


def _fsize_limit(limit: int) -> Any:
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def run(work: Path, data_dir: Path | None) -> list[Case]:
    """Run every fault case in ``work`` (``data_dir`` is unused: synthetic data)."""
    del data_dir
    work.mkdir(parents=True, exist_ok=True)
    csv = _data(work)
    rng = random.Random(0)
    cases: list[Case] = []
    env = _env()

    # reference: an uninterrupted run of seed 1 (and of seed 2); how long seed 1 works on
    # its directory (from config.json to exit: the part of the run a kill can damage)
    ref_dir = {s: work / f"ref{s}" for s in (1, 2)}
    active = 0.0
    for s, d in ref_dir.items():
        shutil.rmtree(d, ignore_errors=True)
        proc = subprocess.Popen(_train_args(csv, d, s), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        t_config = _wait_for_config(proc, d)
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"the reference run failed: {err}")
        active = max(active, time.perf_counter() - t_config)
    ref = {s: _metrics(d) for s, d in ref_dir.items()}

    # 1. SIGKILL at random points while the run works on its directory, one while the
    # process is still starting, two in the middle of publishing the finished run; then
    # --resume
    kills: list[tuple[str, float]] = [("starting", 0.5)]
    kills += [("random", rng.uniform(0.0, active * 0.5)) for _ in range(2)]
    kills += [("checkpoint", rng.uniform(0.0, 0.5)) for _ in range(2)]
    kills += [("staging", 0.0), ("staged_bundle", 0.0)]
    for k, (when, delay) in enumerate(kills):
        run_dir = work / f"kill{k}"
        shutil.rmtree(run_dir, ignore_errors=True)
        proc = subprocess.Popen(
            _train_args(csv, run_dir, 1), env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if when == "random":
            _wait_for_config(proc, run_dir)
        elif when == "checkpoint":
            _wait_for_stage(proc, run_dir, "", checkpoint=True)
        elif when != "starting":
            _wait_for_stage(
                proc, run_dir, "bundle/manifest.json" if when == "staged_bundle" else ""
            )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        rc = proc.returncode
        name = {
            "starting": "kill_while_starting",
            "random": f"kill_{delay:.2f}s_after_config",
            "checkpoint": f"kill_{delay:.2f}s_after_the_first_checkpoint",
            "staging": "kill_when_publishing_starts",
            "staged_bundle": "kill_when_the_staged_bundle_is_written",
        }[when]
        case = _after_failure(run_dir, None if rc == -signal.SIGKILL else rc, err, ref[1], name)
        case.figures["delay_s"] = delay
        cases.append(case)

    # 2. a full disk: RLIMIT_FSIZE in the child, fresh directory and --force over a run
    for limit in (2_000, 20_000, 60_000, 150_000):
        for force in (False, True):
            if force and limit not in (20_000, 150_000):
                continue
            run_dir = work / f"fsize{limit}{'_force' if force else ''}"
            shutil.rmtree(run_dir, ignore_errors=True)
            if force:
                shutil.copytree(ref_dir[2], run_dir)
            args = _train_args(csv, run_dir, 1, *(["--force"] if force else []))
            res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300,
                                 preexec_fn=_fsize_limit(limit))  # fmt: skip
            name = f"fsize_{limit // 1000}k" + ("_force_over_finished" if force else "")
            cases.append(_after_failure(run_dir, res.returncode, res.stderr, ref[1], name))

    # 3. ENOSPC at the k-th fsync
    for k in (1, 3, 8, 20):  # the config, a checkpoint, ..., the bundle
        run_dir = work / f"enospc{k}"
        shutil.rmtree(run_dir, ignore_errors=True)
        args = [sys.executable, "-c", _ENOSPC_CHILD, *_train_args(csv, run_dir, 1)[3:]]
        res = subprocess.run(args, env={**env, "RECFIT_FAULT_FSYNC": str(k)},
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        cases.append(_after_failure(run_dir, res.returncode, res.stderr, ref[1],
                                    f"enospc_fsync_{k}"))  # fmt: skip

    # 4. concurrent runs onto one --out (fresh, and with --force over a finished run)
    for n, force in ((2, False), (3, False), (2, True), (3, True)):
        run_dir = work / f"concurrent{n}{'_force' if force else ''}"
        shutil.rmtree(run_dir, ignore_errors=True)
        if force:
            shutil.copytree(ref_dir[2], run_dir)
        procs = [
            subprocess.Popen(
                _train_args(csv, run_dir, 1 + i, *(["--force"] if force else [])),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(n)
        ]
        results = [(p.communicate(timeout=300)[1], p.returncode) for p in procs]
        outcomes = [_classify(rc, err) for err, rc in results]
        state, problems, seeds = inspect_run(run_dir)
        winners = [1 + i for i, (_, rc) in enumerate(results) if rc == 0]
        detail = f"exit codes {[rc for _, rc in results]}; state {state}; seeds {sorted(seeds)}"
        if problems:
            outcome: Outcome = "mixed_run"
            detail += f"; {problems}"
        elif "untyped_error" in outcomes:
            outcome = "untyped_error"
        elif state != "finished" or len(winners) != 1 or seeds != set(winners):
            outcome = "wrong_answer" if winners else "typed_error"
        elif _metrics(run_dir) != ref.get(winners[0], _metrics(run_dir)):
            outcome = "wrong_answer"
        else:
            outcome = "answer"
        name = f"concurrent_{n}" + ("_force_over_finished" if force else "")
        cases.append(Case(CORPUS, name, outcome, detail, {"winners": float(len(winners))}))

    # 5. --out onto a finished run, without and with --force
    run_dir = work / "reuse"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(ref_dir[2], run_dir)
    before = (run_dir / "metrics.json").read_bytes()
    res = subprocess.run(_train_args(csv, run_dir, 1), env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    _, problems, seeds = inspect_run(run_dir)
    outcome = _classify(res.returncode, res.stderr)
    if problems or (run_dir / "metrics.json").read_bytes() != before:
        outcome = "mixed_run"
    cases.append(Case(CORPUS, "reuse_finished_without_force", outcome,
                      f"rc {res.returncode}; seeds {sorted(seeds)}; "
                      f"{res.stderr.strip()[-120:]}"))  # fmt: skip
    res = subprocess.run(_train_args(csv, run_dir, 1, "--force"), env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    state, problems, seeds = inspect_run(run_dir)
    outcome = _classify(res.returncode, res.stderr)
    if problems:
        outcome = "mixed_run"
    elif outcome == "answer" and (seeds != {1} or _metrics(run_dir) != ref[1]):
        outcome = "wrong_answer"
    cases.append(Case(CORPUS, "reuse_finished_with_force", outcome,
                      f"rc {res.returncode}; state {state}; seeds {sorted(seeds)}"))  # fmt: skip
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="Folder for the runs (a temp dir).")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="recfit-faults-"))
    t0 = time.perf_counter()
    cases = run(work, None)
    for c in cases:
        print(f"{c.outcome:14s} {c.name:36s} {c.detail}")
    counts = Counter(c.outcome for c in cases)
    print(f"\n{len(cases)} cases in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))  # fmt: skip


if __name__ == "__main__":
    main()
