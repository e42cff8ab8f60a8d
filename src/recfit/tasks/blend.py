"""The ``blend`` family's training (rating task), and what ``model="auto"`` shares with it:
the inner cut (:func:`inner_cut`), the members' configs (:func:`member_config`) and a
fit on a cut (:func:`train_on`).

A blend (:func:`fit_blend`) trains its members on an inner cut, fits the weights on the
cut's other rows, then trains the members on the whole training part. With the :class:`BlendPlan` of ``model="auto"``
(:func:`recfit.tasks.auto.choose_model`), the weights and the members kept from auto's
inner cut are used as they are; the other members train on the whole training part, the
anytime ones (:attr:`recfit.models.registry.Family.anytime`) last, each ending by the
plan's deadline less the estimates of the members after it (:func:`final_fit`; the
anytime ones share what is left when it is too little for all): an anytime fit with fewer
samples or epochs, another one cut by a :class:`~recfit.tasks.tuning.deadline.Deadline`
and replaced by its inner-cut model. A single family chosen by auto trains by the same
rule (:func:`fit_single`). What each final fit did is the plan's :meth:`BlendPlan.final_fits`.

Example:
    >>> AUTO_INNER, "seed" in RUN_FIELDS
    (0.1, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recfit.config import RatingConfig
from recfit.data.interactions import Interactions
from recfit.data.split import Split
from recfit.errors import ConfigError
from recfit.models._budget import ended_early, fit_until
from recfit.models.base import RatingModel
from recfit.models.blend import Blend, member_settings, ridge_blend
from recfit.models.registry import family
from recfit.tasks.common import get_task
from recfit.tasks.tuning.deadline import Deadline
from recfit.train.callbacks import Callback
from recfit.train.learner import Learner
from recfit.train.trainers import FitSpec, trainer_for

__all__ = [
    "AUTO_INNER",
    "RUN_FIELDS",
    "BlendPlan",
    "FinalDeadline",
    "final_fit",
    "fit_blend",
    "fit_single",
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
    """How a run trains what ``model="auto"`` chose (:func:`recfit.tasks.auto.choose_model`).
    A blend: its weights and intercept (fitted on the inner part) and, per member, the
    model trained on the inner cut's other rows to keep as it is, or ``None``: train the
    member again on the whole training part. A single family: one member (weights
    ``[1.0]``, intercept 0: unused), trained again (:func:`fit_single`)."""

    weights: list[float]
    intercept: float
    kept: list[RatingModel | None]
    until: float | None = None
    """When the final fits should end (``time.perf_counter()`` seconds; ``None``: no
    limit): each member trained again ends by it less the estimates of the members
    still to train after it."""
    costs: list[float] = field(default_factory=list)
    """Each member's estimated final fit (seconds): the time kept for a member still to
    train while the ones before it train."""
    inner: list[RatingModel | None] = field(default_factory=list)
    """Each member's inner-cut model (empty: none): a member that is not anytime keeps it
    when its final fit is cut by its deadline (without it, the fit runs to its end)."""
    labels: list[str] = field(default_factory=list)
    """Each member's name in the record (empty: its family)."""
    anytime_floor: float = 1.0
    """The share of its estimate an anytime member (trained last) is counted at in the
    time kept for it while a member before it trains (auto's ``ANYTIME_MIN``: what it
    planned at least): a member that cannot end early is not cut to leave the anytime
    ones all of theirs."""
    final: list[dict[str, Any]] = field(default_factory=list)
    """What each member's final fit did (filled by the fit): label, seconds, outcome,
    and ``cut``: the fit was cut by its deadline and the inner-cut model kept."""
    ended: float | None = None
    """When the last final fit ended (``time.perf_counter()`` seconds)."""

    def final_fits(self) -> dict[str, Any]:
        """The final fits as a JSON-ready dict (``details.model_auto.final_fits``): their
        seconds in all, each member's record, the members whose fit was cut and kept the
        inner-cut model, and the seconds left at the deadline (below 0: past it)."""
        out: dict[str, Any] = {
            "seconds": round(sum(r["seconds"] for r in self.final), 3),
            "members": self.final,
            "cut_kept_the_inner_cut_model": [r["label"] for r in self.final if r["cut"]],
        }
        if self.until is not None and self.ended is not None:
            out["seconds_left_at_the_deadline"] = round(self.until - self.ended, 3)
        return out

    def record(self, k: int, name: str, t0: float, outcome: str, cut: bool) -> None:
        """Member ``k``'s final fit (family ``name``), started at ``t0``, ended now."""
        self.ended = time.perf_counter()
        label = self.labels[k] if k < len(self.labels) else name
        self.final.append(
            {"label": label, "seconds": round(self.ended - t0, 3), "outcome": outcome, "cut": cut}
        )


class FinalDeadline(Deadline):
    """A :class:`~recfit.tasks.tuning.deadline.Deadline` that never cuts a fit whose steps
    are all done (a final fit that ended just past its time is kept, not thrown away)."""

    def _check(self) -> None:
        learn = self.learn
        if learn.epoch * learn.n_iter + learn.iter + 1 < learn.n_epochs * learn.n_iter:
            super()._check()


def final_fit(
    fit: Callable[[list[Callback]], Learner],
    cfg: RatingConfig,
    at: float | None,
    inner: RatingModel | None,
    cost: float | None = None,
) -> tuple[RatingModel, str, bool]:
    """One member's final fit (``fit`` with these callbacks, of the config ``cfg``) ending
    by ``at`` (``time.perf_counter()`` seconds; ``None``: no deadline): the model, what
    happened, and whether the fit was cut (or not started) and ``inner`` kept instead.

    An anytime family (:func:`is_anytime`) ends by ``at`` with fewer samples or epochs;
    another one, given its ``inner``-cut model, keeps it when ``at`` has passed, when
    its fit is not the Learner's loop (a family's own fit, ALS: no deadline can cut it)
    and its estimated ``cost`` (seconds) passes ``at``, or when its
    :class:`FinalDeadline` cuts it; without ``inner`` it runs to its end."""
    anytime = is_anytime(cfg.model)
    if anytime or inner is None or at is None:
        with fit_until(at if anytime else None):
            model = fit([]).model
        return model, ended_early(model) or "trained again", False
    left = at - time.perf_counter()
    if left <= 0:
        return inner, "no time left: kept its inner-cut model", True
    if cfg.trainer != "sgd" and cost is not None and cost > left:
        why = f"no time for its estimated {cost:.1f} s ({left:.1f} s left; no deadline cuts"
        return inner, f"{why} its {cfg.trainer} fit): kept its inner-cut model", True
    stop = FinalDeadline(at)
    model = fit([stop]).model
    if not stop.hit:
        return model, "trained again", False
    why = "projected past its deadline" if stop.projected else "cut at its deadline"
    return inner, f"{why}: kept its inner-cut model", True


def _share(
    plan: BlendPlan | None, costs: list[float], anytime: list[bool], todo: list[int], k: int
) -> float | None:
    """Member ``k``'s deadline: the plan's deadline less the estimates (``costs``) of the
    other members still to train (``todo``), so that it may use any time their estimates
    leave but never theirs (a member that is not anytime counts the anytime ones, trained
    last, at the plan's ``anytime_floor`` of their estimates). An anytime member ends no
    earlier than by its share (by ``costs``) of the time left to the plan's deadline
    among those still to train: with too little time for all, they share it. ``None``
    without a deadline."""
    if plan is None or plan.until is None:
        return None
    floor = 1.0 if anytime[k] else plan.anytime_floor
    others = sum(costs[j] * (floor if anytime[j] else 1.0) for j in todo if j != k)
    at = plan.until - others
    if not anytime[k]:
        return at
    now = time.perf_counter()
    share = max(plan.until - now, 0.0) * costs[k] / max(others + costs[k], 1e-9)
    return max(at, now + share)


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


def _fit_on(cfg: RatingConfig, cut: Split) -> Callable[[list[Callback]], Learner]:
    """:func:`train_on` of ``cfg`` and ``cut``, given the callbacks."""
    return lambda callbacks: train_on(cfg, cut, callbacks)


def is_anytime(name: str) -> bool:
    """Whether the family ``name``'s fit ends by a deadline with a valid model."""
    return family(name).anytime


def fit_blend(learner: Learner, cfg: RatingConfig, plan: BlendPlan | None = None) -> Learner:
    """Train the :class:`~recfit.models.blend.Blend` in ``learner`` (``cfg.model ==
    "blend"``). Without a ``plan``, each member trains on an inner cut of
    ``learner.train``, the weights are fitted on the cut's other rows, then each member
    trains on all of ``learner.train``. With auto's ``plan``: its weights, its kept
    members as they are, the others trained on all of ``learner.train``, each ending by
    the plan's deadline less the estimates of the members after it (:func:`final_fit`,
    :func:`_share`; recorded in the
    plan's :meth:`BlendPlan.final_fits`). Recorded as one closed-form epoch."""

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
        # the anytime members last; each ends by plan.until less the others' estimates
        anytime = [is_anytime(m.model) for m in specs]
        order = sorted(range(len(specs)), key=lambda k: anytime[k])
        estimated = plan is not None and bool(plan.costs)
        costs = plan.costs if plan is not None and estimated else [1.0] * len(specs)
        inner = plan.inner if plan is not None and plan.inner else [None] * len(specs)
        for n, k in enumerate(order):
            t0, trained, short = time.perf_counter(), kept[k], False
            outcome = "kept from the inner cut"
            if trained is None:
                at = _share(plan, costs, anytime, [j for j in order[n:] if kept[j] is None], k)
                fit = _fit_on(specs[k], whole)
                cost = costs[k] if estimated else None
                trained, outcome, short = final_fit(fit, specs[k], at, inner[k], cost)
            if plan is not None:
                plan.record(k, specs[k].model, t0, outcome, short)
            model.members[k] = trained.to(device)
        model.set_weights(w[0], w[1])

    return trainer_for("closed_form").fit(learner, FitSpec(solve=solve))


def fit_single(
    learner: Learner,
    cfg: RatingConfig,
    plan: BlendPlan,
    fit: Callable[[Learner, RatingConfig], Learner],
) -> Learner:
    """Train ``learner`` (one family, chosen by auto) by ``fit`` ending by the plan's
    deadline (:func:`final_fit`): cut, its model is the plan's inner-cut model (on the
    learner's device).

    Raises:
        ConfigError: the inner-cut model is not of the learner's model's class."""

    def run(cbs: list[Callback]) -> Learner:
        for cb in cbs:
            learner.add_cb(cb)
        try:
            return fit(learner, cfg)
        finally:
            for cb in cbs:
                learner.remove_cb(cb)

    inner = plan.inner[0] if plan.inner else None
    if inner is not None and type(inner) is not type(learner.model):
        raise ConfigError(
            f"expected an inner-cut model of class {type(learner.model).__name__} for "
            f"model {cfg.model!r}, received {type(inner).__name__}"
        )
    t0 = time.perf_counter()
    cost = plan.costs[0] if plan.costs else None
    model, outcome, cut = final_fit(run, cfg, plan.until, inner, cost)
    if model is not learner.model:
        learner.model = model.to(learner.device)
    plan.record(0, cfg.model, t0, outcome, cut)
    return learner
