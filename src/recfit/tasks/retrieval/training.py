"""Training two-tower retrieval models with the :class:`~recfit.train.Learner`: the T1 and
T2 presets, :func:`train_retrieval` (config and data in, a trained and evaluated model
out), :func:`compare_depths`, and the retrieval task's steps for a training run.

The objectives are :mod:`recfit.models.retrieval_losses`' (keras-rs's rescaled MSE, or
recfit's in-batch softmax with log-Q correction); evaluation is
:mod:`recfit.tasks.retrieval.evaluation`'s full-catalogue ranking.

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> rng = np.random.default_rng(0)
    >>> d = Interactions.from_arrays(rng.integers(0, 30, 600), rng.integers(0, 40, 600),
    ...                              rng.integers(1, 6, 600).astype(float), rating_scale=(1, 5))
    >>> res = train_retrieval(RetrievalConfig(epochs=2, bs=64, eval_ks=(10,), n_bootstrap=0),
    ...                       d, "random:0.2")
    >>> sorted(k for k in res.metrics if k.endswith("@10"))[:3]
    ['capped_recall@10', 'hit_rate@10', 'map@10']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from recfit.config import RetrievalConfig
from recfit.data.interactions import Interactions
from recfit.data.sources import make_split
from recfit.data.split import Split
from recfit.errors import ConfigError
from recfit.models.losses import Loss
from recfit.models.registry import family
from recfit.models.retrieval_losses import InBatchSoftmaxLoss, RescaledMSELoss, item_counts
from recfit.models.two_tower import TwoTower
from recfit.tasks.common import (
    Callbacks,
    Metrics,
    Task,
    early_stopping,
    make_learner,
    register_task,
)
from recfit.tasks.retrieval.evaluation import (
    RankingMetrics,
    filter_positives,
    ranking_options,
    retrieval_metrics,
)
from recfit.train.callbacks import Callback, ScheduleRecorder
from recfit.train.learner import Learner
from recfit.train.schedules import Constant

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PRESET_BASE",
    "RetrievalResult",
    "RetrievalTask",
    "compare_depths",
    "t1_config",
    "t2_config",
    "train_retrieval",
]


# ----------------------------------------------------------------------------- presets
PRESET_BASE: dict[str, Any] = {"seed": 0, "device": "cpu"}
"""What the presets and :func:`train_retrieval` given no config (or a mapping) start
from, under :class:`~recfit.config.RetrievalConfig`'s defaults: seed 0 on the CPU."""


def t1_config(objective: Literal["mse", "softmax"] = "mse", **changes: Any) -> RetrievalConfig:
    """Protocol T1 (ml-100k, keras-rs Deep Recommenders): features, optimiser and metric.

    User id, age bucket, gender, gender×age cross, occupation; movie id, title tokens,
    genres; Adagrad 0.05, batch 1000, 30 epochs; top-100 accuracy on 5-star test
    ratings with seen items not excluded. ``objective="mse"`` is keras-rs's objective;
    ``"softmax"`` is recfit's (in-batch softmax, its settings in ``changes``).

    Example:
        >>> t1_config(layers=(64, 32)).relevant_min_rating
        5.0
    """
    base = RetrievalConfig(
        **PRESET_BASE,
        objective=objective,
        user_features=("age", "gender", "occupation", "gender_x_age"),
        item_features=("title", "genres"),
        opt="adagrad",
        lr=0.05,
        epochs=30,
        bs=1000,
        eval_ks=(10, 20, 100),
        relevant_min_rating=5.0,
        exclude_seen=False,
    )
    return base.replace(**changes)


def t2_config(**changes: Any) -> RetrievalConfig:
    """Protocol T2 (ml-1m, ratings >= 4 as positives, training items excluded).

    recfit's settings for it: in-batch softmax with log-Q correction, the default
    ml-1m features, Adam 0.005, batch 1024, 4 epochs (chosen on an inner 80/20 cut of
    the training positives: Recall@20 0.2361 against 0.2369 at 5 epochs and 0.2330 at 3).

    Example:
        >>> t2_config().exclude_seen, t2_config().positive_min_rating
        (True, 4.0)
    """
    base = RetrievalConfig(
        **PRESET_BASE,
        objective="softmax",
        opt="adam",
        lr=0.005,
        bs=1024,
        epochs=4,
        positive_min_rating=4.0,
        relevant_min_rating=None,
        exclude_seen=True,
        eval_ks=(10, 20, 100),
    )
    return base.replace(**changes)


# ----------------------------------------------------------------------------- training
@dataclass
class RetrievalResult:
    """What :func:`train_retrieval` produced.

    Attributes:
        config: the resolved configuration.
        model: the trained :class:`~recfit.models.two_tower.TwoTower`.
        learner: the :class:`~recfit.train.Learner` that trained it (``history``...).
        split: the split used (after the positive filter, when there is one).
        metrics: ranking metrics by name (``top_100_accuracy``, ``recall@20``,
            ``ndcg@20``, ``hit_rate@20``...) plus ``fit_seconds`` and ``eval_seconds``.
        report: the full :func:`~recfit.metrics.ranking.ranking_report` (intervals under
            ``<name>_ci``, ``exclude_seen``, ``n_queries``...).
        epoch_metrics: per evaluated epoch, the ranking metrics (``eval_every`` > 0).
    """

    config: RetrievalConfig
    model: TwoTower
    learner: Learner
    split: Split
    metrics: dict[str, float]
    report: dict[str, Any]
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)


def _keras_adagrad(lr: float) -> Callable[[Any], torch.optim.Optimizer]:
    def make(params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=0.1, eps=1e-7)

    return make


def _two_tower(learner: Learner) -> TwoTower:
    model = learner.model
    if not isinstance(model, TwoTower):
        raise ConfigError(f"expected a TwoTower model, received {type(model).__name__}")
    return model


def _tracker(learner: Learner) -> RankingMetrics | None:
    return next((c for c in learner.cbs if isinstance(c, RankingMetrics)), None)


def _build(
    cfg: RetrievalConfig,
    train: Interactions,
    test: Interactions,
    callbacks: Sequence[Callback],
    progress: bool | None,
) -> Learner:
    """A fresh two-tower model for ``train`` (positives) with ``cfg``'s objective, in a
    Learner that tracks the ranking metrics of ``test`` every ``cfg.eval_every`` epochs."""
    fam = family(cfg.model)
    built = fam.build(
        {
            **fam.settings(cfg),
            "user_features": cfg.user_features,
            "item_features": cfg.item_features,
            "use_ids": cfg.use_ids,
        },
        train,
    )
    if not isinstance(built, TwoTower):  # the losses and the ranking read its towers
        raise ConfigError(f"expected a two-tower model, received {type(built).__name__}")
    model = built
    loss: Loss
    if cfg.objective == "mse":
        scale = train.rating_scale
        if scale is None:
            lo, hi = float(np.min(train.rating)), float(np.max(train.rating))
            scale = (lo, hi if hi > lo else lo + 1.0)
        loss = RescaledMSELoss(scale)
    else:
        loss = InBatchSoftmaxLoss(
            model,
            temperature=cfg.temperature,
            item_counts=item_counts(train),
            logq=cfg.logq,
            remove_accidental_hits=cfg.remove_accidental_hits,
            num_hard_negatives=cfg.num_hard_negatives,
            num_negatives=cfg.num_negatives,
            negative_sampling=cfg.negative_sampling,
            popularity_alpha=cfg.popularity_alpha,
        )
    cbs: list[Callback] = list(callbacks)
    if cfg.eval_every > 0:
        cbs.insert(0, RankingMetrics(test, train, every=cfg.eval_every, **ranking_options(cfg)))
    opt: Any = _keras_adagrad(cfg.lr) if cfg.opt == "adagrad" else "adam"
    return make_learner(
        cfg, model, train, None, callbacks=cbs, progress=progress, loss=loss, metrics=(), opt=opt,
        bs=cfg.bs,
    )  # fmt: skip


def _fit(learner: Learner, cfg: RetrievalConfig) -> Learner:
    """Train ``learner`` in place for ``cfg.epochs`` along ``cfg.schedule``."""
    if cfg.schedule == "one_cycle":
        return learner.fit_one_cycle(cfg.epochs, cfg.lr)
    return learner.fit(cfg.epochs, schedule=Constant(cfg.lr))


def train_retrieval(
    config: RetrievalConfig | Mapping[str, Any] | None = None,
    data: Interactions | None = None,
    split: Split | str = "random:0.2",
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = False,
    **changes: Any,
) -> RetrievalResult:
    """Train a two-tower model on ``data`` and evaluate full-catalogue retrieval.

    Args:
        config: a :class:`~recfit.config.RetrievalConfig`, or a mapping of its fields
            read over :data:`PRESET_BASE` (``None``: that base alone); ``changes``
            override fields.
        data: the interactions (with feature tables for side features).
        split: a :class:`~recfit.data.split.Split` of ``data`` or a spec
            (``"random:0.2"``...) applied, with ``config.seed``, after the positive filter.
            With a ``Split`` and ``positive_min_rating``, both parts are filtered.
        callbacks: extra Learner callbacks.
        progress: progress bars (``None``: only on a terminal).

    Returns:
        a :class:`RetrievalResult`; ``metrics["top_100_accuracy"]`` etc.

    Raises:
        ConfigError: a bad configuration; DataError: no training rows.
    """
    if data is None:
        raise ConfigError("expected interactions to train on, received None (parameter 'data')")
    if isinstance(config, RetrievalConfig):
        cfg = config.replace(**changes) if changes else config
    else:
        given = {} if config is None else dict(config)
        cfg = RetrievalConfig.validated({**PRESET_BASE, **given, **changes})
    if isinstance(split, str):
        the_split = make_split(
            filter_positives(data, cfg.positive_min_rating), split, seed=cfg.seed
        )
        train, test = the_split.train, the_split.test
    elif isinstance(split, Split):
        the_split = split
        train = filter_positives(split.train, cfg.positive_min_rating)
        test = filter_positives(split.test, cfg.positive_min_rating)
    else:
        raise ConfigError(f"expected a Split or a split spec, received {type(split).__name__}")
    learner = _build(cfg, train, test, callbacks, progress)
    t0 = time.perf_counter()
    _fit(learner, cfg)
    fit_seconds = time.perf_counter() - t0
    model = _two_tower(learner)
    with learner.threads():  # the thread policy again: the cores free now
        metrics, report = retrieval_metrics(cfg, model, test, train, fit_seconds)
    tracker = _tracker(learner)
    records = [] if tracker is None else list(tracker.records)
    return RetrievalResult(cfg, model, learner, the_split, metrics, report, records)


# ----------------------------------------------------------------------------- comparisons
def compare_depths(
    data: Interactions,
    split: Split | str = "random:0.2",
    depths: Sequence[Sequence[int]] = ((32,), (64, 32), (128, 64, 32)),
    config: RetrievalConfig | None = None,
    *,
    metric: str = "top_100_accuracy",
    every: int = 5,
    progress: bool | None = False,
) -> tuple[dict[str, RetrievalResult], Figure]:
    """Train one model per tower depth and plot ``metric`` vs epoch for each.

    Args:
        data: the interactions.
        split: a split or a spec (the same split is used for every depth).
        depths: the ``layers`` to compare.
        config: the shared configuration (default :func:`t1_config`).
        metric: the metric plotted.
        every: evaluate every this many epochs.

    Returns:
        ``({"1 layer": result, "2 layers": ...}, figure)``.
    """
    from recfit.plots import plot_metric_by_epoch  # matplotlib is heavy: only when plotting

    cfg = t1_config() if config is None else config
    cfg = cfg.replace(eval_every=every)
    the_split = split
    if isinstance(split, str):  # (filtering the positives again is a no-op)
        the_split = make_split(
            filter_positives(data, cfg.positive_min_rating), split, seed=cfg.seed
        )
    results: dict[str, RetrievalResult] = {}
    for sizes in depths:
        n = len(sizes)
        label = f"{n} layer" + ("s" if n != 1 else "")
        if label in results:
            label = f"{label} {tuple(sizes)}"
        results[label] = train_retrieval(
            cfg.replace(layers=tuple(sizes)), data, the_split, progress=progress
        )
    fig = plot_metric_by_epoch({k: r.epoch_metrics for k, r in results.items()}, metric)
    return results, fig


# ----------------------------------------------------------------------------- the task
class RetrievalTask(Task[RetrievalConfig]):
    """The retrieval task's steps (:class:`~recfit.tasks.common.Task`): a two-tower model
    trained on the positives, measured by full-catalogue ranking of the held-out part."""

    name = "retrieval"
    unit = "positives"

    def inner_rows(self, cfg: RetrievalConfig, split: Split) -> np.ndarray:
        rows = np.asarray(split.train_idx, dtype=np.int64)
        if cfg.positive_min_rating is None:
            return rows
        return rows[split.data.rating[rows] >= cfg.positive_min_rating]

    def build(
        self, cfg: RetrievalConfig, fit: Split, callbacks: Callbacks, progress: bool | None
    ) -> Learner:
        train = filter_positives(fit.train, cfg.positive_min_rating)
        test = filter_positives(fit.test, cfg.positive_min_rating)
        cbs = [ScheduleRecorder(), *callbacks, *early_stopping(cfg)]
        return _build(cfg, train, test, cbs, progress)

    def fit(self, learner: Learner, cfg: RetrievalConfig) -> Learner:
        return _fit(learner, cfg)

    def evaluate(self, learner: Learner, cfg: RetrievalConfig, split: Split) -> Metrics:
        test = filter_positives(split.test, cfg.positive_min_rating)
        train = filter_positives(split.train, cfg.positive_min_rating)  # each user's seen items
        model, seconds = _two_tower(learner), learner.fit_seconds
        with learner.threads():
            metrics, report = retrieval_metrics(cfg, model, test, train, seconds)
        return metrics, {k: v for k, v in report.items() if k not in metrics}

    def figures(self, learner: Learner, cfg: RetrievalConfig) -> dict[str, Figure]:
        tracker = _tracker(learner)
        if tracker is None or not tracker.records:
            return {}
        from recfit.plots import plot_metric_by_epoch  # matplotlib is heavy: only when plotting

        label = "two_tower" if cfg.patience is None else "two_tower, inner validation"
        fig = plot_metric_by_epoch({label: tracker.records}, cfg.monitor)
        return {"metric_vs_epoch.png": fig}


register_task(RetrievalTask())
