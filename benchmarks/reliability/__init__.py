"""Corpora of bad input and faults for ``benchmarks/bench_reliability.py``.

Each module builds one corpus and runs it, returning one :class:`Case` per input:

- ``files``: malformed data files through the loaders;
- ``bundles``: tampered model bundles through ``Recommender.load`` and first use;
- ``requests``: bad HTTP requests against a live ``recfit serve`` on loopback, and the
  ``/health`` latency while the heaviest allowed requests run;
- ``faults``: kills, a full disk and concurrent runs against run directories.

Every module exposes ``run(work: Path, data_dir: Path | None) -> list[Case]`` and may
also return extra figures through ``Case.figures``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FAILURES", "OUTCOMES", "Case", "Outcome"]

Outcome = Literal[
    "answer",  # a correct answer (the input was acceptable)
    "typed_error",  # a RecfitError (or a CLI exit with its message) — the wanted refusal
    "4xx",  # an HTTP 4xx answer with a JSON error
    "5xx",  # an HTTP 5xx answer or a dropped connection: a failure
    "untyped_error",  # an exception outside RecfitError, or a traceback: a failure
    "wrong_answer",  # a value changed silently or a file read outside the bundle: a failure
    "mixed_run",  # a run directory holding parts of two runs: a failure
]
OUTCOMES: tuple[str, ...] = Outcome.__args__  # type: ignore[attr-defined]
FAILURES = ("5xx", "untyped_error", "wrong_answer", "mixed_run")


@dataclass
class Case:
    """One input of a corpus and what happened to it."""

    corpus: str
    name: str
    outcome: Outcome
    detail: str = ""
    figures: dict[str, float] = field(default_factory=dict)
