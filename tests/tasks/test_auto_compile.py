"""model="auto" compiles its families' kernels before its budget's clock, reported apart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from recfit.config import RatingConfig
from recfit.config.rating import searched_families
from recfit.data.synthetic import synthetic
from recfit.tasks import auto
from recfit.tasks.common import get_task


def test_the_kernel_compile_is_done_before_the_clock_and_reported_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def slow_compile(names: list[str], rows: int | None = None, **where: Any) -> float:
        time.sleep(0.3)  # a cold cache's compile, in small
        seen.update(names=list(names), rows=rows, where=where, done=time.perf_counter())
        return 12.5

    monkeypatch.setattr(auto, "compile_families", slow_compile)
    cfg = RatingConfig(seed=0, budget=1e-9)  # no candidate runs: the search is instant
    sp = get_task("rating").load_split(cfg, synthetic(600, 40, 30, seed=0))
    _, report, _ = auto.choose_model(cfg, sp)
    returned = time.perf_counter()
    assert seen["names"] == [f.name for f in searched_families()]
    assert seen["rows"] == len(sp.train_idx)
    assert report.compile_seconds == 12.5
    assert report.as_dict()["compile_seconds"] == 12.5
    # the search's clock started after the compile ended
    assert report.seconds <= returned - seen["done"]
    assert report.as_dict()["search_seconds"] <= round(returned - seen["done"], 3) + 1e-3


def test_the_report_has_the_compile_seconds_of_the_real_warm_up() -> None:
    cfg = RatingConfig(seed=0, budget=1e-9)
    sp = get_task("rating").load_split(cfg, synthetic(600, 40, 30, seed=0))
    _, report, _ = auto.choose_model(cfg, sp)
    assert report.as_dict()["compile_seconds"] >= 0.0
