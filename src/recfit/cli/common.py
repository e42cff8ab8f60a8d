"""What every command shares: turning recfit errors into one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from recfit.errors import RecfitError

__all__ = ["errors"]


@contextmanager
def errors() -> Iterator[None]:
    """Turn recfit errors (and file-system errors) into one red line on stderr, exit code 2."""
    try:
        yield
    except RecfitError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
