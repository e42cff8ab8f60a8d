"""``recfit data``: inspect, split and synthesise rating data."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Inspect, split and synthesise rating data.", no_args_is_help=True)


@app.callback()
def _data() -> None:
    """Inspect, split and synthesise rating data."""
