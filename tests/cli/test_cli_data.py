"""``recfit data info | split | synth`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recfit.cli import app
from recfit.data.io import read_parquet
from recfit.errors import DataWarning

runner = CliRunner()


@pytest.fixture
def ratings_csv(tmp_path: Path) -> Path:
    lines = ["uid,mid,stars,ts"]
    for u in range(1, 21):
        for m in range(1, 11):
            if (u + m) % 3:
                lines.append(f"{u},{100 + m},{1 + (u * m) % 5},{1000 + u * 10 + m}")
    p = tmp_path / "ratings.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def _cols() -> list[str]:
    return ["--user", "uid", "--item", "mid", "--rating", "stars", "--timestamp", "ts"]


def test_info_on_a_file(ratings_csv: Path) -> None:
    res = runner.invoke(app, ["data", "info", str(ratings_csv), *_cols()])
    assert res.exit_code == 0, res.output
    n = sum(1 for u in range(1, 21) for m in range(1, 11) if (u + m) % 3)
    assert f"{n:,}" in res.output
    assert "rating histogram" in res.output and "█" in res.output
    assert "user activity" in res.output and "item popularity" in res.output
    assert "sparsity" in res.output


def test_info_json(ratings_csv: Path) -> None:
    res = runner.invoke(app, ["data", "info", str(ratings_csv), *_cols(), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["users"] == 20 and s["items"] == 10
    assert abs(s["sparsity"] + s["density"] - 1) < 1e-12
    assert sum(s["rating_histogram"].values()) == s["ratings"]
    assert s["time_min"] == 1000 + 10 + 1


def test_errors_are_one_red_line_and_exit_2(tmp_path: Path, ratings_csv: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,1,4\n2,1,great\n")
    res = runner.invoke(app, ["data", "info", str(bad)])
    assert res.exit_code == 2
    assert "error:" in res.output and "'great'" in res.output and "row 1" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["data", "info", str(ratings_csv)])  # default column names
    assert res.exit_code == 2 and "received columns ['uid', 'mid', 'stars', 'ts']" in res.output
    res = runner.invoke(app, ["data", "info", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["data", "info", "ml-nope"])
    assert res.exit_code == 2 and "MovieLens name" in res.output
    res = runner.invoke(app, ["data", "split", str(ratings_csv), *_cols(), "--split", "bogus:1"])
    assert res.exit_code == 2 and "split spec" in res.output


def test_split_prints_summary_and_writes_parts(tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "parts"
    args = ["data", "split", str(ratings_csv), *_cols(), "--split", "random:0.2", "--seed", "1"]
    res = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    train, test = read_parquet(out / "train.parquet"), read_parquet(out / "test.parquet")
    assert len(train) == s["train"] and len(test) == s["test"]
    assert s["train"] + s["test"] == s["ratings"] and s["test"] > 0
    assert s["cold_policy"] == "keep" and "cold_users" in s
    again = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert again["test"] == s["test"]
    res = runner.invoke(app, [*args, "--cold", "drop"])
    assert res.exit_code == 0 and "drop" in res.output
    res = runner.invoke(app, [*args, "--cold", "maybe"])
    assert res.exit_code == 2


def test_synth_writes_parquet(tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    res = runner.invoke(
        app, ["data", "synth", "--ratings", "5000", "--users", "100", "--items", "80",
              "--seed", "3", "--out", str(out)]
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "generated in" in res.output and "wrote" in res.output
    d = read_parquet(out)
    assert (len(d), d.n_users, d.n_items) == (5000, 100, 80)
    res = runner.invoke(app, ["data", "synth", "--ratings", "0", "--out", str(out)])
    assert res.exit_code == 2 and "n_ratings" in res.output


def test_info_and_split_ml100k(data_dir: Path) -> None:
    res = runner.invoke(app, ["data", "info", "ml-100k", "--data-dir", str(data_dir), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert (s["ratings"], s["users"], s["items"]) == (100_000, 943, 1682)
    assert s["user_features"] and s["item_features"]
    assert s["rating_histogram"] == {"1": 6110, "2": 11370, "3": 27145, "4": 34174, "5": 21201}
    res = runner.invoke(app, ["data", "info", "ml-100k", "--data-dir", str(data_dir)])
    assert res.exit_code == 0 and "100,000" in res.output
    res = runner.invoke(
        app, ["data", "split", "ml-100k", "--data-dir", str(data_dir), "--split", "u1", "--json"]
    )
    assert res.exit_code == 0, res.output
    sp = json.loads(res.stdout)
    assert (sp["train"], sp["test"]) == (80_000, 20_000)
    res = runner.invoke(
        app,
        ["data", "split", "ml-100k", "--data-dir", str(data_dir), "--split", "u1", "--cold",
         "drop", "--json"],
    )  # fmt: skip
    sp = json.loads(res.stdout)
    assert sp["test"] + sp["dropped_cold_rows"] == 20_000 and sp["cold_rows"] == 0


def _ml100k_folder(root: Path) -> Path:
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("1\t1\t5\t874965758\n2\t2\t3\t876893171\n2\t1\t4\t876893172\n")
    flags = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_text(
        f"1|A (1995)|01-Jan-1995||http://x|{flags}\n2|B (1995)|01-Jan-1995||http://y|{flags}\n",
        encoding="latin-1",
    )
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    return folder


def test_info_on_a_release_folder_and_the_folder_above(tmp_path: Path) -> None:
    folder = _ml100k_folder(tmp_path)
    for where in (folder, tmp_path):
        res = runner.invoke(app, ["data", "info", str(where), "--json"])
        assert res.exit_code == 0, res.output
        s = json.loads(res.stdout)
        assert (s["name"], s["ratings"], s["users"], s["items"]) == ("ml-100k", 3, 2, 2)
        assert s["rating_scale"] == [1.0, 5.0] and "title" in s["item_features"]


def test_info_on_a_folder_holding_one_rating_file(tmp_path: Path, ratings_csv: Path) -> None:
    res = runner.invoke(app, ["data", "info", str(ratings_csv.parent), *_cols(), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["users"] == 20
    (tmp_path / "other.csv").write_text("user,item,rating\n1,1,1\n")
    res = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert res.exit_code == 2 and "exactly one rating file" in res.output


def test_duplicates_in_a_release_follow_the_flag(tmp_path: Path) -> None:
    folder = _ml100k_folder(tmp_path)
    with (folder / "u.data").open("a") as fh:
        fh.write("1\t1\t3\t874965759\n")
    res = runner.invoke(app, ["data", "info", str(folder)])
    assert res.exit_code == 2 and "duplicate" in res.output and "u.data" in res.output
    with pytest.warns(DataWarning, match="merged 1"):
        res = runner.invoke(app, ["data", "info", str(folder), "--duplicates", "mean", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ratings"] == 3
