"""Comparison specs in TOML: a ``[base]`` table and one ``[configs.NAME]`` table per
configuration (see :func:`load_compare_config`)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recfit.errors import ConfigError
from recfit.experiments.records import Runner, seeds_for
from recfit.experiments.results import ExperimentResults
from recfit.experiments.running import run_experiments

__all__ = ["CompareSpec", "load_compare_config"]

_TOP_KEYS = ("base", "configs", "baseline", "runs", "seed", "metrics", "title")


@dataclass(frozen=True)
class CompareSpec:
    """A comparison read from TOML by :func:`load_compare_config`.

    Attributes:
        configs: name → the ``[base]`` table deep-merged with ``[configs.NAME]``.
        base: the ``[base]`` table.
        overrides: name → the ``[configs.NAME]`` table as written.
        baseline: the reference configuration (``baseline = "..."``), if any.
        runs: the number of seeds (``runs = 10``), if given.
        seed: the first seed (``seed = 0`` by default).
        metrics: metrics to report and chart (``metrics = [...]``), if given.
        title: a title for the report, if given.
        path: the file it came from.
    """

    configs: dict[str, dict[str, Any]]
    base: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    baseline: str | None
    runs: int | None
    seed: int
    metrics: list[str] | None
    title: str | None
    path: Path

    def seeds(self, runs: int | None = None) -> list[int]:
        """:func:`seeds_for` with ``runs`` (or the file's ``runs``) from ``seed``."""
        n = runs if runs is not None else self.runs
        if n is None:
            raise ConfigError(
                f"expected runs in {str(self.path)!r} or as an argument, received none"
            )
        return seeds_for(n, self.seed)

    def run(
        self,
        runner: Runner,
        runs: int | None = None,
        out_dir: Path | str | None = None,
        progress: bool = True,
    ) -> ExperimentResults:
        """:func:`run_experiments` over this spec's configurations and seeds."""
        return run_experiments(
            self.configs, runner, self.seeds(runs), out_dir, progress, self.baseline
        )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def load_compare_config(path: Path | str) -> CompareSpec:
    """Read a comparison spec: a ``[base]`` table and one ``[configs.NAME]`` table per
    configuration, each overriding ``base`` (nested tables merge key by key).

    Top-level keys: ``base``, ``configs``, ``baseline``, ``runs``, ``seed``, ``metrics``,
    ``title``. Keys inside the configuration tables are not checked here: the runner
    that consumes a configuration rejects the keys it does not know.

    Raises:
        ConfigError: the file is missing, is not valid TOML (the message names the file
            and line), or its top-level shape is wrong.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "compare.toml"
        >>> _ = p.write_text('''
        ... baseline = "a"
        ... [base]
        ... epochs = 5
        ... [configs.a]
        ... [configs.b]
        ... epochs = 7
        ... ''')
        >>> spec = load_compare_config(p)
        >>> spec.configs, spec.baseline
        ({'a': {'epochs': 5}, 'b': {'epochs': 7}}, 'a')
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"expected a readable comparison file, received {str(p)!r}: {exc}"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        where = f"file {str(p)!r}" + (f", line {m.group(1)}" if m else "")
        raise ConfigError(f"expected valid TOML, received an error: {exc} ({where})") from exc
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(
            f"expected top-level keys among {list(_TOP_KEYS)}, received {unknown} (file {str(p)!r})"
        )
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError(f"expected [base] to be a table, received {base!r} (file {str(p)!r})")
    configs = data.get("configs")
    if not isinstance(configs, dict) or not configs:
        raise ConfigError(
            f"expected at least one [configs.NAME] table, received none (file {str(p)!r})"
        )
    overrides: dict[str, dict[str, Any]] = {}
    for name, table in configs.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"expected [configs.{name}] to be a table, received {table!r} (file {str(p)!r})"
            )
        overrides[name] = table
    baseline = data.get("baseline")
    if baseline is not None and baseline not in overrides:
        raise ConfigError(
            f"expected baseline among {list(overrides)}, received {baseline!r} (file {str(p)!r})"
        )
    runs = data.get("runs")
    if runs is not None and (not isinstance(runs, int) or isinstance(runs, bool) or runs < 1):
        raise ConfigError(f"expected runs >= 1, received {runs!r} (file {str(p)!r})")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"expected an integer seed, received {seed!r} (file {str(p)!r})")
    metrics = data.get("metrics")
    if metrics is not None and (
        not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics)
    ):
        raise ConfigError(
            f"expected metrics as a list of names, received {metrics!r} (file {str(p)!r})"
        )
    title = data.get("title")
    return CompareSpec(
        configs={name: _merge(base, over) for name, over in overrides.items()},
        base=base,
        overrides=overrides,
        baseline=baseline,
        runs=runs,
        seed=seed,
        metrics=metrics,
        title=None if title is None else str(title),
        path=p,
    )
