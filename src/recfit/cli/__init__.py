"""The ``recfit`` command line: thin commands over the Python API."""

from __future__ import annotations

import typer

from recfit.cli import train as _train
from recfit.cli.demo import demo
from recfit.cli.data import app as data_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="recfit",
    help="Train, evaluate and serve recommender models on rating data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo)
app.add_typer(data_app, name="data")
app.command("train")(_train.train)
app.command("evaluate")(_train.evaluate)
app.command("lr-find")(_train.lr_find)


def main() -> None:
    """Entry point of the ``recfit`` console script."""
    app()
