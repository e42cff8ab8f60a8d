"""The rating task's config: regression on the rating (dot, mf, svdpp, nn...).

Example:
    >>> cfg = RatingConfig(epochs=3)
    >>> cfg.task, cfg.model, cfg.epochs, cfg.trainer
    ('rating', 'auto', 3, 'sgd')
    >>> RatingConfig.model_validate_json(cfg.model_dump_json()) == cfg
    True
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from recfit.config.base import BaseTrainConfig
from recfit.models.registry import Family, families, family

__all__ = [
    "AUTO_MODELS",
    "BUDGET_RULE",
    "RatingConfig",
    "default_budget",
    "searched_families",
]

AUTO_MODELS: tuple[str, ...] = ("svdpp", "dot")
"""What ``model="auto"`` resolves to: the first on the dense path, the second on the
row-wise path or with ALS (:meth:`RatingConfig.resolve_model`)."""


BUDGET_PER_RATING = 1 / 1500
"""Seconds of the default budget per training rating (:func:`default_budget`)."""
BUDGET_RANGE = (120.0, 600.0)
"""The default budget's bounds in seconds (:func:`default_budget`)."""
_NONE_WORDS = {"budget": ("auto", "none", ""), "y_range": ("none", "off", "")}
"""The words that mean ``None`` for a field, by field (TOML has no null)."""
BUDGET_RULE = (
    f"by size: training ratings / {round(1 / BUDGET_PER_RATING)} seconds, within "
    f"{BUDGET_RANGE[0]:.0f}-{BUDGET_RANGE[1]:.0f} (ml-100k 2 min, ml-1m 10 min)"
)
"""How the default budget is chosen, in words (help text, ``recfit config show``)."""


def default_budget(n_train: int) -> float:
    """The budget of ``model="auto"`` when none is given: ``n_train / 1500`` seconds,
    clipped into :data:`BUDGET_RANGE` (2 minutes for ml-100k's 80,000 training ratings,
    10 minutes for ml-1m's 900,000 and more). Computed from the training part.

    Example:
        >>> default_budget(80_000), default_budget(300_000), default_budget(900_000)
        (120.0, 200.0, 600.0)
    """
    lo, hi = BUDGET_RANGE
    return float(min(max(int(n_train) * BUDGET_PER_RATING, lo), hi))


def searched_families(trainer: str | None = None) -> list[Family]:
    """The families ``model="auto"`` with a ``budget`` may try: every registered rating
    family whose predictions are ratings, except ``blend`` (auto builds its own blend),
    and, with ``trainer``, those that train by it; :data:`AUTO_MODELS` first.

    Example:
        >>> names = [f.name for f in searched_families()]
        >>> names[:2], "baseline" in names, "blend" in names
        (['svdpp', 'dot'], True, False)
    """
    out = [family(name) for name in AUTO_MODELS]
    out += [
        f
        for f in families("rating")
        if f.output == "rating" and f.name != "blend" and f.name not in AUTO_MODELS
    ]
    return [f for f in out if trainer is None or trainer in f.trainers]


class RatingConfig(BaseTrainConfig):
    """One rating run: every field with its default; unknown keys are rejected.

    The defaults are recfit's best rating configuration: SVD++ 50 on data small enough
    for the dense path (ml-100k; its family brings one-cycle 6 epochs with ``pct_start``
    0.3) and DotBias 50 on the row-wise path (ml-1m and up; row-wise Adagrad with
    :data:`~recfit.config.base.ROW_WISE_DEFAULTS`), ``y_range`` (0, 5.5), ``reg`` 0.05
    and ``wd`` 0.05, automatic ``bs``; how each was chosen is in ``docs/defaults.md``.
    fastai's collab configuration (DotBias 50, ``y_range`` (0, 5.5), one-cycle 5 × 5e-3,
    ``wd`` 0.1, bs 64, dense AdamW) is ``RatingConfig(model="dot", wd=0.1, reg=0.0,
    bs=64)`` (``recfit train --model dot --wd 0.1 --reg 0 --bs 64``).

    ``bs`` 0 (default) picks the batch size from the number of training ratings
    (:func:`recfit.train.sparse.auto_batch_size`: 64 up to 200,000 ratings, then about
    ``n / 500`` as a power of two, at most 16,384) and scales ``lr`` by ``(bs / 64) **
    0.4`` (:func:`recfit.train.sparse.scaled_lr`); a given ``bs`` is used as is, with
    ``lr`` unchanged.

    Example:
        >>> RatingConfig(model="nn").applies("n_factors")
        False
        >>> small = RatingConfig(budget=0).resolve_model(big=False)  # budget goes with auto
        >>> small.model, small.epochs, small.budget
        ('svdpp', 6, None)
        >>> RatingConfig(epochs=3).resolve_model(False).epochs
        3
        >>> RatingConfig().resolve_model(big=True).model
        'dot'
    """

    AUTO_FIELDS = frozenset({"budget"})
    task: Literal["rating"] = "rating"
    model: str = "auto"
    """auto (svdpp on the dense path, dot on the row-wise path or with ALS), dot (DotBias),
    mf (biased MF, Surprise semantics), svdpp (DotBias plus SVD++'s implicit term), nn
    (EmbeddingNN), or another registered rating family."""
    n_factors: int = Field(default=50, ge=1)
    """Embedding size of the dot models (dot, mf, svdpp)."""
    y_range: tuple[float, float] | None = (0.0, 5.5)
    """Output range of the scaled sigmoid (LOW,HIGH); none for a linear output."""
    layers: tuple[int, ...] = (100,)
    """Hidden layer sizes of the EmbeddingNN's MLP."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout of the MLP."""
    batch_norm: bool = True
    """Batch normalisation in the MLP."""
    loss: Literal["mse", "mae", "huber"] = "mse"
    """The training objective."""
    opt: Literal["auto", "adam", "sgd", "momentum", "adagrad"] = "auto"
    """auto (row-wise Adagrad when the model trains on the row-wise path: dot or mf of at
    least recfit.train.sparse.SPARSE_MIN_PARAMS parameters, one process; else AdamW with
    fastai's semantics), adam, sgd, momentum or adagrad."""
    schedule: Literal["one_cycle", "constant", "cosine", "cyclic"] = "one_cycle"
    """one_cycle (fastai's), constant, cosine or cyclic."""
    pct_start: float = Field(default=0.25, gt=0.0, lt=1.0)
    """Share of one-cycle steps spent warming up."""
    reg_exponent: float = Field(default=1.0, gt=0.0, le=1.0)
    """ALS: a row's ridge is reg * n ** reg_exponent for n the total weight of its ratings
    (1: the Learner's objective)."""
    time_bins: int = Field(default=30, ge=1)
    """timesvdpp: periods of the training time span, each item with its own bias in each."""
    time_reg: float = Field(default=0.3, ge=0.0)
    """timesvdpp: L2 penalty of the time biases (user-day and item-period)."""
    gibbs_samples: int = Field(default=100, ge=1)
    """bmf: Gibbs sweeps after the burn-in, whose predictions are averaged."""
    gibbs_burn_in: int = Field(default=20, ge=0)
    """bmf: Gibbs sweeps before the samples that are averaged."""
    autorec_hidden: int = Field(default=500, ge=1)
    """autorec: sigmoid units of the item code (the I-AutoRec paper: 500)."""
    checkpoint_every: int | None = Field(default=None, ge=1)
    """With a run directory, also save the full training state every this many optimiser
    steps (it is always saved at epoch ends)."""
    bf16: bool = False
    """bfloat16 autocast of the forward pass on CUDA (an error without CUDA)."""
    budget: float | None = Field(default=None, ge=0.0)
    """model auto: seconds for choosing the model by inner validation (every rating family
    that fits, tuning, a blend); auto (none, the default): by size, training ratings /
    1500 seconds within 120-600 (recfit.config.rating.default_budget); 0: svdpp or dot by
    size without a search."""
    blend_members: tuple[str, ...] = ("svdpp", "dot")
    """model blend: its members, each a family name (svdpp,dot) or, in a config file, a
    JSON object of config fields ('{"model": "svdpp", "n_factors": 100}')."""

    @model_validator(mode="before")
    @classmethod
    def _old_budget(cls, data: Any) -> Any:
        # before the default budget was chosen by size, every config stored budget 0 (the
        # then default) whatever the model: a resolved family's 0 still means "not given"
        old = isinstance(data, dict) and data.get("model", "auto") != "auto"
        if old and data.get("budget") in (0, 0.0):
            data = {k: v for k, v in data.items() if k != "budget"}
        return data

    @field_validator("budget", "y_range", mode="before")
    @classmethod
    def _none_words(cls, v: Any, info: ValidationInfo) -> Any:
        # how TOML and the command line say "by size" (budget) or "no range" (y_range)
        if isinstance(v, str) and v.strip().lower() in _NONE_WORDS[str(info.field_name)]:
            return None
        return v

    @field_validator("y_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"expected y_range (low, high) with low < high, received {v}")
        return v

    @classmethod
    def model_choices(cls) -> list[str]:
        return ["auto", *super().model_choices()]

    def candidate_families(self) -> list[Family]:
        if self.model == "auto":
            if self.budget == 0:
                return [family(name) for name in AUTO_MODELS]
            given = "trainer" in self.model_fields_set
            return searched_families(self.trainer if given else None)
        return [family(self.model)]

    def _auto_model(self, big: bool) -> str:
        """``auto`` by size (what budget 0 runs; with a budget above 0, or none given, a
        run chooses by inner validation first: :func:`recfit.tasks.auto.choose_model`):
        ``dot`` when a DotBias of this size would train on the row-wise path (``big``:
        :func:`recfit.tasks.rating.resolve_config`) or with ALS, else ``svdpp``, more
        accurate but without a row-wise or ALS form."""
        if self.model != "auto":
            return self.model
        return AUTO_MODELS[1] if big or self.trainer == "als" else AUTO_MODELS[0]

    def resolve_budget(self, n_train: int) -> RatingConfig:
        """This config with the budget of ``model="auto"`` made concrete for ``n_train``
        training ratings: :func:`default_budget` when none was given (other values, and
        other models: unchanged).

        Example:
            >>> RatingConfig().resolve_budget(80_000).budget
            120.0
            >>> RatingConfig(budget=0).resolve_budget(80_000).budget
            0.0
        """
        if self.model != "auto" or self.budget is not None:
            return self
        return self.replace(budget=default_budget(n_train))

    def searches(self) -> bool:
        """Whether ``model="auto"`` chooses by inner validation (a budget above 0; none
        given: the default budget, see :meth:`resolve_budget`)."""
        return self.model == "auto" and self.budget != 0

    def without_search(self) -> RatingConfig:
        """Budget 0 for a ``model="auto"`` that would search: the size rule (svdpp or
        dot), as :meth:`resolve_model` says.

        Example:
            >>> RatingConfig().without_search().budget
            0.0
            >>> RatingConfig(model="mf").without_search() == RatingConfig(model="mf")
            True
        """
        return self.replace(budget=0.0) if self.searches() else self
