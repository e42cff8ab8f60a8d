"""``GET /report`` serves the run's report.html only as a plain file inside the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recfit.data import Interactions
from recfit.models import create_model
from recfit.recommender import Recommender
from recfit.server.app import create_app


@pytest.fixture(scope="module")
def rec() -> Recommender:
    d = Interactions.from_arrays([1, 1, 2, 3], [10, 20, 10, 30], [5.0, 3.0, 4.0, 2.0])
    return Recommender(create_model("mf", d, n_factors=2), d.users, d.items, d)


def _get(rec: Recommender, report: Path) -> tuple[int, str]:
    app = create_app(rec, report_path=report, warm_up=False)
    with TestClient(app) as client:
        resp = client.get("/report")
    return resp.status_code, resp.text


def test_plain_report_is_served(rec: Recommender, tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("<html>the report</html>")
    status, text = _get(rec, tmp_path / "report.html")
    assert status == 200 and "the report" in text


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo", "missing"])
def test_report_that_is_not_a_plain_file_is_refused(
    kind: str, rec: Recommender, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET")
    run = tmp_path / "run"
    run.mkdir()
    report = run / "report.html"
    if kind == "symlink":
        os.symlink(secret, report)
    elif kind == "folder":
        report.mkdir()
    elif kind == "fifo":
        os.mkfifo(report)
    status, text = _get(rec, report)
    assert status == 404
    assert "SECRET" not in text
