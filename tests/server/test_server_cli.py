"""``recfit serve`` (as a subprocess on loopback) and ``recfit report``; the worker factory."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import RatingConfig
from recfit.data.synthetic import synthetic
from recfit.errors import ConfigError
from recfit.runs import train_run
from recfit.server.app import ENV_SETTINGS, app_from_env, env_for
from recfit.server.transport import HEADER_TIMEOUT_ENV

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    data = synthetic(3000, 60, 50, with_features=True, seed=4)
    cfg = RatingConfig(epochs=1, n_factors=4, seed=0, budget=0)  # auto by size, no search
    train_run(cfg, out, data=data, progress=False)
    return out


def test_report_command(run_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "<h2>Metrics</h2>" in (tmp_path / "r.html").read_text()
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "expected a run directory" in res.output


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--port", "70000"], "--port"),
        (["--torch-threads", "0"], "--torch-threads"),
        (["--workers", "0"], "--workers"),
        (["--max-body-kb", "0"], "--max-body-kb"),
        (["--header-timeout", "0"], "--header-timeout"),
        (["--body-timeout", "-1"], "--body-timeout"),
        (["--keep-alive", "0"], "--keep-alive"),
        (["--work-threads", "0"], "--work-threads"),
        (["--work-queue", "-1"], "--work-queue"),
        (["--request-budget", "0"], "--request-budget"),
    ],
)
def test_serve_rejects_bad_options(run_dir: Path, flags: list[str], needle: str) -> None:
    res = runner.invoke(app, ["serve", str(run_dir), *flags])
    assert res.exit_code == 2 and needle in res.output


def test_serve_missing_run(tmp_path: Path) -> None:
    res = runner.invoke(app, ["serve", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "expected a bundle" in res.output


def test_serve_subprocess_builds_report(run_dir: Path, serve_process: Any) -> None:
    with serve_process(run_dir, timeout=60) as url:
        health = httpx.get(url + "/health", timeout=2).json()
        assert health["report"] is True and (run_dir / "report.html").is_file()
        assert httpx.get(url + "/report").status_code == 200
        assert httpx.get(url + "/recommend", params={"user": 1, "n": 3}).status_code == 200


def test_app_from_env(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECFIT_SERVE_RUN", raising=False)
    with pytest.raises(ConfigError, match="RECFIT_SERVE_RUN"):
        app_from_env()
    monkeypatch.setenv("RECFIT_SERVE_RUN", str(run_dir))
    monkeypatch.setenv("RECFIT_SERVE_MAX_BODY", "100")
    monkeypatch.setenv("RECFIT_SERVE_WORK_PROCESSES", "1")
    monkeypatch.setenv("RECFIT_SERVE_BODY_TIMEOUT", "3")
    served = app_from_env()
    assert served.state.pool.processes is ("fork" in multiprocessing.get_all_start_methods())
    with TestClient(served) as c:
        assert c.get("/health").json()["report"] is False
        assert (
            c.post("/recommend", json={"ratings": [{"item": 1, "rating": 3}] * 9}).status_code
            == 413
        )


def test_env_for_round_trips_through_app_from_env(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``recfit serve --workers N`` writes is what each worker's factory reads."""
    settings = {
        "report_path": None,
        "max_body_bytes": 2048,
        "body_timeout_s": 4.5,
        "work_threads": 3,
        "work_queue": 0,
        "request_budget_s": 7.0,
        "work_processes": False,
    }
    env = env_for(run_dir, 1, 3.5, **settings)
    assert env["RECFIT_SERVE_RUN"] == str(run_dir.resolve())
    assert env[HEADER_TIMEOUT_ENV] == "3.5"  # read by each worker's GuardedH11Protocol
    assert "RECFIT_SERVE_REPORT" not in env
    for var in [*env, *(v for v, _ in ENV_SETTINGS.values())]:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    served = app_from_env()
    pool = served.state.pool
    assert (pool.threads, pool.capacity, pool.budget_s, pool.processes) == (3, 3, 7.0, False)
    assert served.state.report_path is None
    with pytest.raises(ConfigError, match="expected a setting"):
        env_for(run_dir, nonsense=1)
