"""The ``recfit`` command line: thin commands over the Python API."""

from __future__ import annotations

from typing import Annotated

import typer

from recfit._version import __version__
from recfit.cli import compare as _compare
from recfit.cli import config as _config
from recfit.cli import query as _query
from recfit.cli import serve as _serve
from recfit.cli import train as _train
from recfit.cli import tune as _tune
from recfit.cli.data import app as data_app
from recfit.cli.demo import demo

__all__ = ["app", "main"]

app = typer.Typer(
    name="recfit",
    help="Train, evaluate and serve recommender models on rating data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recfit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Train, evaluate and serve recommender models on rating data."""


app.command("demo")(demo)
app.add_typer(data_app, name="data")
app.command("train")(_train.train)
app.command("evaluate")(_train.evaluate)
app.command("lr-find")(_train.lr_find)
app.command("tune")(_tune.tune_command)
app.add_typer(_config.app, name="config")
app.command("compare")(_compare.compare)
app.command("recommend")(_query.recommend)
app.command("similar")(_query.similar)
app.command("predict")(_query.predict)
app.command("serve")(_serve.serve)
app.command("report")(_serve.report)


def main() -> None:
    """Entry point of the ``recfit`` console script."""
    app()
