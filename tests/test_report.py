"""The self-contained run report: references by protocol, embedded figures, samples."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from recfit.config import RatingConfig
from recfit.data.synthetic import synthetic
from recfit.errors import BundleError
from recfit.report import REFERENCES, build_report, reference_for, render_report
from recfit.runs import train_run


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    data = synthetic(3000, 60, 50, with_features=True, seed=2)
    train_run(
        RatingConfig(model="dot", epochs=2, n_factors=8, seed=0), out, data=data, progress=False
    )
    return out


def _png(path: Path) -> None:
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(path)


@pytest.mark.parametrize(
    ("dataset", "split", "model", "protocol"),
    [
        ("ml-100k", "random:0.2", "dot", "R1"),
        ("/data/ml-100k", "random:0.20", "nn", "R1"),
        ("ml-100k", "u1", None, "R2"),
        ("ml-100k", "kfold:5:0", None, "R3"),
        ("ML-1M", "random:0.1", "mf", "R4"),
        ("ml-1m", "kfold:5:3", None, "R5"),
        ("ml-10m", "random:0.1", None, "R6"),
    ],
)
def test_reference_by_dataset_and_split(
    dataset: str, split: str, model: str | None, protocol: str
) -> None:
    ref = reference_for(dataset, split, model)
    assert ref is not None and ref.protocol == protocol and ref.values


@pytest.mark.parametrize(
    ("dataset", "split"),
    [
        ("ml-100k", "random:0.1"),
        ("ml-100k", "temporal:0.2"),
        ("ml-1m", "random:0.2"),
        ("ml-1m", "u1"),
        ("synthetic", "random:0.2"),
        ("ratings.csv", "random:0.2"),
    ],
)
def test_no_reference_elsewhere(dataset: str, split: str) -> None:
    assert reference_for(dataset, split) is None


def test_reference_values_follow_the_model() -> None:
    dot = reference_for("ml-100k", "random:0.2", "dot")
    nn = reference_for("ml-100k", "random:0.2", "nn")
    assert dot is not None and nn is not None
    assert {v.value for v in dot.values if v.metric == "mse"} >= {0.8115, 0.846}
    assert 0.852 in {v.value for v in nn.values} and 0.8115 not in {v.value for v in nn.values}
    assert all(ref.values for *_, ref in REFERENCES)


def test_report_of_a_run(synth_run: Path) -> None:
    _png(synth_run / "lr_find.png")
    path = build_report(synth_run)
    assert path == synth_run / "report.html"
    text = path.read_text("utf-8")
    heads = re.findall(r"<h2>(.*?)</h2>", text)
    assert heads[:2] == ["Configuration", "Metrics"]
    assert {"Training curves", "Learning-rate finder", "Sample recommendations"} <= set(heads)
    assert "Confusion matrix" not in heads  # no confusion_matrix.png in a regression run
    assert "No published reference for synthetic with split random:0.2" in text
    # self-contained: no external URL, every image a data URI that decodes to a PNG
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) == 3
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in imgs)
    # the metrics of metrics.json and sample recommendations with titles
    mse = json.loads((synth_run / "metrics.json").read_text())["mse"]
    assert f"{mse:.4f}" in text
    assert "Synthetic Movie" in text and "Most similar to" in text


def test_confusion_matrix_and_reference_shown(synth_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    cfg = json.loads((synth_run / "config.json").read_text())
    cfg.update(dataset="ml-100k", split="random:0.2")
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "metrics.json").write_text(json.dumps({"mse": 0.85, "rmse": 0.922}))
    _png(run / "confusion_matrix.png")
    text = render_report(run)
    assert "<h2>Confusion matrix</h2>" in text
    assert "Protocol <strong>R1</strong>" in text
    assert "0.8115" in text and "+0.0040" in text  # 0.85 - 0.846
    assert "No bundle in this run directory" in text


def test_report_escapes_html(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "<script>x</script>"}))
    text = render_report(tmp_path)
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="expected a run directory"):
        build_report(tmp_path / "missing")
    with pytest.raises(BundleError, match="expected a run directory"):
        build_report(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(BundleError, match=r"config\.json"):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_damaged_bundle_is_reported_not_raised(synth_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(synth_run, run)
    (run / "bundle" / "items.json").write_text("[]")
    text = render_report(run)
    assert "The bundle could not answer" in text
