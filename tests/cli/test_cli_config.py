"""``recfit config show`` and the ``recfit train`` flags generated from the config schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import TASK_CONFIGS, load_config, validate_config
from recfit.config.schema import field_specs, shown_default
from recfit.models.registry import family

runner = CliRunner()


def _plain(text: str) -> str:
    """``--help`` without colour codes, box borders or line wrapping."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.sub(r"[│╭╮╰╯─]", " ", text)
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("task", "model"),
    [("rating", None), ("rating", "svdpp"), ("rating", "mf"), ("rating", "nn"),
     ("classification", None), ("retrieval", None)],
)  # fmt: skip
def test_config_show_round_trips_through_train_config(
    tmp_path: Path, task: str, model: str | None
) -> None:
    args = ["config", "show", "--task", task, *(["--model", model] if model else [])]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    p = tmp_path / "c.toml"
    p.write_text(res.output)
    cfg = load_config(p)
    want = validate_config({"task": task, **({"model": model} if model else {})})
    if model is not None:
        want = want.resolve_model(big=False)  # the family's defaults, shown as values
    assert cfg == want
    # the same run: what is decided at run time is still decided there
    for big in (False, True):
        a, b = cfg.resolve_model(big), want.resolve_model(big)
        assert a == b
        row_wise = big and family(a.model).row_wise  # as the rating task decides it
        assert a.resolve_opt(row_wise) == b.resolve_opt(row_wise)


def test_config_show_leaves_run_time_choices_to_the_run() -> None:
    res = runner.invoke(app, ["config", "show"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert 'model = "auto"' in lines and "bs = 0" in lines
    assert any(line.startswith("# epochs = 5") and "svdpp" in line for line in lines)
    assert any(line.startswith("# lr = 0.005") and "row-wise" in line for line in lines)
    svdpp = runner.invoke(app, ["config", "show", "--model", "svdpp"]).output.splitlines()
    assert "epochs = 6" in svdpp and "pct_start = 0.3" in svdpp  # the family's defaults


def test_config_show_refuses_a_model_of_another_task() -> None:
    res = runner.invoke(app, ["config", "show", "--task", "retrieval", "--model", "dot"])
    assert res.exit_code == 2 and "two_tower" in res.output
    res = runner.invoke(app, ["config", "show", "--task", "ranking"])
    assert res.exit_code == 2 and "expected task one of" in res.output


def test_train_help_has_one_flag_per_field_with_its_default() -> None:
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    text = _plain(res.output)
    renamed = {"timestamp_col": "--time-col", "test_file": "--test"}
    for spec in field_specs():
        flag = renamed.get(spec.name, "--" + spec.name.replace("_", "-"))
        assert flag in text, spec.name
    for name in ("epochs", "lr", "temperature", "head", "y_range"):
        assert f"[default: ({shown_default(name)})]" in text, name
    epochs = shown_default("epochs")  # the task's default, then what families and tasks bring
    assert epochs.startswith("5 (") and "svdpp: 6" in epochs and "retrieval: 30" in epochs
    assert "two_tower" in text and "classifier" in text  # the registry's families
    # every old flag name still exists
    for flag in ("--dataset", "-d", "--train", "--test", "--data-dir", "--columns", "--user-col",
                 "--item-col", "--rating-col", "--time-col", "--weight-col", "--task", "--model",
                 "--split", "--seed", "--epochs", "--lr", "--wd", "--reg", "--reg-exponent",
                 "--bs", "--n-factors", "--y-range", "--layers", "--schedule", "--trainer",
                 "--opt", "--patience", "--inner-valid", "--imbalance", "--head", "--objective",
                 "--positive-min-rating", "--relevant-min-rating", "--exclude-seen",
                 "--include-seen", "--eval-every", "--device", "--out", "--force", "--quiet",
                 "--resume", "--checkpoint-every", "--bf16", "--nproc", "--config"):  # fmt: skip
        assert flag in text, flag


def test_every_task_field_is_settable_from_the_command_line() -> None:
    """Each task's fields (but the format version) have a flag."""
    names = {s.name for s in field_specs()}
    for cls in TASK_CONFIGS.values():
        assert set(cls.model_fields) - {"version"} <= names


def test_new_flags_reach_the_config(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "-d", str(ratings_csv), "--task", "retrieval",
                              "--epochs", "1", "--bs", "64", "--n-bootstrap", "0",
                              "--eval-ks", "5,10", "--no-logq", "--user-features", "",
                              "--out", str(out), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["eval_ks"], saved["logq"], saved["n_bootstrap"]) == ([5, 10], False, 0)
    assert saved["user_features"] == []
    assert "recall@5" in json.loads((out / "metrics.json").read_text())


def test_a_flag_overrides_the_config_file_of_another_task(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('task = "retrieval"\nepochs = 3\n')
    res = runner.invoke(app, ["train", "--config", str(cfg), "--temperature", "0"])
    assert res.exit_code == 2 and "temperature" in res.output  # validated: > 0
    res = runner.invoke(app, ["train", "--config", str(cfg), "--head", "ordinal"])
    assert res.exit_code == 2 and "unknown key 'head'" in res.output


def test_nproc_forwards_generated_flags_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    from recfit.train import distributed

    seen: dict[str, Any] = {}

    def fake_launch(nproc: int, args: list[str]) -> int:
        seen.update(args=args)
        return 0

    monkeypatch.setattr(distributed, "launch", fake_launch)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    res = runner.invoke(app, ["train", "--nproc", "2", "--model", "dot", "--opt", "sgd",
                              "--layers", "8,4", "--no-bf16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    args = seen["args"]
    for flag, value in (("--model", "dot"), ("--opt", "sgd"), ("--layers", "8,4")):
        assert args[args.index(flag) + 1] == value
    assert "--no-bf16" in args


def test_a_closed_form_model_trains_from_the_command_line(
    tmp_path: Path, ratings_csv: Path
) -> None:
    from recfit.models.registry import families

    if "baseline" not in [f.name for f in families("rating")]:
        pytest.skip("no closed-form family registered")
    res = runner.invoke(app, ["train", "-d", str(ratings_csv), "--model", "baseline", "-q"])
    assert res.exit_code == 0, res.output
    assert "trainer closed_form" in res.output and "epochs" not in res.output
    res = runner.invoke(app, ["train", "-d", str(ratings_csv), "--model", "baseline",
                              "--epochs", "3"])  # fmt: skip
    assert res.exit_code == 2 and "epochs=3" in res.output
