"""The top-N task's config: rank items for users from positives (clicks, plays, purchases,
or ratings at or above a threshold), measured by full-catalogue ranking.

The families' hyper-parameters (``ease_lambda``, ``knn_k``, ``shrinkage``, ``n_factors``,
``alpha``, ``epochs``, ``lr``, ``reg``...) are fields here; each applies only when the
chosen family reads it (its registry entry's ``reads``), so a setting nothing reads is an
error, never a silent no-op.

Example:
    >>> cfg = TopNConfig()
    >>> cfg.task, cfg.model, cfg.confidence, cfg.eval_ks, cfg.exclude_seen
    ('topn', 'auto', 'binary', (10, 20, 50), True)
    >>> TopNConfig.model_validate_json(cfg.model_dump_json()) == cfg
    True
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from recfit.config.base import BaseTrainConfig
from recfit.models.registry import Family, families, family

__all__ = ["AUTO_TOPN", "FAMILY_SETTINGS", "TOPN_FAMILY_FIELDS", "TopNConfig"]

PositiveInts = Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)]

AUTO_TOPN: tuple[str, ...] = ("ease", "ials", "itemknn", "popularity")
"""The families ``model="auto"`` chooses among (those registered), in order of
preference on a tie: the best of them on an inner validation cut of the training
positives (:mod:`recfit.tasks.topn`)."""

TOPN_FAMILY_FIELDS = frozenset(
    {
        "ease_lambda",
        "ease_dropout",
        "user_exponent",
        "popularity_exponent",
        "knn_k",
        "shrinkage",
        "n_factors",
        "alpha",
        "unobserved_weight",
    }
)
"""Fields of this class that only a family reads: each applies only when a family that
may be trained reads it (no family reading it: it is refused)."""

FAMILY_SETTINGS = TOPN_FAMILY_FIELDS | {"epochs", "lr", "reg", "bs", "opt"}
"""Every field that applies only when a family that may be trained reads it."""


class TopNConfig(BaseTrainConfig):
    """One top-N run; unknown keys are rejected.

    The split protocols: ``random:0.2`` (a random 20 % of the positives held out),
    ``last:1`` (each user's last positives by time), ``users:0.1:0.8`` (strong
    generalisation: 10 % of the users held out, 80 % of each one's positives given for
    fold-in, the rest ranked), or ``--train``/``--test`` files.

    Example:
        >>> TopNConfig(model="popularity").applies("ease_lambda")
        False
    """

    MONITOR_KINDS: ClassVar[tuple[str, ...]] = ("ranking",)

    task: Literal["topn"] = "topn"
    rating_col: str | None = "rating"  # type: ignore[assignment]  # None: implicit data
    """Column of ratings, counts or durations in a data file; none: implicit data (each
    row a positive of value 1). Left at its default, a file without this column is
    implicit data; named, the column must be there."""
    model: str = "auto"
    """auto (the best of ease, ials, itemknn, popularity on an inner validation cut of the
    training positives), or a registered top-N family (popularity, itemknn, ease, ials,
    bpr...)."""
    positive_min_rating: float | None = None
    """Ratings >= this are positives, the others are dropped before splitting (none:
    every row is a positive, as in clicks or plays)."""
    confidence: Literal["binary", "value"] = "binary"
    """binary (1 per positive pair) or value (the summed values of the rating column:
    play counts, durations) as the positives' strength."""
    eval_ks: PositiveInts = (10, 20, 50)
    """Cutoffs of the ranking metrics (Recall, NDCG, MAP, HitRate @k)."""
    exclude_seen: bool = True
    """Exclude each user's training positives when ranking (stated in every report)."""
    n_bootstrap: int = Field(default=1000, ge=0)
    """Bootstrap resamples of the users for the metrics' 95 % intervals (0: none)."""
    ease_lambda: float | None = Field(default=None, gt=0.0)
    """EASE: the ridge on the item-item weights (none: chosen on an inner validation cut
    of the training positives)."""
    ease_dropout: float = Field(default=0.3, ge=0.0, lt=1.0)
    """EASE: the emphasised-denoising dropout (each item's ridge also gets p/(1-p) times its
    count); 0 with the two exponents below at 0 is Steck's plain EASE."""
    user_exponent: float = Field(default=0.5, ge=0.0)
    """EASE: each user's row weighs |u|^-a in the loss (0: every user alike)."""
    popularity_exponent: float = Field(default=0.15, ge=0.0)
    """EASE: column j of the weights is divided by (count_j + 1)^c (0: unscaled)."""
    knn_k: int = Field(default=100, ge=1)
    """itemknn: neighbours kept per item."""
    shrinkage: float = Field(default=0.0, ge=0.0)
    """itemknn: added to the cosine's denominator (damps pairs seen by few users)."""
    n_factors: int = Field(default=64, ge=1)
    """Factor models (ials, bpr): the width of the user and item vectors."""
    alpha: float = Field(default=1.0, gt=0.0)
    """ials: the confidence of a positive is 1 + alpha * value."""
    unobserved_weight: float = Field(default=0.3, gt=0.0)
    """ials: the weight of the unobserved (zero) entries (every pair's squared score)."""
    reg: float | None = Field(default=None, ge=0.0)  # type: ignore[assignment]  # none: chosen
    """ials: the ridge, scaled by each row's frequency (none: chosen on an inner validation
    cut of the training positives); bpr: the L2 penalty per step (none: 0.01)."""
    monitor: str = "ndcg@20"
    """Not read by the top-N families (no early stopping)."""

    @field_validator("rating_col", mode="before")
    @classmethod
    def _none_column(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "none":
            return None  # how TOML and the command line say "no rating column"
        return v

    @classmethod
    def model_choices(cls) -> list[str]:
        return ["auto", *super().model_choices()]

    def candidate_families(self) -> list[Family]:
        if self.model != "auto":
            return [family(self.model)]
        names = [f.name for f in families("topn")]
        found = [family(n) for n in AUTO_TOPN if n in names]
        if not found:
            raise ValueError(
                f"expected a registered top-N family among {list(AUTO_TOPN)} for model "
                f"'auto', received {names or 'none'}"
            )
        return found

    def applies(self, name: str) -> bool:
        """As :meth:`BaseTrainConfig.applies`, except that a family setting (one of
        :data:`FAMILY_SETTINGS`: the family fields, and ``epochs``, ``lr``, ``reg``,
        ``bs``, ``opt`` that a family trained by its own fit reads) applies exactly when a
        family that may be trained reads it."""
        if name in FAMILY_SETTINGS:
            return any(name in f.reads for f in self.candidate_families())
        return super().applies(name)
