"""Run directories: one lock, refusal of finished runs, publication as one unit, the
config written first, file modes from the umask, and evaluation that refuses rows the run
trained on."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.errors import EvaluationOverlapError, RunDirectoryError
from recfit.recommender import Recommender
from recfit.runs import (
    evaluate_run,
    run_config,
    run_lock,
    run_state,
    train_run,
    write_run,
)
from recfit.tasks.common import count_overlap
from recfit.train.callbacks import Callback


def _cfg(csv: Path, **kw: Any) -> RatingConfig:
    base: dict[str, Any] = dict(dataset=str(csv), epochs=1, bs=32, n_factors=4, seed=1, budget=0)
    return RatingConfig(**{**base, **kw})


@pytest.fixture
def csv(tmp_path: Path, tiny: Interactions) -> Path:
    p = tmp_path / "r.csv"
    tiny.to_frame().to_csv(p, index=False)
    return p


def _seeds(run: Path) -> dict[str, int]:
    """The seed each part of a run directory says it came from."""
    out = {"config": json.loads((run / "config.json").read_text())["seed"]}
    if (run / "metrics.json").exists():
        out["metrics"] = json.loads((run / "metrics.json").read_text())["details"]["seed"]
    if (run / "bundle").exists():
        out["bundle"] = json.loads((run / "bundle" / "recommender.json").read_text())["config"][
            "seed"
        ]
    return out


# ------------------------------------------------------------------ refusing and locking
def test_out_refuses_a_finished_run_unless_force(tmp_path: Path, csv: Path) -> None:
    out = tmp_path / "run"
    train_run(_cfg(csv), out, progress=False)
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(RunDirectoryError, match=r"finished run .*--force"):
        train_run(_cfg(csv, seed=2), out, progress=False)
    assert (out / "metrics.json").read_bytes() == before  # untouched
    assert run_state(out) == "finished"
    train_run(_cfg(csv, seed=2), out, progress=False, force=True)
    assert set(_seeds(out).values()) == {2}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.") and
                not p.name.endswith(".lock")]  # fmt: skip


def test_out_refuses_a_folder_that_is_not_a_run(tmp_path: Path, csv: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(RunDirectoryError, match="other files"):
            train_run(_cfg(csv), out, progress=False, force=force)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_locked_run_directory_is_refused(tmp_path: Path, csv: Path) -> None:
    out = tmp_path / "run"
    # as another process would hold it (flock: per open file description)
    with run_lock(out), pytest.raises(RunDirectoryError, match="locked by process"):
        train_run(_cfg(csv), out, progress=False)
    assert run_state(out) == "absent"
    train_run(_cfg(csv), out, progress=False)  # released on exit
    assert run_state(out) == "finished"


def test_the_lock_is_released_by_an_exception(tmp_path: Path, csv: Path) -> None:
    out = tmp_path / "run"

    class Boom(Callback):
        def before_fit(self) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_run(_cfg(csv), out, progress=False, callbacks=[Boom()])
    with run_lock(out):
        pass


# ------------------------------------------------------------------ publication
class _Full:
    """``Recommender.save`` failing as on a full disk."""

    def __call__(self, *_a: Any, **_k: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_publishing_leaves_no_mixed_run(
    tmp_path: Path, csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    train_run(_cfg(csv, seed=1), out, progress=False)
    monkeypatch.setattr(Recommender, "save", _Full())
    with pytest.raises(OSError, match="No space"):
        train_run(_cfg(csv, seed=2), out, progress=False, force=True)
    monkeypatch.undo()
    # the new run is unfinished (its config and checkpoint), with nothing of the old run
    assert run_state(out) == "unfinished"
    assert _seeds(out) == {"config": 2}
    assert not (out / "bundle").exists() and not (out / "metrics.json").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # and it can be finished from its checkpoint
    cfg = run_config(out)
    train_run(cfg, out, progress=False, resume=True)
    assert set(_seeds(out).values()) == {2} and run_state(out) == "finished"


def test_a_new_run_deletes_what_a_killed_one_left(tmp_path: Path, csv: Path) -> None:
    for name in (".run.tmp-abc", ".run.old-def", ".other.tmp-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text("{}")
    train_run(_cfg(csv), tmp_path / "run", progress=False)
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden == [".other.tmp-x", ".run.lock"]


def test_write_run_refuses_a_run_and_publishes_whole(tmp_path: Path, csv: Path) -> None:
    res = train_run(_cfg(csv), progress=False)
    out = tmp_path / "w"
    write_run(res, out)
    with pytest.raises(RunDirectoryError):
        write_run(res, out)
    write_run(res, out, force=True)
    assert run_state(out) == "finished"


# ------------------------------------------------------------------ config first, resume
def test_config_is_written_first_and_resume_before_a_checkpoint_works(
    tmp_path: Path, csv: Path
) -> None:
    out = tmp_path / "run"

    class Killed(Callback):  # dies before the first checkpoint, as SIGKILL would
        order = 1

        def before_fit(self) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(_cfg(csv, seed=3), out, progress=False, callbacks=[Killed()])
    assert (out / "config.json").exists() and not (out / "checkpoint.safetensors").exists()
    assert run_state(out) == "unfinished"
    with pytest.raises(RunDirectoryError, match="--resume"):
        train_run(_cfg(csv, seed=3), out, progress=False)
    cfg = run_config(out)
    assert cfg.seed == 3
    res = train_run(cfg, out, progress=False, resume=True)
    assert run_state(out) == "finished" and _seeds(out)["bundle"] == 3
    ref = train_run(_cfg(csv, seed=3), progress=False)
    assert res.metrics["mse"] == ref.metrics["mse"]
    with pytest.raises(RunDirectoryError, match="finished run"):
        train_run(cfg, out, progress=False, resume=True)


# ------------------------------------------------------------------ file modes
@pytest.fixture
def umask() -> Iterator[Any]:
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755),
                                                             (0o077, 0o600, 0o700)])  # fmt: skip
def test_files_respect_the_umask(
    tmp_path: Path, csv: Path, umask: Any, mask: int, file_mode: int, dir_mode: int
) -> None:
    umask(mask)
    out = tmp_path / "run"
    train_run(_cfg(csv), out, progress=False)
    for name in ("config.json", "metrics.json", "report.html", "history.csv",
                 "checkpoint.safetensors", "bundle/manifest.json", "bundle/model.safetensors"):  # fmt: skip
        assert stat.S_IMODE((out / name).stat().st_mode) == file_mode, name
    for d in (out, out / "bundle"):
        assert stat.S_IMODE(d.stat().st_mode) == dir_mode, d


# ------------------------------------------------------------------ evaluation overlap
def test_seen_items_are_exactly_the_training_rows(tmp_path: Path, csv: Path) -> None:
    res = train_run(_cfg(csv), tmp_path / "run", progress=False)
    rec = Recommender.load(tmp_path / "run")
    ip, ix = rec.seen.indptr, rec.seen.indices
    seen = {(u, int(i)) for u in range(rec.n_users) for i in ix[ip[u] : ip[u + 1]]}
    tr = res.split.train
    assert seen == set(zip(tr.user.tolist(), tr.item.tolist(), strict=True))


def test_evaluating_another_split_refuses_training_rows(tmp_path: Path, csv: Path) -> None:
    out = tmp_path / "run"
    res = train_run(_cfg(csv), out, progress=False)
    own = evaluate_run(out)
    assert own.n_overlap == 0 and own.metrics["mse"] == pytest.approx(res.metrics["mse"])
    with pytest.raises(EvaluationOverlapError, match="training rows") as info:
        evaluate_run(out, "random:0.2", seed=7)
    other = evaluate_run(out, "random:0.2", seed=7, allow_overlap=True)
    # brute force: pairs of the other split's test part that were training rows
    from recfit.data.sources import split_dataset

    sp = split_dataset(res.split.data, "random:0.2", seed=7)
    train_pairs = set(zip(res.split.train.user.tolist(), res.split.train.item.tolist(),
                          strict=True))  # fmt: skip
    expected = sum((u, i) in train_pairs for u, i in zip(sp.test.user.tolist(),
                                                         sp.test.item.tolist(), strict=True))  # fmt: skip
    assert info.value.n_overlap == other.n_overlap == expected > 0
    assert info.value.n_rows == len(sp.test)
    assert evaluate_run(out, part="train").n_overlap == len(res.split.train)


def test_count_overlap_ignores_weight_zero_rows() -> None:
    from recfit.index import ItemSets

    seen = ItemSets.from_pairs([0, 0, 1], [0, 1, 1], n_queries=2)
    rows = Interactions.from_arrays([0, 0, 1, 1], [0, 1, 0, 1], [1.0, 2.0, 3.0, 4.0],
                                    weight=[1.0, 0.0, 1.0, 2.0])  # fmt: skip
    assert count_overlap(seen, rows) == 2


def test_out_may_be_the_current_folder(
    tmp_path: Path, csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    train_run(_cfg(csv), ".", progress=False)
    monkeypatch.chdir(here)  # the folder this process was in was swapped for the run
    train_run(_cfg(csv, seed=2), ".", progress=False, force=True)
    assert set(_seeds(tmp_path / "here").values()) == {2}


# ------------------------------------------------------------------ reading run files
def _secret_config(tmp_path: Path) -> Path:
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps({"dataset": "SECRET-DATASET", "model": "dot"}))
    return secret


def test_symlinked_config_json_is_refused_not_followed(tmp_path: Path) -> None:
    """A run's config.json that is a symbolic link is a typed error, not the target's
    content (run_config, load_run and the report read run files alike)."""
    from recfit.errors import BundleError
    from recfit.report import render_report
    from recfit.runs import load_run, read_run_json

    run = tmp_path / "run"
    run.mkdir()
    os.symlink(_secret_config(tmp_path), run / "config.json")
    for read in (run_config, load_run, render_report, lambda r: read_run_json(r, "config.json")):
        with pytest.raises(BundleError, match="symbolic link"):
            read(run)


@pytest.mark.parametrize("name", ["metrics.json", "history.csv", "losses.png", "extra.png"])
def test_report_refuses_symlinked_run_files(tmp_path: Path, name: str) -> None:
    from recfit.errors import BundleError
    from recfit.report import render_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"dataset": "ml-100k", "model": "dot"}))
    os.symlink(_secret_config(tmp_path), run / name)
    with pytest.raises(BundleError, match="symbolic link"):
        render_report(run)


def test_symlinked_checkpoint_is_refused(tmp_path: Path) -> None:
    from recfit.errors import CheckpointError
    from recfit.train.checkpoint import read_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "other.safetensors").write_bytes(b"\0" * 16)
    os.symlink(tmp_path / "other.safetensors", run / "checkpoint.safetensors")
    with pytest.raises(CheckpointError, match="symbolic link"):
        read_checkpoint(run)


def test_test_file_overlap_ignores_weight_zero_rows(tmp_path: Path) -> None:
    """A --train/--test pair that is in both files only with weight 0 on one side is not
    a training row (as count_overlap counts); a weighted one still is refused."""
    from recfit.tasks.common import load_split

    tr, te = tmp_path / "train.csv", tmp_path / "test.csv"
    tr.write_text("user,item,rating,w\n1,10,4,0\n1,11,3,1\n2,10,5,1\n2,11,2,1\n")
    te.write_text("user,item,rating,w\n1,10,5,1\n2,11,1,0\n")
    cfg = RatingConfig(dataset=str(tr), test_file=str(te), split="file", weight_col="w")
    sp = load_split(cfg)
    assert len(sp.test) == 2
    te.write_text("user,item,rating,w\n1,11,5,1\n")
    with pytest.raises(EvaluationOverlapError) as err:
        load_split(cfg)
    assert (err.value.n_overlap, err.value.n_rows) == (1, 1)
