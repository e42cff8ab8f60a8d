"""``recfit tune``: search a family's hyper-parameters on an inner cut of the training part,
write the trials and the best config, then train that config and evaluate it once.

The config flags are those of ``recfit train`` (generated from the schema): they give the
data, the split, the model and every setting the search starts from and keeps fixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recfit._fs import atomic_write
from recfit.cli.common import errors
from recfit.cli.train import ConfigOpt, _command, _config, metrics_table
from recfit.errors import ConfigError
from recfit.runs import train_run
from recfit.tasks import get_task
from recfit.tasks.tuning import TuneResult, tune

__all__ = ["tune_command"]

_console = Console()

#: config fields that ``recfit tune`` sets by its own options
_OWN = frozenset({"budget"})


def _tune(
    config: ConfigOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the trials, the plot and best.toml."),
    ] = None,
    budget: Annotated[
        float,
        typer.Option("--budget", help="Seconds for the search (the final training comes after)."),
    ] = 600.0,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", help="Stop after this many trials.")
    ] = None,
    families: Annotated[
        str | None,
        typer.Option("--families", help="Comma-separated families to search (default: --model)."),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option("--prune/--no-prune", help="Stop trials that trail the median at an epoch."),
    ] = True,
    final: Annotated[
        bool,
        typer.Option(
            "--final/--no-final",
            help="Train the best config on the whole training part and evaluate the test "
            "part once (into OUT/final).",
        ),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a finished run in OUT/final.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per trial.")] = False,
    **fields: Any,
) -> None:
    """Tune a model's hyper-parameters with Optuna on an inner validation cut of the
    training part (the test part is never seen by the search).

    Writes OUT/trials.csv, OUT/trials.md, OUT/trials.png, OUT/tune.json and OUT/best.toml
    (run it with `recfit train --config OUT/best.toml`). Then, unless --no-final, trains
    the best config on the whole training part and evaluates the test part once
    (reported, never used to choose) into the run directory OUT/final. The seed (--seed)
    seeds the split, the models and the sampler.
    """
    with errors():
        if out is None:
            raise ConfigError("expected --out, a folder for the results, received none")
        cfg = _config(config, **fields)
        fams = [f.strip() for f in families.split(",") if f.strip()] if families else None
        task = get_task(cfg.task)
        data = task.read_data(cfg, None, None, None)
        split = task.load_split(cfg, data)
        what = ", ".join(fams) if fams else cfg.model
        _console.print(
            f"tuning [bold]{what}[/bold] on [bold]{cfg.dataset}[/bold] (split {split.name}, "
            f"seed {cfg.seed}): {len(split.train_idx):,} training rows, the "
            f"{len(split.test_idx):,} test rows held out; budget {budget:g} s"
            + (f", at most {n_trials} trials" if n_trials else "")
        )
        result = tune(
            cfg, split.train, budget_s=budget, n_trials=n_trials, seed=cfg.seed,
            families=fams, prune=prune, log=None if quiet else _log,
        )  # fmt: skip
        paths = result.write(out)
        if result.extra.get("interrupted"):
            _console.print("[yellow]interrupted:[/yellow] the search ended early on Ctrl-C")
        _console.print(_best_table(result))
        _console.print(
            f"{len(result.trials)} trials in {result.seconds:.0f} s "
            f"({', '.join(f'{n} {s}' for s, n in result.counts().items() if n)}; load average "
            f"{os.getloadavg()[0]:.2f}); best config: {paths['best.toml']}"
        )
        if not final:
            return
        run = train_run(result.best_config, out / "final", data=data, progress=False, force=force)
        _console.print(
            f"final: the best config trained on all {len(split.train_idx):,} training rows; "
            "the test part evaluated once (reported, not used to choose)"
        )
        _console.print(metrics_table(run.metrics, "test part"))
        summary = {
            **result.summary(),
            "final": {"run": str(out / "final"), "split": split.name, **run.metrics},
        }
        atomic_write(paths["tune.json"], json.dumps(summary, indent=2, default=str) + "\n")
        _console.print(f"run directory: {out / 'final'}")


def _log(line: str) -> None:
    _console.print(line, markup=False, highlight=False)


def _best_table(result: TuneResult[Any], n: int = 5) -> Table:
    """The ``n`` best complete trials (and the config's own values when not among them)."""
    sign = 1.0 if result.mode == "min" else -1.0
    done = sorted(
        (t for t in result.trials if t.state == "complete" and t.score is not None),
        key=lambda t: (sign * float(t.score or 0.0), t.number),
    )
    shown = done[:n] + [t for t in done[n:] if t.default]
    table = Table(title=f"best trials (inner {result.metric})", header_style="bold")
    for col in ("trial", "family", result.metric, "seconds", "settings"):
        table.add_column(col, justify="right" if col in ("trial", "seconds") else "left")
    for t in shown:
        settings = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
        )
        label = f"{t.number}" + (" (default)" if t.default else "")
        table.add_row(label, t.family, f"{t.score:.4f}", f"{t.seconds:.1f}", settings)
    return table


tune_command = _command(_tune, exclude=_OWN)
