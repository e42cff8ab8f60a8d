"""Where the compiled kernels are cached, and compile time kept out of ``fit_seconds``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import recfit
from recfit.data import Interactions
from recfit.errors import RecfitWarning
from recfit.train import kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")

PACKAGE = Path(recfit.__file__).parent

# one tiny row-wise fit in a fresh process; prints what the test checks
FIT = """
import json, warnings
import numpy as np
from recfit.data import Interactions
from recfit.models import BiasedMF
from recfit.train import Callback, Learner
from recfit.train.execution import Execution

class Seen(Callback):
    def before_fit(self):
        from recfit.train import _kernels_numba
        self.compiled_before_fit = len(_kernels_numba.step_part.signatures) > 0

rng = np.random.default_rng(0)
d = Interactions.from_arrays(rng.integers(0, 30, 300), rng.integers(0, 20, 300),
                             rng.integers(1, 6, 300).astype(float))
seen = Seen()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    learn = Learner(BiasedMF(30, 20, 4, global_mean=3.0), d, bs=64,
                    execution=Execution(row_wise=True, compiled=True), progress=False, callbacks=[seen])
    learn.fit_one_cycle(1, 0.02)
from recfit.train import _kernels_numba
print(json.dumps({"compile": learn.compile_seconds, "fit": learn.fit_seconds,
                  "before_fit": seen.compiled_before_fit, "cache": _kernels_numba.CACHE,
                  "warnings": [str(w.message) for w in caught]}))
"""


def _package_files() -> dict[str, float]:
    """numba's cache files (index ``.nbi``, data ``.nbc``) under the package."""
    return {str(p): p.stat().st_mtime for p in PACKAGE.rglob("*.nb[ic]") if p.is_file()}


def _fit_in_subprocess(
    run_fresh: Callable[[str, dict[str, str]], Any], env_extra: dict[str, str]
) -> dict[str, object]:
    out: dict[str, object] = run_fresh(FIT, env_extra)
    return out


def test_cache_lives_in_the_given_folder_and_compile_time_is_apart(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    """Empty cache: the kernels compile into ``$RECFIT_CACHE_DIR/numba`` (nothing written
    in the package), before the fit starts, and that time is ``compile_seconds``, not
    ``fit_seconds``; a second process loads them from the cache, faster."""
    before = _package_files()
    cold = _fit_in_subprocess(run_fresh, {"RECFIT_CACHE_DIR": str(tmp_path)})
    assert cold["cache"] is True and cold["before_fit"] is True and cold["warnings"] == []
    assert sorted(p.suffix for p in (tmp_path / "numba").rglob("*.nbi"))  # index files
    assert _package_files() == before  # nothing new or rewritten under the package
    warm = _fit_in_subprocess(run_fresh, {"RECFIT_CACHE_DIR": str(tmp_path)})
    assert warm["before_fit"] is True
    assert isinstance(cold["compile"], float) and isinstance(warm["compile"], float)
    assert isinstance(cold["fit"], float)
    assert cold["compile"] > 0.0 and cold["fit"] < cold["compile"]
    assert warm["compile"] < cold["compile"]


def test_an_unwritable_cache_folder_warns_once_and_compiles_without_cache(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = _package_files()
    out = _fit_in_subprocess(run_fresh, {"RECFIT_CACHE_DIR": str(blocker)})
    assert out["cache"] is False and out["before_fit"] is True
    warned = out["warnings"]
    assert isinstance(warned, list) and len(warned) == 1 and "writable" in warned[0]
    assert _package_files() == before


def test_the_cache_folder_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """RECFIT_CACHE_DIR, else the user's NUMBA_CACHE_DIR, else the user cache folder."""
    try:
        monkeypatch.delenv("RECFIT_CACHE_DIR", raising=False)
        monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
        monkeypatch.setattr("recfit._fs.user_cache_dir", lambda name: str(tmp_path / name))
        kernels.numba_cache_dir.cache_clear()
        assert kernels.numba_cache_dir() == tmp_path / "recfit" / "numba"
        monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "nb"))
        kernels.numba_cache_dir.cache_clear()
        assert kernels.numba_cache_dir() == tmp_path / "nb"
        monkeypatch.setenv("RECFIT_CACHE_DIR", str(tmp_path / "rf"))
        kernels.numba_cache_dir.cache_clear()
        assert kernels.numba_cache_dir() == tmp_path / "rf" / "numba"
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("RECFIT_CACHE_DIR", str(tmp_path / "file"))
        kernels.numba_cache_dir.cache_clear()
        with pytest.warns(RecfitWarning, match="writable cache folder"):
            assert kernels.numba_cache_dir() is None
    finally:
        kernels.numba_cache_dir.cache_clear()


def test_warm_up_changes_nothing() -> None:
    """The warm-up call runs the kernel on an empty batch: weights, state, step count and
    the steps that follow are exactly those without it."""
    from recfit.models import DotBias
    from recfit.train.sparse import RowAdamW

    g = torch.Generator().manual_seed(0)
    batch = {
        "user": torch.randint(0, 9, (20,), generator=g),
        "item": torch.randint(0, 7, (20,), generator=g),
        "rating": torch.rand(20, generator=g) * 4 + 1,
        "weight": torch.ones(20),
    }
    runs = []
    for warm in (True, False):
        m = DotBias(9, 7, n_factors=4, y_range=(0.0, 5.5), init_std=0.3, seed=1)
        opt = RowAdamW(m, lr=0.05, weight_decay=0.1)
        if warm:
            snap = [p.detach().clone() for p in m.parameters()]
            opt.warm_up(batch)
            assert all(torch.equal(a, b) for a, b in zip(snap, m.parameters(), strict=True))
            assert opt.step_count == 0
        for _ in range(3):
            opt.compiled_step(batch, float(batch["weight"].sum()), 0.1)
        runs.append([p.detach().clone() for p in m.parameters()] + opt.exp_avg_sq)
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    assert np.isfinite(kernels.ensure_compiled())


def test_a_run_reports_compile_seconds_apart(
    tmp_path: Path, tiny: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``metrics.json`` holds ``details.compile_seconds``, kept out of ``fit_seconds``."""
    for where in ("recfit.tasks.rating", "recfit.train.execution"):  # row-wise, though tiny
        monkeypatch.setattr(f"{where}.SPARSE_MIN_PARAMS", 0)
    from recfit.config import RatingConfig
    from recfit.runs import train_run

    csv = tmp_path / "ratings.csv"
    tiny.to_frame().to_csv(csv, index=False)
    cfg = RatingConfig(dataset=str(csv), epochs=1, bs=32, n_factors=4, seed=1, budget=0)
    res = train_run(cfg, tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    compile_s = metrics["details"]["compile_seconds"]
    assert compile_s == res.learner.compile_seconds >= 0.0
    assert res.learner.compiled and compile_s > 0.0
    assert metrics["fit_seconds"] >= 0.0


AHEAD = (
    """
import json, warnings
from recfit.train import _kernels_numba, kernels
kernels.compile_ahead().join()
ahead = [str(s) for s in _kernels_numba.step_part.signatures]
"""
    + FIT.split("import json, warnings", 1)[1]
    + """
print(json.dumps({"ahead": ahead, "after": [str(s) for s in _kernels_numba.step_part.signatures]}))
"""
)


def test_the_background_compile_compiles_what_the_fit_runs(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    """Fresh process, empty cache: ``compile_ahead`` alone compiles the row-wise kernel
    (one specialisation), and the fit then runs that one, compiling nothing more."""
    out = run_fresh(AHEAD, {"RECFIT_CACHE_DIR": str(tmp_path)})
    assert len(out["ahead"]) == 1
    assert out["after"] == out["ahead"]


def test_importing_the_kernel_module_directly_caches_in_the_given_folder(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    """A direct import (as pytest's doctest collection does) still caches under
    ``$RECFIT_CACHE_DIR/numba``, never beside the package, and leaves numba's setting as
    it was."""
    before = _package_files()
    code = (
        "import numpy as np, numba\n"
        "saved = numba.config.CACHE_DIR\n"
        "from recfit.train import _kernels_numba as k\n"
        "out = np.empty(3, dtype=np.int64)\n"
        "k.take_part(0, np.zeros(2, np.int64), 1, np.arange(3), np.array([2, 0, 1]), out)\n"
        "assert out.tolist() == [2, 0, 1]\n"
        "assert numba.config.CACHE_DIR == saved\n"
    )
    run_fresh(code, {"RECFIT_CACHE_DIR": str(tmp_path)})
    assert list((tmp_path / "numba").rglob("*take*.nbi"))
    assert _package_files() == before


REFCOUNTS = """
import json
from recfit.train import _kernels_numba, kernels
kernels._compile_step()
calls = {}
for name in ("user_rows", "item_rows"):
    irs = list(getattr(_kernels_numba, name).inspect_llvm().values())
    calls[name] = [sum(ir.count(f"call void @NRT_{op}") for ir in irs) for op in ("incref", "decref")]
    calls[name].append(len(irs))
print(json.dumps(calls))
"""


def test_the_row_loops_do_no_reference_counting(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    """Fresh process, empty cache: the compiled user and item loops of the step (with the
    helpers LLVM inlines into them) call neither ``NRT_incref`` nor ``NRT_decref``; with
    them, every row view and helper call paid an atomic call pair, about a third of the
    step's time on ml-1m batches on one thread."""
    calls = run_fresh(REFCOUNTS, {"RECFIT_CACHE_DIR": str(tmp_path)})
    assert calls == {"user_rows": [0, 0, 1], "item_rows": [0, 0, 1]}


# ------------------------------------------------ the compile in a separate process
def test_only_recfit_train_starts_the_compile_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """At ``import recfit``, the console script ``recfit train`` and ``python -m recfit
    train`` start the child compile; no other command, help, a distributed launch or worker,
    a script, ``-c`` code or another module does."""
    from recfit import _compile_ahead

    started: list[bool] = []
    monkeypatch.setattr(_compile_ahead, "start", lambda: started.append(True))
    monkeypatch.setattr(_compile_ahead, "free_cores", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("RECFIT_COMPILE_AHEAD", raising=False)
    py = "/usr/bin/python3"
    starts = [  # a fit that may run the row-wise kernel (a big enough model: ml-1m)
        (["/venv/bin/recfit", "train", "-d", "ml-1m"], [py, "/venv/bin/recfit", "train"]),
        ([py], [py, "-m", "recfit", "train", "-d", "ml-1m"]),
        ([py], [py, "-X", "importtime", "-W", "ignore", "-m", "recfit", "train", "-d", "ml-1m"]),
    ]
    not_starts = [
        (["/venv/bin/recfit", "serve", "run"], [py, "/venv/bin/recfit", "serve", "run"]),
        (["/venv/bin/recfit", "train", "--help"], []),
        (["/venv/bin/recfit", "train", "-d", "ml-1m", "--nproc=2"], []),
        (["/venv/bin/recfit"], []),
        (["-c"], [py, "-c", "import recfit", "train"]),
        (["script.py", "train"], [py, "script.py", "train"]),
        (["-m"], [py, "-m", "pytest", "train"]),
        (["-m"], [py, "-m", "recfit.cli", "train"]),
    ]
    for argv, orig in starts:
        started.clear()
        _compile_ahead.start_for_command_line(argv, orig)
        assert started == [True], argv
    for argv, orig in not_starts:
        started.clear()
        _compile_ahead.start_for_command_line(argv, orig)
        assert started == [], (argv, orig)
    monkeypatch.setenv("LOCAL_RANK", "0")
    _compile_ahead.start_for_command_line(["/venv/bin/recfit", "train", "-d", "ml-1m"], [])
    assert started == []


def test_a_busy_machine_starts_no_compile_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a core free for the child, ``recfit train`` compiles in a thread of its own
    (the child's start-up and load would cost more than the overlap gains), unless
    ``RECFIT_COMPILE_AHEAD=1``; ``=0`` never starts it."""
    from recfit import _compile_ahead

    started: list[bool] = []
    monkeypatch.setattr(_compile_ahead, "start", lambda: started.append(True))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    cases = ((1, None, []), (2, None, [True]), (1, "1", [True]), (2, "0", []))
    for free, env, expected in cases:
        started.clear()
        monkeypatch.setattr(_compile_ahead, "free_cores", lambda free=free: free)
        if env is None:
            monkeypatch.delenv("RECFIT_COMPILE_AHEAD", raising=False)
        else:
            monkeypatch.setenv("RECFIT_COMPILE_AHEAD", env)
        _compile_ahead.start_for_command_line(["/venv/bin/recfit", "train", "-d", "ml-1m"], [])
        assert started == expected, (free, env)


# a tiny row-wise fit whose kernel compiles ahead (the child as ``sys.argv[1]`` says: the
# real one, a broken one, or none); prints what the tests check
AHEAD_FIT = """
import hashlib, json, os, subprocess, sys, time, warnings
from recfit import _compile_ahead
mode = sys.argv[1]
if mode == "child":
    child = _compile_ahead.start()
elif mode == "broken":
    child = _compile_ahead.start([sys.executable, "-c", "import sys; sys.exit('ValueError: broken on purpose')"])
else:
    child = None  # no child: the fit's thread compiles the kernel itself
import numpy as np
from recfit.data import Interactions
from recfit.models import BiasedMF
from recfit.train import Learner, _kernels_numba, kernels
from recfit.train.execution import Execution
if child is not None:
    while child.poll() is None:  # the parent's own start-up work, as long as the compile
        time.sleep(0.05)
kernels.compile_ahead()
rng = np.random.default_rng(0)
d = Interactions.from_arrays(rng.integers(0, 30, 300), rng.integers(0, 20, 300),
                             rng.integers(1, 6, 300).astype(float))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    learn = Learner(BiasedMF(30, 20, 4, global_mean=3.0), d, bs=64,
                    execution=Execution(row_wise=True, compiled=True), progress=False)
    learn.fit_one_cycle(2, 0.02)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in learn.model.parameters()))
folder = kernels.numba_cache_dir()
mark = _compile_ahead.marker(folder)
stats = _kernels_numba.step_part.stats
print(json.dumps({
    "wait": learn.compile_seconds, "digest": digest.hexdigest(),
    "child": None if child is None else child.returncode,
    "child_compile": json.loads(mark.read_text())["compile_seconds"] if mark.is_file() else None,
    "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
    "warnings": [str(w.message) for w in caught],
}))
"""


def test_the_child_compiles_while_the_parent_works_and_the_results_are_the_same(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    """Fresh processes, empty caches. With the child started first, the parent compiles
    nothing (it loads the kernel the child compiled into ``$RECFIT_CACHE_DIR/numba``, never
    into the package) and waits less than the child compiled; its weights are bit-identical
    to those of a fit that compiled the kernel itself. A warm cache starts no child."""
    before = _package_files()
    env = {"RECFIT_CACHE_DIR": str(tmp_path / "ahead")}
    ahead = run_fresh(AHEAD_FIT.replace("sys.argv[1]", "'child'"), env)
    alone = run_fresh(AHEAD_FIT.replace("sys.argv[1]", "'none'"),
                      {"RECFIT_CACHE_DIR": str(tmp_path / "alone")})  # fmt: skip
    assert ahead["child"] == 0 and ahead["warnings"] == []
    assert (ahead["hits"], ahead["misses"]) == (1, 0)  # loaded, not compiled, by the parent
    assert ahead["wait"] < ahead["child_compile"]
    assert (alone["hits"], alone["misses"]) == (0, 1)
    assert ahead["digest"] == alone["digest"]
    assert list((tmp_path / "ahead" / "numba").rglob("*step_part*.nbi"))
    assert _package_files() == before
    again = run_fresh(AHEAD_FIT.replace("sys.argv[1]", "'child'"), env)
    assert again["child"] is None and (again["hits"], again["misses"]) == (1, 0)


def test_a_failed_child_compile_falls_back_to_the_fit_with_a_clear_warning(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    """A child that fails: one warning that says so and why, the kernel compiled in the
    parent instead, and the same weights as a fit without any child."""
    broken = run_fresh(AHEAD_FIT.replace("sys.argv[1]", "'broken'"),
                       {"RECFIT_CACHE_DIR": str(tmp_path / "broken")})  # fmt: skip
    alone = run_fresh(AHEAD_FIT.replace("sys.argv[1]", "'none'"),
                      {"RECFIT_CACHE_DIR": str(tmp_path / "alone")})  # fmt: skip
    assert broken["child"] == 1 and (broken["hits"], broken["misses"]) == (0, 1)
    (message,) = broken["warnings"]
    assert "separate process" in message and "broken on purpose" in message
    assert "compiled it in this process" in message
    assert broken["digest"] == alone["digest"]


def test_recfit_train_compiles_in_a_separate_process_from_its_start(tmp_path: Path) -> None:
    """``python -m recfit train`` with an empty cache: a child process (not the command's)
    compiles the row-wise kernel into ``$RECFIT_CACHE_DIR/numba`` (never the package) and
    the run reports its wait apart from ``fit_seconds``; with the cache warm no child runs."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    n = 12_000  # 4,000 users and 3,000 items: a DotBias big enough for the row-wise path
    csv = tmp_path / "r.csv"
    pairs = rng.choice(4000 * 3000, n, replace=False)  # distinct (user, item) pairs
    Interactions.from_arrays(
        pairs // 3000, pairs % 3000, rng.integers(1, 6, n).astype(float)
    ).to_frame().to_csv(csv, index=False)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "RECFIT_CACHE_DIR")}
    env["RECFIT_COMPILE_AHEAD"] = "1"  # whatever the load
    env["RECFIT_CACHE_DIR"] = str(tmp_path / "cache")
    before = _package_files()
    marks = []
    for run in ("cold", "warm"):
        cmd = [sys.executable, "-m", "recfit", "train", "-d", str(csv), "--model", "dot",
               "--epochs", "1", "-q", "--out", str(tmp_path / run)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert metrics["details"]["compile_seconds"] > 0.0 and metrics["fit_seconds"] > 0.0
        (mark,) = (tmp_path / "cache" / "numba").glob("ahead-*.json")
        marks.append((json.loads(mark.read_text()), proc.pid))
    (child, cli), (again, _) = marks
    assert child["pid"] != cli and child["compile_seconds"] > 0.0
    assert again == child  # the warm run started no child
    assert list((tmp_path / "cache" / "numba").rglob("*step_part*.nbi"))
    assert _package_files() == before
