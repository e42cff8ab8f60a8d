"""``recfit serve`` (HTTP API and web page) and ``recfit report`` (a run's report.html)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console

from recfit.cli.common import Flag, errors, with_flags
from recfit.errors import ConfigError
from recfit.recommender import Recommender
from recfit.report import build_report

__all__ = ["report", "serve"]

_console = Console()

RunArg = Annotated[
    Path, typer.Argument(help="A run directory written by recfit train, or a bundle folder.")
]


def _report_for(run: Path, build: bool) -> Path | None:
    """The run's report.html, built first when it is missing and ``build`` is set."""
    path = run / "report.html"
    if path.is_file() or not build:
        return path if path.is_file() else None
    if not ((run / "config.json").is_file() or (run / "metrics.json").is_file()):
        return None  # a bare bundle folder: nothing to report on
    try:
        return build_report(run)
    except OSError as exc:  # a read-only run directory: serve without a report
        _console.print(f"[yellow]no report: {exc}[/yellow]")
        return None


SERVE_FLAGS = (
    Flag("host", str, "127.0.0.1", "Interface to listen on."),
    Flag("port", int, 8000, "TCP port (0: any free port).", least=0, most=65535),
    Flag("torch_threads", int, 1, "Threads torch may use per request.", least=1),
    Flag("max_body_kb", int, 256, "Largest request body (KiB); larger get 413.", least=1),
    Flag("build_report", bool, True, "Build report.html when the run lacks one.",
         decl="--report/--no-report"),
    Flag("log_level", str, "info", "uvicorn log level."),
    Flag("workers", int, 1, "Server processes (each loads the model).", least=1),
    Flag("header_timeout", float, 10.0, "Seconds for a request's headers; then closed.",
         positive=True),
    Flag("body_timeout", float, 15.0, "Seconds for a request's body; then 408.", positive=True),
    Flag("keep_alive", int, 5, "Seconds an idle keep-alive connection stays.", positive=True),
    Flag("work_threads", int, 2, "Workers for the heavy endpoints.", positive=True),
    Flag("work_processes", bool, True, "Heavy work in forked processes (default where fork "
         "exists), so that it never holds the lock /health needs; or in threads.",
         decl="--work-processes/--work-in-threads"),
    Flag("work_queue", int, 16, "Heavy requests that may wait; more get 429.", least=0),
    Flag("request_budget", float, 10.0, "Seconds a heavy request may take; then 503.",
         positive=True),
)  # fmt: skip
"""The options of ``recfit serve``, each checked before the run is loaded."""


@with_flags(SERVE_FLAGS, into="opts")
def serve(run: RunArg, opts: dict[str, Any]) -> None:
    """Serve a run over HTTP: JSON API (schema at /openapi.json), web page at /, report at
    /report."""
    import uvicorn  # optional: recfit[serve] (uvicorn, fastapi)

    from recfit.server import create_app
    from recfit.server.app import env_for
    from recfit.server.transport import GuardedH11Protocol, serve_config

    with errors():
        torch.set_num_threads(opts["torch_threads"])
        rec = Recommender.load(run)
        report_path = _report_for(run, opts["build_report"]) if run.is_dir() else None
        settings: dict[str, Any] = {
            "report_path": report_path,
            "max_body_bytes": opts["max_body_kb"] * 1024,
            "body_timeout_s": opts["body_timeout"],
            "work_threads": opts["work_threads"],
            "work_queue": opts["work_queue"],
            "request_budget_s": opts["request_budget"],
            "work_processes": opts["work_processes"]
            and "fork" in multiprocessing.get_all_start_methods(),
        }
        host, port, log_level = opts["host"], opts["port"], opts["log_level"]
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        _console.print(
            f"serving [bold]{rec.family}[/bold] ({rec.n_users:,} users, {rec.n_items:,} items) "
            f"on http://{shown}:{port}/ (API schema /openapi.json"
            f"{', report /report' if report_path else ''}); Ctrl+C stops"
        )
        if opts["workers"] == 1:
            config = serve_config(
                create_app(rec, **settings),
                host=host,
                port=port,
                header_timeout_s=opts["header_timeout"],
                keep_alive_s=opts["keep_alive"],
                log_level=log_level,
            )
            uvicorn.Server(config).run()
            return
        # several processes: each loads the run and builds the app from the environment
        os.environ.update(env_for(run, opts["torch_threads"], opts["header_timeout"], **settings))
        del rec
        uvicorn.run(
            "recfit.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=opts["workers"],
            log_level=log_level,
            http=GuardedH11Protocol,
            ws="none",
            timeout_keep_alive=opts["keep_alive"],
        )


def report(
    run: Annotated[Path, typer.Argument(help="A run directory written by recfit train.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write (default RUN/report.html).")
    ] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Length of the sample lists.")] = 10,
    users: Annotated[int, typer.Option("--users", help="Users with sample lists.")] = 3,
) -> None:
    """Write a self-contained report.html for a run (config, metrics vs reference, plots)."""
    with errors():
        if n < 1 or users < 0:
            raise ConfigError(f"expected --n >= 1 and --users >= 0, received {n} and {users}")
        path = build_report(run, out=out, n_users=users, n=n)
        _console.print(f"report: {path}")
