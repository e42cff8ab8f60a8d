"""Every figure recfit draws: confusion matrices and seed-averaged comparisons here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfit.errors import ConfigError, DataError
from recfit.metrics.classification import confusion_matrix
from recfit.plots import plot_comparison, plot_confusion_matrix

# the hand-worked example of tests/metrics/test_classification.py
P = np.array([0, 1, 1, 1, 2, 0])
T = np.array([0, 0, 1, 1, 2, 2])
W = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 1.0])


def test_plot_confusion_matrix(tmp_path: Path) -> None:
    cm = confusion_matrix(P, T, W)
    fig = plot_confusion_matrix(cm, ["1", "2", "3"], normalize="true", title="cm")
    ax = fig.axes[0]
    assert [x.get_text() for x in ax.get_xticklabels()] == ["1", "2", "3"]
    texts = [x.get_text() for x in ax.texts]
    assert texts[:3] == ["0.33", "0.67", "0.00"]
    out = tmp_path / "cm.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    counts = plot_confusion_matrix(cm, None)
    assert [x.get_text() for x in counts.axes[0].texts][:3] == ["1", "2", "0"]
    with pytest.raises(ConfigError, match="expected 3 labels"):
        plot_confusion_matrix(cm, ["a"])
    with pytest.raises(DataError, match="square"):
        plot_confusion_matrix(np.ones((2, 3)), None)


def test_plot_confusion_matrix_normalises_like_the_metric() -> None:
    cm = confusion_matrix(P, T, W)
    for how in ("true", "pred", "all"):
        fig = plot_confusion_matrix(cm, None, normalize=how)
        shown = [float(t.get_text()) for t in fig.axes[0].texts]
        want = confusion_matrix(P, T, W, normalize=how).ravel()
        assert shown == pytest.approx(want.tolist(), abs=0.005)
    with pytest.raises(ConfigError, match="normalize"):
        plot_confusion_matrix(cm, None, normalize="rows")  # type: ignore[arg-type]


def test_plot_comparison_bars_errors_and_baseline() -> None:
    summary = pd.DataFrame(
        {"mean": [0.40, 0.50, 0.45], "hi": [0.44, np.nan, 0.47]}, index=["a", "b", "c"]
    )
    fig = plot_comparison(summary, "accuracy", baseline="b", n_seeds=5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.40, 0.50, 0.45]
    colours = [p.get_facecolor() for p in ax.patches]
    assert colours[1] != colours[0] == colours[2]  # the baseline stands out
    assert ax.get_ylabel() == "accuracy" and "5 seeds" in ax.get_title()
    assert [t.get_text() for t in ax.texts] == ["0.400", "0.500", "0.450"]  # nan bar: no error


def test_plots_draw_into_given_axes() -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    summary = pd.DataFrame({"mean": [1.0], "hi": [1.5]}, index=["x"])
    assert plot_comparison(summary, "m", ax=left, title="t") is fig
    assert plot_confusion_matrix([[1, 0], [0, 1]], ax=right) is fig
    assert left.get_title() == "t"
