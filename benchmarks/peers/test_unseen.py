"""Checks of ``benchmarks/bench_unseen.py``'s pure parts: resume, summary, prediction checks.

Run with ``.venv/bin/pytest benchmarks/peers/test_unseen.py -q -p no:randomly``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_unseen as bu


def _rec(data: str, seed: int, row: str, rmse: float, **extra: object) -> dict[str, object]:
    return {"data": data, "seed": seed, "row": row, "rmse": rmse, "wall": 2.0,
            "load_start": 1.5, "load_end": 2.5, **extra}  # fmt: skip


def test_resume_skips_finished_parts_and_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    bu.append(_rec("d", 0, "auto", 0.9), path)
    bu.append(_rec("d", 0, "x", 1.0, error="ValueError: boom"), path)
    bu.append(_rec("d", 1, "auto", 0.8), path)
    bu.append(_rec("d", 1, "auto", 0.7), path)  # a rerun of the same part: the last wins
    with path.open("a") as f:
        f.write('{"data": "d", "seed": 2, "ro')  # a line cut by a kill
    records = bu.load_records(path)
    assert sorted((bu.key(r), r["rmse"]) for r in records) == [
        (("d", 0, "auto"), 0.9), (("d", 0, "x"), 1.0), (("d", 1, "auto"), 0.7),
    ]  # fmt: skip
    wanted = [("d", s, r) for s in (0, 1, 2) for r in ("auto", "x")]
    assert bu.todo(wanted, records, retry_errors=False) == [("d", 1, "x"), ("d", 2, "auto"),
                                                            ("d", 2, "x")]  # fmt: skip
    assert bu.todo(wanted, records, retry_errors=True) == [("d", 0, "x"), ("d", 1, "x"),
                                                           ("d", 2, "auto"), ("d", 2, "x")]  # fmt: skip
    assert bu.load_records(tmp_path / "absent.jsonl") == []


def test_summary_interval_and_paired_difference() -> None:
    recs = [_rec("d", s, "auto", a) for s, a in enumerate([0.80, 0.82, 0.81])]
    recs += [_rec("d", s, "y", b) for s, b in enumerate([0.83, 0.86, 0.84])]
    recs += [_rec("d", 0, "z", 0.79)]  # one seed only: paired over that seed
    recs += [_rec("d", 1, "w", 0.0, error="boom")]
    out = bu.summarise(recs)["d"]
    y = out["rows"]["y"]
    sd = float(np.std([0.83, 0.86, 0.84], ddof=1))
    assert y["mean"] == pytest.approx(0.8433333)
    assert y["high"] - y["mean"] == pytest.approx(4.303 * sd / np.sqrt(3))
    diffs = np.array([0.80, 0.82, 0.81]) - np.array([0.83, 0.86, 0.84])
    half = 4.303 * float(np.std(diffs, ddof=1)) / np.sqrt(3)
    assert y["paired"] == pytest.approx([diffs.mean(), diffs.mean() - half, diffs.mean() + half])
    assert y["paired_seeds"] == [0, 1, 2]
    z = out["rows"]["z"]
    assert z["paired_seeds"] == [0] and z["paired"] == pytest.approx([0.01, 0.01, 0.01])
    assert out["errors"] == [{"seed": 1, "row": "w", "error": "boom"}]
    assert out["rows"]["auto"]["load"] == [1.5, 2.5]
    md = bu.markdown(bu.summarise(recs))
    assert "| z | 0 | 0.7900 [0.7900, 0.7900] | +0.0100 [+0.0100, +0.0100] |" in md
    assert "best other row z 0.7900" in md and "FAILED: w seed 1: boom" in md
    assert "below zero (default better) against 1 and above zero against 0 of the 1 other" in md
    assert bu.summarise(recs, "auto-new,auto")["d"]["default"] == "auto"  # the first present


def test_prediction_checks_count_outside_and_clip() -> None:
    c = bu.pred_checks(np.array([0.2, 2.5, np.nan, 6.0]), np.array([0.5, 2.5, 3.0, 5.0]),
                       (0.5, 5.0))  # fmt: skip
    assert (c["n_outside"], c["n_nonfinite"], c["pred_min"], c["pred_max"]) == (2, 1, 0.2, 6.0)
    ok = bu.pred_checks(np.array([0.5, 5.0]), np.array([1.0, 5.0]), (0.5, 5.0))
    assert ok["n_outside"] == 0 and ok["rmse_clipped"] == pytest.approx(ok["rmse_check"])


def test_records_are_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    bu.append(_rec("d", 0, "auto", 0.9), path)
    assert json.loads(path.read_text().splitlines()[0])["row"] == "auto"


def test_doctests() -> None:
    import doctest

    assert doctest.testmod(bu).failed == 0


def test_plot_writes_a_png(tmp_path: Path) -> None:
    recs = [_rec(d, s, r, 0.8 + 0.01 * s + (r == "x") * 0.02)
            for d in ("a", "b") for s in (0, 1) for r in ("auto", "x")]  # fmt: skip
    bu.plot(bu.summarise(recs), tmp_path / "u.png")
    assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"


def test_run_resumes_and_names_auto_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        time_offset = None
        n_users = n_items = 3

        def __len__(self) -> int:
            return 9

    calls: list[tuple[str, int, str]] = []

    def fake_run(data: object, name: str, seed: int, row: str, fields: dict) -> dict:
        calls.append((name, seed, row))
        return _rec(name, seed, row, 0.9, pred_min=1.0, pred_max=5.0, n_outside=0, n_fallback=0)

    monkeypatch.setattr(bu, "build", lambda name, data_dir: Fake())
    monkeypatch.setattr(bu, "recfit_rows", lambda has_time, auto_row: {auto_row: {}, "x": {}})
    monkeypatch.setattr(bu, "SURPRISE", ())
    monkeypatch.setattr(bu, "run_recfit", fake_run)
    path = tmp_path / "u.jsonl"
    argv = ["run", "--data", "a,b", "--seeds", "0,1", "--jsonl", str(path)]
    assert bu.main(argv) == 0
    assert len(calls) == 8 and calls[0] == ("a", 0, "auto")
    assert bu.main(argv) == 0 and len(calls) == 8  # all finished: nothing runs again
    assert bu.main([*argv, "--auto-row", "auto@new"]) == 0
    assert calls[8:] == [("a", 0, "auto@new"), ("b", 0, "auto@new"), ("a", 1, "auto@new"),
                         ("b", 1, "auto@new")]  # fmt: skip
    summary = bu.summarise(bu.load_records(path), "auto@new,auto")
    assert summary["a"]["default"] == "auto@new"
    assert summary["a"]["rows"]["auto"]["paired"] == pytest.approx([0.0, 0.0, 0.0])
    assert "best other row x" in bu.markdown(summary)  # auto's other row is not a peer
    assert bu.main([*argv, "--stop-at", "0", "--auto-row", "auto@later"]) == 0
    assert len(calls) == 12  # past the stop time: nothing starts


def test_table_on_common_seeds_and_more_seeds_listed() -> None:
    recs = [_rec("d", s, "auto", 0.80 + 0.01 * s) for s in range(4)]
    recs += [_rec("d", s, "y", 0.82 + 0.01 * s) for s in range(4)]
    recs += [_rec("d", s, "z", 0.90) for s in range(3)]
    main = bu.summarise(bu.on_common_seeds(recs))
    assert main["d"]["rows"]["y"]["seeds"] == [0, 1, 2]
    md = bu.markdown(main, bu.summarise(recs))
    assert "- y: seeds 0,1,2,3, " in md and "over seeds 0,1,2,3" in md
    assert "- z:" not in md
