"""``model="auto"`` with a time budget (rating task).

With ``budget`` > 0 seconds, :func:`choose_model` chooses the model by inner validation on
the training part only (never a held-out row):

1. *cut*: :data:`~recfit.tasks.blend.AUTO_INNER` of the training rows, drawn by the seed,
   are scored (RMSE) by every candidate trained on the other rows;
2. *defaults*: each family that fits the data and the trainer
   (:func:`recfit.config.rating.searched_families`) trains with its defaults while
   :data:`DEFAULTS_SHARE` of the budget lasts (a Learner fit still running then, after
   :data:`FIT_SHARE` of the budget, or whose pace says it would pass either, is cut);
   the *costly* families (:attr:`~recfit.models.registry.Family.costly`) after the
   others, the *anytime* ones (:attr:`~recfit.models.registry.Family.anytime`) last,
   sharing what is left, each ending by its share with fewer samples or epochs;
3. *seeds*: the candidates' greedy ridge blend (step 5) is formed; in what the budget
   leaves after saving the members' final fits, they train again on the cut with the
   next seeds, each seed averaged into its member's inner predictions while it lowers
   the member's inner RMSE by :data:`BAG_GAIN` (at most :data:`BAG_MAX` seeds; a member
   of ``k`` seeds is ``k`` blend members of ``1/k`` of its weight each);
4. *tuning*: the best families that declare a search space
   (:attr:`recfit.models.registry.Family.search`) are tuned by
   :func:`recfit.tasks.tuning.tune` on the same cut in what the budget leaves after
   saving the final fits of the best :data:`MAX_BLEND`; a tuned configuration that beats
   the defaults' first seed joins the candidates with its best trial's inner predictions
   and model (not trained again);
5. *blend*: candidates join a ridge blend of their inner predictions
   (:func:`recfit.models.blend.ridge_blend`) greedily while its two-fold cross-fitted
   RMSE on the cut falls;
6. the best single candidate or the blend, whichever scores lower, is the resolved
   config (a blend: ``model="blend"`` with its members' configs); the run trains it on
   the whole training part (:class:`~recfit.tasks.blend.BlendPlan`): a blend keeps the
   weights fitted on the cut; each member (or the single family) trains again while the
   budget allows, ending by the time left less the others' estimates, else keeps its
   inner-cut model.

Stages 3 and 4 are skipped when a fit of stage 2 already ended early by its deadline.
Everything tried, with its inner score and seconds, is in :class:`AutoReport` (the run's
``details.model_auto``). The budget is an upper bound (small data finishes early) on the
search and the final fits; the numba kernels the families use are compiled (a first run)
or loaded before its clock starts (:func:`recfit.train.precompile.compile_families`),
reported apart as ``compile_seconds``.

Example:
    >>> AUTO_INNER, TUNE_TOP
    (0.1, 2)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from recfit.config import RatingConfig
from recfit.config.rating import searched_families
from recfit.data.interactions import Interactions
from recfit.data.split import Split
from recfit.errors import ConfigError, RecfitError
from recfit.metrics.rating import rmse
from recfit.models._budget import ended_early, fit_until, full_share
from recfit.models.base import RatingModel
from recfit.models.blend import cross_fitted_rmse, ridge_blend
from recfit.models.registry import family
from recfit.tasks import tuning
from recfit.tasks.blend import (
    AUTO_INNER,
    RUN_FIELDS,
    BlendPlan,
    inner_cut,
    is_anytime,
    member_config,
    train_on,
)
from recfit.tasks.tuning.deadline import Deadline
from recfit.train.learner import Learner
from recfit.train.precompile import compile_families

__all__ = ["AutoReport", "Candidate", "choose_model"]

TUNE_TOP = 2
"""How many of the best families (by their defaults' inner RMSE) auto tunes."""
TUNE_TRIALS = 20
"""At most this many trials per tuned family (small data finishes before the budget)."""
DEFAULTS_SHARE = 0.4
"""The share of the budget the defaults stage may use (the rest: tuning when there is
time, and the chosen members' final fits on the whole training part, which on large data
are worth more than more candidates: 90 % of the rows is clearly worse than all)."""
ANYTIME_SHARE = 0.2
"""The share of the budget the defaults stage keeps for the anytime families (tried
last, sharing what the stage has left; on R4 under load 7 the others had left them 66 s:
too little for Bayesian MF to count)."""
ANYTIME_MIN = 0.3
"""An anytime member trains again on the whole training part only with at least this
share of its estimated final fit left; else it keeps its inner-cut model."""
MARGIN = 0.05
"""The share of the budget kept free at the end (predictions, the blend, the bundle)."""
FIT_SHARE = 0.15
"""The share of the budget one candidate's fit may use (a slow family cut there, or as
soon as its pace says it would pass it, leaves time for the others; a family trained by
its own fit ends by it only when it is anytime)."""
REFIT_FACTOR = 1.3
"""The final fit on the whole training part is estimated at this many times a
candidate's inner fit (it has 1 / (1 - AUTO_INNER) as many rows, plus margin)."""
MIN_GAIN = 1e-4
"""A blend member must lower the blend's inner RMSE by at least this much (more when its
final fit is costly: :data:`COST_WEIGHT`)."""
COST_WEIGHT = 10.0
"""A member whose final fit takes a share ``s`` of the budget must gain ``MIN_GAIN · (1 +
COST_WEIGHT · s)`` (on ml-1m in 10 minutes: a 40 s member must gain 1.7e-4)."""
MAX_BLEND = 6
"""At most this many blend members (tuning leaves time for the final fits of this many of
the best candidates)."""
BAG_MAX = 4
"""At most this many seeds of one member are averaged (:func:`_bag_stage`)."""
BAG_GAIN = 5e-4
"""A further seed joins a member's average only if it lowers the member's inner RMSE by
at least this much (on R2's inner cut I-AutoRec's and timeSVD++'s seeds gained nothing)."""


@dataclass
class Candidate:
    """One configuration auto tried.

    Attributes:
        label: its name in the report (``"svdpp"``, ``"dot (tuned)"``).
        spec: its config fields (those set; ``model`` the family).
        stage: ``"defaults"`` or ``"tuned"``.
        state: ``"ok"``, ``"skipped"``, ``"timeout"`` or ``"failed"``.
        rmse: its inner RMSE (``None`` unless ``ok``).
        seconds: wall seconds of its fit and prediction (tuned: with the whole search).
        fit_seconds: wall seconds of its one fit and prediction on the cut (what its
            final fit is estimated from).
        note: why it was skipped or failed; a tuned one: its trials; an anytime fit
            ended by its deadline: how many samples or epochs ran.
        short: an anytime fit ended by its deadline with fewer samples or epochs.
        full: how many times its samples or epochs the configured fit runs (its final
            fit is estimated from ``fit_seconds`` times this).
        seeds: how many seeds' fits its inner predictions average (:func:`_bag_stage`;
            the first has the run's seed, the others the next ones).
        bag_rmse: its inner RMSE after each seed was averaged in (from one seed on).
        pred, model: its inner predictions and model (``ok`` only) while auto chooses;
            released once it has chosen; ``copies``: the other seeds' inner models.
    """

    label: str
    spec: dict[str, Any]
    stage: str
    state: str = "ok"
    rmse: float | None = None
    seconds: float = 0.0
    fit_seconds: float = 0.0
    note: str = ""
    short: bool = False
    full: float = 1.0
    seeds: int = 1
    bag_rmse: list[float] = field(default_factory=list)
    pred: np.ndarray | None = field(default=None, repr=False)
    model: RatingModel | None = field(default=None, repr=False)
    copies: list[RatingModel] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        """The candidate as a JSON-ready dict (no predictions, no models)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("pred", "model", "copies")}
        return {k: v for k, v in out.items() if v not in ("", None, [])}

    def score(self, single: bool = False) -> float:
        """Its inner RMSE (``inf`` when not scored); ``single``: its first seed's."""
        if single and self.bag_rmse:
            return self.bag_rmse[0]
        return np.inf if self.rmse is None else self.rmse

    def final_cost(self) -> float:
        """Its final fits' estimated seconds (all its seeds, all their samples or epochs)."""
        return self.fit_seconds * self.full * REFIT_FACTOR * self.seeds


@dataclass
class AutoReport:
    """What auto tried and chose (``details.model_auto`` of the run)."""

    budget: float
    by: str
    candidates: list[Candidate] = field(default_factory=list)
    chosen: str = ""
    chosen_rmse: float | None = None
    blend: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    estimated_refit_seconds: float = 0.0
    tuning_skipped: str = ""
    compile_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``inner_scores`` and ``inner_seconds`` by label (as the top-N
        task's auto reports them)."""
        ok = [c for c in self.candidates if c.state == "ok" and c.rmse is not None]
        out: dict[str, Any] = {
            "chosen": self.chosen,
            "by": self.by,
            "budget_seconds": self.budget,
            "search_seconds": round(self.seconds, 3),
            "compile_seconds": round(self.compile_seconds, 3),
            "estimated_refit_seconds": round(self.estimated_refit_seconds, 3),
            "chosen_inner_rmse": self.chosen_rmse,
            "inner_scores": {c.label: c.rmse for c in ok},
            "inner_seconds": {c.label: round(c.seconds, 3) for c in self.candidates},
            "candidates": [c.row() for c in self.candidates],
        }
        if self.blend:
            out["blend"] = self.blend
        if self.tuning_skipped:
            out["tuning_skipped"] = self.tuning_skipped
        return out


def _spec_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


# ------------------------------------------------------------------ auto
def _candidate_specs(cfg: RatingConfig, train: Interactions) -> list[tuple[str, dict[str, Any]]]:
    """(family name, spec) of every family auto tries with its defaults: ``cfg``'s set
    fields that the family reads or that every run reads, ``model`` the family."""
    given = cfg.model_dump(exclude_unset=True)
    trainer = given.get("trainer")
    out = []
    for fam in searched_families(trainer):
        probe = member_config(cfg, {"model": fam.name, **({"trainer": trainer} if trainer else {})})
        spec = {"model": fam.name}
        spec.update(
            {k: v for k, v in given.items() if k not in (*RUN_FIELDS, "model") and probe.applies(k)}
        )
        out.append((fam.name, spec))
    return out


def _try(
    cfg: RatingConfig, label: str, spec: dict[str, Any], stage: str, cut: Split, until: float
) -> Candidate:
    cand = Candidate(label, spec, stage)
    t0 = time.perf_counter()
    if t0 >= until:
        cand.state, cand.note = "skipped", "budget spent"
        return cand
    try:
        mcfg = member_config(cfg, dict(spec))
    except RecfitError as e:  # a given field this family does not read, say
        cand.state, cand.note = "skipped", str(e)
        return cand
    stop = Deadline(min(until, t0 + FIT_SHARE * float(cfg.budget or 0.0)))
    try:
        with fit_until(stop.at if is_anytime(mcfg.model) else None):
            learner = train_on(mcfg, cut, [stop])
        if stop.hit:
            cand.state = "timeout"
            cand.note = (
                "projected past its share of the budget" if stop.projected
                else "cut at its share of the budget"
            )  # fmt: skip
        else:
            _score(cand, *_inner_fit(learner, cut), cut)
    except RecfitError as e:  # a family that does not fit these data (or diverged)
        cand.state, cand.note = "failed", f"{type(e).__name__}: {e}"
    cand.seconds = cand.fit_seconds = time.perf_counter() - t0
    return cand


def _score(cand: Candidate, pred: np.ndarray, model: RatingModel, cut: Split) -> None:
    """``cand`` scored by its inner predictions ``pred`` of ``model``: ``ok`` with its
    RMSE, predictions and model, or ``failed`` (non-finite predictions: nothing kept)."""
    cand.note = ended_early(model)
    cand.short, cand.full = bool(cand.note), full_share(model)
    score = rmse(pred, cut.test.rating, cut.test.weights())
    if not np.isfinite(score):
        cand.state, cand.note = "failed", "non-finite predictions"
        return
    cand.rmse, cand.pred, cand.model = score, pred, model


def _blend(
    ok: list[Candidate], cut: Split, seed: int, budget: float = 0.0
) -> tuple[list[Candidate], float, list[float], float]:
    """Greedy forward selection of blend members among ``ok`` (best first): the blend's
    cross-fitted RMSE, its weights and intercept (fitted on the whole inner part). With a
    ``budget`` (seconds), a member must gain :data:`MIN_GAIN` times ``1 +``
    :data:`COST_WEIGHT` times the share of the budget its final fit is estimated to take
    (a costly member that barely helps leaves its time to the others' final fits)."""
    test = cut.test
    r, w = test.rating.astype(np.float64), test.weights().astype(np.float64)
    chosen = [ok[0]]
    best = cross_fitted_rmse(np.stack([ok[0].pred], 1), r, w, seed)  # type: ignore[list-item]

    def needed(c: Candidate) -> float:
        share = c.final_cost() / budget if budget > 0 else 0.0
        return MIN_GAIN * (1.0 + COST_WEIGHT * share)

    while len(chosen) < MAX_BLEND:
        trial: tuple[float, Candidate] | None = None
        for c in ok:
            if c in chosen:
                continue
            preds = np.stack([m.pred for m in [*chosen, c]], 1)  # type: ignore[misc]
            score = cross_fitted_rmse(preds, r, w, seed)
            if score <= best - needed(c) and (trial is None or score < trial[0]):
                trial = (score, c)
        if trial is None:
            break
        best = trial[0]
        chosen.append(trial[1])
    preds = np.stack([m.pred for m in chosen], 1)  # type: ignore[misc]
    weights, intercept = ridge_blend(preds, r, w)
    return chosen, best, weights.tolist(), intercept


def _refits(members: list[Candidate], time_left: float) -> list[bool]:
    """Which members train again on the whole training part: the cheapest first while
    their estimated final fits (:data:`REFIT_FACTOR` times their inner fit) fit in
    ``time_left``; then the anytime members (cheapest first) while what is left
    gives each at least :data:`ANYTIME_MIN` of its estimate (their inner fit scaled to
    all its samples or epochs; they share it, ending by the deadline); the others keep
    their inner-cut models."""
    out = [False] * len(members)
    spent = 0.0
    order = sorted(range(len(members)), key=lambda k: members[k].fit_seconds)
    for k in order:
        cost = members[k].final_cost()
        if not is_anytime(members[k].spec["model"]) and spent + cost <= time_left:
            out[k], spent = True, spent + cost
    wanted = 0.0
    for k in order:
        cost = members[k].final_cost()
        if is_anytime(members[k].spec["model"]) and ANYTIME_MIN * (wanted + cost) <= (
            time_left - spent
        ):
            out[k], wanted = True, wanted + cost
    return out


def _bag_stage(
    cfg: RatingConfig, members: list[Candidate], weights: list[float], cut: Split, until: float
) -> None:
    """Average more seeds of the blend's ``members`` (in place) while the time to
    ``until`` leaves room for a seed's fit on the cut and all the members' final fits:
    round by round, up to :data:`BAG_MAX` seeds, the members with the largest blend
    weight for their fit's seconds first. A seed is kept only if it lowers the member's
    inner RMSE by :data:`BAG_GAIN` (else the member takes no more: a fit that hardly
    depends on its seed, or one ended early by its deadline, gains nothing)."""
    test = cut.test
    order = sorted(
        range(len(members)), key=lambda k: -abs(weights[k]) / max(members[k].fit_seconds, 1e-3)
    )
    active = [
        members[k] for k in order
        if members[k].pred is not None and not members[k].short
        and "seed" in family(members[k].spec["model"]).reads
    ]  # fmt: skip
    for _ in range(BAG_MAX - 1):
        for c in list(active):
            reserve = sum(m.final_cost() for m in members)
            if (
                time.perf_counter() + c.fit_seconds * (1.0 + c.full * REFIT_FACTOR) + reserve
                > until
            ):
                active.remove(c)
                continue
            seed, own = cfg.seed + c.seeds, c.fit_seconds * c.full * REFIT_FACTOR
            extra = _try(cfg, c.label, {**c.spec, "seed": seed}, "bag", cut, until - reserve - own)
            c.seconds += extra.seconds
            if extra.state != "ok" or extra.short or extra.pred is None or c.pred is None:
                active.remove(c)
                continue
            pred = (c.pred * c.seeds + extra.pred) / (c.seeds + 1)
            score = rmse(pred, test.rating, test.weights())
            before = c.score()
            if not score <= before - BAG_GAIN:
                active.remove(c)  # this seed goes; the member takes no more
                continue
            c.bag_rmse = c.bag_rmse or [float(before)]
            c.bag_rmse.append(score)
            c.pred, c.rmse, c.seeds = pred, score, c.seeds + 1
            c.copies.append(extra.model)  # type: ignore[arg-type]


def _copies(
    members: list[Candidate], weights: list[float], seed: int
) -> tuple[list[Candidate], list[float]]:
    """The blend's members one per seed (a member of ``k`` seeds: ``k`` copies with the
    seeds ``seed``, ``seed + 1`` ... and ``1/k`` of its weight each): what the run trains."""
    out: list[Candidate] = []
    w: list[float] = []
    for m, x in zip(members, weights, strict=True):
        models = [m.model, *m.copies]
        for j in range(m.seeds):
            out.append(replace(
                m, label=m.label if m.seeds == 1 else f"{m.label} (seed {seed + j})",
                spec=m.spec if j == 0 else {**m.spec, "seed": seed + j}, seeds=1,
                model=models[j], copies=[], pred=None, bag_rmse=[],
            ))  # fmt: skip
            w.append(x / m.seeds)
    return out, w


def _tune_stage(
    cfg: RatingConfig, ok: list[Candidate], cut: Split, until: float
) -> list[Candidate]:
    """Tune the best :data:`TUNE_TOP` families with a search space, each in an equal
    share of the time to ``until``; each tuned best that beats its defaults is returned
    with its best trial's inner predictions and model (for the blend; not trained again)
    and that trial's seconds as its ``fit_seconds``."""
    out: list[Candidate] = []
    names: list[str] = []
    for c in ok:
        fam = family(c.spec["model"])
        if fam.search and fam.name not in names:
            names.append(fam.name)
    names = names[:TUNE_TOP]
    for k, name in enumerate(names):
        share = (until - time.perf_counter()) / (len(names) - k)
        base = next(c for c in ok if c.spec["model"] == name)
        # a trial costs about a default fit: tune only with room for a few
        if share < 3 * base.fit_seconds:
            continue
        t0 = time.perf_counter()
        label = f"{name} (tuned)"
        try:
            res = tuning.tune(
                member_config(cfg, dict(base.spec)), cut.train, valid=cut.test, budget_s=share,
                seed=cfg.seed, families=[name], prune=True, progress=False, n_trials=TUNE_TRIALS,
                keep=_inner_fit,
            )  # fmt: skip
        except RecfitError as e:  # no trial completed in its share, say
            out.append(Candidate(label, base.spec, "tuned", "failed",
                                 seconds=time.perf_counter() - t0, note=str(e)))  # fmt: skip
            continue
        spent = time.perf_counter() - t0
        trials = f"{len(res.trials)} trials, best {res.best_trial.params}"
        if not res.best_score < base.score(single=True):  # one seed against one seed
            out.append(Candidate(label, base.spec, "tuned", "skipped", seconds=spent,
                                 note=f"{trials}: none beat the defaults"))  # fmt: skip
            continue
        spec = {**base.spec, **res.best_config.model_dump(exclude_unset=True)}
        spec = {k: v for k, v in spec.items() if k not in RUN_FIELDS}
        if res.kept is None:  # the best trial's model was not held: nothing to score
            out.append(Candidate(label, base.spec, "tuned", "failed", seconds=spent,
                                 note=f"{trials}: expected the best trial's predictions and "
                                 "model, received none"))  # fmt: skip
            continue
        cand = Candidate(label, spec, "tuned", seconds=spent, fit_seconds=res.best_trial.seconds)
        pred, model = res.kept  # the best trial's: not trained again
        _score(cand, pred, model, cut)
        cand.note = trials if cand.state == "ok" else cand.note
        out.append(cand)
    return out


def _inner_fit(learner: Learner, fit: Split) -> tuple[np.ndarray, RatingModel]:
    """A tuning trial's inner predictions and model (what a candidate keeps)."""
    return learner.predict(fit.test).astype(np.float64), learner.model


def choose_model(
    cfg: RatingConfig, split: Split
) -> tuple[RatingConfig, AutoReport, BlendPlan | None]:
    """``cfg`` (``model="auto"``, ``budget`` > 0) made concrete for ``split``'s training
    part by the search of the module documentation: the resolved config, the report,
    and how the run trains it by the budget's end (:class:`BlendPlan`: a blend, or the
    family trained again; a final fit cut by its deadline keeps its inner-cut model).

    A budget too small for any candidate to finish leaves ``model="auto"`` to the size
    rule (``budget`` 0: svdpp or dot), as the report says.

    Raises:
        ConfigError: too few training rows for the inner cut, or no budget (the task
            settles it before: :meth:`recfit.tasks.rating.RatingTask.settle`).
    """
    if cfg.budget is None:
        raise ConfigError("expected a number for budget in choose_model (settled by "
                          "RatingTask.settle), received None")  # fmt: skip
    tried = _candidate_specs(cfg, split.train)
    # the kernels' compile (a first run) or load, before the clock: reported apart
    compiled = compile_families(
        [name for name, _ in tried],
        rows=len(split.train_idx),
        device=cfg.device,
        trainer=cfg.trainer,
    )
    start = time.perf_counter()
    budget = float(cfg.budget)
    end = start + (1.0 - MARGIN) * budget
    cut = inner_cut(split.data, split.train_idx, cfg.seed)
    report = AutoReport(
        budget=budget,
        by=f"RMSE on an inner cut of {AUTO_INNER:.0%} of the training rows (seed {cfg.seed})",
        compile_seconds=compiled,
    )
    # 2. every family with its defaults, within the stage's share (anytime ones last,
    # sharing what the others left)
    until = start + DEFAULTS_SHARE * budget
    anytime = [s for s in tried if is_anytime(s[0])]
    others = sorted((s for s in tried if not is_anytime(s[0])), key=lambda s: family(s[0]).costly)
    for name, spec in others:
        report.candidates.append(
            _try(cfg, name, spec, "defaults", cut, until - ANYTIME_SHARE * budget)
        )
    for k, (name, spec) in enumerate(anytime):
        now = time.perf_counter()
        at = now + max(until - now, 0.0) / (len(anytime) - k)
        report.candidates.append(_try(cfg, name, spec, "defaults", cut, at))
    ok = _ranked(report)
    if not ok:  # a budget too small for any fit: the size rule, said so
        report.seconds = time.perf_counter() - start
        resolved = cfg.without_search()
        report.chosen = "the size rule (no candidate finished in the budget)"
        return resolved, report, None
    # 3. the blend of the defaults, its members' seeds averaged while they gain (what is
    # left after the final fits' reserve: more seeds gained more than tuning on ml-100k);
    # 4. tuning, leaving room for the final fits of the best (plus a margin: R1's took
    # 1.7x). Neither when a fit already ended early for want of time: none is left.
    short = [c.label for c in ok if c.short]
    if short:
        report.tuning_skipped = f"{', '.join(short)} ended by the budget"
    else:
        members, _, weights, _ = _blend(ok, cut, cfg.seed, budget)
        _bag_stage(cfg, members, weights, cut, end - MARGIN * budget)
        ok = _ranked(report)
        reserve = sum(c.final_cost() for c in ok[:MAX_BLEND]) + MARGIN * budget
        if end - reserve - time.perf_counter() > 0:
            tuned = _tune_stage(cfg, ok, cut, end - reserve)
            report.candidates += tuned
            ok = _ranked(report)
            if not tuned:
                report.tuning_skipped = "no family with a search space had time for three trials"
        else:
            report.tuning_skipped = "no time left after the seeds and the final fits' reserve"
    # 5. the blend again; 6. what trains again on the whole training part in the time left
    members, blend_rmse, weights, intercept = _blend(ok, cut, cfg.seed, budget)
    best = ok[0]
    left = end - time.perf_counter()
    report.seconds = time.perf_counter() - start
    if len(members) == 1 or not blend_rmse < best.score():
        report.chosen, report.chosen_rmse = best.label, best.rmse
        if best.seeds > 1:
            report.chosen = f"{best.label} ({best.seeds} seeds averaged)"
        if best.seeds == 1 and best.fit_seconds * REFIT_FACTOR <= left:  # trained again
            report.estimated_refit_seconds = best.fit_seconds * REFIT_FACTOR
            cost, inner = [best.final_cost()], [best.model]  # cut by the deadline: kept
            _release(report.candidates)
            plan = BlendPlan([1.0], 0.0, [None], end, cost, inner, [best.label])
            return member_config(cfg, dict(best.spec)), report, plan
        members = [best]  # its seeds, or no time to train it again: its inner-cut model
        pred = np.asarray(best.pred, dtype=np.float64)[:, None]  # calibrated
        c, intercept = ridge_blend(pred, cut.test.rating, cut.test.weights())
        calibrated = pred[:, 0] * float(c[0]) + intercept  # as the run predicts; in-sample
        weights, blend_rmse = c.tolist(), rmse(calibrated, cut.test.rating, cut.test.weights())
    else:
        report.chosen, report.chosen_rmse = "blend", blend_rmse
    members, weights = _copies(members, weights, cfg.seed)
    refit = _refits(members, end - time.perf_counter())
    specs = tuple(_spec_json(m.spec) for m in members)
    resolved = member_config(cfg, {"model": "blend", "blend_members": specs})
    report.blend = {
        "members": [m.label for m in members],
        "weights": [round(x, 6) for x in weights],
        "intercept": round(intercept, 6),
        ("inner_rmse_cross_fitted" if report.chosen == "blend" else "inner_rmse"): blend_rmse,
        "trained_again_on_the_whole_training_part": [
            m.label for m, r in zip(members, refit, strict=True) if r
        ],
        "kept_from_the_inner_cut": [m.label for m, r in zip(members, refit, strict=True) if not r],
    }
    report.estimated_refit_seconds = sum(
        m.final_cost() for m, r in zip(members, refit, strict=True) if r
    )
    kept = [None if r else m.model for m, r in zip(members, refit, strict=True)]
    costs = [m.final_cost() for m in members]
    inner, labels = [m.model for m in members], [m.label for m in members]
    _release(report.candidates)
    plan = BlendPlan(weights, intercept, kept, end, costs, inner, labels, ANYTIME_MIN)
    return resolved, report, plan


def _ranked(report: AutoReport) -> list[Candidate]:
    """The scored candidates, best (lowest inner RMSE) first."""
    ok = [c for c in report.candidates if c.state == "ok" and c.rmse is not None]
    return sorted(ok, key=lambda c: c.score())


def _release(candidates: list[Candidate]) -> None:
    """The choice is made: the candidates' inner predictions and models go (the members
    kept from the inner cut are held by the :class:`BlendPlan`)."""
    for c in candidates:
        c.pred = c.model = None
        c.copies = []
