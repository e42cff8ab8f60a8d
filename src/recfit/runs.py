"""Training runs: a :class:`~recfit.config.TrainConfig` in, a run directory out.

:func:`train_run` loads and splits the data, then calls the steps of the task the config
names (:mod:`recfit.tasks`: prepare, build, fit, evaluate, figures, artefacts); this
module owns the run directory. A run directory holds::

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
    >>> run_state("no/such/run")
    'absent'
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from recfit._fs import atomic_write, default_dir_mode, publish_dir, read_plain_file
from recfit.config import TrainConfig, validate_config
from recfit.data.interactions import Interactions
from recfit.data.split import Split
from recfit.data.vocab import Vocabulary
from recfit.errors import BundleError, ConfigError, EvaluationOverlapError, RunDirectoryError
from recfit.models import RatingModel
from recfit.recommender import Recommender
from recfit.report import build_report
from recfit.tasks import common, get_task
from recfit.train import checkpoint as ckpt
from recfit.train.callbacks import Callback, ScheduleRecorder
from recfit.train.checkpoint import resume_config
from recfit.train.distributed import current
from recfit.train.learner import Learner

__all__ = [
    "RunEvaluation",
    "RunResult",
    "atomic_write",
    "config_runner",
    "evaluate_run",
    "load_run",
    "read_run_json",
    "recommender_of",
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
    task = get_task(cfg.task)
    if (resume or ctx is not None) and not task.checkpointed(cfg):
        raise ConfigError(
            "expected a run that trains with checkpoints (the Learner's loop) for --resume or "
            f"distributed training, received task {cfg.task!r} with trainer {cfg.trainer!r}"
        )
    task.warm_up(cfg, data)  # e.g. compiled kernels compile (or load) while the data loads
    split = task.load_split(cfg, data)
    if on_split is not None:
        on_split(split)
    settled = task.settle(cfg, split)  # auto's default budget, say: known before a search
    if writer and out is not None and settled != cfg:
        atomic_write(Path(out) / CONFIG_FILE, _config_json(settled))
    cfg = task.prepare(settled, split, distributed=ctx is not None)
    if writer and out is not None:  # the resolved config, before training starts
        atomic_write(Path(out) / CONFIG_FILE, _config_json(cfg))
    # early stopping chooses the epoch on an inner cut of the training rows; the held-out
    # part is evaluated once, after training (without patience it is only a curve)
    inner = common.inner_validation(cfg, split)
    main = ctx is None or ctx.is_main
    t0 = time.perf_counter()
    learner = task.build(
        cfg if ctx is None else cfg.replace(device=str(ctx.device)),
        split if inner is None else inner,
        callbacks=callbacks,
        progress=progress if main else False,
    )
    if task.checkpointed(cfg):
        ckpt.setup_run(learner, cfg, out, resume=resume, ctx=ctx)
    learner = task.fit(learner, cfg)
    # compiling the kernels before a fit is not training: reported apart
    compile_seconds = float(learner.compile_seconds)
    fit_seconds = time.perf_counter() - t0 - compile_seconds
    metrics, details = task.evaluate(learner, cfg, split)
    metrics["fit_seconds"] = fit_seconds
    result = RunResult(cfg, learner, split, metrics, details=details)
    result.figures.update(task.figures(learner, cfg))
    result.details["compile_seconds"] = compile_seconds
    if inner is not None:
        result.details["early_stopping"] = common.early_stopping_details(cfg, learner, inner)
    if writer and out is not None:
        result.out = _publish_run(result, Path(out))
    return result


def _config_json(cfg: TrainConfig) -> str:
    return cfg.model_dump_json(indent=2) + "\n"


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


@contextmanager
def run_lock(out: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of the run directory ``out`` (``flock`` on the sibling
    ``.NAME.lock``; the kernel releases it when the process ends, however it ends).

    Raises:
        RunDirectoryError: another process holds it.
    """
    path = Path(os.path.abspath(out))
    lock = path.parent / f".{path.name}.lock"
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
    task = get_task(cfg.task)
    sp = task.load_split(cfg, split=split, seed=seed, data_dir=data_dir)
    data = sp.data
    if data.users != rec.users or data.items != rec.items:
        raise ConfigError(
            f"expected the dataset the run was trained on ({cfg.dataset!r}), "
            "received data whose user or item ids differ"
        )
    target = sp.test if part == "test" else sp.train
    n_rows = int((target.weights() > 0).sum())
    overlap = common.count_overlap(rec.seen, target)
    if part == "test" and overlap and not allow_overlap:
        raise EvaluationOverlapError(
            f"expected test rows the run {str(run)!r} did not train on, received {overlap:,} of "
            f"{n_rows:,} test rows of split {sp.name!r} that were training rows (the run used "
            f"split {cfg.split!r}, seed {cfg.seed}); evaluate on the run's own split, or pass "
            "--allow-overlap (allow_overlap=True) to measure anyway",
            n_overlap=overlap,
            n_rows=n_rows,
        )
    return RunEvaluation(task.measure(rec.model, cfg, sp, part), sp.name, part, n_rows, overlap)


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
        rating_scale=result.split.train.prediction_scale(),
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
    sizes = {"ratings": len(data), "users": data.n_users, "items": data.n_items}
    report = {
        "metrics": metrics,
        "split": split,
        "data": {"name": data.name, **sizes},
        "seed": result.config.seed,
    }
    atomic_write(out / CONFIG_FILE, _config_json(result.config))
    details = {**metrics, "details": {**report, **result.details}}
    atomic_write(
        out / METRICS_FILE, json.dumps(details, indent=2, sort_keys=True, default=float) + "\n"
    )
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
    get_task(result.config.task).artefacts(learn, result.config, result.split, out)
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
                cache[key] = common.load_data(cfg)
            d = cache[key]
        result = train_run(cfg, data=d, progress=False)
        return {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}

    return run
