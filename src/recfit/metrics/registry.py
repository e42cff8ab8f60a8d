"""Every metric name recfit reports, with its direction and kind, in one place.

Early stopping, the best checkpoint, ``recfit compare`` and the run reports read a
metric's direction from here (:func:`metric_info`); nothing else guesses it. A name that
is not known is an :class:`~recfit.errors.UnknownMetricError`, never a guessed direction.

Kinds:

- ``rating``: of predicted ratings (``mse``, ``rmse``, ``mae``, ``r2``);
- ``levels``: of a predicted distribution over rating levels (``accuracy``, ``macro_f1``,
  ``mse_expected``...);
- ``ranking``: of a ranked list at a cutoff (``recall@20``, ``ndcg@10``,
  ``top_100_accuracy``...);
- ``loss``: an objective (``loss``, ``train_loss``, ``valid_loss``, ``reg_loss``...);
- ``cost``: resources spent (``fit_seconds``);
- ``list``: what the recommended lists are, not how well they rank (``coverage@20``,
  higher: more of the catalogue reached; ``mean_popularity@20``, lower: less
  concentrated on popular items). Report them; do not stop or select on them alone.

Example:
    >>> metric_info("recall@20").direction, metric_info("recall@20").kind
    ('max', 'ranking')
    >>> metric_direction("rmse"), metric_direction("top_100_accuracy")
    ('min', 'max')
    >>> is_better("r2", 0.5, 0.4), is_better("mse", 0.5, 0.4)
    (True, False)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from recfit.errors import UnknownMetricError

__all__ = [
    "Direction",
    "Kind",
    "MetricInfo",
    "is_better",
    "known_metrics",
    "metric_direction",
    "metric_info",
]

Direction = Literal["min", "max"]
"""``min``: lower is better; ``max``: higher is better."""

Kind = Literal["rating", "levels", "ranking", "loss", "cost", "list"]
"""What a metric measures (see the module docs)."""


@dataclass(frozen=True)
class MetricInfo:
    """A metric's name, direction and kind (``k``: the cutoff of a ranking metric).

    Example:
        >>> metric_info("ndcg@10")
        MetricInfo(name='ndcg@10', direction='max', kind='ranking', k=10)
    """

    name: str
    direction: Direction
    kind: Kind
    k: int | None = None

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value is better."""
        return self.direction == "max"

    @property
    def arrow(self) -> str:
        """``↑`` (higher is better) or ``↓`` (lower is better), for tables."""
        return "↑" if self.direction == "max" else "↓"


_EXACT: dict[str, tuple[Direction, Kind]] = {
    # predicted ratings (recfit.metrics.rating.METRICS)
    "mse": ("min", "rating"),
    "rmse": ("min", "rating"),
    "mae": ("min", "rating"),
    "r2": ("max", "rating"),
    # level distributions (recfit.metrics.levels.LEVEL_METRICS)
    "accuracy": ("max", "levels"),
    "balanced_accuracy": ("max", "levels"),
    "macro_f1": ("max", "levels"),
    "weighted_f1": ("max", "levels"),
    "mse_argmax": ("min", "levels"),
    "rmse_argmax": ("min", "levels"),
    "mse_expected": ("min", "levels"),
    "rmse_expected": ("min", "levels"),
    # objectives
    "loss": ("min", "loss"),
    "reg_loss": ("min", "loss"),
    "train_loss": ("min", "loss"),
    "valid_loss": ("min", "loss"),
    "valid_reg_loss": ("min", "loss"),
    # resources
    "fit_seconds": ("min", "cost"),
}

_RANKING_HIGHER = ("recall", "capped_recall", "precision", "ndcg", "map", "mrr", "hit_rate")
_AT_K = re.compile(r"^(" + "|".join(_RANKING_HIGHER) + r")@([1-9][0-9]{0,8})$")
#: list metrics at a cutoff (recfit.metrics.lists): name -> direction
_LIST: dict[str, Direction] = {"coverage": "max", "mean_popularity": "min"}
_LIST_AT_K = re.compile(r"^(" + "|".join(_LIST) + r")@([1-9][0-9]{0,8})$")
_TOP_K = re.compile(r"^top_([1-9][0-9]{0,8})_accuracy$")


def metric_info(name: str) -> MetricInfo:
    """The direction and kind of the metric ``name``.

    Ranking metrics carry their cutoff: ``recall@20``, ``capped_recall@k``,
    ``precision@k``, ``ndcg@k``, ``map@k``, ``mrr@k``, ``hit_rate@k`` and
    ``top_k_accuracy`` as ``top_100_accuracy``; so do the list metrics ``coverage@k``
    (max) and ``mean_popularity@k`` (min), kind ``list``.

    Raises:
        UnknownMetricError: ``name`` is not a metric recfit reports.

    Example:
        >>> metric_info("valid_loss").direction
        'min'
    """
    if not isinstance(name, str):
        raise UnknownMetricError(f"expected a metric name (a string), received {name!r}")
    if name in _EXACT:
        direction, kind = _EXACT[name]
        return MetricInfo(name, direction, kind)
    m = _AT_K.match(name)
    if m is not None:
        return MetricInfo(name, "max", "ranking", int(m.group(2)))
    m = _TOP_K.match(name)
    if m is not None:
        return MetricInfo(name, "max", "ranking", int(m.group(1)))
    m = _LIST_AT_K.match(name)
    if m is not None:
        return MetricInfo(name, _LIST[m.group(1)], "list", int(m.group(2)))
    raise UnknownMetricError(
        f"expected a metric name among {sorted(_EXACT)} or a ranking metric at a cutoff "
        f"({', '.join(f'{r}@K' for r in _RANKING_HIGHER)}, top_K_accuracy) or a list metric "
        f"({', '.join(f'{r}@K' for r in _LIST)}), received {name!r}"
    )


def metric_direction(name: str) -> Direction:
    """``"max"`` when higher values of ``name`` are better, else ``"min"``.

    Raises:
        UnknownMetricError: ``name`` is not a metric recfit reports.
    """
    return metric_info(name).direction


def is_better(name: str, value: float, than: float) -> bool:
    """Whether ``value`` is strictly better than ``than`` for the metric ``name`` (NaN never is).

    Example:
        >>> is_better("recall@20", 0.3, 0.2), is_better("recall@20", math.nan, 0.2)
        (True, False)
    """
    if math.isnan(value):
        return False
    if math.isnan(than):
        return True
    return value > than if metric_direction(name) == "max" else value < than


def known_metrics() -> list[str]:
    """The exact metric names (ranking metrics are patterns, see :func:`metric_info`).

    Example:
        >>> "mse" in known_metrics()
        True
    """
    return sorted(_EXACT)
