"""Training runs: a :class:`~recfit.config.TrainConfig` in, a run directory out.

A run directory holds::

    config.json        the resolved config (re-run with ``recfit train --config``)
    metrics.json       validation metrics by name (mse, rmse, mae, ...), loss, reg_loss,
                       fit_seconds, and the split and data it was measured on
    history.csv        one row per epoch: train_loss, valid_loss, reg_loss, metrics, lr
    losses.png         loss curves
    confusion_matrix.png, classification_report.json/.txt
                       for ``task="classification"``: per-level precision / recall / F1 /
                       support and the (weighted) confusion matrix on the held-out part
    schedule.png       learning rate (and momentum) per step
    metric_vs_epoch.png
                       for ``task="retrieval"`` with ``eval_every``: ranking metric per epoch
    bundle/            the run's Recommender bundle: weights (safetensors, with the model
                       config), vocabularies, each user's training items, titles, rating
                       scale, config; checksummed. Read by ``Recommender.load(run_dir)``,
                       ``load_run`` and ``recfit recommend/similar/predict/serve``
    report.html        a self-contained report (config, metrics next to the published
                       reference, curves, sample recommendations)

Every file is written to a temporary name and renamed into place, so an interrupted
write never leaves a half-written file where a good one was.

Example:
    >>> from recfit.config import TrainConfig
    >>> model_kwargs(TrainConfig(model="mf", n_factors=8))["n_factors"]
    8
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recfit.config import TrainConfig, validate_config
from recfit.data.interactions import Interactions
from recfit.data.sources import load_dataset, split_dataset
from recfit.data.split import Split
from recfit.data.vocab import Vocabulary
from recfit.errors import BundleError, ConfigError
from recfit.models import RatingModel, create_model
from recfit.train.callbacks import Callback, EarlyStopping, ScheduleRecorder
from recfit.train.learner import Learner
from recfit.train.schedules import Cosine, Cyclic
from recfit.train.sparse import SPARSE_MIN_PARAMS, auto_batch_size, scaled_lr

__all__ = [
    "RunResult",
    "atomic_write",
    "batch_and_lr",
    "build_learner",
    "fit_config",
    "load_run",
    "model_kwargs",
    "resolve_config",
    "train_run",
    "write_run",
]


@dataclass
class RunResult:
    """What a training run produced.

    Attributes:
        config: the resolved configuration.
        learner: the trained :class:`~recfit.train.learner.Learner`.
        split: the data split the run used.
        metrics: validation metrics (and ``loss``, ``reg_loss``, ``fit_seconds``).
        out: the run directory, when one was written.
        details: more about the metrics (e.g. retrieval's bootstrap intervals and whether
            seen items were excluded), written under ``details`` in ``metrics.json``.
        figures: extra figures to write into the run directory, by file name.
    """

    config: TrainConfig
    learner: Learner
    split: Split
    metrics: dict[str, float]
    out: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Model constructor arguments for ``cfg.model`` (sizes come from the data)."""
    y_range = None if cfg.y_range is None else tuple(cfg.y_range)
    if cfg.model in ("dot", "svdpp"):
        return {"n_factors": cfg.n_factors, "y_range": y_range, "seed": cfg.seed}
    if cfg.model == "mf":
        return {"n_factors": cfg.n_factors, "seed": cfg.seed}
    if cfg.model == "nn":
        return {
            "layers": tuple(cfg.layers),
            "dropout": cfg.dropout,
            "batch_norm": cfg.batch_norm,
            "y_range": y_range,
            "seed": cfg.seed,
        }
    raise ConfigError(f"expected model dot, mf, svdpp or nn, received {cfg.model!r}")


def build_learner(
    cfg: TrainConfig,
    train: Interactions,
    valid: Interactions | None,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
) -> Learner:
    """A fresh model sized for ``train`` inside a Learner configured by ``cfg``.

    ``cfg.bs == 0`` picks the batch size from ``len(train)`` (:func:`batch_and_lr`);
    ``trainer="als"`` builds the model with a linear output (no ``y_range``).
    """
    cfg = resolve_config(cfg, train)
    kwargs = model_kwargs(cfg)
    if cfg.trainer == "als" and "y_range" in kwargs:
        kwargs["y_range"] = None
    model = create_model(cfg.model, train, **kwargs)
    cbs: list[Callback] = [ScheduleRecorder(), *callbacks]
    if cfg.patience is not None:
        cbs.append(EarlyStopping(monitor=cfg.monitor, patience=cfg.patience, restore_best=True))
    return Learner(
        model,
        train,
        valid,
        loss=cfg.loss,
        opt=cfg.opt,
        bs=batch_and_lr(cfg, len(train))[0],
        wd=cfg.wd,
        reg=cfg.reg,
        device=cfg.device,
        seed=cfg.seed,
        callbacks=cbs,
        progress=progress,
    )


def resolve_config(cfg: TrainConfig, train: Interactions, distributed: bool = False) -> TrainConfig:
    """``cfg`` with ``model="auto"`` and ``opt="auto"`` made concrete for ``train``.

    ``auto`` is ``dot`` when a DotBias of ``cfg.n_factors`` would have at least
    :data:`~recfit.train.sparse.SPARSE_MIN_PARAMS` parameters (or with ALS), else
    ``svdpp`` (:meth:`recfit.config.TrainConfig.resolve_model`). The row-wise path (and so
    row-wise Adagrad) is taken by a ``dot`` or ``mf`` model of at least
    :data:`~recfit.train.sparse.SPARSE_MIN_PARAMS` parameters trained by SGD in one
    process (:meth:`recfit.config.TrainConfig.resolve_opt`).
    """
    big = (train.n_users + train.n_items) * (cfg.n_factors + 1) >= SPARSE_MIN_PARAMS
    cfg = cfg.resolve_model(big)
    row_wise = (
        cfg.task == "rating"
        and cfg.trainer == "sgd"
        and cfg.model in ("dot", "mf")
        and not distributed
        and big
    )
    return cfg.resolve_opt(row_wise)


def batch_and_lr(cfg: TrainConfig, n_train: int) -> tuple[int, float]:
    """The batch size and (peak) learning rate a run with ``n_train`` ratings uses.

    ``cfg.bs`` and ``cfg.lr`` as given, except ``cfg.bs == 0``: then
    :func:`~recfit.train.sparse.auto_batch_size` and
    :func:`~recfit.train.sparse.scaled_lr` (64 and ``lr`` on ml-100k).

    Example:
        >>> batch_and_lr(TrainConfig(), 80_000), batch_and_lr(TrainConfig(bs=32), 10**6)
        ((64, 0.005), (32, 0.005))
    """
    if cfg.bs:
        return cfg.bs, cfg.lr
    bs = auto_batch_size(n_train)
    return bs, scaled_lr(cfg.lr, bs)


def fit_config(learner: Learner, cfg: TrainConfig) -> Learner:
    """Train ``learner`` for ``cfg.epochs`` along ``cfg.schedule`` (or by ALS).

    ``cfg`` is resolved for ``learner.train`` as :func:`build_learner` resolved it, so
    ``opt="auto"`` trains with the learning rate of the optimiser it picked.
    """
    cfg = resolve_config(cfg, learner.train, distributed=learner.dist is not None)
    if cfg.trainer == "als":
        from recfit.train.als import fit_als_learner

        return fit_als_learner(learner, cfg.epochs, reg=cfg.reg, reg_exponent=cfg.reg_exponent)
    lr = batch_and_lr(cfg, len(learner.train))[1]
    total = max(1, cfg.epochs * learner.steps_per_epoch)
    if cfg.schedule == "one_cycle":
        return learner.fit_one_cycle(cfg.epochs, lr, pct_start=cfg.pct_start)
    if cfg.schedule == "cosine":
        return learner.fit(cfg.epochs, schedule=Cosine(lr, total))
    if cfg.schedule == "cyclic":
        half = max(1, learner.steps_per_epoch // 2)
        return learner.fit(cfg.epochs, schedule=Cyclic(lr / 10, lr, step_size=half))
    return learner.fit(cfg.epochs, lr)


def train_run(
    cfg: TrainConfig,
    out: str | Path | None = None,
    *,
    data: Interactions | None = None,
    progress: bool | None = None,
    callbacks: Sequence[Callback] = (),
    on_split: Callable[[Split], None] | None = None,
    resume: bool = False,
) -> RunResult:
    """Load the data, split it, train, evaluate on the held-out part, write the run dir.

    With ``out``, the full training state is checkpointed there (epoch ends, every
    ``cfg.checkpoint_every`` steps, on Ctrl-C; :mod:`recfit.train.checkpoint`); under
    torchrun (an initialised process group) this process trains as one rank and only
    rank 0 writes (:mod:`recfit.train.distributed`).

    Args:
        cfg: the run's configuration.
        out: the run directory to write (``None``: write nothing).
        data: use these interactions instead of loading ``cfg.dataset``.
        progress: show progress bars (``None``: only on a terminal).
        callbacks: extra callbacks for the Learner.
        on_split: called with the split before training (e.g. to print a summary).
        resume: continue from the checkpoint in ``out`` (``cfg`` must be its config).
    """
    from recfit.train import checkpoint as ckpt
    from recfit.train.distributed import current

    ctx = current()
    if (resume or ctx is not None) and cfg.task != "rating":
        raise ConfigError(
            f"expected task 'rating' for --resume or distributed training, received {cfg.task!r}"
        )
    if data is None:
        data = load_dataset(
            cfg.dataset,
            data_dir=cfg.data_dir,
            user=cfg.user_col,
            item=cfg.item_col,
            rating=cfg.rating_col,
            timestamp=cfg.timestamp_col,
            weight=cfg.weight_col,
        )
    if cfg.task == "retrieval":
        return _retrieval_run(cfg, data, out, progress=progress, callbacks=callbacks)
    split = split_dataset(data, cfg.split, seed=cfg.seed, data_dir=cfg.data_dir)
    if on_split is not None:
        on_split(split)
    cfg = resolve_config(cfg, split.train, distributed=ctx is not None)
    t0 = time.perf_counter()
    if cfg.task == "classification":  # ratings as classes, with an imbalance strategy
        from recfit.train.classification import fit_classifier_config

        learner = fit_classifier_config(
            cfg, split.train, split.test, callbacks=[ScheduleRecorder(), *callbacks],
            progress=progress,
        ).learner  # fmt: skip
    else:
        main = ctx is None or ctx.is_main
        learner = build_learner(
            cfg if ctx is None else cfg.replace(device=str(ctx.device)),
            split.train, split.test, callbacks=callbacks, progress=progress if main else False,
        )  # fmt: skip
        if cfg.trainer == "als" and (resume or ctx is not None):
            raise ConfigError(
                "expected trainer 'sgd' for --resume or distributed training (ALS runs in "
                "one process without checkpoints), received 'als'"
            )
        if cfg.trainer != "als":
            ckpt.setup_run(learner, cfg, out, resume=resume, ctx=ctx)
        fit_config(learner, cfg)
    fit_seconds = time.perf_counter() - t0
    metrics = learner.evaluate(split.test)
    metrics["fit_seconds"] = fit_seconds
    result = RunResult(cfg, learner, split, metrics)
    if out is not None and (ctx is None or ctx.is_main):
        result.out = write_run(result, out)
    return result


def retrieval_config(cfg: TrainConfig) -> Any:
    """The :class:`~recfit.train.retrieval.RetrievalConfig` a ``task="retrieval"`` config
    describes (``n_factors`` is the embedding width, ``layers`` the towers' dense layers)."""
    from recfit.train.retrieval import RetrievalConfig

    if cfg.schedule not in ("constant", "one_cycle"):
        raise ConfigError(
            f"expected schedule 'constant' or 'one_cycle' for retrieval, received {cfg.schedule!r}"
        )
    if cfg.opt not in ("adagrad", "adam"):
        raise ConfigError(f"expected opt 'adagrad' or 'adam' for retrieval, received {cfg.opt!r}")
    return RetrievalConfig(
        objective=cfg.objective,
        embedding_dim=cfg.n_factors,
        layer_sizes=tuple(cfg.layers),
        positive_min_rating=cfg.positive_min_rating,
        temperature=cfg.temperature,
        logq=cfg.logq,
        num_hard_negatives=cfg.num_hard_negatives,
        num_negatives=cfg.num_negatives,
        opt=cfg.opt,  # type: ignore[arg-type]
        lr=cfg.lr,
        epochs=cfg.epochs,
        bs=cfg.bs,
        wd=cfg.wd,
        reg=cfg.reg,
        schedule=cfg.schedule,  # type: ignore[arg-type]
        relevant_min_rating=cfg.relevant_min_rating,
        exclude_seen=cfg.exclude_seen,
        eval_every=cfg.eval_every,
        seed=cfg.seed,
        device=cfg.device,
    )


def _retrieval_run(
    cfg: TrainConfig,
    data: Interactions,
    out: str | Path | None,
    *,
    progress: bool | None,
    callbacks: Sequence[Callback],
) -> RunResult:
    """Two-tower training and full-catalogue ranking evaluation (``task="retrieval"``)."""
    from recfit.train.retrieval import train_retrieval

    rcfg = retrieval_config(cfg)
    split = split_dataset(data, cfg.split, seed=cfg.seed, data_dir=cfg.data_dir)
    res = train_retrieval(
        rcfg, data, split, callbacks=[ScheduleRecorder(), *callbacks], progress=progress
    )
    details = {k: v for k, v in res.report.items() if k not in res.metrics}
    result = RunResult(cfg, res.learner, res.split, dict(res.metrics), details=details)
    if res.epoch_metrics:
        result.figures["metric_vs_epoch.png"] = _metric_vs_epoch(res, cfg.monitor)
    if out is not None:
        result.out = write_run(result, out)
    return result


def _metric_vs_epoch(res: Any, metric: str) -> Any:
    from recfit.train.retrieval import plot_metric_by_epoch

    return plot_metric_by_epoch({"two_tower": res.epoch_metrics}, metric)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n"


def write_run(result: RunResult, out: str | Path) -> Path:
    """Write ``result``'s run directory (see the module docs) and return its path."""
    from recfit.plots import plot_losses

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    learn = result.learner
    data = result.split.data
    metrics = dict(result.metrics)
    report = {
        "metrics": metrics,
        "split": result.split.summary(),
        "data": {
            "name": data.name,
            "ratings": len(data),
            "users": data.n_users,
            "items": data.n_items,
        },
    }
    atomic_write(out / "config.json", result.config.model_dump_json(indent=2) + "\n")
    atomic_write(out / "metrics.json", _json({**metrics, "details": {**report, **result.details}}))
    atomic_write(out / "history.csv", learn.history_frame().to_csv(index=False))
    from recfit.recommender import Recommender

    Recommender.from_run(result).save(out / "bundle")
    figures = {"losses.png": plot_losses(learn.history) if learn.history else None}
    rec = next((c for c in learn.cbs if isinstance(c, ScheduleRecorder)), None)
    figures["schedule.png"] = rec.plot() if rec is not None and rec.lrs else None
    figures.update(result.figures)
    for name, fig in figures.items():
        if fig is not None:
            fig.savefig(out / f".{name}.tmp.png", dpi=110, bbox_inches="tight")
            os.replace(out / f".{name}.tmp.png", out / name)
    if result.config.task == "classification":
        from recfit.train.classification import write_classification_report

        write_classification_report(learn, result.split.test, out)
    from recfit.report import build_report

    build_report(out)
    return out


def load_run(run: str | Path) -> tuple[TrainConfig, RatingModel, Vocabulary, Vocabulary]:
    """Read a run directory back: its config, and the model and vocabularies of its bundle.

    Raises:
        BundleError: a file is missing or damaged.
    """
    from recfit.recommender import Recommender

    d = Path(run)
    try:
        cfg = validate_config(json.loads((d / "config.json").read_text("utf-8")), source=str(d))
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(
            f"expected a run directory with config.json, received {str(d)!r}: {exc}"
        ) from exc
    rec = Recommender.load(d)
    return cfg, rec.model, rec.users, rec.items
