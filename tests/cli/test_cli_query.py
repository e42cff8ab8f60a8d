from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recfit.cli import app
from recfit.config import RatingConfig, RetrievalConfig
from recfit.data import Interactions
from recfit.recommender import Recommender
from recfit.runs import train_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    u, i = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    keep = rng.random(u.shape) < 0.6
    r = rng.integers(1, 6, size=int(keep.sum())).astype(float)
    d = Interactions.from_arrays(u[keep] + 100, i[keep] + 1000, r, rating_scale=(1, 5))
    titles = [f"Film {k} (2000)" for k in range(d.n_items)]
    titles[0], titles[1], titles[2] = "Star Wars (1977)", "Same (1990)", "Same (1990)"
    d = dataclasses.replace(d, item_features=pd.DataFrame({"title": titles}))
    out = tmp_path_factory.mktemp("q") / "run"
    cfg = RatingConfig(dataset="synthetic", epochs=2, bs=32, n_factors=4, seed=0, budget=0)
    train_run(cfg, out, data=d, progress=False)
    return out


def test_run_directory_holds_a_bundle(run_dir: Path) -> None:
    assert (run_dir / "bundle" / "manifest.json").exists()
    rec = Recommender.load(run_dir)
    assert rec.title(1000) == "Star Wars (1977)" and rec.config is not None


def test_recommend_user(run_dir: Path) -> None:
    res = runner.invoke(app, ["recommend", str(run_dir), "--user", "100", "-n", "5"])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "top 5 for user 100" in flat and "seen excluded" in flat
    res = runner.invoke(app, ["recommend", str(run_dir), "--user", "100", "-n", "5", "--json"])
    data = json.loads(res.output)["recommendations"][0]
    assert data["path"] == "model" and len(data["items"]) <= 5
    assert set(i["id"] for i in data["items"]).isdisjoint(Recommender.load(run_dir).seen_items(100))
    res = runner.invoke(app, ["recommend", str(run_dir), "--user", "ghost", "-n", "3"])
    assert res.exit_code == 0 and "unknown user id 'ghost'" in " ".join(res.output.split())
    assert "Star Wars" in res.output or "Film" in res.output


def test_recommend_all_users(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    res = runner.invoke(
        app,
        [
            "recommend",
            str(run_dir),
            "--all-users",
            "--n",
            "3",
            "--out",
            str(out),
            "--chunk-size",
            "7",
        ],
    )
    assert res.exit_code == 0, res.output
    frame = pq.read_table(out).to_pandas()
    assert frame["user"].nunique() == 30 and len(frame) == 90
    assert "title" in frame.columns


def test_similar_and_predict(run_dir: Path) -> None:
    res = runner.invoke(app, ["similar", str(run_dir), "--item", "star wars (1977)", "-n", "4"])
    assert res.exit_code == 0, res.output
    assert "most similar to Star Wars (1977)" in " ".join(res.output.split())
    res = runner.invoke(app, ["similar", str(run_dir), "--user", "100", "-n", "3", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["kind"] == "user"
    res = runner.invoke(
        app,
        [
            "predict",
            str(run_dir),
            "--user",
            "100",
            "--item",
            "1003",
            "--item",
            "Star Wars (1977)",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["item"] for r in rows] == [1003, 1000]
    assert all(1 <= r["prediction"] <= 5 for r in rows)
    expect = Recommender.load(run_dir).predict(100, [1003, 1000])
    assert [r["prediction"] for r in rows] == pytest.approx(expect.tolist(), rel=1e-6)
    res = runner.invoke(app, ["predict", str(run_dir), "--user", "100", "--item", "1003"])
    assert res.exit_code == 0 and "predicted ratings of user 100" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "{run}", "--user", "ghost", "--strict"], "unknown"),
        (["recommend", "{run}"], "--user"),
        (["recommend", "{run}", "--all-users"], "--out"),
        (["recommend", "{run}", "--user", "100", "-n", "0"], "n as an integer"),
        (["similar", "{run}", "--item", "Same (1990)"], "received 2"),
        (["similar", "{run}", "--item", "Star Warz"], "Star Wars (1977)"),
        (["similar", "{run}"], "--item or --user"),
        (["predict", "{run}", "--user", "ghost", "--item", "1000"], "unknown"),
        (["recommend", "/nonexistent/run", "--user", "1"], "missing path"),
        (["recommend", "{run}", "--user", "100", "--out", "x.parquet"], "--out only with"),
        (["recommend", "{run}", "--rate", "1000=5", "--out", "x.parquet"], "without --all-users"),
    ],
)
def test_errors_are_one_red_line_exit_2(run_dir: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, [a.replace("{run}", str(run_dir)) for a in args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output


def test_predict_says_score_for_a_retrieval_run(tmp_path: Path) -> None:
    import numpy as np

    from recfit.report import render_report

    rng = np.random.default_rng(0)
    u, i = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    keep = rng.random(u.shape) < 0.6
    r = rng.integers(1, 6, size=int(keep.sum())).astype(float)
    d = Interactions.from_arrays(u[keep] + 100, i[keep] + 1000, r, rating_scale=(1, 5))
    out = tmp_path / "t"
    cfg = RetrievalConfig(dataset="synthetic", epochs=1, bs=32, n_factors=4, layers=[4], seed=0)
    train_run(cfg, out, data=d, progress=False)
    rec = Recommender.load(out)
    raw = rec.predict(100, [1000, 1001, 1002])
    assert rec.output_kind == "score" and not np.isin(raw, [1.0, 5.0]).any()
    args = ["predict", str(out), "--user", "100", "-i", "1000", "-i", "1001", "-i", "1002"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [row["kind"] for row in rows] == ["score"] * 3
    assert [row["prediction"] for row in rows] == pytest.approx(raw.tolist(), rel=1e-6)
    res = runner.invoke(app, args)
    flat = " ".join(res.output.split())
    assert res.exit_code == 0 and "scores of user 100" in flat and "rating" not in flat
    res = runner.invoke(app, ["recommend", str(out), "--user", "100", "-n", "3"])
    assert res.exit_code == 0 and "score" in res.output and "predicted" not in res.output
    html = render_report(out)
    assert "predicted rating" not in html and '<th scope="col">score</th>' in html


def test_predict_marks_the_baseline(tmp_path: Path) -> None:
    import numpy as np

    from recfit.models import create_model
    from recfit.train import Learner

    rng = np.random.default_rng(1)
    u, i = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    keep = (rng.random(u.shape) < 0.6) & (i != 0)  # item 1000 is never rated
    keep[:, 0] = True
    r = rng.integers(1, 6, size=int(keep.sum())).astype(float)
    w = np.where(i[keep] == 0, 0.0, 1.0)  # ... its rows have weight 0
    d = Interactions.from_arrays(u[keep] + 100, i[keep] + 1000, r, weight=w, rating_scale=(1, 5))
    model = create_model("dot", d, n_factors=4, y_range=(0.5, 5.5))
    Learner(model, d, bs=32, progress=False).fit(2, 1e-2)
    folder = Recommender(model, d.users, d.items, d, rating_scale=(1, 5)).save(tmp_path / "b")
    args = ["predict", str(folder), "--user", "100", "-i", "1000", "-i", "1001"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [row["fallback"] for row in rows] == [True, False]
    assert "item 1000 has no training ratings" in rows[0]["reason"]
    res = runner.invoke(app, args)
    flat = " ".join(res.output.split())
    assert res.exit_code == 0 and "predicted ratings of user 100" in flat
    assert " *" in res.output and "* item 1000: item 1000 has no training ratings" in flat


def test_recommend_rate_strict_refuses_the_popular_fallback(run_dir: Path, tmp_path: Path) -> None:
    """``--rate`` with ``--strict``: a family that folds in answers as before; one that
    cannot (fm) is an error instead of a popular list."""
    args = ["recommend", str(run_dir), "--rate", "1000=5", "--rate", "1003=1", "--strict"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["path"] == "fold_in"
    import numpy as np

    rng = np.random.default_rng(1)
    d = Interactions.from_arrays(rng.integers(0, 20, 300), rng.integers(0, 15, 300),
                                 rng.integers(1, 6, 300).astype(float), rating_scale=(1, 5))  # fmt: skip
    fm_run = tmp_path / "fm"
    cfg = RatingConfig(dataset="synthetic", model="fm", epochs=1, bs=64, n_factors=2, seed=0)
    train_run(cfg, fm_run, data=d, progress=False)
    loose = runner.invoke(app, ["recommend", str(fm_run), "--rate", "3=5", "--json"])
    assert loose.exit_code == 0 and json.loads(loose.output)["path"] == "popular"
    res = runner.invoke(app, ["recommend", str(fm_run), "--rate", "3=5", "--strict"])
    assert res.exit_code == 2 and "fold" in " ".join(res.output.split())
    assert "Traceback" not in res.output
