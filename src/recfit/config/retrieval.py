"""The retrieval task's config: a two-tower model ranked over the whole catalogue.

One name per setting: ``n_factors`` is the embedding width, ``layers`` the towers' dense
layers, ``seed`` seeds everything. The protocol presets (T1, T2) build this class.

Example:
    >>> cfg = RetrievalConfig(layers=(64, 32))
    >>> cfg.model, cfg.n_factors, cfg.layers, cfg.opt, cfg.epochs, cfg.monitor
    ('two_tower', 32, (64, 32), 'adagrad', 30, 'top_100_accuracy')
    >>> RetrievalConfig.model_validate_json(cfg.model_dump_json()) == cfg
    True
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from recfit.config.base import BaseTrainConfig
from recfit.metrics.registry import metric_info

__all__ = ["SOFTMAX_FIELDS", "RetrievalConfig"]

PositiveInts = Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)]

SOFTMAX_FIELDS = frozenset(
    {
        "temperature",
        "logq",
        "remove_accidental_hits",
        "num_hard_negatives",
        "num_negatives",
        "negative_sampling",
        "popularity_alpha",
    }
)
"""The options of the in-batch softmax objective (read with ``objective="softmax"`` only)."""


class RetrievalConfig(BaseTrainConfig):
    """One retrieval run; unknown keys are rejected.

    The defaults are the keras-rs deep recommender's optimisation (Adagrad 0.05, batch
    1000, 30 epochs, constant rate) with recfit's objective (in-batch softmax with log-Q
    correction and accidental hits removed). Settings most runs leave alone ("advanced"):
    ``use_ids``, ``remove_accidental_hits``, ``num_hard_negatives``, ``num_negatives``,
    ``negative_sampling``, ``popularity_alpha``, ``eval_ks``, ``n_bootstrap``.

    Example:
        >>> RetrievalConfig(objective="mse").applies("temperature")
        False
    """

    MONITOR_KINDS: ClassVar[tuple[str, ...]] = ("ranking",)

    task: Literal["retrieval"] = "retrieval"
    model: str = "two_tower"
    """two_tower (TwoTower with side features) or another registered retrieval family."""
    n_factors: int = Field(default=32, ge=1)
    """Width of every embedding table."""
    layers: PositiveInts = (32,)
    """Dense layers of both towers (the last is the vector width)."""
    user_features: tuple[str, ...] | None = None
    """User feature names to keep from the default feature space (none: all; empty: ids
    only)."""
    item_features: tuple[str, ...] | None = None
    """Item feature names to keep from the default feature space (none: all; empty: ids
    only)."""
    use_ids: bool = True
    """Advanced: embed user and item ids."""
    objective: Literal["softmax", "mse"] = "softmax"
    """softmax (in-batch sampled softmax with log-Q correction and accidental hits removed)
    or mse (keras-rs's objective: the dot product against the rating rescaled to [0, 1])."""
    temperature: float = Field(default=0.1, gt=0.0)
    """softmax: divides every logit."""
    logq: bool = True
    """softmax: the log-Q (sampling probability) correction."""
    remove_accidental_hits: bool = True
    """Advanced, softmax: mask in-batch columns holding the row's own item."""
    num_hard_negatives: int | None = Field(default=None, ge=1)
    """Advanced, softmax: keep only this many hardest negatives per row (none: all)."""
    num_negatives: int = Field(default=0, ge=0)
    """Advanced, softmax: extra negatives sampled per batch."""
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    """Advanced, softmax with num_negatives: uniform over the catalogue or by popularity
    (count ** popularity_alpha)."""
    popularity_alpha: float = 1.0
    """Advanced: exponent of the popularity sampler."""
    positive_min_rating: float | None = None
    """Keep only ratings >= this as positives, before splitting (none: every rating)."""
    relevant_min_rating: float | None = None
    """Test ratings >= this are relevant (none: all)."""
    exclude_seen: bool = False
    """Exclude each user's training items when ranking (stated in every report)."""
    eval_every: int = Field(default=0, ge=0)
    """Ranking metrics every this many epochs into the history (0: only at the end)."""
    eval_ks: PositiveInts = (10, 20, 100)
    """Advanced: cutoffs of the ranking metrics."""
    n_bootstrap: int = Field(default=1000, ge=0)
    """Advanced: bootstrap resamples of the users for the metrics' intervals (0: none)."""
    opt: Literal["adagrad", "adam"] = "adagrad"
    """adagrad (Keras semantics: initial accumulator 0.1, eps 1e-7) or adam."""
    schedule: Literal["constant", "one_cycle"] = "constant"
    """constant or one_cycle."""
    epochs: int = Field(default=30, ge=0)
    lr: float = Field(default=0.05, gt=0.0)
    bs: int = Field(default=1000, ge=1)
    wd: float = Field(default=0.0, ge=0.0)
    reg: float = Field(default=0.0, ge=0.0)
    """L2 penalty on the id embedding rows of each batch."""
    monitor: str = "top_100_accuracy"
    """The ranking metric early stopping (and the eval_every curves) watches."""

    def _check(self) -> None:
        if self.patience is not None:  # early stopping reads the metrics of eval_every
            k = metric_info(self.monitor).k
            if self.eval_every < 1 or k not in self.eval_ks:
                raise ValueError(
                    f"expected eval_every >= 1 and a monitor at a cutoff in {self.eval_ks} for "
                    f"patience in retrieval, received eval_every {self.eval_every} and "
                    f"{self.monitor!r}"
                )

    def _condition(self, name: str) -> bool:
        if name in SOFTMAX_FIELDS and self.objective != "softmax":
            return False
        if name == "negative_sampling":
            return self.num_negatives > 0
        if name == "popularity_alpha":
            return self.num_negatives > 0 and self.negative_sampling == "popularity"
        if name == "monitor":
            return self.patience is not None or self.eval_every > 0
        return super()._condition(name)
