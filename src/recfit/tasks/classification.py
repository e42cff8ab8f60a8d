"""Training a rating classifier with a class-imbalance strategy, and reporting on it.

:func:`train_classifier` builds a :class:`~recfit.models.RatingClassifier`, applies one
strategy of :mod:`recfit.train.imbalance` to the **training rows only** (the validation
rows are passed through untouched, so resampling never leaks into evaluation) and trains it:

=================  ===================================================================
``none``           ordinary training (the baseline)
``class_weights``  row weights ×= inverse-frequency class weights (or user-given ones)
``undersample``    train on a random subset of the majority levels' rows
``oversample``     train on the rows plus random repeats of the minority levels' rows
``smote``          train the baseline, take each training row's feature vector (learned
                   user and item embeddings and biases, :meth:`RatingClassifier.features`),
                   let imbalanced-learn's SMOTE synthesise minority vectors from them,
                   then train the MLP head (embeddings frozen) for ``smote_epochs`` on the
                   real rows plus the synthetic vectors (:class:`SyntheticRows`)
=================  ===================================================================

The SMOTE step follows the contract in :mod:`recfit.train.imbalance`: synthetic vectors
go straight to the model's head, with cross-entropy on their levels and weight 1 each,
next to the ordinary rows; the vectors come from a model trained on the same training
rows. Each optimiser step combines one batch of real rows with the matching slice of
the (shuffled) synthetic rows: ``(Σ w·ℓ_real + Σ ℓ_syn) / (Σ w + n_syn)``.

:func:`classification_metrics` and :func:`write_classification_report` give the numbers
and pictures of a trained classifier (metrics dict, classification report, confusion
matrix).

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> rng = np.random.default_rng(0)
    >>> d = Interactions.from_arrays(rng.integers(0, 20, 300), rng.integers(0, 30, 300),
    ...                              rng.choice([1, 2, 3, 4, 5], 300, p=[.1, .1, .2, .3, .3]))
    >>> res = train_classifier(d.take(np.arange(240)), d.take(np.arange(240, 300)),
    ...                      strategy="oversample", epochs=1, layers=(8,), seed=0)
    >>> res.resampled.counts_after[1.0] == res.resampled.counts_after[4.0]
    True
    >>> 0.0 <= res.learner.evaluate()["accuracy"] <= 1.0
    True
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from recfit.config import ClassificationConfig
from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.metrics.classification import (
    classification_report,
    confusion_matrix,
    format_classification_report,
)
from recfit.metrics.decoding import ratings_to_levels
from recfit.models.classifier import LevelModel, RatingClassifier, levels_for_data
from recfit.models.registry import families, family
from recfit.tasks.common import Callbacks, Task, early_stopping, register_task
from recfit.train.batches import TensorData
from recfit.train.callbacks import Callback, ScheduleRecorder
from recfit.train.execution import Execution
from recfit.train.imbalance import ClassWeightMode, ImbalanceStrategy, Resampled, resample
from recfit.train.learner import Learner

if TYPE_CHECKING:
    from recfit.data.split import Split

__all__ = [
    "STRATEGIES",
    "ClassificationTask",
    "ClassifierFit",
    "SyntheticRows",
    "classification_metrics",
    "classification_report_for",
    "train_classifier",
    "write_classification_report",
]

_SUMMARY_KEYS = ("macro avg", "weighted avg")

STRATEGIES: tuple[str, ...] = ("none", "class_weights", "undersample", "oversample", "smote")
"""The imbalance strategies :func:`train_classifier` understands."""


class SyntheticRows(Callback):
    """Adds SMOTE's synthetic vectors to every training step, through the model's head.

    Each epoch the synthetic rows are shuffled (seeded) and cut into as many slices as
    there are training batches; step ``t`` adds slice ``t``: the batch objective becomes
    ``(Σ w·ℓ_real + Σ ℓ_syn) / (Σ w + n_slice)`` (weight 1 per synthetic row; the
    regularisation term of the real rows is kept as it is).

    Args:
        vectors: synthetic feature vectors, shape ``(m, model.feature_dim)``.
        levels: their level indices, shape ``(m,)``.
        seed: seed of the shuffling.
    """

    order = -5

    def __init__(self, vectors: Any, levels: Any, seed: int = 0) -> None:
        self.vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        self.levels = torch.as_tensor(np.asarray(levels, dtype=np.int64))
        if self.vectors.ndim != 2 or self.levels.shape != (len(self.vectors),):
            raise ConfigError(
                f"expected synthetic vectors (m, d) and m levels, received shapes "
                f"{tuple(self.vectors.shape)} and {tuple(self.levels.shape)}"
            )
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self._chunks: list[Tensor] = []

    def before_fit(self) -> None:
        dev = self.learn.device
        self.vectors, self.levels = self.vectors.to(dev), self.levels.to(dev)

    def before_epoch(self) -> None:
        perm = torch.randperm(len(self.vectors), generator=self._gen).to(self.learn.device)
        self._chunks = list(perm.tensor_split(max(1, self.learn.n_iter)))

    def after_loss(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None or learn.iter >= len(self._chunks):
            return
        idx = self._chunks[learn.iter]
        if len(idx) == 0:
            return
        model = learn.model
        if not isinstance(model, RatingClassifier):
            raise ConfigError(f"expected a RatingClassifier, received {type(model).__name__}")
        out = model.head(self.vectors.index_select(0, idx))  # vectors go to the head directly
        ce = -torch.log_softmax(out, dim=1).gather(1, self.levels[idx].unsqueeze(1)).sum()
        w_real = learn.batch["weight"].sum()
        learn.loss = (learn.loss * w_real + ce) / (w_real + len(idx))


@dataclass
class ClassifierFit:
    """What :func:`train_classifier` produced.

    Attributes:
        learner: the Learner holding the trained classifier (its ``valid`` is the
            validation set given, untouched).
        resampled: the strategy's outcome on the training rows (for ``smote``: the
            synthetic vectors and levels).
        seconds: wall time by phase (``fit``, and for SMOTE ``smote`` and ``head``).
    """

    learner: Learner
    resampled: Resampled
    seconds: dict[str, float] = field(default_factory=dict)


_SET_HERE = frozenset({"n_users", "n_items", "levels", "seed"})
"""Constructor arguments :func:`train_classifier` sets itself (sizes, levels, seed)."""


def _model_kwargs(model: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` checked against what the classification family ``model`` takes: the
    config fields it reads and its model's other constructor arguments (registry)."""
    names = sorted(f.name for f in families("classification"))
    if model not in names:
        raise ConfigError(f"expected model among {names}, received {model!r}")
    fam = family(model)
    params = inspect.signature(fam.model_class.__init__).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    allowed = (fam.reads | named) - _SET_HERE - {"self"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"expected {model} arguments among {sorted(allowed)}, received {unknown}")
    return dict(kwargs)


def _config(
    model: str,
    strategy: ImbalanceStrategy,
    seed: int,
    given: Mapping[str, Any],
    kwargs: Mapping[str, Any],
) -> ClassificationConfig:
    """The run's config as the config path resolves it (the family's defaults filling
    what was not given): training settings ``given`` (``None``: not given) and the model
    arguments that are config fields."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"expected strategy among {list(STRATEGIES)}, received {strategy!r}")
    fields = ClassificationConfig.model_fields
    values = {k: v for k, v in given.items() if v is not None}
    if strategy != "smote":  # read by SMOTE only (the config refuses what it would ignore)
        values = {k: v for k, v in values.items() if not k.startswith("smote_")}
    values.update({k: v for k, v in kwargs.items() if k in fields})
    try:
        cfg = ClassificationConfig(model=model, imbalance=strategy, seed=seed, **values)
    except ValueError as err:  # pydantic's ValidationError
        raise ConfigError(f"expected valid classifier settings, received {values}: {err}") from err
    return cfg.resolve_model(big=False)


def _settings(cfg: ClassificationConfig, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The model's arguments: the config fields its family reads, then ``kwargs``
    (the seed apart: :func:`_build` takes it)."""
    out = {**family(cfg.model).settings(cfg), **kwargs}
    out.pop("seed", None)
    return out


def _fit_spec(cfg: ClassificationConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in ("epochs", "lr", "pct_start", "smote_epochs", "smote_k")}


def train_classifier(
    train: Interactions,
    valid: Interactions | None = None,
    *,
    strategy: ImbalanceStrategy = "none",
    model: str = "classifier",
    levels: Sequence[float] | None = None,
    class_weight: ClassWeightMode | Mapping[float, float] = "inverse",
    epochs: int | None = None,
    lr: float | None = None,
    bs: int | None = None,
    wd: float | None = None,
    reg: float | None = None,
    smote_epochs: int | None = None,
    smote_k: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = False,
    callbacks: Sequence[Callback] = (),
    pct_start: float | None = None,
    **model_kwargs: Any,
) -> ClassifierFit:
    """Train a :class:`~recfit.models.RatingClassifier` with one imbalance strategy.

    Args:
        train: the training rows (the only rows any strategy touches).
        valid: validation rows, evaluated after each epoch, never resampled.
        strategy: ``none``, ``class_weights``, ``undersample``, ``oversample`` or ``smote``.
        model: a classification family: ``classifier``
            (:class:`~recfit.models.RatingClassifier`), ``ordrec``
            (:class:`~recfit.models.OrdRec`, trained row-wise; no ``smote``) or any other
            registered one.
        levels: the rating levels (default :func:`~recfit.models.levels_for_data` of ``train``).
        class_weight: for ``class_weights``: ``"inverse"``, ``"sqrt_inverse"`` or
            ``{rating: weight}``.
        epochs, lr, bs, wd, reg, pct_start: one-cycle training of the whole model.
        smote_epochs: for ``smote``: epochs of head training on real + synthetic rows.
        smote_k: SMOTE's neighbours. These training settings and the model arguments
            that are config fields default (``None``, left out) to what the config path
            (:class:`~recfit.config.ClassificationConfig`, ``recfit train --task
            classification``) uses: the family's defaults, then the config's.
        seed: seeds the model, the batch order and the samplers.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: progress bars (``None``: on a terminal).
        callbacks: extra Learner callbacks.
        **model_kwargs: the model's arguments (``layers``, ``head``, ``decode``,
            ``n_factors``, ... of a classifier; ``n_factors``, ``user_thresholds``,
            ``implicit``, ``decode``, ``init_std`` of OrdRec).

    Returns:
        A :class:`ClassifierFit`.
    """
    kwargs = _model_kwargs(model, model_kwargs)
    given = {"epochs": epochs, "lr": lr, "bs": bs, "wd": wd, "reg": reg, "pct_start": pct_start,
             "smote_epochs": smote_epochs, "smote_k": smote_k}  # fmt: skip
    cfg = _config(model, strategy, seed, given, kwargs)
    learner, rs = _build(
        train, valid, strategy=cfg.imbalance, model=model, levels=levels,
        class_weight=class_weight, bs=cfg.bs, wd=cfg.wd, reg=cfg.reg, device=device,
        seed=seed, progress=progress, callbacks=callbacks, **_settings(cfg, kwargs),
    )  # fmt: skip
    learner, smote_rs, seconds = _fit(
        learner, strategy=cfg.imbalance, seed=seed, **_fit_spec(cfg)
    )  # fmt: skip
    return ClassifierFit(learner, rs if smote_rs is None else smote_rs, seconds)


def _build(
    train: Interactions,
    valid: Interactions | None,
    *,
    strategy: ImbalanceStrategy,
    model: str = "classifier",
    levels: Sequence[float] | None,
    class_weight: ClassWeightMode | Mapping[float, float],
    bs: int,
    wd: float,
    reg: float,
    seed: int,
    device: str,
    progress: bool | None,
    callbacks: Sequence[Callback],
    **model_kwargs: Any,
) -> tuple[Learner, Resampled]:
    """The classifier in a Learner on the training rows after ``strategy`` (SMOTE: the
    rows as they are; its synthetic rows come after a first fit, :func:`_fit`). A family
    that trains row-wise (OrdRec) always does, whatever the size of its tables."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"expected strategy among {list(STRATEGIES)}, received {strategy!r}")
    kwargs = _model_kwargs(model, model_kwargs)
    fam = family(model)
    if strategy == "smote" and fam.model_class is not RatingClassifier:
        raise ConfigError(f"expected model 'classifier' for strategy 'smote', received {model!r}")
    grid = [float(v) for v in (levels if levels is not None else levels_for_data(train))]
    first = "none" if strategy == "smote" else strategy
    rs = resample(train, first, seed=seed, levels=grid, class_weight=class_weight)
    net = fam.build({**kwargs, "levels": grid, "seed": seed}, train)
    learner = Learner(
        net,
        rs.train,
        valid,
        bs=bs,
        wd=wd,
        reg=reg,
        seed=seed,
        device=device,
        callbacks=callbacks,
        progress=progress,
        execution=Execution(row_wise=True) if fam.row_wise else None,
    )
    return learner, rs


def _fit(
    learner: Learner,
    *,
    strategy: ImbalanceStrategy,
    epochs: int,
    lr: float,
    pct_start: float,
    smote_epochs: int,
    smote_k: int,
    seed: int,
) -> tuple[Learner, Resampled | None, dict[str, float]]:
    """One-cycle training of the learner :func:`_build` made; for SMOTE, then the head on
    real plus synthetic rows. The Learner holding the trained model, SMOTE's outcome (or
    ``None``) and the seconds by phase."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    learner.fit_one_cycle(epochs, lr, pct_start=pct_start)
    seconds["fit"] = time.perf_counter() - t0
    if strategy != "smote":
        return learner, None, seconds

    # SMOTE: vectors of the training rows from the model trained on them (with SMOTE, the
    # learner trains on the rows as they are)
    model = learner.model
    if not isinstance(model, RatingClassifier):
        raise ConfigError(f"expected a RatingClassifier, received {type(model).__name__}")
    train, grid = learner.train, list(model.levels)
    t0 = time.perf_counter()
    vectors = _features(learner, train)
    rs = resample(train, "smote", seed=seed, levels=grid, vectors=vectors, k_neighbors=smote_k)
    seconds["smote"] = time.perf_counter() - t0
    assert rs.synthetic_vectors is not None and rs.synthetic_levels is not None
    frozen = [p for n, p in model.named_parameters() if not n.startswith(("body.", "out."))]
    for p in frozen:
        p.requires_grad_(False)
    t0 = time.perf_counter()
    try:
        head_learner = Learner(
            model,
            train,
            learner.valid,
            bs=learner.bs,
            wd=learner.wd,
            reg=learner.reg,
            seed=seed + 1,
            device=str(learner.device),
            # the first learner's callbacks (its progress bar included), then the rows
            callbacks=[
                *learner.cbs,
                SyntheticRows(rs.synthetic_vectors, rs.synthetic_levels, seed),
            ],
            progress=False,
        )
        head_learner.fit_one_cycle(smote_epochs, lr / 5, pct_start=pct_start)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    seconds["head"] = time.perf_counter() - t0
    head_learner.history = [*learner.history, *head_learner.history]
    return head_learner, rs, seconds


def _features(learner: Learner, data: Interactions) -> np.ndarray:
    """The model's feature vector of every row of ``data`` (eval mode), float32."""
    model = learner.model
    if not isinstance(model, RatingClassifier):
        raise ConfigError(f"expected a RatingClassifier, received {type(model).__name__}")
    td = TensorData.from_interactions(data, learner.device, drop_zero_weight=False)
    was = model.training
    model.eval()
    parts = []
    with torch.inference_mode():
        for b in td.epoch(learner.eval_bs, None):
            parts.append(model.features(b).float().cpu())
    model.train(was)
    if not parts:
        return np.zeros((0, model.feature_dim), dtype=np.float32)
    return torch.cat(parts).numpy()


def classification_metrics(learner: Learner, data: Interactions) -> dict[str, float]:
    """``learner.evaluate(data)``: loss, reg_loss, mse/rmse/mae of ``predict``, and the
    level metrics (accuracy, balanced_accuracy, macro_f1, weighted_f1, mse/rmse of both
    decodings), all weighted.

    Raises:
        ConfigError: the learner's model has no rating levels.
    """
    if not isinstance(learner.model, LevelModel):
        raise ConfigError(
            f"expected a classifier (a model with levels), received {type(learner.model).__name__}"
        )
    return learner.evaluate(data)


def classification_report_for(
    learner: Learner, data: Interactions
) -> tuple[dict[str, Any], np.ndarray]:
    """The classification report (dict) and the weighted confusion matrix of the most
    likely level on ``data`` (rows of weight 0 left out), level names in stars.

    Example:
        >>> # rep, cm = classification_report_for(fit.learner, split.test)
    """
    model = learner.model
    if not isinstance(model, LevelModel):
        raise ConfigError(f"expected a classifier, received {type(model).__name__}")
    grid = np.asarray(model.levels, dtype=np.float64)
    w = data.weights().astype(np.float64)
    keep = w > 0
    proba = learner.predict_proba(data)[keep]
    pred = np.argmax(proba, axis=1)
    true = ratings_to_levels(data.rating[keep], grid)
    names = [f"{v:g}" for v in grid]
    labels = np.arange(len(grid))
    rep = classification_report(pred, true, w[keep], labels=labels, names=names)
    cm = confusion_matrix(pred, true, w[keep], n_classes=len(grid))
    return rep, cm


def write_classification_report(learner: Learner, data: Interactions, out: str | Path) -> None:
    """Write ``classification_report.json``, ``classification_report.txt`` and
    ``confusion_matrix.png`` (row-normalised, with counts in the JSON) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rep, cm = classification_report_for(learner, data)
    names = [str(k) for k in rep if isinstance(rep[k], dict) and k not in _SUMMARY_KEYS]
    payload = {"report": rep, "confusion_matrix": cm.tolist(), "levels": names}
    (out / "classification_report.json").write_text(
        json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8"
    )
    (out / "classification_report.txt").write_text(
        format_classification_report(rep) + "\n", encoding="utf-8"
    )
    from recfit.plots import plot_confusion_matrix  # matplotlib is heavy: only when drawing

    fig = plot_confusion_matrix(cm, names, normalize="true", title="confusion matrix (recall)")
    tmp = out / ".confusion_matrix.tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, out / "confusion_matrix.png")


class ClassificationTask(Task[ClassificationConfig]):
    """The classification task's steps (:class:`~recfit.tasks.common.Task`): ratings as
    levels, with ``cfg.imbalance`` applied to the training rows only."""

    name = "classification"

    def prepare(
        self, cfg: ClassificationConfig, split: Split, *, distributed: bool = False
    ) -> ClassificationConfig:
        # the family's defaults (OrdRec's), then the optimiser: AdamW (row-wise for a
        # family that trains row-wise, see _build)
        return cfg.resolve_model(big=False).resolve_opt(row_wise=False)

    def build(
        self, cfg: ClassificationConfig, fit: Split, callbacks: Callbacks, progress: bool | None
    ) -> Learner:
        cw: Any = cfg.class_weight
        if isinstance(cw, Mapping):
            cw = {float(k): float(v) for k, v in cw.items()}
        cbs = [ScheduleRecorder(), *callbacks, *early_stopping(cfg)]
        learner, _ = _build(
            fit.train, fit.test, strategy=cfg.imbalance, model=cfg.model, levels=None,
            class_weight=cw,
            bs=cfg.bs, wd=cfg.wd, reg=cfg.reg, seed=cfg.seed, device=cfg.device,
            progress=progress, callbacks=cbs, **_settings(cfg, {}),
        )  # fmt: skip
        return learner

    def fit(self, learner: Learner, cfg: ClassificationConfig) -> Learner:
        return _fit(learner, strategy=cfg.imbalance, seed=cfg.seed, **_fit_spec(cfg))[0]

    def artefacts(
        self, learner: Learner, cfg: ClassificationConfig, split: Split, out: Path
    ) -> None:
        write_classification_report(learner, split.test, out)


register_task(ClassificationTask())
