"""What every command shares: turning recfit errors into one clear line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from recfit.errors import RecfitError

__all__ = ["cli_message", "errors"]

_FLAGS = {
    "user": "--user-col",
    "item": "--item-col",
    "rating": "--rating-col",
    "timestamp": "--time-col",
    "weight": "--weight-col",
}


def cli_message(message: str) -> str:
    """A Python API message with its keyword hints in command-line form.

    Example:
        >>> cli_message("expected a user column 'user'; did you mean 'userId'? (pass user='userId')")
        "expected a user column 'user'; did you mean 'userId'? (pass --user-col 'userId')"
    """
    return re.sub(
        r"pass (user|item|rating|timestamp|weight)=('[^']*')",
        lambda m: f"pass {_FLAGS[m[1]]} {m[2]}",
        message,
    )


@contextmanager
def errors() -> Iterator[None]:
    """Turn recfit errors (and file-system errors) into one red line on stderr, exit code 2."""
    try:
        yield
    except RecfitError as exc:
        Console(stderr=True).print(
            f"[red]error:[/red] {escape(cli_message(str(exc)))}", soft_wrap=True
        )
        raise typer.Exit(2) from None
    except OSError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
