"""One trainer protocol: every way a model is trained, reached by the config's ``trainer``.

A trainer takes a :class:`~recfit.train.learner.Learner` (the model, its training and
validation rows, loss, metrics, callbacks) and a :class:`FitSpec` (how long and how fast),
trains the model in place and returns the Learner, whose ``history``, ``fit_seconds``,
``evaluate`` and ``predict`` then read the same whatever trained it:

* ``"sgd"`` (:class:`SGDTrainer`): mini-batch training by the Learner along the
  schedule. The Learner picks the path by its :class:`~recfit.train.execution.Execution`
  options: dense autograd, the fused step of the dot models, or the row-wise optimiser of
  :mod:`recfit.train.sparse` (one compiled kernel on CPU);
* ``"als"`` (:class:`ALSTrainer`): alternating least squares (:mod:`recfit.train.als`);
* ``"closed_form"`` (:class:`ClosedFormTrainer`): one solve by the family's
  ``closed_form(model, train)`` callable (:mod:`recfit.models.registry`; a spec's
  ``solve`` replaces it).

:func:`trainer_for` looks a name up (a :class:`~recfit.errors.ConfigError` names the
known ones); :data:`TRAINERS` maps every name to its trainer.

Example:
    >>> from recfit.data.synthetic import synthetic
    >>> from recfit.models import DotBias
    >>> from recfit.train.learner import Learner
    >>> d = synthetic(400, 20, 30, seed=0)
    >>> learn = Learner(DotBias(d.n_users, d.n_items, 8), d, d, bs=32, progress=False)
    >>> trainer_for("sgd").fit(learn, FitSpec(epochs=2, lr=1e-2)) is learn
    True
    >>> len(learn.history), sorted(TRAINERS)
    (2, ['als', 'closed_form', 'sgd'])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import RatingModel
from recfit.models.registry import find_family
from recfit.train.als import fit_als_learner
from recfit.train.learner import Learner
from recfit.train.schedules import Cosine, Cyclic

__all__ = [
    "SCHEDULES",
    "TRAINERS",
    "ALSTrainer",
    "ClosedFormTrainer",
    "FitSpec",
    "SGDTrainer",
    "Trainer",
    "trainer_for",
]

ScheduleName = Literal["one_cycle", "constant", "cosine", "cyclic"]
SCHEDULES: tuple[str, ...] = ("one_cycle", "constant", "cosine", "cyclic")
"""LR schedules :class:`SGDTrainer` understands."""


@dataclass(frozen=True)
class FitSpec:
    """How a trainer trains: the fields of a config that a fit reads.

    Attributes:
        epochs: passes (SGD), sweeps (ALS); ignored by a closed-form solve.
        lr: the (peak) learning rate of SGD.
        schedule: ``one_cycle`` (fastai), ``constant``, ``cosine`` or ``cyclic``
            (triangular between ``lr/10`` and ``lr``, half an epoch up, half down).
        pct_start: the warm-up share of ``one_cycle``.
        reg: the ALS ridge per rating (``None``: the Learner's ``reg``).
        reg_exponent: ALS's ridge exponent (:func:`recfit.train.als.fit_als`).
        solve: the closed-form solver ``solve(model, train)`` (trainer ``closed_form``;
            ``None``: the model's family's ``closed_form``).

    Example:
        >>> FitSpec.from_config({"epochs": 3, "lr": 0.01, "bs": 64}).epochs
        3
    """

    epochs: int = 5
    lr: float = 5e-3
    schedule: ScheduleName = "one_cycle"
    pct_start: float = 0.25
    reg: float | None = None
    reg_exponent: float = 1.0
    solve: Callable[[RatingModel, Interactions], None] | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"expected schedule among {list(SCHEDULES)}, received {self.schedule!r}"
            )

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> FitSpec:
        """The spec a config object (or mapping) describes: its ``epochs``, ``lr``,
        ``schedule``, ``pct_start``, ``reg`` and ``reg_exponent`` where it has them
        (others keep the defaults); ``overrides`` win (e.g. a scaled ``lr``)."""
        fields = ("epochs", "lr", "schedule", "pct_start", "reg", "reg_exponent")
        get: Callable[[str], Any] = (
            cfg.get if isinstance(cfg, Mapping) else lambda k: getattr(cfg, k, None)
        )
        found = {k: get(k) for k in fields if get(k) is not None}
        return cls(**{**found, **overrides})


@runtime_checkable
class Trainer(Protocol):
    """What every trainer does: train ``learner.model`` on ``learner.train`` in place."""

    name: str

    def fit(self, learner: Learner, spec: FitSpec) -> Learner:
        """Train; return ``learner`` with its history and ``fit_seconds`` filled."""
        ...


class SGDTrainer:
    """Mini-batch training by the Learner along ``spec.schedule`` (dense, fused or
    row-wise, as the Learner's execution options resolve)."""

    name = "sgd"

    def fit(self, learner: Learner, spec: FitSpec) -> Learner:
        lr, epochs = spec.lr, spec.epochs
        if spec.schedule == "one_cycle":
            return learner.fit_one_cycle(epochs, lr, pct_start=spec.pct_start)
        if spec.schedule == "cosine":
            total = max(1, epochs * learner.steps_per_epoch)
            return learner.fit(epochs, schedule=Cosine(lr, total))
        if spec.schedule == "cyclic":
            half = max(1, learner.steps_per_epoch // 2)
            return learner.fit(epochs, schedule=Cyclic(lr / 10, lr, step_size=half))
        return learner.fit(epochs, lr)


class ALSTrainer:
    """Alternating least squares (:func:`recfit.train.als.fit_als_learner`)."""

    name = "als"

    def fit(self, learner: Learner, spec: FitSpec) -> Learner:
        return fit_als_learner(learner, spec.epochs, reg=spec.reg, reg_exponent=spec.reg_exponent)


class ClosedFormTrainer:
    """One closed-form solve (the family's ``closed_form(model, train)``, or
    ``spec.solve``), recorded as one epoch of the history."""

    name = "closed_form"

    def fit(self, learner: Learner, spec: FitSpec) -> Learner:
        solve = spec.solve
        if solve is None:
            fam = find_family(learner.model)
            solve = None if fam is None else fam.closed_form
        if solve is None:
            raise ConfigError(
                f"expected a model whose family has a closed-form fit for trainer "
                f"'closed_form', received {type(learner.model).__name__}"
            )
        t0 = time.perf_counter()
        with learner.threads():
            solve(learner.model, learner.train)
        # a model that compiles kernels in its fit says so in fit_info: not training time
        info = getattr(learner.model, "fit_info", None)
        compiled = float(info.get("compile_seconds", 0.0)) if isinstance(info, dict) else 0.0
        learner.compile_seconds += compiled
        seconds = time.perf_counter() - t0 - compiled
        learner.model.eval()
        learner.epoch = len(learner.history)
        learner.check_finite()
        train = learner.evaluate(learner.train)
        learner.record_epoch(train["loss"], train["reg_loss"], seconds=seconds)
        learner.fit_seconds = seconds
        return learner


TRAINERS: Mapping[str, Trainer] = {
    t.name: t for t in (SGDTrainer(), ALSTrainer(), ClosedFormTrainer())
}
"""Every trainer by the config's ``trainer`` value."""


def trainer_for(name: str) -> Trainer:
    """The trainer called ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).

    Example:
        >>> trainer_for("als").name
        'als'
    """
    try:
        return TRAINERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"expected trainer among {sorted(TRAINERS)}, received {name!r}") from None
