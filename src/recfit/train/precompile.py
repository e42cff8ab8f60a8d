"""Compile (or load from numba's cache) every kernel some families' fits use, ahead of them.

A fit's compiled kernels are compiled on their first call; in a process whose cache is
cold (a machine's first run, a new numba or Python) that takes seconds (on ml-100k, SVD++'s
first fit took 16 s instead of 3 s), and it would count as fitting time wherever a clock
runs around the fit (``model="auto"``'s budget, its candidates' seconds).
:func:`compile_families` does it once, before the clock starts, and says how long it took.

Each family names the kernel sets its fits use (:attr:`recfit.models.registry.Family.kernels`,
among :data:`~recfit.models.registry.KERNEL_SETS`); :data:`WARMERS` compiles each set for
the very argument types the fits pass (one call on tiny arrays, or numba's ``compile``
with those types), so a fit finds its kernels ready and runs the same machine code as
without the warm-up: the same weights. Besides, every family trained by the Learner
(trainer ``sgd``) shuffles a training set of at least
:data:`~recfit.train.batches.PARALLEL_SHUFFLE_MIN` rows with the compiled permutation.

Example:
    >>> compile_families(["baseline"])  # no kernels
    0.0
    >>> compile_families(["timesvdpp"]) >= 0.0
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models import bmf, timesvdpp
from recfit.models.registry import Family, family
from recfit.train import dense_epoch, kernels
from recfit.train.batches import PARALLEL_SHUFFLE_MIN

__all__ = ["WARMERS", "compile_families", "kernel_sets"]


def _row_step(fam: Family) -> None:
    kernels.ensure_compiled(kernels._compile_step)


def _dense_epoch(fam: Family) -> None:
    dense_epoch.ensure_compiled()


def _fused_step(fam: Family) -> None:
    """The model's own fused step (:meth:`~recfit.models.base.RatingModel.compile_kernels`)
    on a model of the family sized for two ratings (the same dtypes as any)."""
    tiny = Interactions.from_arrays([0, 1], [0, 1], [1.0, 2.0])
    fam.build({"n_factors": 2, "seed": 0}, tiny).compile_kernels()


def _timesvdpp(fam: Family) -> None:
    timesvdpp.load_kernels()


def _bmf(fam: Family) -> None:
    bmf._kernels()


WARMERS: Mapping[str, Callable[[Family], None]] = {
    "row_step": _row_step,
    "dense_epoch": _dense_epoch,
    "fused_step": _fused_step,
    "timesvdpp": _timesvdpp,
    "bmf": _bmf,
}
"""How each kernel set of :data:`~recfit.models.registry.KERNEL_SETS` is compiled (or
loaded) for a family that names it; every set has one (a test keeps them the same)."""


def kernel_sets(names: Iterable[str | Family], rows: int | None = None) -> list[str]:
    """The kernel sets the fits of the families ``names`` use, each once, in the families'
    order; with ``rows`` (the largest training set they fit) of at least
    :data:`~recfit.train.batches.PARALLEL_SHUFFLE_MIN` and a family trained by the
    Learner, ``"shuffle"`` too.

    Raises:
        ConfigError: an unknown family name.

    Example:
        >>> kernel_sets(["baseline", "svdpp", "dot", "mf"])
        ['fused_step', 'dense_epoch', 'row_step']
        >>> kernel_sets(["nn"], rows=2_000_000)
        ['shuffle']
    """
    out: list[str] = []
    for f in (n if isinstance(n, Family) else family(n) for n in names):
        wanted = [*f.kernels]
        if rows is not None and rows >= PARALLEL_SHUFFLE_MIN and "sgd" in f.trainers:
            wanted.append("shuffle")
        out += [k for k in wanted if k not in out]
    return out


def compile_families(names: Iterable[str | Family], rows: int | None = None) -> float:
    """Compile (or load from numba's cache) every kernel the fits of the families ``names``
    use (:func:`kernel_sets`); returns the seconds it took.

    A few tenths of a second in a new process whose cache is filled (importing numba and
    loading the kernels), a few milliseconds once they are loaded in this process; 0
    without numba or without kernels. Call it before a fit's clock starts. PyTorch's random state
    is left as it was.

    Args:
        names: family names (or :class:`~recfit.models.registry.Family` entries).
        rows: the largest training set their fits see (the shuffle kernels for a large
            one); ``None``: not known (no shuffle kernels).

    Raises:
        ConfigError: an unknown family name, or a family naming a kernel set that has no
            warmer here.
    """
    todo: dict[Any, tuple[str, Family]] = {}
    for f in (n if isinstance(n, Family) else family(n) for n in names):
        for name in kernel_sets([f], rows):  # the model's own step: each family's
            todo.setdefault((name, f.name) if name == "fused_step" else name, (name, f))
    if not todo:
        return 0.0
    t0 = time.perf_counter()
    if not kernels.available():
        return 0.0
    with torch.random.fork_rng(devices=[]):
        for name, f in todo.values():
            if name == "shuffle":
                cols = {"i": np.zeros(1, np.int64), "f": np.zeros(1, np.float32)}
                kernels.ensure_compiled(columns=cols, shuffle=True)
                continue
            warm = WARMERS.get(name)
            if warm is None:
                raise ConfigError(
                    f"expected a kernel set among {sorted(WARMERS)} for family "
                    f"{f.name!r} (Family.kernels), received {name!r}"
                )
            warm(f)
    return time.perf_counter() - t0
