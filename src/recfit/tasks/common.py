"""What every task shares: the task interface and its registry, the data and split a
config names, the inner validation cut early stopping watches, and the batch size and
learning rate a run uses.

Example:
    >>> from recfit.config import RatingConfig
    >>> batch_and_lr(RatingConfig(), 80_000), batch_and_lr(RatingConfig(bs=32), 10**6)
    ((64, 0.005), (32, 0.005))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack

import numpy as np

from recfit.config import BaseTrainConfig
from recfit.data.interactions import Interactions, encode_time
from recfit.data.sources import load_dataset, split_dataset
from recfit.data.split import Split
from recfit.errors import ConfigError, EvaluationOverlapError
from recfit.index import ItemSets
from recfit.models.base import RatingModel
from recfit.train.callbacks import Callback, EarlyStopping
from recfit.train.learner import Learner
from recfit.train.sparse import auto_batch_size, scaled_lr

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "TASKS",
    "SplitOverrides",
    "Task",
    "batch_and_lr",
    "count_overlap",
    "early_stopping",
    "early_stopping_details",
    "file_split",
    "get_task",
    "inner_cut",
    "inner_validation",
    "load_data",
    "load_split",
    "make_learner",
    "register_task",
]


C = TypeVar("C", bound=BaseTrainConfig)
Callbacks = Sequence[Callback]
Metrics = tuple[dict[str, float], dict[str, Any]]


class SplitOverrides(TypedDict, total=False):
    """What a caller of :func:`load_split` may set instead of the config's ``split``,
    ``seed`` and ``data_dir`` (``recfit evaluate``); ``None`` keeps the config's."""

    split: str | None
    seed: int | None
    data_dir: str | Path | None


class Task(Generic[C]):
    """What a task does for a training run, in the order :func:`recfit.runs.train_run`
    calls it. A task subclasses this, sets ``name`` (and ``unit``), implements
    :meth:`build` and :meth:`fit`, and overrides the other steps where it differs from
    these defaults.

    Attributes:
        name: the config's ``task`` value.
        unit: what one training row is to this task (``"rows"``; retrieval:
            ``"positives"``), as said in messages and ``metrics.json``.
    """

    name: str = ""
    unit: str = "rows"

    def warm_up(self, cfg: C, data: Interactions | None = None) -> None:
        """Start, in the background, work a run of ``cfg`` (on ``data`` when given) will
        need before it loads its data (e.g. compiling kernels). Default: nothing."""

    def checkpointed(self, cfg: C) -> bool:
        """Whether runs of ``cfg`` train through the Learner's loop with full-state
        checkpoints: the condition of ``--resume`` and of distributed training."""
        return False

    def load_split(
        self, cfg: C, data: Interactions | None = None, **overrides: Unpack[SplitOverrides]
    ) -> Split:
        """The split a run of ``cfg`` trains and evaluates on: :func:`load_split` of
        the interactions as :meth:`read_data` gives them (the data split by ``cfg.split``,
        or the test file); ``overrides`` are the config's ``split``, ``seed`` and
        ``data_dir`` to use instead (``recfit evaluate``)."""
        return load_split(cfg, data, read=self.read_data, **overrides)

    def read_data(
        self, cfg: C, data: Interactions | None, dataset: str | None, data_dir: str | None
    ) -> Interactions:
        """The interactions of ``dataset`` (``None``: ``cfg.dataset``) that this task
        trains or evaluates on, or those of ``data`` (here :func:`load_data`'s, read with
        ``cfg``'s columns from ``data_dir`` or ``cfg.data_dir``; ``data`` as it is)."""
        return _read_data(cfg, data, dataset, data_dir)

    def measure(self, model: RatingModel, cfg: C, split: Split, part: str) -> dict[str, float]:
        """The metrics of a trained ``model`` on ``split``'s ``part`` (``"test"`` or
        ``"train"``) for :func:`recfit.runs.evaluate_run` (here the Learner's)."""
        loss = getattr(cfg, "loss", None)  # a task without one: the model's default
        learn = Learner(
            model, split.train, None, loss=loss, reg=cfg.reg, device=cfg.device, progress=False
        )
        return learn.evaluate(split.test if part == "test" else split.train)

    def settle(self, cfg: C, split: Split) -> C:
        """``cfg`` with the values fixed that depend only on the size of ``split``'s
        training part (the rating task: auto's default budget), before :meth:`prepare`
        searches; the run writes it to ``config.json``. Default: ``cfg``."""
        return cfg

    def prepare(self, cfg: C, split: Split, *, distributed: bool = False) -> C:
        """``cfg`` made concrete for ``split``'s training part (``auto`` values chosen)."""
        return cfg

    def inner_rows(self, cfg: C, split: Split) -> np.ndarray:
        """The rows of ``split.data`` an inner validation cut is drawn from (a subset of
        ``split.train_idx``; here all of them)."""
        return np.asarray(split.train_idx, dtype=np.int64)

    def build(self, cfg: C, fit: Split, callbacks: Callbacks, progress: bool | None) -> Learner:
        """A fresh model sized for ``fit.train`` inside a Learner that trains on
        ``fit.train`` and watches ``fit.test`` (``callbacks`` added)."""
        raise NotImplementedError

    def fit(self, learner: Learner, cfg: C) -> Learner:
        """Train ``learner`` as ``cfg`` says; the Learner holding the trained model."""
        raise NotImplementedError

    def evaluate(self, learner: Learner, cfg: C, split: Split) -> Metrics:
        """The metrics of the trained model on ``split``'s held-out part (here
        ``learner.evaluate``), and more about them (``details`` in ``metrics.json``)."""
        return learner.evaluate(split.test), {}

    def figures(self, learner: Learner, cfg: C) -> dict[str, Figure]:
        """The task's own figures of the training, by file name (here none)."""
        return {}

    def artefacts(self, learner: Learner, cfg: C, split: Split, out: Path) -> None:
        """Write the task's own reports and files into the run folder ``out`` (here
        none)."""


TASKS: dict[str, Task[Any]] = {}
"""Every task by name; each task module registers its own (:func:`register_task`)."""


def register_task(task: Task[Any]) -> Task[Any]:
    """Add ``task`` to :data:`TASKS` under ``task.name`` (again: replaced)."""
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task[Any]:
    """The task named ``name``.

    Raises:
        ConfigError: no task has this name.

    Example:
        >>> get_task("rating").name
        'rating'
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"expected a task among {sorted(TASKS)}, received {name!r}") from None


# ------------------------------------------------------------------ data and splits
def load_data(
    cfg: BaseTrainConfig, dataset: str | None = None, data_dir: str | Path | None = None
) -> Interactions:
    """``dataset`` (default ``cfg.dataset``) read with ``cfg``'s column mapping, MovieLens
    releases from ``data_dir`` (default ``cfg.data_dir``)."""
    return load_dataset(
        cfg.dataset if dataset is None else dataset,
        data_dir=cfg.data_dir if data_dir is None else data_dir,
        user=cfg.user_col,
        item=cfg.item_col,
        rating=cfg.rating_col,
        timestamp=cfg.timestamp_col,
        weight=cfg.weight_col,
    )


def load_split(
    cfg: C,
    data: Interactions | None = None,
    *,
    split: str | None = None,
    seed: int | None = None,
    data_dir: str | Path | None = None,
    read: Callable[[C, Interactions | None, str | None, str | None], Interactions] | None = None,
) -> Split:
    """The split a run trains and evaluates on: ``cfg.dataset`` split by ``cfg.split``,
    or, with ``cfg.test_file``, the rating file ``cfg.dataset`` as training part and the
    test file as held-out part (its ids mapped through the training vocabulary).

    Args:
        cfg: the run's config (dataset, columns, split, seed).
        data: the interactions to use instead of loading ``cfg.dataset``.
        split, seed, data_dir: override ``cfg.split``, ``cfg.seed`` and ``cfg.data_dir``.
        read: ``read(cfg, data, dataset, data_dir)``, the interactions of ``data`` or of
            ``dataset`` (``None``: ``cfg.dataset``) to split (a task's
            :meth:`Task.read_data`; default: ``data``, else :func:`load_data`'s).

    Test rows whose user or item is not in the training file cannot be predicted from
    training: they are dropped and counted in ``data.meta["test_file"]`` (and in the run's
    ``metrics.json``).

    Raises:
        DataError: a file cannot be read.
        EvaluationOverlapError: a (user, item) pair of the test file is also in the
            training file.
    """
    ddir = None if data_dir is None else str(data_dir)
    if read is None:
        read = _read_data
    train = read(cfg, data, None, ddir)
    if cfg.test_file is not None and split is None:
        return file_split(train, read(cfg, None, cfg.test_file, ddir), cfg)
    return split_dataset(
        train,
        split or cfg.split,
        seed=cfg.seed if seed is None else seed,
        data_dir=cfg.data_dir if ddir is None else ddir,
    )


def _read_data(
    cfg: BaseTrainConfig, data: Interactions | None, dataset: str | None, data_dir: str | None
) -> Interactions:
    return load_data(cfg, dataset, data_dir) if data is None else data


def file_split(train: Interactions, test: Interactions, cfg: BaseTrainConfig) -> Split:
    """``train`` as the training part and ``test`` (``cfg.test_file``'s rows) as the
    held-out part of one split: ``test``'s ids mapped through ``train``'s vocabularies,
    rows of unknown users or items dropped and counted in ``data.meta["test_file"]``.

    Raises:
        EvaluationOverlapError: a (user, item) pair of ``test`` is also in ``train``.
    """
    tu = train.users.index(test.users.id(test.user), unknown="sentinel")
    ti = train.items.index(test.items.id(test.item), unknown="sentinel")
    known = (tu >= 0) & (ti >= 0)
    n_tr, n_te = len(train), int(known.sum())
    user = np.concatenate([train.user, tu[known]]).astype(np.int32)
    item = np.concatenate([train.item, ti[known]]).astype(np.int32)
    # rows of weight 0 do not exist (as in count_overlap): only weighted pairs overlap
    tr = train.weights() > 0
    te = test.weights()[known] > 0
    seen = ItemSets.from_pairs(train.user[tr], train.item[tr], n_queries=train.n_users)
    n_weighted = int(te.sum())
    both = _overlap(seen, tu[known][te], ti[known][te], train.n_items)
    if both:
        raise EvaluationOverlapError(
            f"expected a test file with no (user, item) pair of the training file "
            f"{cfg.dataset!r}, received {both} of {n_weighted} test rows of "
            f"{cfg.test_file!r} that are training rows (remove them from one of the files)",
            n_overlap=both,
            n_rows=n_weighted,
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
        f"file:{Path(cfg.test_file or 'test').name}",
    )


def count_overlap(seen: ItemSets, rows: Interactions) -> int:
    """How many rows of ``rows`` (weight > 0) are (user, item) pairs in ``seen``, the
    :class:`~recfit.index.ItemSets` of each user's training items (user index = row).

    Example:
        >>> seen = ItemSets.from_pairs([0, 1], [1, 0], n_queries=2)
        >>> count_overlap(seen, Interactions.from_arrays([0, 1, 1], [1, 1, 0], [3.0, 4.0, 5.0]))
        2
    """
    keep = rows.weights() > 0
    return _overlap(seen, rows.user[keep], rows.item[keep], rows.n_items)


def _overlap(seen: ItemSets, user: np.ndarray, item: np.ndarray, n_items: int) -> int:
    """How many of the pairs ``(user[k], item[k])`` are in ``seen``."""
    n = max(int(seen.indices.max()) + 1 if len(seen.indices) else 0, n_items, 1)
    lengths = np.diff(seen.indptr)
    seen_users = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    seen_keys = seen_users * n + seen.indices.astype(np.int64)
    keys = user.astype(np.int64) * n + item.astype(np.int64)
    return int(np.isin(keys, seen_keys).sum())


# ------------------------------------------------------------------ early stopping
def early_stopping(cfg: BaseTrainConfig) -> list[Callback]:
    """The early-stopping callback ``cfg.patience`` asks for (every task), else none.

    It watches ``cfg.monitor`` on the validation rows the Learner is given, in the
    direction :mod:`recfit.metrics.registry` gives, and restores the best epoch's
    weights; :func:`recfit.runs.train_run` gives it the inner validation cut of the
    training part (:func:`inner_validation`), never the held-out part it reports.

    Example:
        >>> from recfit.config import RatingConfig
        >>> [type(c).__name__ for c in early_stopping(RatingConfig(patience=2))]
        ['EarlyStopping']
    """
    if cfg.patience is None:
        return []
    return [EarlyStopping(monitor=cfg.monitor, patience=cfg.patience, restore_best=True)]


def inner_validation(cfg: BaseTrainConfig, split: Split) -> Split | None:
    """The inner validation cut early stopping watches (``cfg.patience``), else ``None``.

    A share ``cfg.inner_valid`` of the training rows of ``split`` (those the task draws
    from, :meth:`Task.inner_rows`: retrieval its training positives,
    ``cfg.positive_min_rating``), drawn at random by ``cfg.seed``, is the returned
    split's test part; the other training rows are its training part. Both parts are rows
    of ``split.data``, so users and items keep the indices (and the vocabularies) of the
    whole training part. No held-out row of ``split`` is in either.

    Raises:
        ConfigError: the training part is too small to leave a row on each side.

    Example:
        >>> d = Interactions.from_arrays(list(range(20)), [0] * 20, [4.0] * 20)
        >>> sp = Split(d, np.arange(10), np.arange(10, 20), "demo")
        >>> from recfit.config import RatingConfig
        >>> inner = inner_validation(RatingConfig(patience=1, inner_valid=0.2), sp)
        >>> len(inner.train_idx), len(inner.test_idx), set(inner.test_idx) <= set(range(10))
        (8, 2, True)
    """
    if cfg.patience is None:
        return None
    return inner_cut(cfg, split)


def inner_cut(cfg: BaseTrainConfig, split: Split) -> Split:
    """The inner validation cut of :func:`inner_validation`, whatever ``cfg.patience``
    (``recfit tune`` scores its trials on it).

    Raises:
        ConfigError: the training part is too small to leave a row on each side.
    """
    task = get_task(cfg.task)
    rows = np.asarray(split.train_idx, dtype=np.int64)
    eligible = task.inner_rows(cfg, split)
    n_inner = round(cfg.inner_valid * len(eligible))
    if n_inner < 1 or n_inner >= len(eligible):
        raise ConfigError(
            f"expected enough training rows for an inner validation cut of inner_valid "
            f"{cfg.inner_valid} (patience), received {len(eligible)} training {task.unit}"
        )
    rng = np.random.default_rng([cfg.seed, 0x1AA1])  # a stream apart from the split's
    inner = np.sort(rng.choice(eligible, size=n_inner, replace=False))
    rest = np.setdiff1d(rows, inner, assume_unique=True)
    return Split(split.data, rest, inner, f"inner:{cfg.inner_valid:g} of {split.name}")


def early_stopping_details(cfg: BaseTrainConfig, learner: Learner, inner: Split) -> dict[str, Any]:
    """How the epoch was chosen, for ``metrics.json`` (``details.early_stopping``)."""
    stop = next((c for c in learner.cbs if isinstance(c, EarlyStopping)), None)
    best = None if stop is None or stop.best_epoch < 0 else int(stop.best_epoch)
    return {
        "monitor": cfg.monitor,
        "monitored_on": (
            f"inner validation, {cfg.inner_valid:.0%} of training {get_task(cfg.task).unit}"
        ),
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


# ------------------------------------------------------------------ optimisation
def make_learner(
    cfg: BaseTrainConfig,
    model: RatingModel,
    train: Interactions,
    valid: Interactions | None,
    *,
    callbacks: Callbacks,
    progress: bool | None,
    **options: Any,
) -> Learner:
    """A Learner of ``model`` on ``train`` (watching ``valid``) with ``cfg``'s ``wd``,
    ``reg``, ``device`` and ``seed``; ``options`` (``loss``, ``opt``, ``bs``,
    ``metrics``...) go to :class:`~recfit.train.learner.Learner` as they are."""
    run: dict[str, Any] = {"wd": cfg.wd, "reg": cfg.reg, "device": cfg.device, "seed": cfg.seed}
    return Learner(model, train, valid, callbacks=callbacks, progress=progress, **run, **options)


def batch_and_lr(cfg: BaseTrainConfig, n_train: int) -> tuple[int, float]:
    """The batch size and (peak) learning rate a run with ``n_train`` ratings uses.

    ``cfg.bs`` and ``cfg.lr`` as given, except ``cfg.bs == 0``: then
    :func:`~recfit.train.sparse.auto_batch_size` and
    :func:`~recfit.train.sparse.scaled_lr` (64 and ``lr`` on ml-100k).
    """
    if cfg.bs:
        return cfg.bs, cfg.lr
    bs = auto_batch_size(n_train)
    return bs, scaled_lr(cfg.lr, bs)
