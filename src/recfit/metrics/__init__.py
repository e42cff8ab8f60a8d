"""Metrics: pure functions of (prediction, target, weight) aggregated over the whole set.

- :mod:`recfit.metrics.rating`: mse, rmse, mae, r2 in the original rating units.
- :mod:`recfit.metrics.classification`: accuracy, F1, confusion matrix over rating levels.
- :mod:`recfit.metrics.decoding`: rating grids, ratings as levels, level probabilities
  decoded back to ratings.
- :mod:`recfit.metrics.levels`: metrics of predicted level distributions; any metric by name.
- :mod:`recfit.metrics.ranking`: top-k accuracy, recall (and capped recall)/precision/
  NDCG/MAP@k, MRR, hit rate.
- :mod:`recfit.metrics.lists`: catalogue coverage and mean popularity of top-k lists.
- :mod:`recfit.metrics.registry`: every metric's direction (higher or lower is better) and
  kind (rating, levels, ranking, loss, cost, list), read by every consumer.
"""

from recfit.metrics.classification import (
    PRFS,
    accuracy,
    balanced_accuracy,
    classification_report,
    confusion_matrix,
    f1,
    format_classification_report,
    normalize_confusion,
    precision_recall_f1_support,
)
from recfit.metrics.decoding import (
    decode_argmax,
    decode_expected,
    decoding_mse,
    levels_for_scale,
    ratings_to_levels,
)
from recfit.metrics.levels import (
    LEVEL_METRICS,
    get_metric,
    is_level_metric,
)
from recfit.metrics.lists import (
    LIST_METRICS,
    catalogue_coverage_at_k,
    item_popularity,
    list_report,
    mean_popularity_at_k,
)
from recfit.metrics.ranking import (
    RANKING_METRICS,
    capped_recall_at_k,
    hit_rate_at_k,
    map_at_k,
    mrr,
    ndcg_at_k,
    per_query_metrics,
    precision_at_k,
    ranking_report,
    recall_at_k,
    top_k_accuracy,
)
from recfit.metrics.rating import (
    METRICS,
    higher_is_better,
    mae,
    mse,
    r2,
    rmse,
)
from recfit.metrics.registry import (
    MetricInfo,
    is_better,
    metric_direction,
    metric_info,
)

__all__ = [
    "LEVEL_METRICS",
    "LIST_METRICS",
    "METRICS",
    "PRFS",
    "RANKING_METRICS",
    "MetricInfo",
    "accuracy",
    "balanced_accuracy",
    "capped_recall_at_k",
    "catalogue_coverage_at_k",
    "classification_report",
    "confusion_matrix",
    "decode_argmax",
    "decode_expected",
    "decoding_mse",
    "f1",
    "format_classification_report",
    "get_metric",
    "higher_is_better",
    "hit_rate_at_k",
    "is_better",
    "is_level_metric",
    "item_popularity",
    "levels_for_scale",
    "list_report",
    "mae",
    "map_at_k",
    "mean_popularity_at_k",
    "metric_direction",
    "metric_info",
    "mrr",
    "mse",
    "ndcg_at_k",
    "normalize_confusion",
    "per_query_metrics",
    "precision_at_k",
    "precision_recall_f1_support",
    "r2",
    "ranking_report",
    "ratings_to_levels",
    "recall_at_k",
    "rmse",
    "top_k_accuracy",
]
