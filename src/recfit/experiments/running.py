"""Running a comparison: every configuration with every seed, resumable."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recfit.errors import ConfigError
from recfit.experiments.records import (
    RUNS_FILE,
    Runner,
    RunRecord,
    append_run,
    check_metrics,
    fingerprint,
    read_runs,
)
from recfit.experiments.results import ExperimentResults

__all__ = ["load_results", "run_experiments"]


def run_experiments(
    configs: Mapping[str, Any],
    runner: Runner,
    seeds: Sequence[int],
    out_dir: Path | str | None = None,
    progress: bool = True,
    baseline: str | None = None,
) -> ExperimentResults:
    """Run every configuration with every seed and collect the metrics.

    Runs go seed by seed (all configurations for the first seed, then the next), so
    an interrupted comparison has complete pairs for its finished seeds.

    Args:
        configs: configuration name → anything the runner understands (a dict, a
            dataclass, …). Names order the tables and the chart.
        runner: ``runner(name, config, seed) -> {metric: value}``. It must use the same
            split for a seed whatever the configuration (see the module docstring).
        seeds: distinct integer seeds, e.g. :func:`seeds_for(10) <seeds_for>`.
        out_dir: where ``runs.jsonl`` is kept; finished runs found there are reused.
        progress: show a progress bar (tqdm, on stderr).
        baseline: the configuration that :meth:`ExperimentResults.paired` and the text
            table compare against.

    Returns:
        An :class:`ExperimentResults` over ``configs × seeds``.

    Raises:
        ConfigError: no configurations, repeated seeds, an unknown baseline, or
            ``out_dir`` holding runs of a configuration that has since changed.

    Example:
        >>> res = run_experiments({"x": 1}, lambda n, c, s: {"m": c * s}, [1, 2], progress=False)
        >>> res.runs["value"].tolist()
        [1.0, 2.0]
    """
    names = list(configs)
    if not names:
        raise ConfigError("expected at least one configuration, received none")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"expected non-empty string configuration names, received {name!r}")
    seed_list = [_as_seed(s) for s in seeds]
    if not seed_list:
        raise ConfigError("expected at least one seed, received none")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"expected distinct seeds, received {seed_list}")
    if baseline is not None and baseline not in configs:
        raise ConfigError(f"expected baseline among {names}, received {baseline!r}")
    fingerprints = {name: fingerprint(configs[name]) for name in names}

    done: dict[tuple[str, int], RunRecord] = {}
    path: Path | None = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / RUNS_FILE
        for rec in read_runs(path):
            if rec.config in fingerprints and rec.seed in seed_list:
                if rec.fingerprint and rec.fingerprint != fingerprints[rec.config]:
                    raise ConfigError(
                        f"expected the runs in {str(path)!r} to come from the same "
                        f"configuration {rec.config!r}, received a changed configuration "
                        "(use a new out_dir, or remove that file to start over)"
                    )
                done[(rec.config, rec.seed)] = rec

    todo = [(n, s) for s in seed_list for n in names if (n, s) not in done]
    total = len(names) * len(seed_list)
    bar = tqdm(total=total, initial=total - len(todo), desc="compare", disable=not progress)
    try:
        for name, seed in todo:
            bar.set_postfix_str(f"{name} seed {seed}")
            t0 = time.perf_counter()
            try:
                out_metrics = runner(name, configs[name], seed)
            except BaseException as exc:
                exc.add_note(
                    f"recfit: {len(done)} of {total} runs finished"
                    + (f" and saved in {str(path)!r}; rerun to resume" if path else "")
                )
                raise
            rec = RunRecord(
                name,
                seed,
                check_metrics(out_metrics, name, seed),
                time.perf_counter() - t0,
                fingerprints[name],
            )
            if path is not None:
                append_run(path, rec)
            done[(name, seed)] = rec
            bar.update(1)
    finally:
        bar.close()
    records = tuple(done[(n, s)] for s in seed_list for n in names)
    return ExperimentResults(records, tuple(names), tuple(seed_list), baseline)


def _as_seed(s: Any) -> int:
    if isinstance(s, bool) or not isinstance(s, int | np.integer):
        raise ConfigError(f"expected integer seeds, received {s!r}")
    return int(s)


def load_results(out_dir: Path | str, baseline: str | None = None) -> ExperimentResults:
    """Read back the runs recorded in ``out_dir/runs.jsonl`` (in the order recorded).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = run_experiments({"a": 0}, lambda n, c, s: {"m": s}, [3], d, progress=False)
        >>> load_results(d).runs["value"].tolist()
        [3.0]
    """
    path = Path(out_dir) / RUNS_FILE
    if not path.exists():
        raise ConfigError(f"expected a results file, received no {str(path)!r}")
    records = read_runs(path)
    last = {(r.config, r.seed): r for r in records}
    names = list(dict.fromkeys(r.config for r in records))
    seeds = list(dict.fromkeys(r.seed for r in records))
    if baseline is not None and baseline not in names:
        raise ConfigError(f"expected baseline among {names}, received {baseline!r}")
    return ExperimentResults(tuple(last.values()), tuple(names), tuple(seeds), baseline)
