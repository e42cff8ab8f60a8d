"""model="auto"'s final fits end by the budget: a member (or a single family) whose final
fit is cut by its deadline keeps its inner-cut model, and the run says so."""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np
import pytest
import torch

from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.data.split import Split
from recfit.data.synthetic import synthetic
from recfit.errors import CancelFitException, CheckpointError, ConfigError
from recfit.models.base import RatingModel
from recfit.models.blend import Blend
from recfit.runs import train_run
from recfit.tasks import auto, blend
from recfit.tasks.common import get_task
from recfit.tasks.rating import RatingTask, fit_learner
from recfit.train.learner import Learner

DOT = '{"model": "dot", "epochs": 3}'
BASE = '{"model": "baseline"}'
BMF = '{"model": "bmf", "gibbs_samples": 30, "gibbs_burn_in": 2}'
PAST, AMPLE = -1.0, 1e6


@pytest.fixture(scope="module")
def data() -> Interactions:
    return synthetic(3000, 80, 60, seed=0)


@pytest.fixture(scope="module")
def split(data: Interactions) -> Split:
    return get_task("rating").load_split(RatingConfig(seed=0), data)


def _inner(cfg: RatingConfig, split: Split, spec: str) -> Learner:
    """``spec`` trained on auto's inner cut of ``split``'s training rows."""
    cut = blend.inner_cut(split.data, split.train_idx, cfg.seed)
    return blend.train_on(blend.member_config(cfg, spec), cut, [])


def _n_rows(model: Any) -> int:
    return int(model.train_user_count.sum())


def _blend(split: Split, members: tuple[str, ...], until: float) -> tuple[Blend, blend.BlendPlan]:
    """A blend of ``members`` trained by a plan with every member's inner-cut model, its
    deadline ``until`` seconds from now."""
    cfg = RatingConfig(model="blend", seed=0, blend_members=members)
    inner: list[RatingModel | None] = [_inner(cfg, split, m).model for m in members]
    labels = [blend.member_config(cfg, m).model for m in members]
    n = len(members)
    plan = blend.BlendPlan(
        [1.0 / n] * n, 0.0, [None] * n, time.perf_counter() + until, [1.0] * n, inner, labels
    )
    learner = get_task("rating").build(cfg, split, callbacks=[], progress=False)
    blend.fit_blend(learner, cfg, plan)
    assert isinstance(learner.model, Blend) and np.isfinite(learner.predict(split.test)).all()
    return learner.model, plan


def test_a_blend_plan_past_its_deadline_keeps_the_inner_cut_models_and_says_so(
    split: Split,
) -> None:
    """No time left: the members that are not anytime keep their inner-cut models (no
    fit); Bayesian MF ends by the deadline with one sample; the record says which."""
    model, plan = _blend(split, (DOT, BASE, BMF), PAST)
    dot, base, bmf = model.member_models()
    assert dot is plan.inner[0] and base is plan.inner[1] and bmf is not plan.inner[2]
    cut = blend.inner_cut(split.data, split.train_idx, 0)
    assert _n_rows(dot) == _n_rows(base) == len(cut.train_idx)
    assert _n_rows(bmf) == len(split.train_idx) and bmf.config()["samples"] == 1
    found = plan.final_fits()
    assert found["cut_kept_the_inner_cut_model"] == ["dot", "baseline"]
    outcomes = {r["label"]: r["outcome"] for r in found["members"]}
    assert outcomes["dot"] == "no time left: kept its inner-cut model"
    assert outcomes["bmf"] == "ended by its deadline: 1 of 30 samples"
    assert found["seconds_left_at_the_deadline"] < 0 and found["seconds"] >= 0


def test_with_ample_time_every_member_trains_again(split: Split) -> None:
    model, plan = _blend(split, (DOT, BASE), AMPLE)
    for m, kept in zip(model.member_models(), plan.inner, strict=True):
        assert m is not kept and _n_rows(m) == len(split.train_idx)
    found = plan.final_fits()
    assert found["cut_kept_the_inner_cut_model"] == []
    assert [r["outcome"] for r in found["members"]] == ["trained again"] * 2
    assert found["seconds_left_at_the_deadline"] > 0


def test_a_fit_cut_by_its_deadline_keeps_the_inner_cut_model(split: Split) -> None:
    """A real Learner fit cut by its :class:`FinalDeadline` (its time passed once the fit
    started): the inner-cut model is kept, and the fit stopped before its 3 epochs."""
    cfg = blend.member_config(RatingConfig(seed=0), DOT)
    inner = _inner(cfg, split, DOT).model
    whole = Split(split.data, split.train_idx, split.train_idx[:0], "whole")
    fits: list[Learner] = []

    def fit(callbacks: list[Any]) -> Learner:
        for stop in callbacks:
            stop.at = time.perf_counter() - 1.0  # the time passes as the fit starts
        fits.append(blend.train_on(cfg, whole, callbacks))
        return fits[-1]

    model, outcome, cut = blend.final_fit(fit, cfg, time.perf_counter() + AMPLE, inner)
    assert model is inner and cut and outcome == "cut at its deadline: kept its inner-cut model"
    assert fits[0].train_iter < 3 * fits[0].n_iter
    # without an inner-cut model to keep, the fit runs to its end
    model, outcome, cut = blend.final_fit(fit, cfg, time.perf_counter() + AMPLE, None)
    assert fits[1].train_iter == 3 * fits[1].n_iter and not cut and outcome == "trained again"


class _Steps:
    """What :class:`FinalDeadline` reads of a Learner: 2 epochs of 5 steps."""

    n_epochs, n_iter, epoch, iter = 2, 5, 1, 3


def test_a_final_deadline_never_cuts_a_finished_fit() -> None:
    stop = blend.FinalDeadline(time.perf_counter() - 1.0)
    stop.learn = _Steps()  # type: ignore[assignment]
    with pytest.raises(CancelFitException):
        stop.after_batch()  # a step left: cut
    stop.hit, stop.learn.iter = False, 4
    stop.after_epoch()  # every step done: kept
    assert not stop.hit


def _one_family(monkeypatch: pytest.MonkeyPatch, split: Split) -> list[Learner]:
    """auto's search made to choose DotBias (3 epochs) alone: its candidate is a real fit
    on the inner cut (the other families fail, nothing is tuned); returns that fit."""
    inner: list[Learner] = []

    def fake_try(cfg, label, spec, stage, cut, until):  # type: ignore[no-untyped-def]
        if label != "dot" or stage != "defaults":
            return auto.Candidate(label, spec, stage, state="failed")
        inner.append(blend.train_on(blend.member_config(cfg, {**spec, "epochs": 3}), cut, []))
        c = auto.Candidate(label, {**spec, "epochs": 3}, stage, fit_seconds=1.0)
        c.rmse, c.pred, c.model = 0.9, inner[-1].predict(cut.test), inner[-1].model
        return c

    monkeypatch.setattr(auto, "_try", fake_try)
    monkeypatch.setattr(auto, "_tune_stage", lambda *args: [])
    return inner


def test_a_single_family_past_its_deadline_keeps_its_inner_cut_model(
    data: Interactions, split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto chose one family (the config names it); its final fit has no time left: the
    run's model is its inner-cut model (same predictions), as ``model_auto`` says."""
    inner = _one_family(monkeypatch, split)
    real = auto.choose_model

    def no_time_left(cfg: RatingConfig, sp: Split) -> Any:
        resolved, report, plan = real(cfg, sp)
        assert plan is not None and plan.labels == ["dot"] and plan.inner == [inner[0].model]
        plan.until = time.perf_counter() - 1.0
        return resolved, report, plan

    monkeypatch.setattr(auto, "choose_model", no_time_left)
    res = train_run(RatingConfig(seed=0, budget=1000), data=data, progress=False)
    assert res.config.model == "dot" and res.learner.model is inner[0].model
    np.testing.assert_array_equal(
        res.learner.predict(res.split.test), inner[0].predict(res.split.test)
    )
    found = res.details["model_auto"]["final_fits"]
    assert found["cut_kept_the_inner_cut_model"] == ["dot"]
    assert found["members"][0]["outcome"] == "no time left: kept its inner-cut model"


def test_a_single_family_with_ample_time_trains_again(
    data: Interactions, split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = _one_family(monkeypatch, split)
    res = train_run(RatingConfig(seed=0, budget=1000), data=data, progress=False)
    assert res.config.model == "dot" and res.learner.model is not inner[0].model
    assert _n_rows(res.learner.model) == len(res.split.train_idx)
    found = res.details["model_auto"]["final_fits"]
    assert found["cut_kept_the_inner_cut_model"] == []
    assert found["members"] == [
        {"label": "dot", "seconds": found["seconds"], "outcome": "trained again", "cut": False}
    ]


def test_a_single_family_cut_by_its_deadline_takes_the_inner_model_to_its_device(
    split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    """:func:`fit_single` with a real Learner fit cut by its deadline: the learner's model
    is the inner-cut model, moved to the learner's device (a stand-in device, set once
    the fit ended, so that the move is seen on a machine with only a CPU); an inner-cut
    model of another class is refused."""
    cfg = blend.member_config(RatingConfig(seed=0), DOT)
    inner = _inner(cfg, split, DOT)
    task = RatingTask()
    learner = task.build(cfg, split, callbacks=[], progress=False)
    stand_in, moved = torch.device("meta"), []

    def fit(lrn: Learner, c: RatingConfig) -> Learner:
        for cb in lrn.cbs:
            if isinstance(cb, blend.FinalDeadline):
                cb.at = time.perf_counter() - 1.0
        out = fit_learner(lrn, c)
        lrn.device = stand_in
        return out

    def to(*args: Any, **kwargs: Any) -> Any:
        moved.append(args[0] if args else kwargs.get("device"))
        return inner.model

    until = time.perf_counter() + AMPLE
    plan = blend.BlendPlan([1.0], 0.0, [None], until, [1.0], [inner.model], ["dot"])
    monkeypatch.setattr(inner.model, "to", to)
    blend.fit_single(learner, cfg, plan, fit)
    assert learner.model is inner.model and moved == [stand_in]
    learner.device = torch.device("cpu")
    assert not any(isinstance(cb, blend.FinalDeadline) for cb in learner.cbs)
    assert plan.final_fits()["members"][0]["outcome"].startswith("cut at its deadline")
    np.testing.assert_array_equal(learner.predict(split.test), inner.predict(split.test))
    other = _inner(cfg, split, BASE).model
    wrong = blend.BlendPlan([1.0], 0.0, [None], until, [1.0], [other], ["dot"])
    with pytest.raises(ConfigError, match="expected an inner-cut model of class"):
        blend.fit_single(task.build(cfg, split, callbacks=[], progress=False), cfg, wrong, fit)


def test_a_member_that_cannot_end_early_counts_the_anytime_ones_at_their_floor() -> None:
    """dot (10 s) before Bayesian MF (200 s) with 100 s left: dot may use all but
    Bayesian MF's floor (30 %: 60 s), not its 200 s; two anytime members with too little
    time for both share what is left by their estimates."""
    t0 = time.perf_counter()
    until = t0 + 100.0
    plan = blend.BlendPlan([0.5, 0.5], 0.0, [None, None], until, anytime_floor=0.3)
    assert blend._share(plan, [10.0, 200.0], [False, True], [0, 1], 0) == until - 60.0
    at = blend._share(plan, [10.0, 200.0, 100.0], [False, True, True], [1, 2], 1)
    t2 = time.perf_counter()
    assert at is not None and t0 + (until - t2) * 2 / 3 <= at <= t2 + (until - t0) * 2 / 3
    assert blend._share(None, [1.0], [False], [0], 0) is None


def test_a_member_may_use_the_slack_the_others_estimates_leave() -> None:
    """Two members of 10 s with 30 s left: the first ends by 20 s from now (the second's
    10 s kept), not by its proportional 15 s, so a fit of 16 s is not cut; the last one
    has all that is left. Two anytime members likewise; an estimate past what is left
    leaves the member before it no time."""
    until = time.perf_counter() + 30.0
    plan = blend.BlendPlan([0.5, 0.5], 0.0, [None, None], until, anytime_floor=0.3)
    for anytime in ([False, False], [True, True]):
        assert blend._share(plan, [10.0, 10.0], anytime, [0, 1], 0) == until - 10.0
        assert blend._share(plan, [10.0, 10.0], anytime, [1], 1) == until
    assert blend._share(plan, [10.0, 40.0], [False, False], [0, 1], 0) == until - 40.0


def test_the_slack_goes_to_the_member_trained_first(
    split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit_blend gives each member the plan's deadline less the estimates of the members
    still to train after it; one whose estimate alone is past that keeps its inner-cut
    model without starting (baseline: no deadline cuts its fit), as before."""
    ats: list[float | None] = []
    real = blend.final_fit

    def spy(fit: Any, cfg: RatingConfig, at: float | None, inner: Any, cost: Any = None) -> Any:
        ats.append(at)
        return real(fit, cfg, at, inner, cost)

    monkeypatch.setattr(blend, "final_fit", spy)
    cfg = RatingConfig(model="blend", seed=0, blend_members=(BASE, DOT))
    inner: list[RatingModel | None] = [_inner(cfg, split, m).model for m in (BASE, DOT)]
    until = time.perf_counter() + 3600.0
    for costs, kept in (([10.0, 1000.0], False), ([3000.0, 1000.0], True)):
        plan = blend.BlendPlan([0.5, 0.5], 0.0, [None, None], until, costs, inner)
        learner = get_task("rating").build(cfg, split, callbacks=[], progress=False)
        blend.fit_blend(learner, cfg, plan)
        assert ats[-2:] == [until - 1000.0, until]
        assert isinstance(learner.model, Blend)
        assert (learner.model.member_models()[0] is inner[0]) == kept
        assert plan.final_fits()["cut_kept_the_inner_cut_model"] == (["baseline"] if kept else [])


def test_a_fit_no_deadline_cuts_starts_only_when_its_estimate_fits(split: Split) -> None:
    """A family's own fit (timeSVD++, baseline) or ALS cannot be cut once started: with
    an estimate past its deadline it keeps its inner-cut model without starting; a
    Learner fit (SGD) starts and is cut by its deadline if need be."""
    cfg = RatingConfig(seed=0, model="blend", blend_members=(BASE,))
    inner: list[RatingModel | None] = [_inner(cfg, split, BASE).model]
    until = time.perf_counter() + AMPLE
    for cost, fitted in ((AMPLE * 10, False), (1.0, True)):
        plan = blend.BlendPlan([1.0], 0.0, [None], until, [cost], inner, ["baseline"])
        learner = get_task("rating").build(cfg, split, callbacks=[], progress=False)
        blend.fit_blend(learner, cfg, plan)
        assert isinstance(learner.model, Blend)
        assert (learner.model.member_models()[0] is not inner[0]) == fitted
        outcome = plan.final_fits()["members"][0]["outcome"]
        assert (
            outcome == "trained again"
            if fitted
            else outcome.startswith("no time for its estimated 10000000.0 s")
        )

    def never(callbacks: list[Any]) -> Learner:
        raise AssertionError("started a fit no deadline can cut, past its deadline")

    for member in ('{"model": "timesvdpp"}', '{"model": "dot", "trainer": "als"}'):
        mcfg = blend.member_config(RatingConfig(seed=0), member)
        model, outcome, cut = blend.final_fit(never, mcfg, until, inner[0], cost=AMPLE * 10)
        assert model is inner[0] and cut and f"its {mcfg.trainer} fit" in outcome
    sgd = blend.member_config(RatingConfig(seed=0), DOT)
    with pytest.raises(AssertionError, match="started a fit"):
        blend.final_fit(never, sgd, until, inner[0], cost=AMPLE * 10)


def test_a_run_that_failed_before_its_fit_leaves_no_plan_to_a_later_run(
    data: Interactions, split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto's run fails between its search and its fit (a checkpoint that does not match,
    say) with a plan whose deadline has passed: a later fit of an equal config, in a run
    or not (a tuning trial), trains its own model, not that run's inner-cut one, and its
    report is not that run's."""
    inner = _one_family(monkeypatch, split)
    real = auto.choose_model
    resolved: list[RatingConfig] = []
    prepared: list[RatingConfig] = []

    def no_time_left(cfg: RatingConfig, sp: Split) -> Any:
        chosen, report, plan = real(cfg, sp)
        assert plan is not None
        plan.until = time.perf_counter() - 1.0
        resolved.append(chosen)
        return chosen, report, plan

    def broken(cfg: RatingConfig, *args: Any, **kwargs: Any) -> Learner:
        if not resolved:  # a fit of the search
            return build(cfg, *args, **kwargs)
        prepared.append(cfg)  # the run's own build: its config as prepare returned it
        raise CheckpointError("expected this run's checkpoint, received another (simulated)")

    monkeypatch.setattr(auto, "choose_model", no_time_left)
    task = get_task("rating")
    build = task.build
    monkeypatch.setattr(task, "build", broken)
    with pytest.raises(CheckpointError):
        train_run(RatingConfig(seed=0, budget=1000), data=data, progress=False)
    monkeypatch.setattr(task, "build", build)
    again = prepared[0].model_copy()  # a plain run of the config auto resolved: equal
    assert again == prepared[0] and again is not prepared[0] and again.model == "dot"
    learner = task.fit(task.build(again, split, callbacks=[], progress=False), again)
    assert learner.model is not inner[0].model
    assert "model_auto" not in task.evaluate(learner, again, split)[1]
    res = train_run(again, data=data, progress=False)
    assert res.learner.model is not inner[0].model and "model_auto" not in res.details
    assert _n_rows(res.learner.model) == len(res.split.train_idx)
    # the failed run's report and plan (its inner-cut models) go with its config object
    assert task._runs  # type: ignore[attr-defined]
    prepared.clear()
    resolved.clear()
    gc.collect()
    assert not task._runs  # type: ignore[attr-defined]
