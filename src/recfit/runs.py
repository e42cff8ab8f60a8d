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
    checkpoint.safetensors
                       the full training state (rating task, SGD): what ``--resume`` reads
    bundle/            the run's Recommender bundle: weights (safetensors, with the model
                       config), vocabularies, each user's training items, titles, rating
                       scale, config; checksummed. Read by ``Recommender.load(run_dir)``,
                       ``load_run`` and ``recfit recommend/similar/predict/serve``
    report.html        a self-contained report (config, metrics next to the published
                       reference, curves, sample recommendations)

A run directory is used by one process at a time: ``train_run`` holds an exclusive
lock (``flock`` on the sibling file ``.NAME.lock``, released on any exit, a kill
included) and refuses a directory another process holds, a finished run (unless
``force``), an unfinished one (unless ``resume`` or ``force``) and a folder that is not a
run directory. ``config.json`` is written first, the checkpoint goes into the directory
while training, and the finished run is written into a hidden sibling
(``.NAME.tmp-XXXX``) and swapped in as one unit (Linux ``renameat2(RENAME_EXCHANGE)``),
so a reader sees the unfinished run or the finished one, never parts of two runs. Files
are created with the permissions the umask allows (as ``open`` would).

Example:
    >>> from recfit.config import TrainConfig
    >>> model_kwargs(TrainConfig(model="mf", n_factors=8))["n_factors"]
    8
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recfit._fs import atomic_write, default_dir_mode, publish_dir, read_plain_file
from recfit.config import TrainConfig, validate_config
from recfit.data.interactions import Interactions, encode_time
from recfit.data.sources import load_dataset, split_dataset
from recfit.data.split import Split
from recfit.data.vocab import Vocabulary
from recfit.errors import (
    BundleError,
    ConfigError,
    EvaluationOverlapError,
    RunDirectoryError,
)
from recfit.metrics.registry import metric_info
from recfit.models import RatingModel, create_model
from recfit.recommender import Recommender
from recfit.report import build_report
from recfit.train import checkpoint as ckpt
from recfit.train import retrieval as retrieval_task
from recfit.train.als import fit_als_learner
from recfit.train.callbacks import Callback, EarlyStopping, ScheduleRecorder
from recfit.train.checkpoint import resume_config
from recfit.train.classification import fit_classifier_config, write_classification_report
from recfit.train.distributed import current
from recfit.train.learner import Learner
from recfit.train.retrieval import (
    RetrievalConfig,
    plot_metric_by_epoch,
    train_retrieval,
)
from recfit.train.schedules import Cosine, Cyclic
from recfit.train.sparse import SPARSE_MIN_PARAMS, auto_batch_size, scaled_lr

__all__ = [
    "RunEvaluation",
    "RunResult",
    "atomic_write",
    "batch_and_lr",
    "build_learner",
    "config_runner",
    "count_overlap",
    "early_stopping",
    "evaluate_run",
    "fit_config",
    "inner_validation",
    "load_run",
    "load_split",
    "model_kwargs",
    "read_run_json",
    "recommender_of",
    "resolve_config",
    "run_config",
    "run_lock",
    "run_state",
    "train_run",
    "write_run",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
BUNDLE_DIR = "bundle"
CHECKPOINT_FILE = "checkpoint.safetensors"
MAX_RUN_JSON_BYTES = 1 << 30  # config.json and metrics.json are read whole

RunState = Literal["absent", "empty", "unfinished", "finished", "other"]


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
    cbs: list[Callback] = [ScheduleRecorder(), *callbacks, *early_stopping(cfg)]
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


def early_stopping(cfg: TrainConfig) -> list[Callback]:
    """The early-stopping callback ``cfg.patience`` asks for (every task), else none.

    It watches ``cfg.monitor`` on the validation rows the Learner is given, in the
    direction :mod:`recfit.metrics.registry` gives, and restores the best epoch's
    weights; :func:`train_run` gives it the inner validation cut of the training part
    (:func:`inner_validation`), never the held-out part it reports.

    Example:
        >>> [type(c).__name__ for c in early_stopping(TrainConfig(patience=2))]
        ['EarlyStopping']
    """
    if cfg.patience is None:
        return []
    return [EarlyStopping(monitor=cfg.monitor, patience=cfg.patience, restore_best=True)]


def inner_validation(cfg: TrainConfig, split: Split) -> Split | None:
    """The inner validation cut early stopping watches (``cfg.patience``), else ``None``.

    A share ``cfg.inner_valid`` of the training rows of ``split`` (retrieval: of its
    training positives, ``cfg.positive_min_rating``), drawn at random by ``cfg.seed``, is
    the returned split's test part; the other training rows are its training part. Both
    parts are rows of ``split.data``, so users and items keep the indices (and the
    vocabularies) of the whole training part. No held-out row of ``split`` is in either.

    Raises:
        ConfigError: the training part is too small to leave a row on each side.

    Example:
        >>> import numpy as np
        >>> d = Interactions.from_arrays(list(range(20)), [0] * 20, [4.0] * 20)
        >>> sp = Split(d, np.arange(10), np.arange(10, 20), "demo")
        >>> inner = inner_validation(TrainConfig(patience=1, inner_valid=0.2), sp)
        >>> len(inner.train_idx), len(inner.test_idx), set(inner.test_idx) <= set(range(10))
        (8, 2, True)
    """

    if cfg.patience is None:
        return None
    rows = np.asarray(split.train_idx, dtype=np.int64)
    eligible = rows
    if cfg.task == "retrieval" and cfg.positive_min_rating is not None:
        eligible = rows[split.data.rating[rows] >= cfg.positive_min_rating]
    n_inner = round(cfg.inner_valid * len(eligible))
    if n_inner < 1 or n_inner >= len(eligible):
        raise ConfigError(
            f"expected enough training rows for an inner validation cut of inner_valid "
            f"{cfg.inner_valid} (patience), received {len(eligible)} "
            f"training {'positives' if cfg.task == 'retrieval' else 'rows'}"
        )
    rng = np.random.default_rng([cfg.seed, 0x1AA1])  # a stream apart from the split's
    inner = np.sort(rng.choice(eligible, size=n_inner, replace=False))
    rest = np.setdiff1d(rows, inner, assume_unique=True)
    return Split(split.data, rest, inner, f"inner:{cfg.inner_valid:g} of {split.name}")


def _early_stopping_details(cfg: TrainConfig, learner: Learner, inner: Split) -> dict[str, Any]:
    """How the epoch was chosen, for ``metrics.json`` (``details.early_stopping``)."""
    stop = next((c for c in learner.cbs if isinstance(c, EarlyStopping)), None)
    what = "positives" if cfg.task == "retrieval" else "rows"
    best = None if stop is None or stop.best_epoch < 0 else int(stop.best_epoch)
    return {
        "monitor": cfg.monitor,
        "monitored_on": f"inner validation, {cfg.inner_valid:.0%} of training {what}",
        "inner_valid": cfg.inner_valid,
        "inner_rows": len(inner.test_idx),
        "fit_rows": len(inner.train_idx),
        "best_epoch": best,
        "best_value": None if stop is None or best is None else float(stop.best),
        "stopped_epoch": None if stop is None else stop.stopped_epoch,
        "epochs_trained": len(learner.history),
        "epoch_numbering": "from 0, as in history.csv",
        "held_out": "evaluated once, after training, with the restored best weights",
    }


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
    force: bool = False,
) -> RunResult:
    """Load the data, split it, train, evaluate on the held-out part, write the run dir.

    With ``out``, the directory is locked for this process, ``config.json`` is written
    before anything else, the full training state is checkpointed there (epoch ends,
    every ``cfg.checkpoint_every`` steps, on Ctrl-C; :mod:`recfit.train.checkpoint`), and
    the finished run is published as one unit (see the module docs). Under torchrun (an
    initialised process group) this process trains as one rank and only rank 0 writes
    (:mod:`recfit.train.distributed`).

    Args:
        cfg: the run's configuration.
        out: the run directory to write (``None``: write nothing).
        data: use these interactions instead of loading ``cfg.dataset``.
        progress: show progress bars (``None``: only on a terminal).
        callbacks: extra callbacks for the Learner.
        on_split: called with the split before training (e.g. to print a summary).
        resume: continue the unfinished run in ``out`` from its checkpoint (``cfg`` must
            be its config, :func:`run_config`); without a checkpoint yet (killed before
            the first one) training starts again from its ``config.json``.
        force: replace a finished (or unfinished) run in ``out``; its files are removed
            when training starts.

    Raises:
        RunDirectoryError: ``out`` is locked by another process, holds a finished run
            (without ``force``), an unfinished one (without ``resume`` or ``force``), or
            files that are not a run directory.
    """
    ctx = current()
    if resume and out is None:
        raise ConfigError("expected a run directory to resume, received out=None")
    writer = out is not None and (ctx is None or ctx.is_main)
    if not writer:
        has_ckpt = resume and out is not None and (Path(out) / CHECKPOINT_FILE).exists()
        return _train(cfg, out, data, progress, callbacks, on_split, has_ckpt, writer=False)
    given = Path(out)  # type: ignore[arg-type]
    out = Path(os.path.abspath(given))  # stays valid when the folder is swapped ("." too)
    with run_lock(out):
        has_ckpt = _prepare_run_dir(out, force=force, resume=resume)
        if not (out / CONFIG_FILE).exists() or not resume:
            atomic_write(out / CONFIG_FILE, _config_json(cfg))
        result = _train(cfg, out, data, progress, callbacks, on_split, has_ckpt, writer=True)
    result.out = given
    return result


def _train(
    cfg: TrainConfig,
    out: str | Path | None,
    data: Interactions | None,
    progress: bool | None,
    callbacks: Sequence[Callback],
    on_split: Callable[[Split], None] | None,
    resume: bool,
    *,
    writer: bool,
) -> RunResult:
    ctx = current()
    if (resume or ctx is not None) and cfg.task != "rating":
        raise ConfigError(
            f"expected task 'rating' for --resume or distributed training, received {cfg.task!r}"
        )
    split = load_split(cfg, data)
    data = split.data
    if cfg.task == "retrieval":
        return _retrieval_run(cfg, split, out if writer else None, progress=progress,
                              callbacks=callbacks)  # fmt: skip
    if on_split is not None:
        on_split(split)
    cfg = resolve_config(cfg, split.train, distributed=ctx is not None)
    if writer and out is not None:  # the resolved config, before training starts
        atomic_write(Path(out) / CONFIG_FILE, _config_json(cfg))
    # early stopping chooses the epoch on an inner cut of the training rows; the held-out
    # part is evaluated once, after training (without patience it is only a curve)
    inner = inner_validation(cfg, split)
    fit_rows, watched = (split.train, split.test) if inner is None else (inner.train, inner.test)
    t0 = time.perf_counter()
    if cfg.task == "classification":  # ratings as classes, with an imbalance strategy
        learner = fit_classifier_config(
            cfg, fit_rows, watched,
            callbacks=[ScheduleRecorder(), *callbacks, *early_stopping(cfg)], progress=progress,
        ).learner  # fmt: skip
    else:
        main = ctx is None or ctx.is_main
        learner = build_learner(
            cfg if ctx is None else cfg.replace(device=str(ctx.device)),
            fit_rows, watched, callbacks=callbacks, progress=progress if main else False,
        )  # fmt: skip
        if cfg.trainer == "als" and (resume or ctx is not None):
            raise ConfigError(
                "expected trainer 'sgd' for --resume or distributed training (ALS runs in "
                "one process without checkpoints), received 'als'"
            )
        if cfg.trainer != "als":
            ckpt.setup_run(learner, cfg, out, resume=resume, ctx=ctx)
        fit_config(learner, cfg)
    # compiling the kernels before a fit is not training: reported apart
    compile_seconds = float(getattr(learner, "compile_seconds", 0.0))
    fit_seconds = time.perf_counter() - t0 - compile_seconds
    metrics = learner.evaluate(split.test)
    metrics["fit_seconds"] = fit_seconds
    result = RunResult(cfg, learner, split, metrics)
    result.details["compile_seconds"] = compile_seconds
    if inner is not None:
        result.details["early_stopping"] = _early_stopping_details(cfg, learner, inner)
    if writer and out is not None:
        result.out = _publish_run(result, Path(out))
    return result


def _config_json(cfg: TrainConfig) -> str:
    return cfg.model_dump_json(indent=2) + "\n"


# ------------------------------------------------------------------ data and splits
def load_split(
    cfg: TrainConfig,
    data: Interactions | None = None,
    *,
    split: str | None = None,
    seed: int | None = None,
    data_dir: str | Path | None = None,
) -> Split:
    """The split a run trains and evaluates on: ``cfg.dataset`` split by ``cfg.split``,
    or, with ``cfg.test_file``, the rating file ``cfg.dataset`` as training part and the
    test file as held-out part (its ids mapped through the training vocabulary).

    Args:
        cfg: the run's config (dataset, columns, split, seed).
        data: the interactions to use instead of loading ``cfg.dataset``.
        split, seed, data_dir: override ``cfg.split``, ``cfg.seed`` and ``cfg.data_dir``.

    Test rows whose user or item is not in the training file cannot be predicted from
    training: they are dropped and counted in ``data.meta["test_file"]`` (and in the run's
    ``metrics.json``).

    Raises:
        DataError: a file cannot be read.
        EvaluationOverlapError: a (user, item) pair of the test file is also in the
            training file.
    """
    ddir = cfg.data_dir if data_dir is None else str(data_dir)
    if data is None:
        data = _load(cfg.dataset, cfg, ddir)
    if cfg.test_file is not None and split is None:
        return _file_split(data, cfg, ddir)
    return split_dataset(
        data, split or cfg.split, seed=cfg.seed if seed is None else seed, data_dir=ddir
    )


def _load(dataset: str, cfg: TrainConfig, data_dir: str | None) -> Interactions:
    return load_dataset(
        dataset,
        data_dir=data_dir,
        user=cfg.user_col,
        item=cfg.item_col,
        rating=cfg.rating_col,
        timestamp=cfg.timestamp_col,
        weight=cfg.weight_col,
    )


def _file_split(train: Interactions, cfg: TrainConfig, data_dir: str | None) -> Split:

    assert cfg.test_file is not None
    test = _load(cfg.test_file, cfg, data_dir)
    tu = train.users.index(test.users.id(test.user), unknown="sentinel")
    ti = train.items.index(test.items.id(test.item), unknown="sentinel")
    known = (tu >= 0) & (ti >= 0)
    n_tr, n_te = len(train), int(known.sum())
    user = np.concatenate([train.user, tu[known]]).astype(np.int32)
    item = np.concatenate([train.item, ti[known]]).astype(np.int32)
    # rows of weight 0 do not exist (as in count_overlap): only weighted pairs overlap
    tr = train.weights() > 0
    te = test.weights()[known] > 0
    tr_keys = train.user[tr].astype(np.int64) * train.n_items + train.item[tr]
    te_keys = user[n_tr:][te].astype(np.int64) * train.n_items + item[n_tr:][te]
    both = int(np.isin(te_keys, tr_keys).sum())
    if both:
        raise EvaluationOverlapError(
            f"expected a test file with no (user, item) pair of the training file "
            f"{cfg.dataset!r}, received {both} of {int(te.sum())} test rows of "
            f"{cfg.test_file!r} that are training rows (remove them from one of the files)",
            n_overlap=both,
            n_rows=int(te.sum()),
        )
    weight = None
    if train.weight is not None or test.weight is not None:
        weight = np.concatenate([train.weights(), test.weights()[known]]).astype(np.float32)
    offset, origin = None, 0
    if train.timestamp is not None and test.timestamp is not None:
        offset, origin = encode_time(np.concatenate([train.timestamp, test.timestamp[known]]))
    scale = train.rating_scale
    if scale is not None and test.rating_scale is not None:
        scale = (min(scale[0], test.rating_scale[0]), max(scale[1], test.rating_scale[1]))
    dropped = int((~known).sum())
    meta = {
        **train.meta,
        "test_file": {
            "path": cfg.test_file,
            "rows": len(test),
            "dropped_unknown_rows": dropped,
            "dropped_unknown_users": len(np.unique(test.user[tu < 0])),
            "dropped_unknown_items": len(np.unique(test.item[ti < 0])),
        },
    }

    data = replace(
        train,
        user=user,
        item=item,
        rating=np.concatenate([train.rating, test.rating[known]]).astype(np.float32),
        weight=weight,
        time_offset=offset,
        time_origin=origin,
        rating_scale=scale,
        meta=meta,
    )
    return Split(
        data,
        np.arange(n_tr, dtype=np.int64),
        np.arange(n_tr, n_tr + n_te, dtype=np.int64),
        f"file:{Path(cfg.test_file).name}",
    )


# ------------------------------------------------------------------ run directories
def run_state(out: str | Path) -> RunState:
    """What ``out`` holds: ``absent``, ``empty``, ``unfinished`` (a config or a checkpoint,
    no metrics yet), ``finished`` (metrics or a bundle) or ``other`` (a file, or a folder
    with other files). Hidden names (temporary files) do not count."""
    p = Path(out)
    if not p.exists() and not p.is_symlink():
        return "absent"
    if not p.is_dir():
        return "other"
    names = {q.name for q in p.iterdir() if not q.name.startswith(".")}
    if not names:
        return "empty"
    if METRICS_FILE in names or BUNDLE_DIR in names:
        return "finished"
    if CONFIG_FILE in names or CHECKPOINT_FILE in names:
        return "unfinished"
    return "other"


def _lock_path(out: Path) -> Path:
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


@contextmanager
def run_lock(out: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of the run directory ``out`` (``flock`` on the sibling
    ``.NAME.lock``; the kernel releases it when the process ends, however it ends).

    Raises:
        RunDirectoryError: another process holds it.
    """
    lock = _lock_path(Path(out))
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            raise RunDirectoryError(
                f"expected a run directory no other process is writing, received {str(out)!r} "
                f"locked by process {holder or '?'} ({str(lock)!r}); wait for it or choose "
                "another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield Path(out)
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _prepare_run_dir(out: Path, *, force: bool, resume: bool) -> bool:
    """Check ``out`` for a new run (or a resumed one), clear it under ``force``, create
    it; whether it holds a checkpoint to resume from. Under the lock, the hidden siblings
    a killed run left (a half-written or a replaced copy) are deleted first."""
    for pattern in (".tmp-*", ".old-*"):
        for stale in out.parent.glob(f".{glob.escape(out.name)}{pattern}"):
            shutil.rmtree(stale, ignore_errors=True)
    state = run_state(out)
    if state == "other":
        raise RunDirectoryError(
            f"expected a new, empty or recfit run directory for --out, received {str(out)!r} "
            "holding other files (or a file); choose another --out"
        )
    if resume:
        if state == "finished":
            raise RunDirectoryError(
                f"expected an unfinished run to resume, received the finished run {str(out)!r} "
                f"({METRICS_FILE} or {BUNDLE_DIR}/ present); train it again with --force"
            )
        if state != "unfinished":
            raise BundleError(
                f"expected a checkpoint or {CONFIG_FILE} in {str(out)!r} to resume, received "
                "neither"
            )
        return (out / CHECKPOINT_FILE).exists()
    if state in ("finished", "unfinished") and not force:
        hint = "" if state == "finished" else ", continue it with --resume"
        raise RunDirectoryError(
            f"expected a new or empty run directory for --out, received the {state} run "
            f"{str(out)!r}; pass --force (force=True) to replace it{hint}, or choose "
            "another --out"
        )
    if state in ("finished", "unfinished"):
        _discard(out)
    out.mkdir(parents=True, exist_ok=True)
    return False


def _discard(out: Path) -> None:
    """Move ``out`` aside in one rename, then delete it."""
    out = Path(os.path.abspath(out))
    trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rmdir(trash)
    os.rename(out, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _publish_run(result: RunResult, out: Path) -> Path:
    """Write the finished run into a hidden sibling of ``out`` and swap it in as one unit
    (the checkpoint moves along); the unfinished contents are then deleted."""
    given, out = out, Path(os.path.abspath(out))  # "." cannot be renamed, its full path can
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        os.chmod(stage, default_dir_mode())
        _write_files(result, stage)
        ckpt = out / CHECKPOINT_FILE
        if ckpt.is_file() and not ckpt.is_symlink():  # run files are plain files
            try:
                os.link(ckpt, stage / CHECKPOINT_FILE)
            except OSError:
                shutil.copy2(ckpt, stage / CHECKPOINT_FILE)
        publish_dir(stage, out)  # the unfinished contents are deleted
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return given


# ------------------------------------------------------------------ evaluation
@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` measured.

    Attributes:
        metrics: the metrics by name (as ``Learner.evaluate``).
        split: the split's name; part: ``test`` or ``train``.
        n_rows: rows evaluated; n_overlap: of those, (user, item) pairs the run trained on.
    """

    metrics: dict[str, float]
    split: str
    part: str
    n_rows: int
    n_overlap: int


def count_overlap(seen: Any, rows: Interactions) -> int:
    """How many rows of ``rows`` (weight > 0) are (user, item) pairs in ``seen``, the
    :class:`~recfit.index.ItemSets` of each user's training items (user index = row).

    Example:
        >>> from recfit.retrieval import ItemSets
        >>> seen = ItemSets.from_pairs([0, 1], [1, 0], n_queries=2)
        >>> count_overlap(seen, Interactions.from_arrays([0, 1, 1], [1, 1, 0], [3.0, 4.0, 5.0]))
        2
    """

    n_items = max(int(seen.indices.max()) + 1 if len(seen.indices) else 0, rows.n_items, 1)
    lengths = np.diff(seen.indptr)
    seen_users = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    seen_keys = seen_users * n_items + seen.indices.astype(np.int64)
    keep = rows.weights() > 0
    keys = rows.user[keep].astype(np.int64) * n_items + rows.item[keep]
    return int(np.isin(keys, seen_keys).sum())


def evaluate_run(
    run: str | Path,
    split: str | None = None,
    *,
    seed: int | None = None,
    data_dir: str | Path | None = None,
    part: str = "test",
    allow_overlap: bool = False,
) -> RunEvaluation:
    """Evaluate a run directory's model on a split of its dataset.

    Before measuring the test part, its rows are checked against the run's training rows
    (the bundle stores each user's training items: every training row of weight > 0):
    a metric on rows the model trained on is not a held-out metric.

    Args:
        run: the run directory.
        split, seed, data_dir: the split spec, its seed, the MovieLens folder (default: the
            run's).
        part: ``test`` (held-out rows, checked for overlap) or ``train``.
        allow_overlap: measure even when test rows were training rows (the count is kept
            in the result).

    Raises:
        EvaluationOverlapError: test rows that the run trained on, without ``allow_overlap``.
        ConfigError: a bad ``part``, or data whose ids differ from the run's.
    """
    if part not in ("test", "train"):
        raise ConfigError(f"expected part 'test' or 'train', received {part!r}")
    cfg = _read_config(Path(run))
    rec = Recommender.load(run)
    sp = load_split(cfg, split=split, seed=seed, data_dir=data_dir)
    data = sp.data
    if data.users != rec.users or data.items != rec.items:
        raise ConfigError(
            f"expected the dataset the run was trained on ({cfg.dataset!r}), "
            "received data whose user or item ids differ"
        )
    target = sp.test if part == "test" else sp.train
    n_rows = int((target.weights() > 0).sum())
    overlap = count_overlap(rec.seen, target)
    if part == "test" and overlap and not allow_overlap:
        raise EvaluationOverlapError(
            f"expected test rows the run {str(run)!r} did not train on, received {overlap:,} of "
            f"{n_rows:,} test rows of split {sp.name!r} that were training rows (the run used "
            f"split {cfg.split!r}, seed {cfg.seed}); evaluate on the run's own split, or pass "
            "--allow-overlap (allow_overlap=True) to measure anyway",
            n_overlap=overlap,
            n_rows=n_rows,
        )
    learn = Learner(
        rec.model, sp.train, None, loss=cfg.loss, reg=cfg.reg, device=cfg.device, progress=False
    )
    return RunEvaluation(learn.evaluate(target), sp.name, part, n_rows, overlap)


def retrieval_config(cfg: TrainConfig) -> Any:
    """The :class:`~recfit.train.retrieval.RetrievalConfig` a ``task="retrieval"`` config
    describes (``n_factors`` is the embedding width, ``layers`` the towers' dense layers)."""
    if cfg.schedule not in ("constant", "one_cycle"):
        raise ConfigError(
            f"expected schedule 'constant' or 'one_cycle' for retrieval, received {cfg.schedule!r}"
        )
    if cfg.opt not in ("adagrad", "adam"):
        raise ConfigError(f"expected opt 'adagrad' or 'adam' for retrieval, received {cfg.opt!r}")
    if cfg.patience is not None:  # early stopping reads the ranking metrics of eval_every
        ks = RetrievalConfig().eval_ks
        if cfg.eval_every < 1 or metric_info(cfg.monitor).k not in ks:
            raise ConfigError(
                f"expected eval_every >= 1 and a monitor at a cutoff in {ks} for patience in "
                f"retrieval, received eval_every {cfg.eval_every} and {cfg.monitor!r}"
            )
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
    split: Split,
    out: str | Path | None,
    *,
    progress: bool | None,
    callbacks: Sequence[Callback],
) -> RunResult:
    """Two-tower training and full-catalogue ranking evaluation (``task="retrieval"``)."""
    rcfg = retrieval_config(cfg)
    inner = inner_validation(cfg, split)  # early stopping ranks the inner cut, not the test
    res = train_retrieval(
        rcfg,
        split.data,
        split if inner is None else inner,
        callbacks=[ScheduleRecorder(), *callbacks, *early_stopping(cfg)],
        progress=progress,
    )
    metrics, report = dict(res.metrics), res.report
    if inner is not None:  # the held-out part, ranked once after training
        metrics, report = retrieval_task.retrieval_metrics(
            rcfg,
            res.model,
            split.test,
            split.train,  # the inner cut included: each user's seen items
            res.metrics["fit_seconds"],
            filter_positives=True,
        )
    details = {k: v for k, v in report.items() if k not in metrics}
    result = RunResult(cfg, res.learner, split, metrics, details=details)
    if inner is not None:
        result.details["early_stopping"] = _early_stopping_details(cfg, res.learner, inner)
    if res.epoch_metrics:
        label = "two_tower" if inner is None else "two_tower, inner validation"
        result.figures["metric_vs_epoch.png"] = _metric_vs_epoch(res, cfg.monitor, label)
    if out is not None:
        result.out = _publish_run(result, Path(out))
    return result


def _metric_vs_epoch(res: Any, metric: str, label: str = "two_tower") -> Any:
    return plot_metric_by_epoch({label: res.epoch_metrics}, metric)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n"


def recommender_of(result: RunResult, **kwargs: Any) -> Recommender:
    """The Recommender of a training run: its model, vocabularies, training items, titles
    (from the data's item features), rating scale and config; ``kwargs`` go to
    :class:`~recfit.recommender.Recommender`."""
    data = result.split.data
    return Recommender(
        result.learner.model,
        data.users,
        data.items,
        result.split.train,
        item_info=data.item_features,
        rating_scale=data.rating_scale,
        config=result.config,
        **kwargs,
    )


def write_run(result: RunResult, out: str | Path, *, force: bool = False) -> Path:
    """Write ``result``'s run directory (see the module docs) and return its path.

    The directory is locked while it is written, and published as one unit.

    Raises:
        RunDirectoryError: ``out`` is locked, holds a run (without ``force``) or other files.
    """
    given, path = Path(out), Path(os.path.abspath(out))
    with run_lock(path):
        _prepare_run_dir(path, force=force, resume=False)
        _publish_run(result, path)
    return given


def _write_files(result: RunResult, out: Path) -> None:
    """Every file of a finished run, into the (fresh, private) folder ``out``."""
    from recfit.plots import plot_losses  # matplotlib is heavy: only when writing figures

    learn = result.learner
    data = result.split.data
    metrics = dict(result.metrics)
    split = result.split.summary()
    if "test_file" in data.meta:
        split["test_file"] = data.meta["test_file"]
    report = {
        "metrics": metrics,
        "split": split,
        "data": {
            "name": data.name,
            "ratings": len(data),
            "users": data.n_users,
            "items": data.n_items,
        },
        "seed": result.config.seed,
    }
    atomic_write(out / CONFIG_FILE, _config_json(result.config))
    atomic_write(out / METRICS_FILE, _json({**metrics, "details": {**report, **result.details}}))
    atomic_write(out / "history.csv", learn.history_frame().to_csv(index=False))
    recommender_of(result).save(out / BUNDLE_DIR)
    figures = {"losses.png": plot_losses(learn.history) if learn.history else None}
    rec = next((c for c in learn.cbs if isinstance(c, ScheduleRecorder)), None)
    figures["schedule.png"] = rec.plot() if rec is not None and rec.lrs else None
    figures.update(result.figures)
    for name, fig in figures.items():
        if fig is not None:
            fig.savefig(out / f".{name}.tmp.png", dpi=110, bbox_inches="tight")
            os.replace(out / f".{name}.tmp.png", out / name)
    if result.config.task == "classification":
        write_classification_report(learn, result.split.test, out)
    build_report(out)


def run_config(run: str | Path) -> TrainConfig:
    """The config to resume ``run`` with: its checkpoint's, or (killed before the first
    checkpoint) its ``config.json``.

    Raises:
        BundleError: neither is there, or the one found is unreadable.
    """
    d = Path(run)
    if os.path.lexists(d / CHECKPOINT_FILE) or not os.path.lexists(d / CONFIG_FILE):
        return resume_config(d)
    return _read_config(d)


def load_run(run: str | Path) -> tuple[TrainConfig, RatingModel, Vocabulary, Vocabulary]:
    """Read a run directory back: its config, and the model and vocabularies of its bundle.

    Raises:
        BundleError: a file is missing or damaged.
    """
    cfg = _read_config(Path(run))
    rec = Recommender.load(run)
    return cfg, rec.model, rec.users, rec.items


def read_run_json(run: str | Path, name: str) -> Any:
    """The JSON file ``name`` of the run directory ``run``.

    Like every file of a run directory, it is read only as a plain file inside the run
    folder: a symbolic link, a folder or a pipe in its place is refused, not followed.

    Raises:
        BundleError: the file is missing, not a plain file, larger than 1 GiB, or not JSON.
    """
    d = Path(run)
    if not d.is_dir() or not os.path.lexists(d / name):
        raise BundleError(
            f"expected a run directory with {name}, received {str(d)!r} (no {name} there)"
        )
    data = read_plain_file(d, name, max_bytes=MAX_RUN_JSON_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"expected valid JSON in {str(d / name)!r}, received: {exc}") from exc


def _read_config(d: Path) -> TrainConfig:
    return validate_config(read_run_json(d, CONFIG_FILE), source=str(d))


def config_runner(
    data: Interactions | None = None, *, data_dir: str | Path | None = None
) -> Callable[[str, Mapping[str, Any], int], dict[str, float]]:
    """A runner for :func:`recfit.experiments.run_experiments` over training configs.

    Each configuration is a mapping of :class:`~recfit.config.TrainConfig` keys (unknown
    keys are rejected); the runner sets ``seed`` to the run's seed, so the split, the
    initial weights, the batch order and the samplers all follow the seed and every
    configuration sees the same split for a given seed. It trains with
    :func:`train_run` (classification or rating) and returns the held-out
    metrics plus ``fit_seconds``.

    Args:
        data: use these interactions instead of loading each config's ``dataset``.
        data_dir: MovieLens folder for configs that do not name one.

    Example:
        >>> import numpy as np
        >>> from recfit.data import Interactions
        >>> rng = np.random.default_rng(0)
        >>> d = Interactions.from_arrays(rng.integers(0, 20, 300), rng.integers(0, 30, 300),
        ...                              rng.integers(1, 6, 300).astype(float))
        >>> run = config_runner(d)
        >>> m = run("base", {"task": "classification", "epochs": 1, "layers": [8]}, 0)
        >>> sorted(k for k in m if "accuracy" in k)
        ['accuracy', 'balanced_accuracy']
    """
    cache: dict[tuple[Any, ...], Interactions] = {}

    def run(name: str, config: Mapping[str, Any], seed: int) -> dict[str, float]:
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"expected a table of training settings for {name!r}, received "
                f"{type(config).__name__}"
            )
        if "seed" in config:
            raise ConfigError(
                f"expected no 'seed' in configuration {name!r} (each run sets it), "
                f"received seed = {config['seed']!r}"
            )
        settings = dict(config)
        if data_dir is not None and settings.get("data_dir") is None:
            settings["data_dir"] = str(data_dir)
        cfg = validate_config({**settings, "seed": seed}, source=f"configuration {name!r}")
        d = data
        if d is None:
            key = (cfg.dataset, cfg.data_dir, cfg.user_col, cfg.item_col, cfg.rating_col,
                   cfg.timestamp_col, cfg.weight_col)  # fmt: skip
            if key not in cache:
                cache[key] = load_dataset(
                    cfg.dataset,
                    data_dir=cfg.data_dir,
                    user=cfg.user_col,
                    item=cfg.item_col,
                    rating=cfg.rating_col,
                    timestamp=cfg.timestamp_col,
                    weight=cfg.weight_col,
                )
            d = cache[key]
        result = train_run(cfg, data=d, progress=False)
        return {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}

    return run
