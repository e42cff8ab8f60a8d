"""The classification task's config: ratings as levels, with a class-imbalance strategy.

Example:
    >>> cfg = ClassificationConfig(imbalance="smote")
    >>> cfg.model, cfg.loss, cfg.bs, cfg.wd, cfg.applies("smote_k")
    ('classifier', 'cross_entropy', 256, 0.3, True)
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from recfit.config.base import BaseTrainConfig

__all__ = ["ClassificationConfig"]


class ClassificationConfig(BaseTrainConfig):
    """One classification run: the classifier's defaults (how they were chosen:
    ``docs/defaults.md``); unknown keys are rejected.

    Example:
        >>> ClassificationConfig().applies("class_weight")
        False
    """

    MONITOR_KINDS: ClassVar[tuple[str, ...]] = ("rating", "levels", "loss")

    task: Literal["classification"] = "classification"
    model: str = "classifier"
    """classifier (RatingClassifier: embeddings, MLP, softmax or ordinal head) or ordrec
    (OrdRec: biased-MF score, ordinal head with per-user thresholds)."""
    n_factors: int = Field(default=32, ge=1)
    """Width of the classifier's dot-product (GMF) branch, or of OrdRec's factors."""
    layers: tuple[int, ...] = (100,)
    """Hidden layer sizes of the classifier's MLP."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout of the MLP."""
    batch_norm: bool = True
    """Batch normalisation in the MLP."""
    loss: Literal["cross_entropy"] = "cross_entropy"
    """The training objective (cross-entropy over the rating levels)."""
    head: Literal["softmax", "ordinal"] = "softmax"
    """The classifier's head: softmax or ordinal (cumulative link)."""
    decode: Literal["expected", "argmax"] = "expected"
    """What the predicted rating is: the expected level or the most likely one."""
    biases: bool = True
    """The classifier's user and item biases."""
    user_thresholds: bool = True
    """OrdRec's per-user threshold offsets (false: one threshold set for every user)."""
    implicit: bool = True
    """OrdRec's score with SVD++'s implicit term over each user's rated items."""
    imbalance: Literal["none", "class_weights", "undersample", "oversample", "smote"] = "none"
    """Class-imbalance strategy on the training rows: none, class_weights, undersample,
    oversample or smote."""
    class_weight: Literal["inverse", "sqrt_inverse"] | dict[str, float] = "inverse"
    """For class_weights: inverse, sqrt_inverse or a table {rating: weight}."""
    smote_epochs: int = Field(default=2, ge=1)
    """For smote: epochs training the MLP head on real plus synthetic vectors (after the
    epochs of ordinary training)."""
    smote_k: int = Field(default=5, ge=1)
    """SMOTE's number of neighbours."""
    opt: Literal["auto", "adam"] = "auto"
    """auto or adam (AdamW with fastai's semantics)."""
    schedule: Literal["one_cycle"] = "one_cycle"
    """one_cycle (fastai's)."""
    pct_start: float = Field(default=0.25, gt=0.0, lt=1.0)
    """Share of one-cycle steps spent warming up."""
    bs: int = Field(default=256, ge=0)
    wd: float = Field(default=0.3, ge=0.0)
    reg: float = Field(default=0.0, ge=0.0)

    def _condition(self, name: str) -> bool:
        if name == "class_weight":
            return self.imbalance == "class_weights"
        if name in ("smote_epochs", "smote_k"):
            return self.imbalance == "smote"
        return super()._condition(name)
