"""model="auto": more seeds of the blend's members averaged on the inner cut, and the
blend members one per seed that the run trains."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recfit.config import RatingConfig
from recfit.data import Interactions
from recfit.data.split import Split
from recfit.data.synthetic import synthetic
from recfit.models.blend import Blend
from recfit.recommender import Recommender
from recfit.runs import train_run
from recfit.tasks import auto
from recfit.tasks.blend import inner_cut
from recfit.tasks.common import get_task

N = 400


@pytest.fixture
def cut() -> Split:
    rng = np.random.default_rng(0)
    truth = rng.normal(3.5, 1.0, N)
    d = Interactions.from_arrays(np.arange(N), np.zeros(N, dtype=int), truth)
    return Split(d, np.zeros(0, dtype=np.int64), np.arange(N, dtype=np.int64), "inner")


def _fake_try(
    cut: Split,
    noise: dict[str, float],
    calls: list[tuple[str, int]],
    untils: list[float] | None = None,
) -> Any:
    """A stand-in for auto's fit on the cut: the truth plus noise drawn by the spec's
    seed (a family of noise 0 is off by 0.3 whatever its seed)."""
    untils = [] if untils is None else untils

    def fake(
        cfg: RatingConfig, label: str, spec: dict[str, Any], stage: str, cut_: Split, until: float
    ) -> auto.Candidate:
        seed = int(spec.get("seed", cfg.seed))
        calls.append((spec["model"], seed))
        untils.append(until)
        rng = np.random.default_rng(seed)
        c = auto.Candidate(label, spec, stage, fit_seconds=0.01, seconds=0.01)
        scale = noise[spec["model"]]
        c.pred = cut.test.rating + (scale * rng.normal(0, 1, N) if scale else 0.3)
        c.model = object()  # type: ignore[assignment]
        c.rmse = float(np.sqrt(np.mean((c.pred - cut.test.rating) ** 2)))
        return c

    return fake


def _member(cfg: RatingConfig, name: str, fake: Any, cut: Split) -> auto.Candidate:
    return fake(cfg, name, {"model": name}, "defaults", cut, 0.0)  # type: ignore[no-any-return]


def test_seeds_are_averaged_while_they_gain_and_not_for_a_seed_free_fit(
    cut: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    fake = _fake_try(cut, {"svdpp": 0.5, "autorec": 0.0}, calls)
    monkeypatch.setattr(auto, "_try", fake)
    cfg = RatingConfig(seed=3, budget=100)
    noisy, flat = _member(cfg, "svdpp", fake, cut), _member(cfg, "autorec", fake, cut)
    single = noisy.rmse
    calls.clear()
    auto._bag_stage(cfg, [noisy, flat], [0.5, 0.5], cut, time.perf_counter() + 100)
    # the noisy member: seeds 4, 5, 6 joined (each lowered its inner RMSE)
    assert noisy.seeds == auto.BAG_MAX and len(noisy.copies) == auto.BAG_MAX - 1
    assert noisy.bag_rmse[0] == single and noisy.rmse == noisy.bag_rmse[-1] < single
    assert all(b < a for a, b in zip(noisy.bag_rmse, noisy.bag_rmse[1:], strict=False))
    want = np.mean([cut.test.rating + 0.5 * np.random.default_rng(s).normal(0, 1, N)
                    for s in (3, 4, 5, 6)], axis=0)  # fmt: skip
    np.testing.assert_allclose(noisy.pred, want)  # type: ignore[arg-type]
    # the seed-free member: one seed tried, no gain, none kept
    assert flat.seeds == 1 and not flat.copies and ("autorec", 4) in calls
    assert [c for c in calls if c[0] == "autorec"] == [("autorec", 4)]


def test_no_seed_is_tried_without_time_for_it_and_the_final_fits(
    cut: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    untils: list[float] = []
    fake = _fake_try(cut, {"svdpp": 0.5}, calls, untils)
    monkeypatch.setattr(auto, "_try", fake)
    cfg = RatingConfig(seed=0, budget=100)
    m = _member(cfg, "svdpp", fake, cut)
    m.fit_seconds = 10.0  # a seed: 10 s on the cut, 13 s for its final fit; the member's: 13 s
    calls.clear()
    untils.clear()
    auto._bag_stage(cfg, [m], [1.0], cut, time.perf_counter() + 30.0)
    assert calls == [] and m.seeds == 1
    until = time.perf_counter() + 37.0
    auto._bag_stage(cfg, [m], [1.0], cut, until)
    assert calls == [("svdpp", 1)] and m.seeds == 2  # then 26 s reserved: no third
    # the seed's fit must end leaving the member's final fit and its own (13 s each)
    assert untils == [pytest.approx(until - 26.0)]


def test_members_of_several_seeds_are_one_blend_member_per_seed() -> None:
    a = auto.Candidate("svdpp", {"model": "svdpp"}, "defaults", seeds=3, fit_seconds=2.0)
    a.model, a.copies = "m0", ["m1", "m2"]  # type: ignore[assignment, list-item]
    b = auto.Candidate("bmf (tuned)", {"model": "bmf", "n_factors": 8}, "tuned")
    b.model = "b0"  # type: ignore[assignment]
    assert a.final_cost() == pytest.approx(3 * 2.0 * auto.REFIT_FACTOR)
    out, w = auto._copies([a, b], [0.6, 0.3], seed=42)
    assert [c.label for c in out] == [
        "svdpp (seed 42)", "svdpp (seed 43)", "svdpp (seed 44)", "bmf (tuned)"
    ]  # fmt: skip
    assert [c.spec for c in out] == [
        {"model": "svdpp"}, {"model": "svdpp", "seed": 43}, {"model": "svdpp", "seed": 44},
        {"model": "bmf", "n_factors": 8},
    ]  # fmt: skip
    assert [c.model for c in out] == ["m0", "m1", "m2", "b0"]
    assert w == pytest.approx([0.2, 0.2, 0.2, 0.3]) and all(c.seeds == 1 for c in out)


def test_a_run_trains_each_seed_and_predicts_their_weighted_average(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only dot and mf, with room for seeds: the run's blend holds a member per seed,
    each trained on the whole training part with its seed; the bundle answers the same."""
    monkeypatch.setattr(auto, "TUNE_TOP", 0)
    monkeypatch.setattr(auto, "BAG_GAIN", -np.inf)  # every seed joins (the rule: above)
    monkeypatch.setattr(
        auto, "_candidate_specs",
        lambda cfg, train: [("dot", {"model": "dot", "epochs": 3}),
                            ("mf", {"model": "mf", "epochs": 3})],
    )  # fmt: skip
    data = synthetic(3000, 80, 60, seed=1)
    res = train_run(RatingConfig(seed=5, budget=600), tmp_path / "run", data=data, progress=False)
    info = json.loads((tmp_path / "run" / "metrics.json").read_text())["details"]["model_auto"]
    bagged = [c for c in info["candidates"] if c.get("seeds", 1) > 1]
    assert bagged, info["candidates"]
    for c in bagged:
        assert c["seeds"] == auto.BAG_MAX == len(c["bag_rmse"]) and c["rmse"] == c["bag_rmse"][-1]
    model = res.learner.model
    assert res.config.model == "blend" and isinstance(model, Blend)
    specs = [json.loads(s) for s in res.config.blend_members]
    seeds = [s.get("seed", 5) for s in specs]
    for c in bagged:
        same = [s for s, x in zip(seeds, specs, strict=True) if x["model"] == c["spec"]["model"]]
        assert sorted(same) == list(range(5, 5 + c["seeds"]))
    n_train = len(res.split.train_idx)
    for m in model.member_models():
        assert int(m.train_user_count.sum()) == n_train
    # each copy trained with its own seed: the copies of a member differ
    members = model.member_models()
    for c in bagged:
        idx = [k for k, x in enumerate(specs) if x["model"] == c["spec"]["model"]]
        first = members[idx[0]].state_dict()
        for k in idx[1:]:
            other = members[k].state_dict()
            assert any(not np.array_equal(first[n].numpy(), other[n].numpy()) for n in first)
    # copies of one member share its weight equally
    w = np.asarray(info["blend"]["weights"])
    for c in bagged:
        idx = [k for k, x in enumerate(specs) if x["model"] == c["spec"]["model"]]
        np.testing.assert_allclose(w[idx], w[idx[0]], rtol=1e-5)
    rec = Recommender.load(res.out / "bundle")
    test = res.split.test
    got = rec.predict(test.users.id(test.user[:20]), test.items.id(test.item[:20]))
    np.testing.assert_allclose(got, res.learner.predict(test)[:20], rtol=1e-6)


def test_a_tuned_config_is_compared_with_one_seed_of_its_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tuning trains one seed per trial: it must beat the defaults' first seed, not their
    average of several (a tuned best below one seed joins; the blend decides)."""
    monkeypatch.setattr(auto, "TUNE_TRIALS", 2)
    data = synthetic(3000, 80, 60, seed=0)
    cfg = RatingConfig(seed=0, budget=60)
    sp = get_task("rating").load_split(cfg, data)
    cut = inner_cut(sp.data, sp.train_idx, seed=0)
    # averaged seeds reached an inner RMSE no single fit can; its first seed scored badly
    base = auto.Candidate("dot", {"model": "dot", "epochs": 2}, "defaults", rmse=0.01,
                          seeds=2, bag_rmse=[9.0, 0.01])  # fmt: skip
    (cand,) = auto._tune_stage(cfg, [base], cut, time.perf_counter() + 60)
    assert cand.state == "ok" and cand.rmse is not None and cand.rmse < 9.0
    # without seeds, the same defaults' score is the one to beat
    base = auto.Candidate("dot", {"model": "dot", "epochs": 2}, "defaults", rmse=0.01)
    (cand,) = auto._tune_stage(cfg, [base], cut, time.perf_counter() + 60)
    assert cand.state == "skipped" and "none beat the defaults" in cand.note


def test_a_single_best_kept_from_the_cut_reports_its_calibrated_rmse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One candidate, no time to train it again: the run keeps its inner-cut model with
    the ridge calibration fitted on the cut, and the report's ``inner_rmse`` is the RMSE
    of those calibrated predictions (what the run predicts); nothing tuned is said."""
    rng = np.random.default_rng(0)
    preds: list[np.ndarray] = []

    def fake_try(cfg, label, spec, stage, cut_, until):  # type: ignore[no-untyped-def]
        c = auto.Candidate(label, spec, stage, fit_seconds=1.0)
        c.pred = 0.5 * cut_.test.rating + 1.0 + rng.normal(0, 0.3, len(cut_.test))
        preds.append(c.pred)
        c.rmse = float(np.sqrt(np.mean((c.pred - cut_.test.rating) ** 2)))
        c.model = object()  # type: ignore[assignment]
        return c

    monkeypatch.setattr(auto, "_try", fake_try)
    monkeypatch.setattr(
        auto, "_candidate_specs", lambda cfg, train: [("baseline", {"model": "baseline"})]
    )
    monkeypatch.setattr(auto, "REFIT_FACTOR", 1e9)  # no final fit fits
    monkeypatch.setattr(auto, "TUNE_TOP", 0)
    data = synthetic(3000, 80, 60, seed=0)
    cfg = RatingConfig(seed=0, budget=60)
    sp = get_task("rating").load_split(cfg, data)
    resolved, report, plan = auto.choose_model(cfg, sp)
    assert resolved.model == "blend" and plan is not None and report.chosen == "baseline"
    cut = inner_cut(sp.data, sp.train_idx, seed=0)
    y, w = cut.test.rating.astype(np.float64), cut.test.weights().astype(np.float64)
    (c,), b = plan.weights, plan.intercept
    assert c > 1.0  # the calibration undoes part of the fake's 0.5 slope
    calibrated = preds[0] * c + b
    want = float(np.sqrt(np.sum(w * (calibrated - y) ** 2) / np.sum(w)))
    assert report.blend["inner_rmse"] == pytest.approx(want, rel=1e-6)
    assert "inner_rmse_cross_fitted" not in report.blend
    assert want < float(report.chosen_rmse or 0.0)  # better than the raw predictions
    assert report.tuning_skipped == "no time left after the seeds and the final fits' reserve"
    # with time for the final fit but no family tuned, the report says so too
    monkeypatch.setattr(auto, "REFIT_FACTOR", 1.3)
    resolved, report, plan = auto.choose_model(cfg, sp)
    assert resolved.model == "baseline"
    assert report.tuning_skipped == "no family with a search space had time for three trials"
