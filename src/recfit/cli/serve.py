"""``recfit serve`` (HTTP API and web page) and ``recfit report`` (a run's report.html)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from recfit.cli.common import errors
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


def serve(
    run: RunArg,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8000,
    torch_threads: Annotated[
        int, typer.Option("--torch-threads", help="Threads torch may use per request.")
    ] = 1,
    max_body_kb: Annotated[
        int, typer.Option("--max-body-kb", help="Largest request body (KiB); larger get 413.")
    ] = 256,
    build_report: Annotated[
        bool,
        typer.Option("--report/--no-report", help="Build report.html when the run lacks one."),
    ] = True,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    workers: Annotated[
        int, typer.Option("--workers", help="Server processes (each loads the model).")
    ] = 1,
    header_timeout: Annotated[
        float,
        typer.Option("--header-timeout", help="Seconds for a request's headers; then closed."),
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option("--body-timeout", help="Seconds for a request's body; then 408.")
    ] = 15.0,
    keep_alive: Annotated[
        int, typer.Option("--keep-alive", help="Seconds an idle keep-alive connection stays.")
    ] = 5,
    work_threads: Annotated[
        int, typer.Option("--work-threads", help="Workers for the heavy endpoints.")
    ] = 2,
    work_processes: Annotated[
        bool,
        typer.Option(
            "--work-processes/--work-in-threads",
            help="Heavy work in forked processes (default where fork exists), so that it "
            "never holds the lock /health needs; or in threads.",
        ),
    ] = True,
    work_queue: Annotated[
        int, typer.Option("--work-queue", help="Heavy requests that may wait; more get 429.")
    ] = 16,
    request_budget: Annotated[
        float,
        typer.Option("--request-budget", help="Seconds a heavy request may take; then 503."),
    ] = 10.0,
) -> None:
    """Serve a run over HTTP: JSON API (schema at /openapi.json), web page at /, report at
    /report."""
    import torch
    import uvicorn  # optional: recfit[serve] (uvicorn, fastapi)

    from recfit.server import create_app
    from recfit.server.transport import GuardedH11Protocol, serve_config

    with errors():
        if not 0 <= port <= 65535:
            raise ConfigError(f"expected --port in 0..65535, received {port}")
        if torch_threads < 1:
            raise ConfigError(f"expected --torch-threads >= 1, received {torch_threads}")
        if workers < 1:
            raise ConfigError(f"expected --workers >= 1, received {workers}")
        if max_body_kb < 1:
            raise ConfigError(f"expected --max-body-kb >= 1, received {max_body_kb}")
        for flag, value in (
            ("--header-timeout", header_timeout),
            ("--body-timeout", body_timeout),
            ("--keep-alive", keep_alive),
            ("--work-threads", work_threads),
            ("--request-budget", request_budget),
        ):
            if not value > 0:
                raise ConfigError(f"expected {flag} > 0, received {value}")
        if work_queue < 0:
            raise ConfigError(f"expected --work-queue >= 0, received {work_queue}")
        torch.set_num_threads(torch_threads)
        rec = Recommender.load(run)
        report_path = _report_for(run, build_report) if run.is_dir() else None
        app = create_app(
            rec,
            report_path=report_path,
            max_body_bytes=max_body_kb * 1024,
            body_timeout_s=body_timeout,
            work_threads=work_threads,
            work_queue=work_queue,
            request_budget_s=request_budget,
            work_processes=work_processes and "fork" in multiprocessing.get_all_start_methods(),
        )
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        _console.print(
            f"serving [bold]{rec.family}[/bold] ({rec.n_users:,} users, {rec.n_items:,} items) "
            f"on http://{shown}:{port}/ (API schema /openapi.json"
            f"{', report /report' if report_path else ''}); Ctrl+C stops"
        )
        if workers == 1:
            config = serve_config(
                app,
                host=host,
                port=port,
                header_timeout_s=header_timeout,
                keep_alive_s=keep_alive,
                log_level=log_level,
            )
            uvicorn.Server(config).run()
            return
        # several processes: each rebuilds the app from the environment
        os.environ["RECFIT_SERVE_RUN"] = str(run.resolve())
        os.environ["RECFIT_SERVE_REPORT"] = "" if report_path is None else str(report_path)
        os.environ["RECFIT_SERVE_MAX_BODY"] = str(max_body_kb * 1024)
        os.environ["RECFIT_SERVE_TORCH_THREADS"] = str(torch_threads)
        os.environ["RECFIT_SERVE_HEADER_TIMEOUT"] = str(header_timeout)
        os.environ["RECFIT_SERVE_BODY_TIMEOUT"] = str(body_timeout)
        os.environ["RECFIT_SERVE_WORK_THREADS"] = str(work_threads)
        os.environ["RECFIT_SERVE_WORK_QUEUE"] = str(work_queue)
        os.environ["RECFIT_SERVE_REQUEST_BUDGET"] = str(request_budget)
        os.environ["RECFIT_SERVE_WORK_PROCESSES"] = "1" if work_processes else "0"
        del app, rec
        uvicorn.run(
            "recfit.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            http=GuardedH11Protocol,
            ws="none",
            timeout_keep_alive=keep_alive,
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
