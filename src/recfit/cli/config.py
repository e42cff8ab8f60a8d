"""``recfit config show``: a task's defaults as a config file ``recfit train --config`` reads."""

from __future__ import annotations

from typing import Annotated

import typer

from recfit.cli.common import errors
from recfit.config import TASK_CONFIGS, show_config
from recfit.models.registry import families

__all__ = ["app", "show"]

app = typer.Typer(help="Inspect training configs.", no_args_is_help=True)


@app.command("show")
def show(
    task: Annotated[str, typer.Option("--task", help=f"The task: {', '.join(TASK_CONFIGS)}.")] = (
        "rating"
    ),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A model family of the task (its defaults filled in): "
            + "; ".join(f"{f.task}: {f.name}" for f in families())
            + ". Default: the task's.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the resolved defaults of a task (and model) as TOML.

    Keys decided at run time (what model auto picks by data size, the row-wise
    optimiser's lr, wd and reg) are comments: `recfit train --config FILE` leaves them
    to the run, as if nothing had been given.
    """
    with errors():
        typer.echo(show_config(task, model), nl=False)
