"""optuna is loaded when a search runs, not with the CLI, and its loading pins no caller."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()[-1]


@pytest.mark.parametrize("module", ["recfit.cli", "recfit.tasks.tuning"])
def test_importing_the_cli_or_the_tuner_does_not_import_optuna(module: str) -> None:
    assert _run(f"import sys, {module}\nprint('optuna' in sys.modules)") == "False"


def test_loading_optuna_lets_the_callers_locals_go() -> None:
    """optuna's import keeps a traceback whose frames hold the importing stack: loaded by
    the tuner (on a thread of its own), a caller's locals are still let go."""
    code = (
        "import gc, sys, weakref\n"
        "from recfit.tasks.tuning.search import _load_optuna\n"
        "class Big: pass\n"
        "def run():\n"
        "    big = Big()\n"
        "    _load_optuna()\n"
        "    import optuna\n"
        "    return weakref.ref(big)\n"
        "ref = run(); gc.collect(); print('optuna' in sys.modules and ref() is None)\n"
    )
    assert _run(code) == "True"
