"""The row-wise kernel compiled in a separate process while the parent starts up.

numba's first compile of the row-wise step takes seconds of CPU, most of it type inference
in Python, which holds the GIL: a thread that compiles it beside the data loading slows
both. :func:`start` runs the compile in a child process instead (numba and numpy only,
neither torch nor the rest of recfit), which writes the compiled kernel to numba's cache
under the user's cache folder; the parent then loads it from there
(:func:`recfit.train.kernels.compile_ahead` waits for the child, reads its outcome with
:func:`outcome` and compiles in process when it failed).

``recfit train`` starts the child from the very beginning of the process, before torch is
imported (:func:`start_for_command_line`, called first thing by ``import recfit``), so the
compile overlaps the seconds of imports as well as the data loading, when the fit may run
the row-wise kernel as far as the command line and its config file tell
(:func:`may_run_row_kernel_cli`: the rating task's condition; none for a fit on the dense
path, e.g. ``recfit train --model svdpp`` on ml-100k, or on the GPU; ``recfit train``'s
default, ``model="auto"`` with a search, may tune a model big enough even on ml-100k). (A fit called from
Python compiles in a thread of its own process instead: there only the data loading is
left to overlap, too short to pay for a child's start-up.) A child runs only while the cache
has not been filled for this kernel source, numba, Python and machine (the child leaves a
marker file, :func:`marker`, after a successful compile), so a warm start costs nothing.
The child only pays off with a core free for it: on a busy machine (:func:`recfit._cpu.free_cores`
below 2) ``recfit train`` starts none, as the child's own start-up and the load after it
would then cost the run more than the overlap gains, and the kernel compiles in a thread as
in a fit called from Python. ``RECFIT_COMPILE_AHEAD=0`` turns the child off, ``=1`` starts it
whatever the load.

numba writes each cache file under a temporary name and renames it into place, data before
index, so a reader sees a whole entry or none; the parent only reads after the child exits.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import tomllib
from importlib import metadata, util
from pathlib import Path

from recfit._cpu import free_cores
from recfit._fs import atomic_write, numba_cache_dir
from recfit._row_path import RELEASE_ROWS, may_run_row_kernel

__all__ = [
    "ENV",
    "WAIT_SECONDS",
    "marker",
    "outcome",
    "running",
    "start",
    "start_for_command_line",
    "write_marker",
]

ENV = "RECFIT_COMPILE_AHEAD"
"""``0`` turns the child off, ``1`` starts it at ``recfit train`` whatever the load; unset,
only with a core free for it."""

WAIT_SECONDS = 600.0
"""How long the parent waits for the child before it compiles in process."""

COMMANDS = frozenset({"train"})
"""``recfit`` commands that start the child at start-up."""

_KERNEL_SOURCE = Path(__file__).parent / "train" / "_kernels_numba.py"

# The child: ``recfit`` and ``recfit.train`` as bare packages (their ``__init__`` would import
# torch and the whole library), then the kernel module alone.
CHILD = """
import importlib.util, os, sys, types
found = importlib.util.find_spec("recfit")
for name, sub in (("recfit", ""), ("recfit.train", "train")):
    pkg = types.ModuleType(name)
    pkg.__path__ = [os.path.join(p, sub) if sub else p for p in found.submodule_search_locations]
    sys.modules[name] = pkg
from recfit.train.kernels import compile_in_child
sys.exit(compile_in_child())
"""

_LOCK = threading.Lock()
_CHILD: list[subprocess.Popen[bytes]] = []


def marker(folder: Path) -> Path:
    """The file a successful child compile leaves in ``folder`` (numba's cache folder), named
    for what numba's cache depends on: the kernel source, numba's version, Python, the
    machine.

    Example:
        >>> marker(Path("/cache")).name.startswith("ahead-")
        True
    """
    h = hashlib.sha256()
    try:
        h.update(_KERNEL_SOURCE.read_bytes())
        h.update(metadata.version("numba").encode())
    except (OSError, metadata.PackageNotFoundError):
        h.update(b"unknown")
    h.update(f"{sys.version}|{platform.machine()}|{platform.node()}".encode())
    return folder / f"ahead-{h.hexdigest()[:20]}.json"


def write_marker(folder: Path, compile_seconds: float) -> None:
    """Record a successful compile in ``folder`` (the child calls it last)."""
    record = {"compile_seconds": compile_seconds, "pid": os.getpid(), "time": time.time()}
    atomic_write(marker(folder), json.dumps(record) + "\n")


def running() -> subprocess.Popen[bytes] | None:
    """The child started in this process, if any (finished or not)."""
    with _LOCK:
        return _CHILD[0] if _CHILD else None


def start(command: list[str] | None = None) -> subprocess.Popen[bytes] | None:
    """Start the child (once per process) unless the cache is already filled, numba is
    missing, there is no writable cache folder or ``RECFIT_COMPILE_AHEAD=0``; the child, or
    ``None``. ``command`` replaces the child's command line (tests).
    """
    with _LOCK:
        if _CHILD:
            return _CHILD[0]
        if os.environ.get(ENV, "1") == "0" or util.find_spec("numba") is None:
            return None
        folder = numba_cache_dir()
        if folder is None or (command is None and marker(folder).is_file()):
            return None
        try:
            proc = subprocess.Popen(
                command or [sys.executable, "-c", CHILD], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
        except OSError:  # no interpreter to start: the kernel compiles in process
            return None
        _CHILD.append(proc)
        return proc


def outcome(proc: subprocess.Popen[bytes], timeout: float = WAIT_SECONDS) -> str | None:
    """Wait for the child; ``None`` when it compiled, else what went wrong (its last
    error line, or that it timed out: it is then stopped)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"no result after {timeout:.0f} s"
    if proc.returncode == 0:
        return None
    lines = [ln for ln in (err or b"").decode("utf-8", "replace").splitlines() if ln.strip()]
    return f"exit status {proc.returncode}" + (f" ({lines[-1].strip()})" if lines else "")


def _command(argv: list[str], orig_argv: list[str]) -> list[str] | None:
    """The ``recfit`` arguments when this process is the ``recfit`` command line (the
    console script, or ``python -m recfit``), else ``None``."""
    if argv and Path(argv[0]).name.removesuffix(".exe") == "recfit":
        return argv[1:]
    i = 1
    while i < len(orig_argv):
        a = orig_argv[i]
        if a == "-m":
            return orig_argv[i + 2 :] if orig_argv[i + 1 : i + 2] == ["recfit"] else None
        if a in ("-c", "-") or not a.startswith("-"):  # code or a script: not the command line
            return None
        i += 2 if a in ("-X", "-W") else 1
    return None


_FLAGS = {
    "--config": "config", "--task": "task", "--model": "model", "--trainer": "trainer",
    "--opt": "opt", "--loss": "loss", "--device": "device", "--n-factors": "n_factors",
    "--dataset": "dataset", "-d": "dataset", "--budget": "budget",
}  # fmt: skip
"""The ``recfit train`` flags that decide whether the fit may run the row-wise kernel."""
_DEFAULTS = {"task": "rating", "model": "auto", "trainer": "sgd", "opt": "auto",
             "loss": "mse", "device": "auto", "n_factors": 50, "dataset": "ml-100k",
             "budget": None}  # fmt: skip
"""Their values when neither a flag nor the config file sets them (the config's defaults;
a test keeps them the same)."""


def train_settings(args: list[str]) -> dict[str, object]:
    """The settings of :data:`_FLAGS` a ``recfit train`` command line gives: its flags
    over its ``--config`` file (TOML or JSON, read as is: a file that cannot be read is
    left to the command to report) over the defaults.

    Example:
        >>> s = train_settings(["train", "-d", "ml-1m", "--model=svdpp"])
        >>> s["dataset"], s["model"], s["loss"]
        ('ml-1m', 'svdpp', 'mse')
    """
    flags: dict[str, str] = {}
    for i, a in enumerate(args):
        name, eq, value = a.partition("=")
        if name in _FLAGS and (eq or i + 1 < len(args)):
            flags[_FLAGS[name]] = value if eq else args[i + 1]
    settings: dict[str, object] = dict(_DEFAULTS)
    if "config" in flags:
        settings.update(_config_file(Path(flags.pop("config"))))
    settings.update(flags)
    return settings


def _config_file(path: Path) -> dict[str, object]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
            data = data["train"] if isinstance(data.get("train"), dict) else data
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in data.items() if k in _DEFAULTS} if isinstance(data, dict) else {}


def may_run_row_kernel_cli(args: list[str]) -> bool:
    """Whether ``recfit train`` with ``args`` may run the row-wise kernel
    (:func:`recfit._row_path.may_run_row_kernel`, as the rating task's warm-up decides),
    as far as its settings say before torch is imported: the family is one of the
    row-wise families by name, the size is a MovieLens release's (a file may hold a big
    enough model) and ``device="auto"`` counts as the GPU when an NVIDIA driver is loaded
    (torch is not asked).

    Example:
        >>> may_run_row_kernel_cli(["train", "--model", "svdpp"]), may_run_row_kernel_cli(["train"])
        (False, True)
    """
    s = train_settings(args)
    device = str(s["device"])
    try:
        n_factors = int(str(s["n_factors"]))
    except ValueError:
        return False  # the command refuses it
    try:  # only a budget of 0 means no search ("auto" or none: by size)
        budget = None if float(str(s["budget"])) != 0.0 else 0.0
    except ValueError:
        budget = None
    return s["task"] == "rating" and may_run_row_kernel(
        model=str(s["model"]), trainer=str(s["trainer"]), opt=str(s["opt"]),
        loss=str(s["loss"]), cpu=device == "cpu" or (device == "auto" and not _nvidia_driver()),
        rows=RELEASE_ROWS.get(str(s["dataset"])), n_factors=n_factors, budget=budget,
    )  # fmt: skip


def _nvidia_driver() -> bool:
    """Whether an NVIDIA driver is loaded (so ``device="auto"`` may pick CUDA)."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
    return not hidden and os.path.exists("/proc/driver/nvidia/version")


def start_for_command_line(
    argv: list[str] | None = None, orig_argv: list[str] | None = None
) -> subprocess.Popen[bytes] | None:
    """Start the child when this process is ``recfit train`` (not its ``--help``, not a
    distributed launch or worker, where each rank would compile) of a fit that may run
    the row-wise kernel (:func:`may_run_row_kernel_cli`: not one on the dense path or the
    GPU) and a core is free for it (or ``RECFIT_COMPILE_AHEAD=1``); the child or ``None``.

    Example:
        >>> start_for_command_line(["python", "-c"], ["python", "-c", "pass"]) is None
        True
    """
    args = _command(sys.argv if argv is None else argv,
                    getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv)  # fmt: skip
    if not args or args[0] not in COMMANDS:
        return None
    if {"--help", "--nproc"} & {a.split("=", 1)[0] for a in args} or "LOCAL_RANK" in os.environ:
        return None
    setting = os.environ.get(ENV)
    if setting == "0" or not may_run_row_kernel_cli(args):  # off, or no row-wise kernel
        return None
    if setting != "1" and free_cores() < 2:  # no core for it
        return None
    return start()
