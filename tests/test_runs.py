from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfit.config import RatingConfig as TrainConfig
from recfit.data import Interactions
from recfit.data.synthetic import synthetic
from recfit.errors import BundleError
from recfit.metrics.rating import mse
from recfit.runs import load_run, train_run
from recfit.train import kernels
from recfit.train.learner import Learner


@pytest.fixture
def ratings_csv(tmp_path: Path, tiny: Interactions) -> Path:
    p = tmp_path / "ratings.csv"
    tiny.to_frame().rename(columns={"user": "uid", "item": "iid", "rating": "stars"}).to_csv(
        p, index=False
    )
    return p


def test_train_run_writes_a_complete_run_directory(tmp_path: Path, ratings_csv: Path) -> None:
    cfg = TrainConfig(dataset=str(ratings_csv), user_col="uid", item_col="iid", rating_col="stars",
                      epochs=3, bs=32, n_factors=4, y_range=(0.5, 5.5), seed=1,
                      budget=0)  # fmt: skip
    out = tmp_path / "run"
    res = train_run(cfg, out, progress=False)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.json", "history.csv", "losses.png", "schedule.png",
            "bundle", "report.html"} <= names  # fmt: skip
    assert not [n for n in names if n.startswith(".")], "no temporary files left"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mse", "rmse", "mae", "loss", "reg_loss", "fit_seconds"):
        assert key in metrics
    assert metrics["mse"] == pytest.approx(res.metrics["mse"])
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == 3 and "train_loss" in hist.columns and "valid_loss" in hist.columns
    # the run directory re-creates the same model and predictions
    cfg2, model, users, items = load_run(out)
    # small: model auto is svdpp, opt auto is adam
    assert cfg2 == res.config == cfg.resolve_model(big=False).resolve_opt(row_wise=False)
    assert (cfg.model, cfg.opt, cfg2.model, cfg2.opt) == ("auto", "auto", "svdpp", "adam")
    valid = res.split.test
    again = Learner(model, res.split.train, progress=False).predict(valid)
    assert np.allclose(again, res.learner.predict(valid))
    assert metrics["mse"] == pytest.approx(mse(again, valid.rating), rel=1e-6)
    assert users == res.split.data.users and items == res.split.data.items


def test_same_seed_same_numbers(ratings_csv: Path) -> None:
    cfg = TrainConfig(dataset=str(ratings_csv), user_col="uid", item_col="iid", rating_col="stars",
                      epochs=2, bs=32, n_factors=4, budget=0)  # fmt: skip
    a = train_run(cfg, progress=False).metrics
    b = train_run(cfg, progress=False).metrics
    a.pop("fit_seconds"), b.pop("fit_seconds")
    assert a == b


@pytest.mark.parametrize("model", ["mf", "nn"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "cyclic"])
def test_models_and_schedules(model: str, schedule: str, ratings_csv: Path) -> None:
    sizes = {"n_factors": 4} if model == "mf" else {"layers": (8,)}  # nn has no n_factors
    cfg = TrainConfig(dataset=str(ratings_csv), user_col="uid", item_col="iid", rating_col="stars",
                      epochs=2, bs=32, model=model, schedule=schedule, lr=1e-2, **sizes)  # fmt: skip
    res = train_run(cfg, progress=False)
    assert np.isfinite(res.metrics["mse"])
    assert res.learner.history[-1]["epoch"] == 1 or len(res.learner.history) == 2


def test_load_run_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="run directory"):
        load_run(tmp_path)


def test_auto_optimiser_is_row_wise_adagrad_for_large_tables(ratings_csv: Path) -> None:
    """``opt="auto"`` picks row-wise Adagrad and its defaults when the tables are large."""
    from recfit.tasks.common import batch_and_lr
    from recfit.tasks.rating import build_learner, fit_learner, resolve_config
    from recfit.train.sparse import RowAdagrad

    big = synthetic(3000, 2500, 2500, seed=0)  # (2500 + 2500) * 51 >= SPARSE_MIN_PARAMS
    cfg = TrainConfig(dataset="x", split="random:0.2", epochs=1, budget=0)
    resolved = resolve_config(cfg, big)
    assert (resolved.opt, resolved.lr, resolved.wd, resolved.reg) == ("adagrad", 0.03, 0.0, 0.02)
    given = resolve_config(TrainConfig(dataset="x", lr=0.01, reg=0.1), big)
    assert (given.opt, given.lr, given.reg) == ("adagrad", 0.01, 0.1)  # given values win
    assert resolve_config(TrainConfig(dataset="x", opt="adam"), big).opt == "adam"
    assert resolve_config(TrainConfig(dataset="x", trainer="als", model="mf"), big).opt == "adam"
    res = train_run(cfg, data=big, progress=False)
    assert res.config.opt == "adagrad" and isinstance(res.learner.opt, RowAdagrad)
    assert res.learner.compiled == kernels.available()
    # build_learner + fit_learner with the unresolved config: the picked optimiser's lr
    const = TrainConfig(dataset="x", epochs=1, schedule="constant")
    learn = fit_learner(build_learner(const, big, None, progress=False), const)
    assert isinstance(learn.opt, RowAdagrad)
    assert learn.lr == batch_and_lr(resolve_config(const, big), len(big))[1]
