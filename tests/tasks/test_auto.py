"""model="auto" with a time budget (rating task), and the blend family's training."""

from __future__ import annotations

import gc
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.data.split import Split
from recfit.data.synthetic import synthetic
from recfit.errors import ConfigError
from recfit.models import create_model, family
from recfit.models._budget import ended_early, fit_until, full_share
from recfit.models.base import RatingModel
from recfit.models.blend import Blend
from recfit.models.registry import families, register_family
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.tasks import auto, blend
from recfit.tasks.common import get_task


@pytest.fixture(scope="module")
def data() -> Interactions:
    return synthetic(3000, 80, 60, seed=0)


def _split(cfg: RatingConfig, data: Interactions) -> Split:
    return get_task("rating").load_split(cfg, data)


def _tune_dot(data: Interactions) -> tuple[auto.Candidate, Split]:
    """auto's tuning stage on DotBias (2 epochs) alone, 60 s: its candidate and the cut."""
    cfg = RatingConfig(seed=0, budget=60)
    sp = _split(cfg, data)
    cut = blend.inner_cut(sp.data, sp.train_idx, seed=0)
    base = auto.Candidate("dot", {"model": "dot", "epochs": 2}, "defaults", rmse=np.inf)
    (cand,) = auto._tune_stage(cfg, [base], cut, time.perf_counter() + 60)
    return cand, cut


def test_budget_zero_keeps_the_size_rule() -> None:
    cfg = RatingConfig(budget=0)
    assert cfg.budget == 0
    assert [f.name for f in cfg.candidate_families()] == ["svdpp", "dot"]
    assert cfg.resolve_model(big=False).model == "svdpp"


def test_budget_applies_only_to_auto() -> None:
    assert RatingConfig(budget=30).applies("budget")
    with pytest.raises(ConfigError, match=r"budget=30\.0"):
        RatingConfig.validated({"model": "dot", "budget": 30})


def test_auto_with_a_budget_may_read_any_searched_family_setting() -> None:
    cfg = RatingConfig(budget=30, layers=(8,))  # nn's field: auto may try nn
    assert "nn" in [f.name for f in cfg.candidate_families()]
    assert "blend" not in [f.name for f in cfg.candidate_families()]
    # a trainer given: only the families that train by it
    als = RatingConfig(budget=30, trainer="als")
    assert {f.name for f in als.candidate_families()} == {"dot", "mf"}


def test_inner_cut_is_inside_the_training_rows(data: Interactions) -> None:
    sp = _split(RatingConfig(seed=1), data)
    cut = blend.inner_cut(sp.data, sp.train_idx, seed=1)
    assert set(cut.test_idx) <= set(sp.train_idx) and set(cut.train_idx) <= set(sp.train_idx)
    assert not set(cut.test_idx) & set(cut.train_idx)
    assert not set(cut.test_idx) & set(sp.test_idx)
    assert len(cut.test_idx) == round(0.1 * len(sp.train_idx))


@pytest.fixture
def few_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tuning of at most 2 trials per family and 1 family: the outcome depends on the
    seed, not on how busy the machine is."""
    monkeypatch.setattr(auto, "TUNE_TRIALS", 2)
    monkeypatch.setattr(auto, "TUNE_TOP", 1)


def test_auto_records_every_candidate_and_chooses_by_inner_rmse(
    data: Interactions, tmp_path: Path, few_trials: None
) -> None:
    cfg = RatingConfig(seed=0, budget=600, epochs=2, gibbs_samples=20, gibbs_burn_in=5)
    res = train_run(cfg, tmp_path / "run", data=data, progress=False)
    info = json.loads((tmp_path / "run" / "metrics.json").read_text())["details"]["model_auto"]
    labels = [c["label"] for c in info["candidates"]]
    assert labels[:2] == ["svdpp", "dot"] and {"mf", "baseline", "nn"} <= set(labels)
    assert sum(c["stage"] == "tuned" for c in info["candidates"]) == 1
    for c in info["candidates"]:
        assert c["seconds"] >= 0 and c["stage"] in ("defaults", "tuned")
        if c["state"] == "ok":
            assert 0 < c["rmse"] < 2 and c["label"] in info["inner_scores"]
    best_single = min(info["inner_scores"].values())
    assert info["chosen_inner_rmse"] <= best_single
    assert info["search_seconds"] <= 600
    if info["chosen"] == "blend":
        assert res.config.model == "blend" and isinstance(res.learner.model, Blend)
        assert len(info["blend"]["members"]) == len(res.config.blend_members) >= 2
    elif "seeds averaged" in info["chosen"]:  # one family's seeds: a blend of its seeds
        assert res.config.model == "blend" and len(res.config.blend_members) >= 2
        name = info["chosen"].split(" (")[0]
        assert {json.loads(s)["model"] for s in res.config.blend_members} == {name}
    else:
        assert res.config.model == info["chosen"].removesuffix(" (tuned)")
    # the resolved config is runnable as it is (no search again)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["model"] == res.config.model and stored.get("budget") in (None, 0)


def test_test_rows_never_change_the_choice(data: Interactions, few_trials: None) -> None:
    """Scrambling the held-out ratings changes nothing auto sees: the same candidates,
    the same inner scores, the same choice."""
    cfg = RatingConfig(seed=3, budget=600, epochs=1, gibbs_samples=10, gibbs_burn_in=2)
    sp = _split(cfg, data)
    rating = sp.data.rating.copy()
    rng = np.random.default_rng(0)
    rating[sp.test_idx] = rng.permutation(rating[sp.test_idx])[::-1]
    scrambled = replace(sp, data=replace(sp.data, rating=rating))
    a = auto.choose_model(cfg, sp)
    b = auto.choose_model(cfg, scrambled)
    assert a[0] == b[0]
    assert a[1].as_dict()["inner_scores"] == b[1].as_dict()["inner_scores"]


def test_a_budget_too_small_falls_back_to_the_size_rule(data: Interactions) -> None:
    cfg = RatingConfig(seed=0, budget=1e-9)
    sp = _split(cfg, data)
    resolved, report, weights = auto.choose_model(cfg, sp)
    assert weights is None and resolved.model == "auto" and resolved.budget == 0
    assert "size rule" in report.chosen
    assert all(c.state == "skipped" for c in report.candidates)
    assert get_task("rating").prepare(cfg, sp).model == "svdpp"


def test_blend_run_trains_members_on_the_whole_training_part_and_round_trips(
    data: Interactions, tmp_path: Path
) -> None:
    cfg = RatingConfig(
        model="blend", seed=0, blend_members=("baseline", '{"model": "dot", "epochs": 2}')
    )
    res = train_run(cfg, tmp_path / "run", data=data, progress=False)
    model = res.learner.model
    assert isinstance(model, Blend)
    details = json.loads((tmp_path / "run" / "metrics.json").read_text())["details"]
    assert details["blend"]["members"] == ["baseline", "dot"]
    # members were trained on every training row (their records count all of them)
    n_train = len(res.split.train_idx)
    for m in model.member_models():
        assert int(m.train_user_count.sum()) == n_train
    assert np.isfinite(res.metrics["rmse"]) and res.metrics["rmse"] < 1.5
    rec = Recommender.load(res.out / "bundle")
    users = res.split.test.users.id(res.split.test.user[:20])
    items = res.split.test.items.id(res.split.test.item[:20])
    got = rec.predict(users, items)
    np.testing.assert_allclose(got, res.learner.predict(res.split.test)[:20], rtol=1e-6)


def test_blend_member_settings_must_be_read_by_the_member() -> None:
    cfg = RatingConfig(model="blend", blend_members=('{"model": "baseline", "n_factors": 3}',))
    with pytest.raises(ConfigError, match="blend member"):
        blend.member_config(cfg, cfg.blend_members[0])


def test_a_long_search_does_not_keep_a_tuned_candidate_out_of_the_blend() -> None:
    """A tuned candidate's final fit costs one fit, not its whole search: the time checks
    read ``fit_seconds``; members are blended by their inner predictions alone."""
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.normal(3.5, 1.0, n)
    pa = truth + rng.normal(0, 0.5, n)
    pb = truth + rng.normal(0, 0.5, n)
    d = Interactions.from_arrays(np.arange(n), np.zeros(n, dtype=int), truth)
    cut = Split(d, np.zeros(0, dtype=np.int64), np.arange(n, dtype=np.int64), "inner")
    a = auto.Candidate("a (tuned)", {"model": "dot"}, "tuned", seconds=500.0, fit_seconds=1.0)
    b = auto.Candidate("b", {"model": "mf"}, "defaults", seconds=1.0, fit_seconds=3.0)
    a.pred, b.pred = pa, pb
    members, score, weights, _ = auto._blend([a, b], cut, seed=0)
    assert [m.label for m in members] == ["a (tuned)", "b"]
    assert score < min(float(np.sqrt(np.mean((p - truth) ** 2))) for p in (pa, pb))
    assert weights == pytest.approx([0.5, 0.5], abs=0.1)
    # the cheapest final fits first, while they fit in the time left
    assert auto._refits([a, b], time_left=10.0) == [True, True]
    assert auto._refits([a, b], time_left=2.0) == [True, False]
    assert auto._refits([a, b], time_left=0.5) == [False, False]


def test_members_without_time_to_train_again_keep_their_inner_cut_models(
    data: Interactions, monkeypatch: pytest.MonkeyPatch, few_trials: None
) -> None:
    """With no time left for final fits, the run's model is made of the candidates'
    inner-cut models (trained on the cut's rows only), as the report says."""
    monkeypatch.setattr(auto, "REFIT_FACTOR", 1e9)
    cfg = RatingConfig(seed=0, budget=600, epochs=2, gibbs_samples=10, gibbs_burn_in=2)
    res = train_run(cfg, data=data, progress=False)
    info = res.details["model_auto"]
    model = res.learner.model
    assert res.config.model == "blend" and isinstance(model, Blend)
    assert info["blend"]["trained_again_on_the_whole_training_part"] == []
    assert len(info["blend"]["kept_from_the_inner_cut"]) == len(model.member_models())
    cut = blend.inner_cut(res.split.data, res.split.train_idx, seed=0)
    for m in model.member_models():
        assert int(m.train_user_count.sum()) == len(cut.train_idx)
    np.testing.assert_allclose(model.blend_weights.numpy(), info["blend"]["weights"], atol=1e-6)


def test_anytime_members_share_what_the_other_final_fits_leave() -> None:
    a = auto.Candidate("dot", {"model": "dot"}, "defaults", fit_seconds=1.0)
    b = auto.Candidate("bmf", {"model": "bmf"}, "defaults", fit_seconds=10.0)
    c = auto.Candidate("autorec", {"model": "autorec"}, "defaults", fit_seconds=20.0)
    # dot: 1.3 s; bmf and autorec need at least ANYTIME_MIN of their 13 s and 26 s
    least = auto.ANYTIME_MIN
    assert auto._refits([a, b, c], time_left=100.0) == [True, True, True]
    assert auto._refits([a, b, c], time_left=1.3 + least * 39 + 0.1) == [True, True, True]
    assert auto._refits([a, b, c], time_left=1.3 + least * 39 - 0.1) == [True, True, False]
    assert auto._refits([a, b, c], time_left=1.3 + least * 13 - 0.1) == [True, False, False]
    assert auto._refits([a, b, c], time_left=1.0) == [False, False, False]
    # an anytime fit ended early: its final fit is estimated at all its samples
    b.full = 3.0
    assert auto._refits([a, b, c], time_left=1.3 + least * 39 + 0.1) == [True, True, False]


def test_final_fits_of_anytime_members_end_by_the_plan_deadline(data: Interactions) -> None:
    """A blend plan whose deadline has passed: the other members train in full, the
    Bayesian MF member keeps its burn-in and one sample (its config says so)."""
    cfg = RatingConfig(
        model="blend", seed=0,
        blend_members=('{"model": "dot", "epochs": 1}',
                       '{"model": "bmf", "gibbs_samples": 30, "gibbs_burn_in": 2}'),
    )  # fmt: skip
    sp = _split(cfg, data)
    task = get_task("rating")
    plan = blend.BlendPlan([0.5, 0.5], 0.0, [None, None], time.perf_counter() - 1.0, [1.0, 1.0])
    learner = task.build(cfg, sp, callbacks=[], progress=False)
    blend.fit_blend(learner, cfg, plan)
    model = learner.model
    assert isinstance(model, Blend)
    dot, bmf = model.member_models()
    assert bmf.config()["samples"] == 1 and bmf.fit_info["samples_wanted"] == 30
    assert int(dot.train_user_count.sum()) == len(sp.train_idx)
    assert np.isfinite(learner.predict(sp.test)).all()


def test_a_costly_member_must_gain_more_to_join_the_blend() -> None:
    rng = np.random.default_rng(1)
    n = 400
    truth = rng.normal(3.5, 1.0, n)
    d = Interactions.from_arrays(np.arange(n), np.zeros(n, dtype=int), truth)
    cut = Split(d, np.zeros(0, dtype=np.int64), np.arange(n, dtype=np.int64), "inner")
    a = auto.Candidate("a", {"model": "dot"}, "defaults", fit_seconds=1.0)
    b = auto.Candidate("b", {"model": "mf"}, "defaults", fit_seconds=1e5)
    a.pred, b.pred = truth + rng.normal(0, 0.5, n), truth + rng.normal(0, 0.5, n)
    assert [m.label for m in auto._blend([a, b], cut, seed=0)[0]] == ["a", "b"]
    assert [m.label for m in auto._blend([a, b], cut, seed=0, budget=600.0)[0]] == ["a"]
    b.fit_seconds = 1.0  # cheap: it joins within the budget too
    assert [m.label for m in auto._blend([a, b], cut, seed=0, budget=600.0)[0]] == ["a", "b"]


def test_defaults_stage_order_and_shares_and_no_tuning_after_a_short_fit(
    data: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other families first (``nn`` after them) until the stage minus the anytime
    share; then Bayesian MF and I-AutoRec share the rest; an anytime fit ended by its
    deadline means no tuning (said in the report)."""
    calls: list[tuple[str, float]] = []
    rng = np.random.default_rng(0)

    def fake_try(cfg, label, spec, stage, cut, until):  # type: ignore[no-untyped-def]
        calls.append((label, until))
        c = auto.Candidate(label, spec, stage, rmse=0.9 + rng.random() / 10, fit_seconds=1.0)
        c.pred = cut.test.rating + rng.normal(0, 0.9, len(cut.test))
        c.short = label == "bmf"
        return c

    def no_tuning(*args: object) -> list[auto.Candidate]:
        raise AssertionError("tuned after a fit ended early")

    monkeypatch.setattr(auto, "_try", fake_try)
    monkeypatch.setattr(auto, "_tune_stage", no_tuning)
    cfg = RatingConfig(seed=0, budget=1000)
    t0 = time.perf_counter()
    _, report, _ = auto.choose_model(cfg, _split(cfg, data))
    names = [n for n, _ in calls]
    assert names[-2:] == ["autorec", "bmf"] and names[-3] == "nn"
    assert names[:2] == ["svdpp", "dot"]
    others = [u for n, u in calls if n not in ("autorec", "bmf")]
    stage = auto.DEFAULTS_SHARE - auto.ANYTIME_SHARE
    assert all(abs(u - (t0 + stage * 1000)) < 5 for u in others)
    assert all(u > t0 + stage * 1000 for n, u in calls if n in ("autorec", "bmf"))
    assert "bmf" in report.as_dict()["tuning_skipped"]


def test_ended_early_says_how_many_samples_or_epochs_ran(data: Interactions) -> None:
    m = create_model("bmf", data, n_factors=2, gibbs_burn_in=1, gibbs_samples=9)
    with fit_until(time.perf_counter() - 1.0):
        family("bmf").closed_form(m, data)  # type: ignore[misc]
    assert ended_early(m) == "ended by its deadline: 1 of 9 samples" and full_share(m) == 9.0
    base = create_model("baseline", data)
    assert ended_early(base) == "" and full_share(base) == 1.0


def test_the_tuned_best_is_not_trained_again(
    data: Interactions, monkeypatch: pytest.MonkeyPatch, few_trials: None
) -> None:
    """The tuned candidate is the search's best trial itself: its inner predictions and
    model, that trial's seconds as its one fit (the final fit is estimated from it), and
    the whole search as its seconds; no fit after the search."""
    fits: list[str] = []
    real_fit, real_tune = auto.train_on, auto.tuning.tune
    found: list[Any] = []

    def fit_on(cfg: RatingConfig, *args: Any) -> Any:
        fits.append(cfg.model)
        return real_fit(cfg, *args)

    def tune(*args: Any, **kw: Any) -> Any:
        found.append(real_tune(*args, **kw))
        return found[-1]

    monkeypatch.setattr(auto, "train_on", fit_on)
    monkeypatch.setattr(auto.tuning, "tune", tune)
    cand, cut = _tune_dot(data)
    (res,) = found
    assert fits == [] and cand.state == "ok" and cand.stage == "tuned"
    assert cand.rmse == pytest.approx(res.best_score, rel=1e-5)
    assert cand.fit_seconds == res.best_trial.seconds and cand.seconds >= res.seconds
    assert cand.model is res.kept[1] and cand.pred is res.kept[0]
    assert int(cand.model.train_user_count.sum()) == len(cut.train_idx)
    assert cand.spec["model"] == "dot" and "2 trials" in cand.note


def test_a_tuned_best_without_its_kept_model_is_a_failed_candidate(
    data: Interactions, monkeypatch: pytest.MonkeyPatch, few_trials: None
) -> None:
    """A search whose best trial's predictions and model were not held fails the tuned
    candidate with a message (no bare TypeError from unpacking ``None``)."""
    real_tune = auto.tuning.tune

    def tune(*args: Any, **kw: Any) -> Any:
        res = real_tune(*args, **kw)
        res.kept = None
        return res

    monkeypatch.setattr(auto.tuning, "tune", tune)
    cand, _ = _tune_dot(data)
    assert cand.state == "failed" and cand.stage == "tuned" and cand.model is None
    assert "expected the best trial's predictions and model, received none" in cand.note


def _models_alive() -> int:
    gc.collect()
    return sum(RatingModel in getattr(type(o), "__mro__", ()) for o in gc.get_objects())


def test_only_the_members_kept_from_the_inner_cut_keep_their_models(
    data: Interactions, monkeypatch: pytest.MonkeyPatch, few_trials: None
) -> None:
    """Once auto has chosen, the candidates' models go: what is left is the plan's
    members' inner-cut models (kept as they are, or kept should their final fits be cut)."""
    cfg = RatingConfig(seed=0, budget=600, epochs=1, gibbs_samples=10, gibbs_burn_in=2)
    sp = _split(cfg, data)
    for factor in (1.3, 1e9):  # time for every final fit; none
        monkeypatch.setattr(auto, "REFIT_FACTOR", factor)
        before = _models_alive()
        resolved, report, plan = auto.choose_model(cfg, sp)
        assert plan is not None
        kept = [m for m in plan.kept if m is not None]
        held = {id(m): m for m in [*kept, *plan.inner] if m is not None}
        assert len([c for c in report.candidates if c.state == "ok"]) > 3
        assert all(c.model is None and c.pred is None for c in report.candidates)
        assert _models_alive() - before == len(held) == len(plan.inner)
        assert (len(kept) >= 1) if factor > 10 else (kept == [])
        del resolved, report, plan, kept, held


@pytest.fixture
def baseline_anytime_mf_costly() -> Any:
    """``baseline`` registered as anytime and ``mf`` as costly, as a new family would
    declare itself; the registry is restored after."""
    old = [family("baseline"), family("mf")]
    register_family(replace(old[0], anytime=True))
    register_family(replace(old[1], costly=True))
    yield
    for f in old:
        register_family(f)


def test_the_registry_says_which_families_are_anytime_or_costly(
    data: Interactions, monkeypatch: pytest.MonkeyPatch, baseline_anytime_mf_costly: None
) -> None:
    assert {f.name for f in families("rating") if f.anytime} == {"baseline", "bmf", "autorec"}
    calls: list[str] = []

    def fake_try(cfg, label, spec, stage, cut, until):  # type: ignore[no-untyped-def]
        calls.append(label)
        return auto.Candidate(label, spec, stage, state="failed")

    monkeypatch.setattr(auto, "_try", fake_try)
    cfg = RatingConfig(seed=0, budget=1000)
    auto.choose_model(cfg, _split(cfg, data))
    assert set(calls[-3:]) == {"baseline", "bmf", "autorec"} and set(calls[-5:-3]) == {"nn", "mf"}
    a = auto.Candidate("dot", {"model": "dot"}, "defaults", fit_seconds=1.0)
    b = auto.Candidate("baseline", {"model": "baseline"}, "defaults", fit_seconds=10.0)
    # baseline shares what dot's final fit leaves, as an anytime member: 30 % of its 13 s
    assert auto._refits([a, b], time_left=1.3 + auto.ANYTIME_MIN * 13 + 0.1) == [True, True]
    assert auto._refits([a, b], time_left=1.3 + auto.ANYTIME_MIN * 13 - 0.1) == [True, False]
