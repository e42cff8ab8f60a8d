"""Compile (or load from numba's cache) every kernel some families' fits use, ahead of them.

A fit's compiled kernels are compiled on their first call; in a process whose cache is
cold (a machine's first run, a new numba or Python) that takes seconds (on ml-100k, SVD++'s
first fit took 16 s instead of 3 s), and it would count as fitting time wherever a clock
runs around the fit (``model="auto"``'s budget, its candidates' seconds).
:func:`compile_families` does it once, before the clock starts, and says how long it took.

What runs for a family fitted by a trainer on a device:

* its own kernels: the family's :attr:`~recfit.models.registry.Family.warm_up`, declared
  in its module next to them (it skips what does not run on that device);
* the Learner's (trainer ``sgd`` on the CPU only): the kernels it names in
  :attr:`~recfit.models.registry.Family.kernels`, which :data:`WARMERS` compiles here,
  with the training machinery they belong to;
* the compiled shuffle, for a Learner fit of at least
  :data:`~recfit.train.batches.PARALLEL_SHUFFLE_MIN` rows (off the CPU only the
  permutation: the rows are gathered on the device).

Each is compiled for the very argument types the fits pass (one call on tiny arrays, or
numba's ``compile`` with those types), so a fit finds its kernels ready and runs the same
machine code as without the warm-up: the same weights.

Example:
    >>> compile_families(["baseline"])  # no kernels
    0.0
    >>> compile_families(["timesvdpp"]) >= 0.0
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial

import numpy as np
import torch

from recfit.models.registry import Family, family
from recfit.train import dense_epoch, kernels
from recfit.train.batches import PARALLEL_SHUFFLE_MIN
from recfit.train.execution import resolve_device

__all__ = ["WARMERS", "compile_families", "kernel_sets"]


def _row_step(device: torch.device) -> None:
    kernels.ensure_compiled(kernels._compile_step)


def _dense_epoch(device: torch.device) -> None:
    dense_epoch.ensure_compiled()


def _shuffle(device: torch.device) -> None:
    cols = {"i": np.zeros(1, np.int64), "f": np.zeros(1, np.float32)}
    kernels.ensure_compiled(columns=cols if device.type == "cpu" else None, shuffle=True)


WARMERS: Mapping[str, Callable[[torch.device], None]] = {
    "row_step": _row_step,
    "dense_epoch": _dense_epoch,
    "shuffle": _shuffle,
}
"""How the Learner's kernels are compiled (or loaded) for a fit on a device: each set of
:data:`~recfit.models.registry.KERNEL_SETS` and ``"shuffle"`` (a test keeps them the same)."""

Step = tuple[str, Callable[[], object]]


def _steps(
    names: Iterable[str | Family],
    rows: int | None,
    device: str | torch.device | None,
    trainer: str | None,
) -> list[Step]:
    """What to compile for the families ``names``, each once, in their order: (label, call)."""
    dev = torch.device("cpu") if device is None else resolve_device(device)
    out: dict[object, Step] = {}
    for f in (n if isinstance(n, Family) else family(n) for n in names):
        by = trainer if trainer in f.trainers else f.trainers[0]
        own = f.warm_up
        if own is not None:  # the same callable: the same kernels
            out.setdefault(own, (f.name, partial(own, by, dev)))
        learner = [*f.kernels] if by == "sgd" and dev.type == "cpu" else []
        if by == "sgd" and rows is not None and rows >= PARALLEL_SHUFFLE_MIN:
            learner.append("shuffle")
        for name in learner:
            out.setdefault(name, (name, partial(WARMERS[name], dev)))
    return list(out.values())


def kernel_sets(
    names: Iterable[str | Family],
    rows: int | None = None,
    *,
    device: str | torch.device | None = None,
    trainer: str | None = None,
) -> list[str]:
    """What :func:`compile_families` compiles for the families ``names`` (same arguments),
    each once, in the families' order: a family's name for its own warm-up, the Learner's
    kernel sets by name, ``"shuffle"``.

    Raises:
        ConfigError: an unknown family name.

    Example:
        >>> kernel_sets(["baseline", "svdpp", "dot", "mf"])
        ['svdpp', 'dense_epoch', 'row_step']
        >>> kernel_sets(["svdpp", "mf"], device="cuda"), kernel_sets(["mf"], trainer="als")
        (['svdpp'], [])
        >>> kernel_sets(["nn"], rows=2_000_000)
        ['shuffle']
    """
    return [label for label, _ in _steps(names, rows, device, trainer)]


def compile_families(
    names: Iterable[str | Family],
    rows: int | None = None,
    *,
    device: str | torch.device | None = None,
    trainer: str | None = None,
) -> float:
    """Compile (or load from numba's cache) every kernel the fits of the families ``names``
    use (:func:`kernel_sets`); returns the seconds it took.

    A few tenths of a second in a new process whose cache is filled (importing numba and
    loading the kernels), a few milliseconds once they are loaded in this process; 0
    without numba or without kernels. Call it before a fit's clock starts. PyTorch's random
    state is left as it was.

    Args:
        names: family names (or :class:`~recfit.models.registry.Family` entries).
        rows: the largest training set their fits see (the shuffle kernels for a large
            one); ``None``: not known (no shuffle kernels).
        device: the device the fits train on (``"auto"``: CUDA when available);
            ``None``: the CPU.
            Off the CPU the Learner's compiled paths do not run: only the kernels that run
            on the CPU anyway are compiled.
        trainer: the trainer asked for; a family that does not support it (and ``None``:
            every family) is fitted by its default trainer. Only the Learner (``sgd``) runs
            the Learner's kernels (not ``als``).

    Raises:
        ConfigError: an unknown family name or device.
    """
    steps = _steps(names, rows, device, trainer)
    if not steps:
        return 0.0
    t0 = time.perf_counter()
    if not kernels.available():
        return 0.0
    with torch.random.fork_rng(devices=[]):
        for _, run in steps:
            run()
    return time.perf_counter() - t0
