"""A wall-clock deadline for fits that can stop early (``model="auto"``'s budget).

A caller sets the deadline (``time.perf_counter()`` seconds) around a fit with
:func:`fit_until`; a fit that can end early with a valid model (Bayesian MF's samples,
I-AutoRec's epochs) reads it with :func:`deadline` and shortens itself so that it ends
by then, saying so in its ``fit_info``. Without a deadline (``None``) every fit runs as
configured.

Example:
    >>> deadline() is None
    True
    >>> with fit_until(12.5):
    ...     deadline()
    12.5
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["deadline", "ended_early", "fit_until", "full_share", "steps_that_fit"]

_DEADLINE: ContextVar[float | None] = ContextVar("recfit_fit_deadline", default=None)


def deadline() -> float | None:
    """The deadline of the fit running now (``time.perf_counter()`` seconds), or ``None``."""
    return _DEADLINE.get()


@contextmanager
def fit_until(at: float | None) -> Iterator[None]:
    """Fits inside the block end by ``at`` where they can (``None``: no deadline)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def steps_that_fit(done: int, elapsed: float, now: float, wanted: int) -> int:
    """How many steps of the pace so far (``done`` steps in ``elapsed`` seconds) end by
    the deadline, counting those done, at most ``wanted`` and at least ``done``
    (``wanted`` when there is no deadline or no pace yet).

    Example:
        >>> with fit_until(10.0):
        ...     steps_that_fit(done=2, elapsed=2.0, now=4.0, wanted=100)
        8
        >>> steps_that_fit(done=2, elapsed=2.0, now=4.0, wanted=100)
        100
    """
    at = deadline()
    if at is None or done <= 0 or elapsed <= 0:
        return wanted
    more = int((at - now) / (elapsed / done))
    return max(done, min(wanted, done + max(more, 0)))


def ended_early(model: Any) -> str:
    """How many samples or epochs a fit ran when a deadline ended it early (its
    ``fit_info``'s ``samples_wanted`` / ``epochs_wanted`` against the model's ``samples``
    / ``epochs``), else ``""``."""
    found = _ran(model)
    return f"ended by its deadline: {found[1]} of {found[2]} {found[0]}" if found else ""


def full_share(model: Any) -> float:
    """How many times the fit's samples or epochs the configured fit would run (1.0 when
    no deadline ended it early): its time scaled by this estimates the whole fit."""
    found = _ran(model)
    return found[2] / max(found[1], 1) if found else 1.0


def _ran(model: Any) -> tuple[str, int, int] | None:
    info = getattr(model, "fit_info", None) or {}
    for key in ("samples", "epochs"):
        wanted, ran = info.get(f"{key}_wanted"), getattr(model, key, None)
        if isinstance(wanted, int) and isinstance(ran, int) and ran < wanted:
            return key, ran, wanted
    return None
