"""Run configurations: frozen, validated, rejecting unknown keys, stored as JSON.

A :class:`TrainConfig` describes one training run completely (data, split, model,
optimisation); a run directory stores it as ``config.json`` and can be re-run from it.
Configs load from TOML or JSON files (:func:`load_config`), and command-line flags
override file values.

Example:
    >>> cfg = TrainConfig(dataset="ml-100k", epochs=3)
    >>> cfg.model, cfg.epochs
    ('auto', 3)
    >>> TrainConfig.model_validate_json(cfg.model_dump_json()) == cfg
    True
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from recfit.errors import ConfigError
from recfit.metrics.registry import metric_info

__all__ = [
    "CONFIG_VERSION",
    "MODEL_DEFAULTS",
    "ROW_WISE_DEFAULTS",
    "TASK_DEFAULTS",
    "TrainConfig",
    "load_config",
    "validate_config",
]

CONFIG_VERSION = 1


TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {
        "model": "classifier",
        "loss": "cross_entropy",
        "n_factors": 32,
        "bs": 256,
        "wd": 0.3,
        "reg": 0.0,
    },
    "retrieval": {
        "model": "two_tower",
        "loss": "mse",
        "n_factors": 32,
        "layers": (32,),
        "y_range": None,
        "opt": "adagrad",
        "schedule": "constant",
        "epochs": 30,
        "lr": 0.05,
        "bs": 1000,
        "wd": 0.0,
        "reg": 0.0,
        "monitor": "top_100_accuracy",
    },
}
"""Defaults that differ from the rating task's, per task (keys given explicitly win).

Classification: the tuned R1 classifier (benchmarks/bench_imbalance.py). Retrieval: the
keras-rs deep recommender's optimisation (protocol T1) with recfit's best objective.
"""


ROW_WISE_DEFAULTS: dict[str, Any] = {"lr": 0.03, "wd": 0.0, "reg": 0.02}
"""``lr``, ``wd`` and ``reg`` when ``opt="auto"`` picks row-wise Adagrad (keys given
explicitly win). Chosen on protocol R4 (ml-1m, split seeds 0-2: RMSE 0.8395 against
0.8425 for row-wise AdamW with the Adam defaults, in about half the time)."""

MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"svdpp": {"epochs": 6, "pct_start": 0.3}}
"""Schedule defaults of a model (keys given explicitly win), filled in when the model is
resolved. ``svdpp``'s were chosen on R1 with split seeds 10-14, kept apart from the seeds
0-4 that BENCHMARKS.md reports (median MSE 0.7917 against 0.7964 for 5 epochs at 0.25)."""


class TrainConfig(BaseModel):
    """Everything one training run needs. Unknown keys are rejected.

    Attributes:
        dataset: a MovieLens release name (``ml-100k``...) or a CSV / Parquet path.
        data_dir: where MovieLens folders live (default: ``RECFIT_DATA_DIR`` or the cache).
        user_col, item_col, rating_col, timestamp_col, weight_col: column mapping for files.
        split: a split spec (``random:0.2``, ``user:0.2``, ``temporal:0.2``, ``last:1``,
            ``kfold:5:0``, or ``u1``… for ml-100k); ``file`` with ``test_file``.
        test_file: a CSV / Parquet file of held-out ratings: ``dataset`` (a file) is then
            the whole training part and this the test part, its ids mapped through the
            training vocabulary (``split`` must be ``file`` or left out).
        seed: seeds the split, the initial weights and the batch order.
        task: ``rating`` (regression on the rating), ``classification`` (ratings as
            levels) or ``retrieval`` (two-tower model, ranking metrics). Each non-rating
            task brings its own defaults (:data:`TASK_DEFAULTS`), e.g. ``model``
            ``classifier`` and ``loss`` ``cross_entropy`` for classification.
        model: ``auto`` (default, :meth:`TrainConfig.resolve_model`: ``svdpp`` where it
            trains on the dense path, else ``dot``; ``svdpp`` brings its own schedule
            defaults, :data:`MODEL_DEFAULTS`), ``dot`` (DotBias), ``mf`` (biased
            MF, Surprise semantics), ``svdpp`` (DotBias plus SVD++'s implicit term over
            each user's rated items), ``nn`` (EmbeddingNN), ``classifier``
            (RatingClassifier, ``task="classification"``)
            or ``two_tower`` (TwoTower with side features, ``task="retrieval"``; its
            embedding width is ``n_factors`` and its dense layers ``layers``).
        n_factors: embedding size of the dot models (dot, mf, svdpp); for the classifier,
            the width of its dot-product (GMF) branch (0: none).
        y_range: output range of the scaled sigmoid; ``None`` for a linear output.
        layers, dropout, batch_norm: the EmbeddingNN's MLP.
        loss: ``mse``, ``mae``, ``huber`` or ``cross_entropy`` (classification).
        head: the classifier's head, ``softmax`` or ``ordinal`` (cumulative link).
        decode: what the classifier's predicted rating is: ``expected`` or ``argmax``.
        biases: the classifier's user and item biases.
        imbalance: class-imbalance strategy on the training rows (classification):
            ``none``, ``class_weights``, ``undersample``, ``oversample`` or ``smote``.
        class_weight: for ``class_weights``: ``inverse``, ``sqrt_inverse`` or a table
            ``{rating: weight}``.
        smote_epochs: for ``smote``: epochs training the MLP head on real plus synthetic
            vectors (after the ``epochs`` of ordinary training).
        smote_k: SMOTE's number of neighbours.
        objective: retrieval loss: ``softmax`` (in-batch sampled softmax with log-Q
            correction and accidental hits removed) or ``mse`` (keras-rs's objective: the
            dot product against the rating rescaled to [0, 1]).
        temperature, logq, num_hard_negatives, num_negatives: the softmax's options.
        positive_min_rating: retrieval: keep only ratings >= this as positives, before
            splitting (protocol T2: 4); ``None`` keeps every rating (T1).
        relevant_min_rating: retrieval: test ratings >= this are relevant (T1: 5).
        exclude_seen: retrieval: exclude each user's training items when ranking
            (stated in every report).
        eval_every: retrieval: ranking metrics on the test part every this many epochs
            (0: only at the end).
        opt: ``auto`` (default), ``adam``, ``sgd``, ``momentum`` or ``adagrad``. ``auto``
            is row-wise Adagrad (:class:`recfit.train.sparse.RowAdagrad`, with
            :data:`ROW_WISE_DEFAULTS` for ``lr``, ``wd`` and ``reg`` not given) when the
            model trains on the row-wise path (a ``dot`` or ``mf`` model of at least
            :data:`recfit.train.sparse.SPARSE_MIN_PARAMS` parameters, ``trainer="sgd"``,
            one process), else AdamW with fastai's semantics
            (:meth:`TrainConfig.resolve_opt`).
        schedule: ``one_cycle`` (fastai's), ``constant``, ``cosine`` or ``cyclic``.
        epochs, lr: epochs (ALS: sweeps), (peak) learning rate.
        bs: batch size; ``0`` (default) picks it from the number of training ratings
            (:func:`recfit.train.sparse.auto_batch_size`: 64 up to 200,000 ratings, so
            ml-100k keeps fastai's 64; then about ``n / 500`` as a power of two, at
            most 16,384) and then scales ``lr`` by ``(bs / 64) ** 0.4``
            (:func:`recfit.train.sparse.scaled_lr`); a given ``bs`` is used as is, with
            ``lr`` unchanged.
        trainer: ``sgd`` (the Learner: mini-batches with ``opt``; large DotBias/BiasedMF
            tables train on the row-wise path, :mod:`recfit.train.sparse`) or ``als``
            (alternating least squares, :func:`recfit.train.als.fit_als`, for ``dot`` and
            ``mf``: it trains the same model class with a linear output, so ``y_range``,
            ``lr``, ``bs``, ``wd``, ``opt`` and ``schedule`` do not apply, and ``reg`` is
            the ridge per rating).
        wd: decoupled weight decay over all parameters (fastai's ``wd``).
        reg: L2 penalty on the rows in each batch (Surprise's ``reg``).
        reg_exponent: ALS only: a row's ridge is ``reg · n ** reg_exponent`` for ``n``
            the total weight of its ratings (1: the Learner's objective; 0.75 regularises
            heavy users and popular items less and is more accurate on R1 and R4).
        pct_start: share of one-cycle steps spent warming up.
        patience: early stopping on ``monitor`` after this many evaluated epochs without
            gain, for every task (retrieval: needs ``eval_every``); the best epoch's
            weights are restored. It watches an inner validation cut of the training
            part (``inner_valid``), never the held-out part the run reports, which is
            evaluated once, after training; ``metrics.json`` says how the epoch was chosen
            (``details.early_stopping``).
        inner_valid: with ``patience``: the share of the training rows (retrieval: of the
            training positives) cut at random, by ``seed``, into the inner validation part
            that early stopping watches; the model trains on the rest, with the
            vocabularies of the whole training part (0 < share < 0.5).
        monitor: the metric early stopping watches; its direction comes from
            :func:`recfit.metrics.registry.metric_info` and it must be a metric of the
            task (rating or loss; classification also levels; retrieval a ranking metric
            at a cutoff of 10, 20 or 100).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        checkpoint_every: with a run directory, also save the full training state every
            this many optimiser steps (it is always saved at epoch ends); see
            :mod:`recfit.train.checkpoint`.
        bf16: bfloat16 autocast of the forward pass on CUDA (a ConfigError without CUDA).

    The defaults are recfit's best rating configuration: SVD++ 50 on data small enough
    for the dense path (ml-100k; one-cycle 6 × 5e-3 with ``pct_start`` 0.3) and DotBias
    50 on the row-wise path (ml-1m and up; one-cycle 5 epochs), ``y_range`` (0, 5.5),
    ``reg`` 0.05 and ``wd`` 0.05, automatic ``bs`` (``benchmarks/bench_r1.py --part
    best`` and ``benchmarks/bench_r4.py``).
    fastai's collab configuration (protocol R1: DotBias 50, ``y_range`` (0, 5.5),
    one-cycle 5 × 5e-3, ``wd`` 0.1, bs 64, dense AdamW) is reproduced exactly by
    ``TrainConfig(wd=0.1, reg=0.0, bs=64)`` (``recfit train --wd 0.1 --reg 0 --bs 64``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    version: int = CONFIG_VERSION
    dataset: str = "ml-100k"
    data_dir: str | None = None
    user_col: str = "user"
    item_col: str = "item"
    rating_col: str = "rating"
    timestamp_col: str | None = None
    weight_col: str | None = None
    split: str = "random:0.2"
    test_file: str | None = None
    seed: int = 42
    task: Literal["rating", "classification", "retrieval"] = "rating"
    model: Literal["auto", "dot", "mf", "svdpp", "nn", "classifier", "two_tower"] = "auto"
    n_factors: int = Field(default=50, ge=1)
    y_range: tuple[float, float] | None = (0.0, 5.5)
    layers: tuple[int, ...] = (100,)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    batch_norm: bool = True
    loss: Literal["mse", "mae", "huber", "cross_entropy"] = "mse"
    head: Literal["softmax", "ordinal"] = "softmax"
    decode: Literal["expected", "argmax"] = "expected"
    biases: bool = True
    imbalance: Literal["none", "class_weights", "undersample", "oversample", "smote"] = "none"
    class_weight: Literal["inverse", "sqrt_inverse"] | dict[str, float] = "inverse"
    smote_epochs: int = Field(default=2, ge=1)
    smote_k: int = Field(default=5, ge=1)
    objective: Literal["softmax", "mse"] = "softmax"
    temperature: float = Field(default=0.1, gt=0.0)
    logq: bool = True
    num_hard_negatives: int | None = Field(default=None, ge=1)
    num_negatives: int = Field(default=0, ge=0)
    positive_min_rating: float | None = None
    relevant_min_rating: float | None = None
    exclude_seen: bool = False
    eval_every: int = Field(default=0, ge=0)
    opt: Literal["auto", "adam", "sgd", "momentum", "adagrad"] = "auto"
    schedule: Literal["one_cycle", "constant", "cosine", "cyclic"] = "one_cycle"
    trainer: Literal["sgd", "als"] = "sgd"
    epochs: int = Field(default=5, ge=0)
    lr: float = Field(default=5e-3, gt=0.0)
    bs: int = Field(default=0, ge=0)
    wd: float = Field(default=0.05, ge=0.0)
    reg: float = Field(default=0.05, ge=0.0)
    reg_exponent: float = Field(default=1.0, gt=0.0, le=1.0)
    pct_start: float = Field(default=0.25, gt=0.0, lt=1.0)
    patience: int | None = Field(default=None, ge=1)
    inner_valid: float = Field(default=0.1, gt=0.0, lt=0.5)
    monitor: str = "mse"
    device: str = "auto"
    checkpoint_every: int | None = Field(default=None, ge=1)
    bf16: bool = False

    @field_validator("y_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"expected y_range (low, high) with low < high, received {v}")
        return v

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

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("task") in TASK_DEFAULTS:
            data = {**TASK_DEFAULTS[data["task"]], **data}
        return data

    @model_validator(mode="after")
    def _als_models(self) -> TrainConfig:
        if self.trainer == "als" and (
            self.task != "rating" or self.model not in ("auto", "dot", "mf")
        ):
            raise ValueError(
                f"expected task 'rating' with model 'dot' or 'mf' for trainer 'als', received "
                f"task {self.task!r} with model {self.model!r}"
            )
        if self.trainer == "als" and self.reg <= 0:
            raise ValueError(f"expected reg > 0 for trainer 'als', received {self.reg!r}")
        return self

    @model_validator(mode="after")
    def _consistent_task(self) -> TrainConfig:
        classify = self.task == "classification"
        if classify != (self.model == "classifier"):
            raise ValueError(
                f"expected model 'classifier' exactly when task is 'classification', "
                f"received task {self.task!r} with model {self.model!r}"
            )
        if classify != (self.loss == "cross_entropy"):
            raise ValueError(
                f"expected loss 'cross_entropy' exactly when task is 'classification', "
                f"received task {self.task!r} with loss {self.loss!r}"
            )
        if (self.task == "retrieval") != (self.model == "two_tower"):
            raise ValueError(
                f"expected model 'two_tower' exactly when task is 'retrieval', "
                f"received task {self.task!r} with model {self.model!r}"
            )
        if not classify and self.imbalance != "none":
            raise ValueError(
                f"expected imbalance 'none' for task 'rating' (strategies need classes), "
                f"received {self.imbalance!r}"
            )
        return self

    @model_validator(mode="after")
    def _fields_apply(self) -> TrainConfig:
        """A field given (not left at its default or the task's default) must be one the
        run reads (:meth:`applies`): a key that nothing reads is an error, not a no-op."""
        task_defaults = TASK_DEFAULTS.get(self.task, {})
        fields = type(self).model_fields
        unused = []
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            if name in task_defaults and value == task_defaults[name]:
                continue
            if name not in task_defaults and value == fields[name].default:
                continue
            if not self.applies(name):
                unused.append(f"{name}={value!r}")
        if unused:
            raise ValueError(
                f"expected only settings that task {self.task!r} with model {self.model!r} and "
                f"trainer {self.trainer!r} reads, received {', '.join(unused)} (it would be "
                "ignored)"
            )
        if self.monitor is not None:
            kind = metric_info(self.monitor).kind  # an unknown name is an error
            kinds = {
                "rating": ("rating", "loss"),
                "classification": ("rating", "levels", "loss"),
                "retrieval": ("ranking",),
            }[self.task]
            if kind not in kinds:
                raise ValueError(
                    f"expected a monitor of kind {' or '.join(kinds)} for task {self.task!r}, "
                    f"received {self.monitor!r} ({kind})"
                )
        return self

    def applies(self, name: str) -> bool:
        """Whether the run this config describes reads the field ``name``.

        Task-specific fields apply to their task only (``objective``... to retrieval,
        ``head``... to classification), ``reg_exponent`` to ALS, the MLP fields to models
        with an MLP, ``y_range`` to models with a scaled output, the optimisation fields
        not to ALS, ``pct_start`` to the one-cycle schedule, ``monitor`` to early stopping
        (and retrieval's ``eval_every`` curves), ``inner_valid`` to early stopping,
        checkpoints and bf16 to rating by SGD.

        Example:
            >>> TrainConfig().applies("lr"), TrainConfig().applies("temperature")
            (True, False)
        """
        task, model, als = self.task, self.model, self.trainer == "als"
        retrieval, classify = task == "retrieval", task == "classification"
        softmax = retrieval and self.objective == "softmax"
        scope = {
            "objective": retrieval,
            "temperature": softmax,
            "logq": softmax,
            "num_hard_negatives": softmax,
            "num_negatives": softmax,
            "positive_min_rating": retrieval,
            "relevant_min_rating": retrieval,
            "exclude_seen": retrieval,
            "eval_every": retrieval,
            "head": classify,
            "decode": classify,
            "biases": classify,
            "class_weight": classify and self.imbalance == "class_weights",
            "smote_epochs": classify and self.imbalance == "smote",
            "smote_k": classify and self.imbalance == "smote",
            "reg_exponent": als,
            "layers": model in ("nn", "classifier", "two_tower"),
            "dropout": model in ("nn", "classifier"),
            "batch_norm": model in ("nn", "classifier"),
            "n_factors": model != "nn",
            "y_range": model in ("auto", "dot", "svdpp", "nn") and not als,
            "loss": task == "rating",
            "opt": self.opt in ("auto", "adam") or not (als or classify),  # auto: adam there
            "lr": not als,
            "bs": not als,
            "wd": not als,
            "schedule": not als,
            "pct_start": not als and not retrieval and self.schedule == "one_cycle",
            "monitor": self.patience is not None or (retrieval and self.eval_every > 0),
            "inner_valid": self.patience is not None,
            "checkpoint_every": task == "rating" and not als,
            "bf16": task == "rating" and not als,
            "trainer": task == "rating",
        }
        return scope.get(name, True)

    def resolve_model(self, big: bool) -> TrainConfig:
        """This config with ``model="auto"`` made concrete (other values: unchanged).

        ``big``: a DotBias of this size would train on the row-wise path
        (:func:`recfit.runs.resolve_config`). Then, or with ``trainer="als"``, ``auto`` is
        ``dot``; otherwise ``svdpp``, which is more accurate (R1 median MSE 0.7995 against
        0.8040 for ``dot``) but has no row-wise or ALS form.

        The resolved model's :data:`MODEL_DEFAULTS` fill the keys not given.

        Example:
            >>> small = TrainConfig().resolve_model(big=False)
            >>> small.model, small.epochs, TrainConfig(epochs=3).resolve_model(False).epochs
            ('svdpp', 6, 3)
            >>> TrainConfig().resolve_model(big=True).model
            'dot'
        """
        model = self.model
        if model == "auto":
            model = "dot" if big or self.trainer == "als" else "svdpp"
        given = self.model_fields_set
        extra = {
            k: v
            for k, v in MODEL_DEFAULTS.get(model, {}).items()
            if k not in given and (k != "pct_start" or self.schedule == "one_cycle")
        }
        if model == self.model and not extra:
            return self
        return self.replace(model=model, **extra)

    def resolve_opt(self, row_wise: bool) -> TrainConfig:
        """This config with ``opt="auto"`` made concrete (other values: unchanged).

        ``row_wise``: the model will train on the row-wise path. Then ``auto`` becomes
        ``adagrad`` with :data:`ROW_WISE_DEFAULTS` for ``lr``, ``wd`` and ``reg`` unless
        they were given; otherwise ``adam`` with everything as is.

        Example:
            >>> cfg = TrainConfig(reg=0.1)
            >>> big = cfg.resolve_opt(row_wise=True)
            >>> big.opt, big.lr, big.wd, big.reg
            ('adagrad', 0.03, 0.0, 0.1)
            >>> cfg.resolve_opt(row_wise=False).opt
            'adam'
        """
        if self.opt != "auto":
            return self
        if not row_wise:
            return self.replace(opt="adam")
        given = self.model_fields_set
        return self.replace(
            opt="adagrad", **{k: v for k, v in ROW_WISE_DEFAULTS.items() if k not in given}
        )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied and validated (``None`` values are ignored).

        Only the fields that were set explicitly are carried over, so changing ``task``
        brings that task's defaults (:data:`TASK_DEFAULTS`) for everything else.
        """
        data = self.model_dump(exclude_unset=True)
        data.update({k: v for k, v in changes.items() if v is not None})
        return validate_config(data)


def validate_config(data: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Validate a dict into a :class:`TrainConfig`.

    Raises:
        ConfigError: unknown keys or invalid values, each named with what was received.
    """
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key {loc!r}")
            else:
                problems.append(f"{loc}: {err['msg']} (received {err.get('input')!r})")
        raise ConfigError(
            f"expected a valid training config in {source}: " + "; ".join(problems)
        ) from None


def load_config(path: str | Path) -> TrainConfig:
    """Read a :class:`TrainConfig` from a TOML or JSON file.

    A TOML file may hold the keys at the top level or under a ``[train]`` table.

    Raises:
        ConfigError: the file is missing, malformed (with its line) or invalid.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"expected a readable config file, received {str(p)!r}: {exc}") from exc
    data: Any
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"expected JSON in {str(p)!r}, received an error at line {exc.lineno}: {exc.msg}"
            ) from exc
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"expected TOML in {str(p)!r}, received: {exc}") from exc
        if isinstance(data.get("train"), dict):
            data = data["train"]
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a table of settings in {str(p)!r}, received {type(data).__name__}"
        )
    return validate_config(data, source=str(p))
