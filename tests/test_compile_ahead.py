"""``recfit train`` starts the row-wise kernel's compile process only for a fit that may run
the kernel: the rating task's condition, read from the command line before torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from recfit import _compile_ahead, _row_path
from recfit.config import RatingConfig
from recfit.models.registry import families

DENSE = [  # each on the dense path or the GPU: no row-wise kernel
    ["train"],  # the default: auto on ml-100k, svdpp on the dense path
    ["train", "--model", "dot"],  # ml-100k's DotBias 50 is under SPARSE_MIN_PARAMS
    ["train", "-d", "ml-1m", "--model", "svdpp"],
    ["train", "-d", "ml-1m", "--device", "cuda"],
    ["train", "-d", "ml-1m", "--trainer", "als"],
    ["train", "-d", "ml-1m", "--opt=sgd"],
    ["train", "-d", "ml-1m", "--loss", "mae"],
    ["train", "-d", "ml-1m", "--task", "classification"],
]
ROW_WISE = [
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
    assert started == []


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
