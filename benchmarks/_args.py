"""Command-line pieces the benchmark scripts share (run as ``python benchmarks/<script>.py``,
so this folder is on ``sys.path``).

Example:
    >>> import argparse
    >>> ap = argparse.ArgumentParser()
    >>> add_data_dir(ap)
    >>> ap.parse_args(["--data-dir", "/data"]).data_dir
    '/data'
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_data_dir", "default_data_dir"]


def default_data_dir() -> str:
    """``$RECFIT_DATA_DIR`` when set, else the ``shared/datasets`` folder beside the project
    (where the MovieLens copies of the development machine live)."""
    here = Path(__file__).resolve()
    return os.environ.get("RECFIT_DATA_DIR") or str(here.parents[2] / "shared" / "datasets")


def add_data_dir(ap: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` option: the folder holding the MovieLens releases."""
    ap.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="folder with the MovieLens releases (default: $RECFIT_DATA_DIR, else "
        "shared/datasets beside the project)",
    )
