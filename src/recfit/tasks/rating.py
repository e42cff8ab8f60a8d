"""The rating task: predict each rating (regression), measured by MSE, RMSE and MAE.

A model family of the rating task (``dot``, ``mf``, ``svdpp``, ``nn``) is built from the
config and the training data, put in a :class:`~recfit.train.learner.Learner` and trained
by SGD along ``cfg.schedule`` (dense, fused or row-wise) or by alternating least squares.

Example:
    >>> from recfit.config import RatingConfig
    >>> model_settings(RatingConfig(model="mf", n_factors=8))
    {'n_factors': 8, 'seed': 42}
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recfit._row_path import RELEASE_ROWS, may_run_row_kernel
from recfit.config import RatingConfig
from recfit.config.rating import BUDGET_RULE, default_budget
from recfit.data.interactions import Interactions
from recfit.data.split import Split
from recfit.models.blend import Blend
from recfit.models.registry import families, family
from recfit.tasks import auto, blend
from recfit.tasks.common import (
    Callbacks,
    Metrics,
    Task,
    batch_and_lr,
    early_stopping,
    make_learner,
    register_task,
)
from recfit.train import kernels
from recfit.train.callbacks import Callback, ScheduleRecorder
from recfit.train.execution import resolve_device
from recfit.train.learner import Learner
from recfit.train.sparse import SPARSE_MIN_PARAMS
from recfit.train.trainers import FitSpec, trainer_for

if TYPE_CHECKING:
    pass

__all__ = ["RatingTask", "build_learner", "fit_learner", "model_settings", "resolve_config"]


def model_settings(cfg: RatingConfig) -> dict[str, Any]:
    """What the family ``cfg.model`` is built from: the config fields it reads
    (:attr:`recfit.models.registry.Family.reads`; sizes come from the data), with a
    linear output (no ``y_range``) for ``trainer="als"``."""
    settings = family(cfg.model).settings(cfg)
    if cfg.trainer == "als" and "y_range" in settings:
        settings["y_range"] = None
    return settings


def resolve_config(
    cfg: RatingConfig, train: Interactions, distributed: bool = False
) -> RatingConfig:
    """``cfg`` with ``model="auto"`` and ``opt="auto"`` made concrete for ``train``.

    ``auto`` is ``dot`` when a DotBias of ``cfg.n_factors`` would have at least
    :data:`~recfit.train.sparse.SPARSE_MIN_PARAMS` parameters (or with ALS), else
    ``svdpp`` (:meth:`recfit.config.RatingConfig.resolve_model`). The row-wise path (and
    so row-wise Adagrad) is taken by a model of a family that has one
    (:attr:`recfit.models.registry.Family.row_wise`: ``dot``, ``mf``) of at least
    :data:`~recfit.train.sparse.SPARSE_MIN_PARAMS` parameters trained by SGD, in one
    process or distributed alike (``distributed`` changes nothing;
    :meth:`recfit.config.RatingConfig.resolve_opt`).
    """
    big = (train.n_users + train.n_items) * (cfg.n_factors + 1) >= SPARSE_MIN_PARAMS
    cfg = cfg.resolve_model(big)
    row_wise = family(cfg.model).row_wise and cfg.trainer == "sgd" and big
    return cfg.resolve_opt(row_wise)


def build_learner(
    cfg: RatingConfig,
    train: Interactions,
    valid: Interactions | None,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
) -> Learner:
    """A fresh model of the family ``cfg.model``, sized for ``train``, inside a Learner
    configured by ``cfg``.

    ``cfg`` is resolved for ``train`` first (:func:`resolve_config`); ``cfg.bs == 0``
    picks the batch size from ``len(train)`` (:func:`~recfit.tasks.common.batch_and_lr`).
    """
    cfg = resolve_config(cfg, train)
    model = family(cfg.model).build(model_settings(cfg), train)
    cbs = [ScheduleRecorder(), *callbacks, *early_stopping(cfg)]
    bs = batch_and_lr(cfg, len(train))[0]
    return make_learner(
        cfg,
        model,
        train,
        valid,
        callbacks=cbs,
        progress=progress,
        loss=cfg.loss,
        opt="adam" if cfg.opt == "auto" else cfg.opt,  # auto stays only where none is used
        bs=bs,
    )


def fit_learner(learner: Learner, cfg: RatingConfig) -> Learner:
    """Train ``learner`` in place as ``cfg`` says: by the trainer ``cfg.trainer``
    (:func:`recfit.train.trainers.trainer_for`: SGD for ``cfg.epochs`` along
    ``cfg.schedule``, or ALS sweeps).

    ``cfg`` is resolved for ``learner.train`` as :func:`build_learner` resolved it, so
    ``opt="auto"`` trains with the learning rate of the optimiser it picked.
    """
    cfg = resolve_config(cfg, learner.train, distributed=learner.dist is not None)
    lr = batch_and_lr(cfg, len(learner.train))[1]
    return trainer_for(cfg.trainer).fit(learner, FitSpec.from_config(cfg, lr=lr))


class RatingTask(Task[RatingConfig]):
    """The rating task's steps (:class:`~recfit.tasks.common.Task`)."""

    name = "rating"

    def warm_up(self, cfg: RatingConfig, data: Interactions | None = None) -> None:
        """Compile (or load) the row-wise kernel in the background while the data loads,
        when the fit may take the compiled row-wise step (:func:`recfit._row_path.
        may_run_row_kernel`, the condition ``recfit train`` starts its compile by): an SGD
        fit on the CPU of a family with a row-wise path, by row-wise AdamW or Adagrad,
        with the MSE loss, of a model that may be big enough (``data``'s size, else a
        MovieLens release's, known before loading it; ``model="auto"`` with a search
        counts the largest ``n_factors`` it may tune)."""
        if may_run_row_kernel(
            model=cfg.model, trainer=cfg.trainer, opt=cfg.opt, loss=cfg.loss,
            cpu=resolve_device(cfg.device).type == "cpu",
            row_wise=any(f.name == cfg.model and f.row_wise for f in families()),
            rows=RELEASE_ROWS.get(cfg.dataset) if data is None else data.n_users + data.n_items,
            n_factors=cfg.n_factors, budget=cfg.budget,
        ):  # fmt: skip
            kernels.compile_ahead()

    def checkpointed(self, cfg: RatingConfig) -> bool:
        return cfg.trainer == "sgd"

    def __init__(self) -> None:
        self._runs: dict[int, _Run] = {}  # by the id of the config object prepare returned

    def _run(self, cfg: RatingConfig) -> _Run | None:
        """What :meth:`prepare` left for the run of ``cfg``: only for the very config
        object it returned (an equal config of another run, or of a fit without its own
        prepare, gets nothing: a run that failed before its fit leaves its plan to none,
        and the entry goes with that config object)."""
        run = self._runs.get(id(cfg))
        return run if run is not None and run.cfg() is cfg else None

    def settle(self, cfg: RatingConfig, split: Split) -> RatingConfig:
        """``model="auto"`` without a budget gets the default for the size of ``split``'s
        training part (:func:`recfit.config.rating.default_budget`): the one place the
        budget is settled, before :meth:`prepare` (a run writes it to ``config.json``)."""
        return cfg.resolve_budget(len(split.train_idx))

    def prepare(
        self, cfg: RatingConfig, split: Split, *, distributed: bool = False
    ) -> RatingConfig:
        """``cfg`` made concrete for ``split``'s training part: ``model="auto"`` with a
        ``budget`` above 0 (settled by :meth:`settle` first: none given, the default by
        size) chosen by inner validation (:func:`recfit.tasks.auto.choose_model`), else
        as :func:`resolve_config` says; a blend keeps its members' own settings.

        Under distributed training the search is not run (each process would search on
        its own and might choose another model): ``auto`` takes the size rule, and
        ``details.model_auto`` says so.

        auto's report and plan are kept for :meth:`fit` and :meth:`evaluate` of the
        config object returned (that very object, not an equal one), and dropped when
        that object goes (a run that failed before its end leaves nothing behind)."""
        report: dict[str, Any] | None = None
        plan = None
        if cfg.searches():
            n_train = len(split.train_idx)
            extra = {
                "default_budget_seconds": default_budget(n_train),
                "default_budget_rule": f"{BUDGET_RULE}; {n_train:,} training ratings",
            }
            if distributed:
                report = {
                    "chosen": "the size rule",
                    "by": "no search under distributed training (each process would search "
                    "on its own)",
                    "budget_seconds": cfg.budget,
                    **extra,
                }
                cfg = cfg.without_search()
            else:
                cfg, found, plan = auto.choose_model(cfg, split)
                report = {**found.as_dict(), **extra}
        if cfg.model == "blend":  # each member resolves its own settings when it trains
            cfg = cfg.resolve_model(big=False)
        else:
            cfg = resolve_config(cfg, split.train, distributed=distributed)
        if report is not None:  # kept while this config object lives (a failed run's goes)
            self._runs[id(cfg)] = _Run(weakref.ref(cfg), report, plan)
            weakref.finalize(cfg, self._runs.pop, id(cfg), None)
        return cfg

    def build(
        self, cfg: RatingConfig, fit: Split, callbacks: Callbacks, progress: bool | None
    ) -> Learner:
        return build_learner(cfg, fit.train, fit.test, callbacks=callbacks, progress=progress)

    def fit(self, learner: Learner, cfg: RatingConfig) -> Learner:
        """Train ``learner``: a blend's members by their trainers (weights on an inner
        cut, or auto's plan), else by ``cfg.trainer``. What auto chose ends by the plan's
        deadline (:mod:`recfit.tasks.blend`), and ``details.model_auto.final_fits`` says
        what each final fit did."""
        run = self._run(cfg)
        plan = run.plan if run is not None else None
        if run is not None:
            run.plan = None  # one fit
        if cfg.model == "blend":  # members by their trainers, weights on an inner cut
            learner = blend.fit_blend(learner, cfg, plan)
        elif plan is None:
            return fit_learner(learner, cfg)
        else:
            learner = blend.fit_single(learner, cfg, plan, fit_learner)
        if run is not None and plan is not None:
            run.report["final_fits"] = plan.final_fits()
        return learner

    def evaluate(self, learner: Learner, cfg: RatingConfig, split: Split) -> Metrics:
        """The held-out metrics; ``details.model_auto``: what ``model="auto"`` tried (each
        candidate's inner RMSE and seconds) and chose; ``details.blend``: a blend's members
        and weights."""
        metrics, details = learner.evaluate(split.test), {}
        run = self._run(cfg)
        found = self._runs.pop(id(cfg)).report if run is not None else None
        if found:
            details["model_auto"] = found
        if isinstance(learner.model, Blend):
            details["blend"] = learner.model.summary()
        return metrics, details


@dataclass
class _Run:
    """What :meth:`RatingTask.prepare` returned ``cfg`` with, for that run's fit and
    evaluation: auto's report (``details.model_auto``) and plan (``None``: none, or
    taken by the fit)."""

    cfg: weakref.ref[RatingConfig]
    report: dict[str, Any]
    plan: blend.BlendPlan | None


register_task(RatingTask())
