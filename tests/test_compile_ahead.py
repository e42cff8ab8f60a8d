"""``recfit train`` starts the row-wise kernel's compile process only for a fit that may run
the kernel: the rating task's condition, read from the command line before torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from recfit import _compile_ahead, _row_path
from recfit.config import RatingConfig
from recfit.models.registry import families, family

DENSE = [  # each on the dense path or the GPU: no row-wise kernel
    ["train", "--model", "svdpp"],  # ml-100k, svdpp on the dense path
    ["train", "--budget", "0"],  # auto without a search on ml-100k: svdpp
    ["train", "--model", "dot"],  # ml-100k's DotBias 50 is under SPARSE_MIN_PARAMS
    ["train", "-d", "ml-1m", "--model", "svdpp"],
    ["train", "-d", "ml-1m", "--device", "cuda"],
    ["train", "-d", "ml-1m", "--trainer", "als"],
    ["train", "-d", "ml-1m", "--opt=sgd"],
    ["train", "-d", "ml-1m", "--loss", "mae"],
    ["train", "-d", "ml-1m", "--task", "classification"],
]
ROW_WISE = [
    ["train"],  # the default, auto's search: dot or mf tuned up to 256 factors on ml-100k
    ["train", "--budget", "30"],
    ["train", "-d", "ml-1m"],
    ["train", "--dataset=ml-25m", "--model", "mf", "--opt", "adam"],
    ["train", "--model", "dot", "--n-factors", "100"],  # ml-100k: 2,625 x 101 weights
    ["train", "-d", "ratings.csv"],  # a file's size is known only once it is read
    ["train", "-d", "ml-1m", "--device", "cpu", "-q", "--epochs", "3"],
]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    out: list[bool] = []
    monkeypatch.setattr(_compile_ahead, "start", lambda: out.append(True))
    monkeypatch.setattr(_compile_ahead, "free_cores", lambda: 2)
    monkeypatch.setattr(_compile_ahead, "_nvidia_driver", lambda: False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(_compile_ahead.ENV, raising=False)
    return out


@pytest.mark.parametrize("args", DENSE + ROW_WISE, ids=" ".join)
def test_a_dense_path_train_starts_no_child_and_a_row_wise_one_does(
    args: list[str], started: list[bool]
) -> None:
    _compile_ahead.start_for_command_line(["/venv/bin/recfit", *args], [])
    assert started == ([True] if args in ROW_WISE else [])


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_the_config_file_decides_under_the_flags(
    tmp_path: Path, suffix: str, started: list[bool]
) -> None:
    cfg = tmp_path / f"c{suffix}"
    if suffix == ".json":
        cfg.write_text('{"dataset": "ml-1m", "model": "svdpp"}')
    else:
        cfg.write_text('[train]\ndataset = "ml-1m"\nmodel = "svdpp"\n')
    for flags, expected in (([], []), (["--model", "dot"], [True]), (["-d", "ml-100k"], [])):
        started.clear()
        args = ["train", "--config", str(cfg), *flags]
        _compile_ahead.start_for_command_line(["/venv/bin/recfit", *args], [])
        assert started == expected, flags
    started.clear()  # an unreadable file: the defaults (the command reports the error)
    _compile_ahead.start_for_command_line(["recfit", "train", "--config", "nope.toml"], [])
    assert started == [True]  # auto's search on ml-100k
    started.clear()
    cfg.write_text('{"budget": 0}' if suffix == ".json" else "[train]\nbudget = 0\n")
    _compile_ahead.start_for_command_line(["recfit", "train", "--config", str(cfg)], [])
    assert started == []  # auto without a search on ml-100k: svdpp


def test_device_auto_counts_as_the_gpu_with_an_nvidia_driver(
    monkeypatch: pytest.MonkeyPatch, started: list[bool]
) -> None:
    monkeypatch.setattr(_compile_ahead, "_nvidia_driver", lambda: True)
    for device, expected in (("auto", []), ("cpu", [True])):
        started.clear()
        args = ["recfit", "train", "-d", "ml-1m", "--device", device]
        _compile_ahead.start_for_command_line(args, [])
        assert started == expected, device


def test_the_command_line_s_defaults_and_families_are_the_config_s() -> None:
    cfg = RatingConfig()
    assert {k: getattr(cfg, k) for k in _compile_ahead._DEFAULTS} == _compile_ahead._DEFAULTS
    rows = {f.name for f in families("rating") if f.row_wise}
    assert rows == _row_path.ROW_WISE_FAMILIES
    highs = {family(n).search["n_factors"].high for n in rows}
    assert highs == {_row_path.AUTO_MAX_FACTORS}


def test_auto_s_search_counts_the_largest_n_factors_it_may_tune() -> None:
    """ml-100k at 50 factors is under the row-wise size, at 256 over: auto with a search
    (the default budget, by size) may tune that far; without one (budget 0) it does not."""
    rows = _row_path.RELEASE_ROWS["ml-100k"]
    assert not _row_path.big(rows, 50) and _row_path.big(rows, _row_path.AUTO_MAX_FACTORS)
    kw = {"trainer": "sgd", "opt": "auto", "loss": "mse", "cpu": True, "rows": rows}
    assert _row_path.may_run_row_kernel(model="auto", **kw)
    assert _row_path.may_run_row_kernel(model="auto", budget=60.0, **kw)
    assert not _row_path.may_run_row_kernel(model="auto", budget=0.0, **kw)
    assert not _row_path.may_run_row_kernel(model="dot", budget=60.0, **kw)
