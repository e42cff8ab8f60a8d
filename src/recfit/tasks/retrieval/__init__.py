"""The retrieval task: two-tower models trained on positives, measured by full-catalogue
ranking. :mod:`.training`: the T1 / T2 presets (:class:`~recfit.config.RetrievalConfig`),
:func:`train_retrieval` and the task's steps; :mod:`.evaluation`: ranking evaluation and
the per-epoch :class:`RankingMetrics`. The objectives are in
:mod:`recfit.models.retrieval_losses`."""

from recfit.tasks.retrieval.evaluation import (
    RankingMetrics,
    evaluate_popularity,
    evaluate_retrieval,
    evaluate_vectors,
    filter_positives,
    retrieval_metrics,
)
from recfit.tasks.retrieval.training import (
    PRESET_BASE,
    RetrievalResult,
    RetrievalTask,
    compare_depths,
    t1_config,
    t2_config,
    train_retrieval,
)

__all__ = [
    "PRESET_BASE",
    "RankingMetrics",
    "RetrievalResult",
    "RetrievalTask",
    "compare_depths",
    "evaluate_popularity",
    "evaluate_retrieval",
    "evaluate_vectors",
    "filter_positives",
    "retrieval_metrics",
    "t1_config",
    "t2_config",
    "train_retrieval",
]
