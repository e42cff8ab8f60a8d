"""Package layering: each layer imports only those below it (checked by import-linter), and
the public names resolve."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import recfit

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_hold() -> None:
    pytest.importorskip("importlinter")
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.skip("lint-imports is not installed beside this interpreter")
    out = subprocess.run(
        [str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_public_names_resolve() -> None:
    missing = [n for n in recfit.__all__ if not hasattr(recfit, n)]
    assert missing == []
    assert {"SVDpp", "Callback"} <= set(recfit.__all__)
    from recfit.models import SVDpp
    from recfit.train import Callback

    assert recfit.SVDpp is SVDpp
    assert recfit.Callback is Callback


def test_version_has_one_source() -> None:
    from recfit._version import __version__

    assert recfit.__version__ == __version__
    assert importlib.metadata.version("recfit") == __version__


def test_the_index_has_one_name() -> None:
    """The top-k index lives in recfit.index only (no second module under another name)."""
    import recfit.index as index

    assert importlib.util.find_spec("recfit.retrieval") is None
    assert recfit.ExactIndex is index.ExactIndex


# optional extras (fastapi, uvicorn, imblearn/sklearn, faiss, tensorboard) and the heavy
# libraries loaded only where used (matplotlib for figures, numba for the row-wise kernels,
# optuna for a hyperparameter search)
DEFERRED = (
    "fastapi",
    "uvicorn",
    "starlette",
    "imblearn",
    "sklearn",
    "faiss",
    "tensorboard",
    "matplotlib",
    "numba",
    "optuna",
)


@pytest.mark.parametrize("module", ["recfit", "recfit.cli", "recfit.runs", "recfit.index"])
def test_import_loads_no_optional_or_deferred_library(module: str) -> None:
    code = f"import sys, {module}\nprint(sorted(m for m in {DEFERRED!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_server_import_loads_no_figure_or_kernel_library() -> None:
    pytest.importorskip("fastapi")
    code = "import sys, recfit.server\nprint(sorted(m for m in ('matplotlib', 'numba') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
