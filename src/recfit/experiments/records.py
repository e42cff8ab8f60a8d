"""Finished runs of a comparison: one JSON line each in ``runs.jsonl``, written the moment
a run finishes, read back to resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recfit.errors import ConfigError, DataError

__all__ = [
    "RUNS_FILE",
    "RunRecord",
    "Runner",
    "append_run",
    "check_metrics",
    "fingerprint",
    "read_runs",
    "seeds_for",
]

Runner = Callable[[str, Any, int], Mapping[str, float]]
"""``runner(name, config, seed) -> {metric: value}``."""
RUNS_FILE = "runs.jsonl"


def seeds_for(n: int, base_seed: int = 0) -> list[int]:
    """``n`` distinct seeds, ``base_seed, base_seed + 1, …`` (a prefix of any longer list).

    Ten runs extend five: ``seeds_for(10)`` starts with ``seeds_for(5)``, so a resumed
    comparison with more runs reuses the finished ones.

    Example:
        >>> seeds_for(3, base_seed=42)
        [42, 43, 44]
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"expected a number of runs >= 1, received {n!r}")
    return list(range(int(base_seed), int(base_seed) + n))


@dataclass(frozen=True)
class RunRecord:
    """One finished run: a configuration, a seed, its metrics and its wall time."""

    config: str
    seed: int
    metrics: dict[str, float]
    seconds: float
    fingerprint: str = ""

    def to_json(self) -> str:
        """One JSON line (NaN written as ``NaN``)."""
        return json.dumps(
            {
                "config": self.config,
                "seed": self.seed,
                "metrics": self.metrics,
                "seconds": self.seconds,
                "fingerprint": self.fingerprint,
            }
        )


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "model_dump"):
        return _jsonable(obj.model_dump())
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def fingerprint(config: Any) -> str:
    text = json.dumps(_jsonable(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_metrics(out: Any, name: str, seed: int) -> dict[str, float]:
    if not isinstance(out, Mapping) or not out:
        raise DataError(
            "expected the runner to return a non-empty mapping of metric name to number, "
            f"received {type(out).__name__} for config {name!r}, seed {seed}"
        )
    metrics: dict[str, float] = {}
    for key, value in out.items():
        if not isinstance(key, str) or isinstance(value, bool):
            raise DataError(
                f"expected metric name (str) -> number, received {key!r}: {value!r} "
                f"for config {name!r}, seed {seed}"
            )
        try:
            metrics[key] = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"expected a number for metric {key!r}, received {value!r} "
                f"for config {name!r}, seed {seed}",
                column=key,
            ) from None
    return metrics


def read_runs(path: Path) -> list[RunRecord]:
    """Records in ``path``; a torn last line (an interrupted write) is cut off."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[RunRecord] = []
    good = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good += len(line) + 1
            continue
        try:
            d = json.loads(line)
            rec = RunRecord(
                config=str(d["config"]),
                seed=int(d["seed"]),
                metrics={str(k): float(v) for k, v in d["metrics"].items()},
                seconds=float(d.get("seconds", math.nan)),
                fingerprint=str(d.get("fingerprint", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            if i == len(lines) - 1:  # torn final write: drop it
                with path.open("r+b") as fh:
                    fh.truncate(good)
                break
            raise DataError(
                f"expected one JSON run record per line, received {line[:80]!r}",
                file=str(path),
                row=i,
            ) from None
        records.append(rec)
        good += len(line) + 1
    return records


def append_run(path: Path, record: RunRecord) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(record.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
