"""The ``blend`` family's training (rating task), and what ``model="auto"`` shares with it:
the inner cut (:func:`inner_cut`), the members' configs (:func:`member_config`) and a
fit on a cut (:func:`train_on`).

A blend (:func:`fit_blend`) trains its members on an inner cut, fits the weights on the
cut's other rows, then trains the members on the whole training part. With the :class:`BlendPlan` of ``model="auto"``
(:func:`recfit.tasks.auto.choose_model`), the weights and the members kept from auto's
inner cut are used as they are; the other members train on the whole training part, the
anytime ones (:attr:`recfit.models.registry.Family.anytime`) last, sharing the time to
the plan's deadline.

Example:
    >>> AUTO_INNER, "seed" in RUN_FIELDS
    (0.1, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recfit.config import RatingConfig
from recfit.data.interactions import Interactions
from recfit.data.split import Split
from recfit.errors import ConfigError
from recfit.models._budget import fit_until
from recfit.models.base import RatingModel
from recfit.models.blend import Blend, member_settings, ridge_blend
from recfit.models.registry import family
from recfit.tasks.common import get_task
from recfit.train.callbacks import Callback
from recfit.train.learner import Learner
from recfit.train.trainers import FitSpec, trainer_for

__all__ = [
    "AUTO_INNER",
    "RUN_FIELDS",
    "BlendPlan",
    "fit_blend",
    "inner_cut",
    "is_anytime",
    "member_config",
    "train_on",
]

AUTO_INNER = 0.1
"""The share of the training rows auto (and a blend) holds out to compare and weigh."""
RUN_FIELDS = (
    "version", "dataset", "data_dir", "user_col", "item_col", "rating_col",
    "timestamp_col", "weight_col", "split", "test_file", "seed", "device",
)  # fmt: skip
"""The fields a blend's members take from the blend's config (data, split, seed, device)."""


@dataclass
class BlendPlan:
    """How a run trains the blend ``model="auto"`` chose (:func:`recfit.tasks.auto.choose_model`): its weights and intercept (fitted on the
    inner part) and, per member, the model trained on the inner cut's other rows to keep
    as it is, or ``None``: train the member again on the whole training part."""

    weights: list[float]
    intercept: float
    kept: list[RatingModel | None]
    until: float | None = None
    """When the final fits should end (``time.perf_counter()`` seconds; ``None``: no
    limit): the anytime members train last and share the time to it."""
    costs: list[float] = field(default_factory=list)
    """Each member's estimated final fit (seconds): the anytime members' shares."""


def inner_cut(data: Interactions, rows: np.ndarray, seed: int) -> Split:
    """``rows`` of ``data`` cut at random by ``seed``: :data:`AUTO_INNER` of them the test
    part, the others the training part (both rows of ``data``: the vocabularies stay).

    Raises:
        ConfigError: too few rows to leave one on each side.

    Example:
        >>> d = Interactions.from_arrays(list(range(30)), [0] * 30, [4.0] * 30)
        >>> cut = inner_cut(d, np.arange(30), seed=0)
        >>> len(cut.train_idx), len(cut.test_idx)
        (27, 3)
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_inner = round(AUTO_INNER * len(rows))
    if n_inner < 1 or n_inner >= len(rows):
        raise ConfigError(
            f"expected enough training rows for an inner cut of {AUTO_INNER:.0%} (model auto "
            f"or blend), received {len(rows)}"
        )
    rng = np.random.default_rng([seed, 0xA070])
    inner = np.sort(rng.choice(rows, size=n_inner, replace=False))
    rest = np.setdiff1d(rows, inner, assume_unique=True)
    return Split(data, rest, inner, f"auto-inner:{AUTO_INNER:g}")


def member_config(cfg: RatingConfig, spec: str | dict[str, Any]) -> RatingConfig:
    """The config of one member (or candidate) ``spec`` of ``cfg``: ``cfg``'s data, split,
    seed and device (:data:`RUN_FIELDS`, those set) with the spec's fields.

    Example:
        >>> member_config(RatingConfig(seed=3), '{"model": "dot", "n_factors": 8}').n_factors
        8
    """
    base = {k: v for k, v in cfg.model_dump(exclude_unset=True).items() if k in RUN_FIELDS}
    return RatingConfig.validated({**base, **member_settings(spec)}, source="blend member")


def train_on(cfg: RatingConfig, cut: Split, callbacks: list[Callback]) -> Learner:
    """``cfg`` trained on ``cut``'s training part by the rating task's steps (prepared,
    built with ``callbacks``, fitted): the Learner."""
    task = get_task("rating")
    cfg = task.prepare(cfg, cut)
    learner = task.build(cfg, cut, callbacks=callbacks, progress=False)
    return task.fit(learner, cfg)


def is_anytime(name: str) -> bool:
    """Whether the family ``name``'s fit ends by a deadline with a valid model."""
    return family(name).anytime


def fit_blend(learner: Learner, cfg: RatingConfig, plan: BlendPlan | None = None) -> Learner:
    """Train the :class:`~recfit.models.blend.Blend` in ``learner`` (``cfg.model ==
    "blend"``). Without a ``plan``, each member trains on an inner cut of
    ``learner.train``, the weights are fitted on the cut's other rows, then each member
    trains on all of ``learner.train``. With auto's ``plan``: its weights, its kept
    members as they are, the others trained on all of ``learner.train``. Recorded as one
    closed-form epoch."""

    def solve(model: Any, train: Interactions) -> None:
        if not isinstance(model, Blend):
            raise ConfigError(
                f"expected a Blend for model 'blend', received {type(model).__name__}"
            )
        specs = [member_config(cfg, s) for s in cfg.blend_members]
        kept: list[RatingModel | None] = [None] * len(specs)
        if plan is None:
            cut = inner_cut(train, np.arange(len(train)), cfg.seed)
            preds = np.stack([train_on(m, cut, []).predict(cut.test) for m in specs], axis=1)
            c, b = ridge_blend(preds, cut.test.rating, cut.test.weights())
            w = (c.tolist(), b)
        else:
            w, kept = (plan.weights, plan.intercept), list(plan.kept)
        whole = Split(train, np.arange(len(train)), np.zeros(0, dtype=np.int64), "whole")
        device = model.blend_weights.device
        # the anytime members last, each ending by its share of the time to plan.until
        order = sorted(range(len(specs)), key=lambda k: is_anytime(specs[k].model))
        costs = plan.costs if plan is not None and plan.costs else [1.0] * len(specs)
        for n, k in enumerate(order):
            trained = kept[k]
            if trained is None:
                at = None
                if plan is not None and plan.until is not None and is_anytime(specs[k].model):
                    rest = sum(costs[j] for j in order[n:] if kept[j] is None)
                    now = time.perf_counter()
                    at = now + max(plan.until - now, 0.0) * costs[k] / max(rest, 1e-9)
                with fit_until(at):
                    trained = train_on(specs[k], whole, []).model
            model.members[k] = trained.to(device)
        model.set_weights(w[0], w[1])

    return trainer_for("closed_form").fit(learner, FitSpec(solve=solve))
