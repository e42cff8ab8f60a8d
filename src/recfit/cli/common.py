"""What every command shares: turning recfit errors into one clear line, and options
declared once as data (:class:`Flag`, :func:`with_flags`)."""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape

from recfit.errors import ConfigError, RecfitError

__all__ = ["Flag", "cli_message", "errors", "with_flags"]

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


@dataclass(frozen=True)
class Flag:
    """One command-line option declared as data (see :func:`with_flags`).

    Args:
        name: the parameter's name (``max_body_kb``); the flag is ``--max-body-kb``
            unless ``decl`` names it (``"--report/--no-report"``).
        kind: ``int``, ``float``, ``str``, ``bool`` or an optional of one.
        default: its default value.
        help: the help text.
        decl: the flag's own declaration.
        least: the smallest value accepted.
        most: the largest value accepted.
        positive: only values above 0 are accepted.
    """

    name: str
    kind: Any
    default: Any
    help: str
    decl: str | None = None
    least: float | None = None
    most: float | None = None
    positive: bool = False

    @property
    def flag(self) -> str:
        """The option as typed (``--max-body-kb``)."""
        return (self.decl or "--" + self.name.replace("_", "-")).split("/")[0]

    def check(self, value: Any) -> None:
        """Raise :class:`~recfit.errors.ConfigError` for a value out of range.

        Example:
            >>> Flag("port", int, 8000, "TCP port.", least=0, most=65535).check(70000)
            Traceback (most recent call last):
            recfit.errors.ConfigError: expected --port in 0..65535, received 70000
        """
        if value is None or (self.least is None and self.most is None and not self.positive):
            return
        if self.positive and not value > 0:
            raise ConfigError(f"expected {self.flag} > 0, received {value}")
        low = -math.inf if self.least is None else self.least
        high = math.inf if self.most is None else self.most
        if not low <= value <= high:
            want = f">= {self.least:g}" if self.most is None else f"in {low:g}..{high:g}"
            raise ConfigError(f"expected {self.flag} {want}, received {value}")

    def parameter(self) -> inspect.Parameter:
        """The keyword parameter typer reads."""
        option = typer.Option(*([self.decl] if self.decl else []), help=self.help)
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.default,
            annotation=Annotated[self.kind, option],
        )


F = TypeVar("F", bound=Callable[..., Any])


def with_flags(flags: Sequence[Flag], into: str) -> Callable[[F], F]:
    """Add ``flags`` to a typer command: they follow its own parameters on the command
    line, their values are checked (:meth:`Flag.check`; an error is one red line, exit
    code 2), and the command receives them as one dict in its parameter ``into``.

    Example:
        >>> @with_flags([Flag("seed", int, 0, "Random seed.", least=0)], into="opts")
        ... def run(opts: dict[str, Any]) -> int:
        ...     return opts["seed"]
        >>> list(inspect.signature(run).parameters), run(seed=3)
        (['seed'], 3)
    """

    def wrap(command: F) -> F:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.name != into]  # fmt: skip
        added = [f.parameter() for f in flags]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name, f.default) for f in flags}
            with errors():
                for f in flags:
                    f.check(values[f.name])
            return command(*args, **kwargs, **{into: values})

        params = [*own, *added]
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return cast(F, run)

    return wrap
