"""``recfit compare``: named training configurations × N seeds, mean ± 2σ, error bars,
and paired differences with a 95% Student-t interval for the number of seeds.

Reads a comparison spec (TOML, see :func:`recfit.experiments.load_compare_config`): a
``[base]`` table of :class:`~recfit.config.TrainConfig` settings and one
``[configs.NAME]`` table per configuration. Every configuration runs with the same seeds
(the seed sets the split, so all configurations share the split of a seed). Finished
runs are appended to ``OUT/runs.jsonl`` as they finish; running the same command again
resumes without redoing them. Writes ``summary.csv``, ``runs.csv``, ``results.json``,
``results.txt`` (the printed table) and one ``<metric>.png`` bar chart with ±2σ error bars
per reported metric into ``OUT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from recfit.cli.common import errors
from recfit.errors import ConfigError
from recfit.experiments import RUNS_FILE, load_compare_config, load_results
from recfit.runs import config_runner

__all__ = ["DEFAULT_METRICS", "compare"]

DEFAULT_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "weighted_f1",
    "mse_expected",
    "mse_argmax",
)
"""Metrics reported when the spec names none (those the runs produced, in this order)."""

_console = Console()


def _finished(out: Path, names: list[str], seeds: list[int]) -> int:
    if not (out / RUNS_FILE).exists():
        return 0
    res = load_results(out)
    return sum(1 for r in res.records if r.config in names and r.seed in seeds)


def compare(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="Comparison spec (TOML): a base table and one configs.NAME table per configuration.",
        ),
    ],
    runs: Annotated[
        int | None,
        typer.Option("--runs", "-n", help="Seeds per configuration (default: the spec's)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Results folder (resumes the runs found there).")
    ] = Path("compare-results"),
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="RECFIT_DATA_DIR", help="Folder holding MovieLens."),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric to report (repeatable).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compare training configurations over N seeds: a results table and ±2σ bar charts."""
    with errors():
        spec = load_compare_config(config)
        seeds = spec.seeds(runs)
        names = list(spec.configs)
        total = len(names) * len(seeds)
        done = _finished(out, names, seeds)
        inner = config_runner(data_dir=data_dir)
        _console.print(
            f"comparing [bold]{len(names)}[/bold] configurations × [bold]{len(seeds)}[/bold] "
            f"seeds ({', '.join(names)}); results in {out}"
            + (f"; {done} of {total} runs already finished" if done else "")
        )
        progress = Progress(
            TextColumn("[bold]compare[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=_console,
            disable=quiet,
            transient=False,
        )
        with progress:
            task = progress.add_task("", total=total, completed=done)

            def runner(name: str, cfg: Mapping[str, Any], seed: int) -> dict[str, float]:
                progress.update(task, description=f"{name} seed {seed}")
                result = inner(name, cfg, seed)
                progress.advance(task)
                return result

            results = spec.run(runner, runs=runs, out_dir=out, progress=False)
        wanted = list(metric) if metric else spec.metrics
        if wanted is None:
            wanted = [m for m in DEFAULT_METRICS if m in results.metrics] or [
                m for m in results.metrics if m != "fit_seconds"
            ]
        unknown = [m for m in wanted if m not in results.metrics]
        if unknown:
            raise ConfigError(
                f"expected metrics among {results.metrics}, received {unknown} (--metric)"
            )
        paths = results.save(out, [*wanted, "fit_seconds"] if "fit_seconds" in results.metrics
                              and "fit_seconds" not in wanted else wanted)  # fmt: skip
        if spec.title:
            _console.print(f"[bold]{spec.title}[/bold]")
        _console.print(results.table(wanted), markup=False, highlight=False)
        _console.print(f"wrote {', '.join(sorted(paths))} in {out}")
