"""What every task's config shares: data, split, seed, optimisation, early stopping, device.

:class:`BaseTrainConfig` holds the shared fields and the rules that decide whether a
field *applies* (the run reads it): a field given with a value other than its default
that the run would not read is an error, never a silent no-op. Which fields apply comes
from three places, none of them a hand-written table of models:

* the model family's ``reads`` (:mod:`recfit.models.registry`): a field some family of
  the task reads applies only when the chosen family reads it;
* the trainer's fields (:data:`TRAINER_READS`): ``lr``... apply to ``sgd`` only,
  ``reg_exponent`` to ``als`` only;
* the task's own fields, each with the condition under which it is read (a task class
  overrides :meth:`BaseTrainConfig._condition`).

Example:
    >>> from recfit.config import RatingConfig
    >>> RatingConfig(model="mf").applies("y_range"), RatingConfig(model="nn").applies("layers")
    (False, True)
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recfit.errors import ConfigError
from recfit.metrics.registry import metric_info
from recfit.models.registry import Family, TaskName, families, family

__all__ = [
    "CONFIG_VERSION",
    "ROW_WISE_DEFAULTS",
    "TRAINER_OVERRIDES",
    "TRAINER_READS",
    "BaseTrainConfig",
    "config_error",
]

CONFIG_VERSION = 2
"""Version of the stored config format (1: one flat class for every task)."""

TRAINER_READS: dict[str, frozenset[str]] = {
    "sgd": frozenset(
        {
            "epochs",
            "patience",
            "opt",
            "lr",
            "bs",
            "wd",
            "reg",
            "schedule",
            "pct_start",
            "checkpoint_every",
            "bf16",
        }
    ),
    "als": frozenset({"epochs", "patience", "reg", "reg_exponent"}),
    "closed_form": frozenset(),
}
"""The fields each trainer reads; a field some trainer reads applies only with those that
read it (``reg``: SGD's L2 penalty or ALS's ridge; a closed form reads its family's own
settings)."""

TRAINER_OVERRIDES: dict[str, frozenset[str]] = {"als": frozenset({"y_range"})}
"""Model fields a trainer fixes: ALS solves for a linear output, so ``y_range`` is not read."""

ROW_WISE_DEFAULTS: dict[str, Any] = {"lr": 0.03, "wd": 0.0, "reg": 0.02}
"""``lr``, ``wd`` and ``reg`` when ``opt="auto"`` picks row-wise Adagrad (keys given
explicitly win; how they were chosen: ``docs/defaults.md``)."""

_TRAINER_FIELDS = frozenset().union(*TRAINER_READS.values())


def config_error(exc: ValidationError, source: str, tag: str | None = None) -> ConfigError:
    """``exc`` as one :class:`ConfigError` naming each problem and the value received.

    ``tag``: the task the dict was validated as (the first part of each error's place
    when it went through the union, left out of the message).
    """
    problems = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        if tag is not None and parts[:1] == [tag]:
            parts = parts[1:]
        loc = ".".join(parts) or "(root)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key {loc!r}")
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            problems.append(
                f"expected task one of {ctx.get('expected_tags')}, received {ctx.get('tag')!r}"
            )
        elif err["type"] == "value_error":  # recfit's own rules name what they received
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(msg if loc == "(root)" else f"{loc}: {msg}")
        else:
            problems.append(f"{loc}: {err['msg']} (received {err.get('input')!r})")
    return ConfigError(f"expected a valid training config in {source}: " + "; ".join(problems))


class BaseTrainConfig(BaseModel):
    """The fields and rules every task's config shares (see the module documentation).

    Not used directly: :class:`~recfit.config.RatingConfig`,
    :class:`~recfit.config.ClassificationConfig` and
    :class:`~recfit.config.RetrievalConfig` are the configs, and
    :data:`~recfit.config.TrainConfig` their union on ``task``.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    MONITOR_KINDS: ClassVar[tuple[str, ...]] = ("rating", "loss")
    """The metric kinds ``monitor`` may be (:func:`recfit.metrics.registry.metric_info`)."""
    AUTO_FIELDS: ClassVar[frozenset[str]] = frozenset()
    """Fields that say how ``model="auto"`` chooses (the rating task's ``budget``): read
    only with ``auto``, and dropped when :meth:`resolve_model` makes it concrete."""

    version: int = Field(default=CONFIG_VERSION, ge=1, le=CONFIG_VERSION)
    """The config format version (a file of a newer recfit is refused, not misread)."""
    dataset: str = "ml-100k"
    """A MovieLens release name (ml-100k, ml-1m...) or a CSV / Parquet path."""
    data_dir: str | None = None
    """Where MovieLens folders live (default: RECFIT_DATA_DIR or the cache)."""
    user_col: str = "user"
    """Column of user ids in a rating file."""
    item_col: str = "item"
    """Column of item ids in a rating file."""
    rating_col: str = "rating"
    """Column of ratings in a rating file."""
    timestamp_col: str | None = None
    """Column of timestamps in a rating file."""
    weight_col: str | None = None
    """Column of row weights in a rating file."""
    split: str = "random:0.2"
    """A split spec: random:0.2, user:0.2, temporal:0.2, last:1, kfold:5:0, users:0.1:0.8
    (held-out users folded in from 80 % of their rows), u1.. (ml-100k), or file with
    test_file."""
    test_file: str | None = None
    """Held-out ratings (CSV / Parquet) for a dataset file: the dataset is then the whole
    training part, this file's ids mapped through its vocabularies (split file)."""
    seed: int = 42
    """Seeds the split, the initial weights and the batch order."""
    task: TaskName
    """rating (regression on the rating), classification (ratings as levels) or retrieval
    (two towers, ranking metrics)."""
    model: str
    """The model family (:func:`recfit.models.registry.families` of the task)."""
    trainer: str = "sgd"
    """How the model trains: sgd (the Learner), als (alternating least squares) or
    closed_form; by default the family's first trainer."""
    opt: str = "auto"
    """The optimiser."""
    schedule: str = "one_cycle"
    """The learning-rate schedule."""
    epochs: int = Field(default=5, ge=0)
    """Passes over the training data (ALS: sweeps)."""
    lr: float = Field(default=5e-3, gt=0.0)
    """(Peak) learning rate."""
    bs: int = Field(default=0, ge=0)
    """Batch size."""
    wd: float = Field(default=0.05, ge=0.0)
    """Decoupled weight decay over all parameters (fastai's wd)."""
    reg: float = Field(default=0.05, ge=0.0)
    """L2 penalty on the rows in each batch (Surprise's reg; ALS: the ridge per rating)."""
    patience: int | None = Field(default=None, ge=1)
    """Early stopping on monitor after this many evaluated epochs without gain (the best
    epoch's weights are restored); it watches an inner validation cut of the training
    part (inner_valid), never the held-out part, which is evaluated once, after training."""
    inner_valid: float = Field(default=0.1, gt=0.0, lt=0.5)
    """With patience: the share of the training rows cut at random, by seed, into the
    inner validation part early stopping watches."""
    monitor: str = "mse"
    """The metric early stopping watches (its direction comes from the metrics registry)."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda."""

    # ------------------------------------------------------------------ validation
    @model_validator(mode="before")
    @classmethod
    def _file_split(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("test_file") is not None:
            if data.get("split", "file") != "file":
                raise ValueError(
                    f"expected split 'file' (or none) with test_file, received "
                    f"{data.get('split')!r}"
                )
            data = {**data, "split": "file"}
        elif data.get("split") == "file":
            raise ValueError("expected a test_file with split 'file', received none")
        return data

    @model_validator(mode="after")
    def _rules(self) -> Self:
        names = self.model_choices()
        if self.model not in names:
            raise ValueError(
                f"expected model one of {names} for task {self.task!r}, received {self.model!r}"
            )
        if "trainer" not in self.model_fields_set:  # the family's default trainer
            object.__setattr__(self, "trainer", self.candidate_families()[0].trainers[0])
        self._check_trainer()
        self._check_fields_apply()
        kind = metric_info(self.monitor).kind  # an unknown name is an error
        if kind not in self.MONITOR_KINDS:
            raise ValueError(
                f"expected a monitor of kind {' or '.join(self.MONITOR_KINDS)} for task "
                f"{self.task!r}, received {self.monitor!r} ({kind})"
            )
        self._check()
        return self

    def _check_trainer(self) -> None:
        supporting = sorted({f.name for f in families(self.task) if self.trainer in f.trainers})
        allowed = sorted({t for f in self.candidate_families() for t in f.trainers})
        if self.trainer not in allowed:
            if not supporting:
                raise ValueError(
                    f"expected trainer one of {allowed} for model {self.model!r} (task "
                    f"{self.task!r}), received {self.trainer!r}"
                )
            raise ValueError(
                f"expected model {' or '.join(map(repr, supporting))} for trainer "
                f"{self.trainer!r}, received task {self.task!r} with model {self.model!r} "
                f"(it trains with {' or '.join(map(repr, allowed))})"
            )
        if self.trainer == "als" and self.reg <= 0:
            raise ValueError(f"expected reg > 0 for trainer 'als', received {self.reg!r}")

    def _check(self) -> None:
        """Rules of one task (overridden by the task classes)."""

    def _check_fields_apply(self) -> None:
        """A field given (not left at its default) must be one the run reads
        (:meth:`applies`): a key that nothing reads is an error, not a no-op."""
        fields = type(self).model_fields
        unused = [
            f"{name}={getattr(self, name)!r}"
            for name in sorted(self.model_fields_set)
            if getattr(self, name) != fields[name].default and not self.applies(name)
        ]
        if unused:
            raise ValueError(
                f"expected only settings that task {self.task!r} with model {self.model!r} and "
                f"trainer {self.trainer!r} reads, received {', '.join(unused)} (it would be "
                "ignored)"
            )

    # ------------------------------------------------------------------ what applies
    @classmethod
    def model_choices(cls) -> list[str]:
        """The values ``model`` may take for this task: its registered families."""
        task = cls.model_fields["task"].default
        return [f.name for f in families(task)]

    @classmethod
    def model_fields_of_families(cls) -> frozenset[str]:
        """The fields of this class that some family of the task reads (shared fields,
        such as ``seed``, are read by every run and left out)."""
        task = cls.model_fields["task"].default
        reads: set[str] = set().union(*(f.reads for f in families(task)))
        return frozenset(reads & set(cls.model_fields) - set(BaseTrainConfig.model_fields))

    def candidate_families(self) -> list[Family]:
        """The family ``model`` names (``auto``: every family it may resolve to)."""
        return [family(self.model)]

    def applies(self, name: str) -> bool:
        """Whether the run this config describes reads the field ``name``.

        A field the chosen family does not read (while another family of the task
        does), a field the trainer does not read (``lr`` with ALS) or overrides
        (``y_range`` with ALS), or a task field whose condition does not hold
        (``pct_start`` without the one-cycle schedule, ``monitor`` and ``inner_valid``
        without ``patience``...) does not apply; nor does a field of another task.

        Example:
            >>> from recfit.config import RatingConfig
            >>> RatingConfig().applies("lr"), RatingConfig().applies("temperature")
            (True, False)
        """
        if name not in type(self).model_fields:
            return False
        if name in self.model_fields_of_families() and not any(
            name in f.reads for f in self.candidate_families()
        ):
            return False
        if name in _TRAINER_FIELDS and self.trainer == "closed_form":
            # a family trained by its own fit reads the trainer fields it lists (epochs, lr...)
            reads = any(name in f.reads for f in self.candidate_families())
            return reads and self._condition(name)
        if name in _TRAINER_FIELDS and name not in TRAINER_READS.get(self.trainer, ()):
            # the Learner holding an ALS model still gets auto's optimiser (resolve_opt)
            return name == "opt" and self.opt in ("auto", "adam")
        if name in TRAINER_OVERRIDES.get(self.trainer, ()):
            return False
        return self._condition(name)

    def _condition(self, name: str) -> bool:
        """Whether the task field ``name`` is read, given the other settings."""
        if name == "pct_start":
            return getattr(self, "schedule", None) == "one_cycle"
        if name in ("monitor", "inner_valid"):
            return self.patience is not None
        if name in self.AUTO_FIELDS:
            return self.model == "auto"
        return True

    # ------------------------------------------------------------------ resolution
    def _auto_model(self, big: bool) -> str:
        return self.model

    def resolve_model(self, big: bool) -> Self:
        """This config with ``model="auto"`` made concrete and the family's defaults
        (:attr:`recfit.models.registry.Family.defaults`) filling the fields that were not
        given and that apply (other values: unchanged).

        ``big``: a DotBias of this size would train on the row-wise path
        (:func:`recfit.tasks.rating.resolve_config`).
        """
        model = self._auto_model(big)
        cfg = self
        if model != self.model:  # what said how auto chooses goes with it
            data = self.model_dump(exclude_unset=True)
            cfg = self.validated({k: v for k, v in data.items() if k not in self.AUTO_FIELDS}
                                 | {"model": model})  # fmt: skip
        given = self.model_fields_set
        extra = {
            k: v
            for k, v in family(model).defaults.items()
            if k not in given and k in type(self).model_fields and cfg.applies(k)
        }
        return cfg.replace(**extra) if extra else cfg

    def searches(self) -> bool:
        """Whether ``model="auto"`` chooses the model by a search with a time budget when
        the task prepares the run (the rating task's ``budget``). Default: no."""
        return False

    def without_search(self) -> Self:
        """This config with the search of :meth:`searches` turned off: ``auto`` then
        resolves by its rule for the data's size (what a search of another kind, such as
        ``recfit tune``'s, starts from). Default: itself."""
        return self

    def resolve_opt(self, row_wise: bool) -> Self:
        """This config with ``opt="auto"`` made concrete (other values: unchanged).

        ``row_wise``: the model will train on the row-wise path. Then ``auto`` becomes
        ``adagrad`` with :data:`ROW_WISE_DEFAULTS` for ``lr``, ``wd`` and ``reg`` unless
        they were given; otherwise ``adam`` with everything as is.

        Example:
            >>> from recfit.config import RatingConfig
            >>> cfg = RatingConfig(reg=0.1)
            >>> big = cfg.resolve_opt(row_wise=True)
            >>> big.opt, big.lr, big.wd, big.reg
            ('adagrad', 0.03, 0.0, 0.1)
            >>> cfg.resolve_opt(row_wise=False).opt
            'adam'
        """
        if self.opt != "auto" or not self.applies("opt"):
            return self  # a family trained by its own fit reads no optimiser
        if not row_wise:
            return self.replace(opt="adam")
        given = self.model_fields_set
        return self.replace(
            opt="adagrad", **{k: v for k, v in ROW_WISE_DEFAULTS.items() if k not in given}
        )

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied and validated (``None`` values are ignored).

        Only the fields that were set explicitly are carried over, so a field left at
        its default takes the default that goes with the new values (the trainer of a
        new model, say). The task stays: :func:`~recfit.config.validate_config` makes a
        config of another task.

        Raises:
            ConfigError: an invalid value, or another task.
        """
        task = changes.get("task")
        if task is not None and task != self.task:
            raise ConfigError(
                f"expected task {self.task!r} in replace (validate_config makes a config of "
                f"another task), received {task!r}"
            )
        data = self.model_dump(exclude_unset=True)
        data.update({k: v for k, v in changes.items() if v is not None})
        return self.validated(data)

    @classmethod
    def validated(cls, data: dict[str, Any], source: str = "config") -> Self:
        """``data`` validated into this class.

        Raises:
            ConfigError: unknown keys or invalid values, each named with what was received.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, source) from None
