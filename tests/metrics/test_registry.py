"""Every metric carries its direction and kind in one place, and every consumer reads it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recfit.errors import ConfigError, UnknownMetricError
from recfit.metrics import higher_is_better, metric_direction, metric_info
from recfit.metrics.levels import LEVEL_METRICS
from recfit.metrics.ranking import RANKING_METRICS, ranking_report
from recfit.metrics.rating import METRICS
from recfit.train.callbacks import Checkpoint, EarlyStopping

HIGHER = ["r2", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"]


@pytest.mark.parametrize("name", ["recall@20", "ndcg@10", "top_100_accuracy", "precision@5",
                                  "map@10", "mrr@10", "hit_rate@20"])  # fmt: skip
def test_ranking_metrics_are_maximised(name: str, tmp_path: object) -> None:
    assert metric_direction(name) == "max"
    assert metric_info(name).kind == "ranking"
    assert EarlyStopping(name).mode == "max"
    assert Checkpoint(str(tmp_path), name).mode == "max"
    assert higher_is_better(name)


def test_every_registered_metric_has_a_direction() -> None:
    for name in METRICS:
        assert metric_info(name).kind == "rating"
    for name in LEVEL_METRICS:
        assert metric_info(name).kind == "levels"
    for name in HIGHER:
        assert metric_direction(name) == "max"
    for name in ("mse", "rmse", "mae", "mse_expected", "rmse_argmax", "valid_loss", "loss"):
        assert metric_direction(name) == "min"


def test_every_ranking_report_key_has_a_direction() -> None:
    rep = ranking_report([[0, 1, 2]], [[1]], ks=(1, 3), exclude_seen=False, n_bootstrap=0)
    keys = [
        k
        for k, v in rep.items()
        if isinstance(v, float) and ("@" in k or k.startswith("top_")) and not k.endswith("_ci")
    ]
    assert len(keys) >= 2 * len(RANKING_METRICS)
    for k in keys:
        assert metric_info(k).direction == "max", k


@given(st.text(min_size=0, max_size=20))
def test_unknown_names_are_typed_errors(name: str) -> None:
    try:
        info = metric_info(name)
    except UnknownMetricError as e:
        assert isinstance(e, ConfigError) and "received" in str(e)
        return
    assert info.direction in ("min", "max")


@pytest.mark.parametrize("name", ["recall", "recall@0", "recal@20", "top_k_accuracy", "msee"])
def test_unknown_monitor_is_an_error_not_a_guess(name: str) -> None:
    with pytest.raises(UnknownMetricError):
        EarlyStopping(name)
    with pytest.raises(UnknownMetricError):
        metric_direction(name)


def test_explicit_mode_must_agree_with_the_metric() -> None:
    with pytest.raises(ConfigError, match="'max'"):
        EarlyStopping("recall@20", mode="min")
    assert EarlyStopping("my_custom_score", mode="max").mode == "max"
