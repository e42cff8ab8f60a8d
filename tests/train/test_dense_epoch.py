"""Dense AdamW epochs as one compiled kernel: the same trajectory as the step-by-step path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.data import Interactions
from recfit.data.synthetic import synthetic
from recfit.errors import ConfigError, TrainingDivergedError
from recfit.models import BiasedMF, DotBias, SVDpp
from recfit.train import dense_epoch, kernels
from recfit.train.callbacks import Callback, ProgressBar, ScheduleRecorder
from recfit.train.checkpoint import TrainCheckpoint
from recfit.train.execution import Execution, Path
from recfit.train.learner import Learner
from recfit.train.schedules import Constant

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")

TABLES = ("user_factors", "item_factors", "user_bias", "item_bias")


def _data(n: int = 3000, seed: int = 0, weights: bool = False) -> Interactions:
    d = synthetic(n, 60, 90, seed=seed)
    if not weights:
        return d
    w = np.random.default_rng(seed).uniform(0.2, 2.0, len(d)).astype(np.float32)
    return Interactions.from_arrays(d.user, d.item, d.rating, weight=w)


def _learner(d: Interactions, compiled: bool, model: Any = None, **kw: Any) -> Learner:
    m = model or DotBias(d.n_users, d.n_items, 12, y_range=(0.0, 5.5), seed=3)
    return Learner(m, d, d, progress=False, seed=5, execution=Execution(compiled=compiled),
                   **{"bs": 64, "wd": 0.1, **kw})  # fmt: skip


def _close(a: Learner, b: Learner, tol: float = 2e-5) -> None:
    for name in TABLES:
        pa, pb = getattr(a.model, name).detach(), getattr(b.model, name).detach()
        assert torch.allclose(pa, pb, rtol=tol, atol=tol), (name, float((pa - pb).abs().max()))
    for key in ("exp_avg", "exp_avg_sq"):
        for sa, sb in zip(getattr(a.opt, key), getattr(b.opt, key), strict=True):
            assert torch.allclose(sa, sb, rtol=1e-4, atol=tol), (key, float((sa - sb).abs().max()))
    assert [float(s) for s in a.opt.steps] == [float(s) for s in b.opt.steps]
    assert a.opt.step_count == b.opt.step_count and a.train_iter == b.train_iter


def test_one_cycle_follows_the_step_by_step_path() -> None:
    """fastai's configuration: a few hundred steps, the same weights, moments and losses."""
    d = _data()
    ref = _learner(d, compiled=False).fit_one_cycle(3, 5e-3, wd=0.1)
    ker = _learner(d, compiled=True).fit_one_cycle(3, 5e-3, wd=0.1)
    assert ref.path == Path(fused=True) and ker.path == Path(fused=True, dense_epochs=True)
    assert ker.path.name == "dense-compiled" and ker.train_iter == 3 * 47
    _close(ref, ker)
    for hr, hk in zip(ref.history, ker.history, strict=True):
        for key in ("train_loss", "mse", "valid_loss"):
            assert hk[key] == pytest.approx(hr[key], rel=1e-5, abs=1e-6), key
        assert (hk["lr"], hk["epoch"]) == (hr["lr"], hr["epoch"])
    assert (ker.lr, ker.mom) == (ref.lr, ref.mom)
    assert ker.opt.param_groups[0]["betas"] == ref.opt.param_groups[0]["betas"]
    assert ker.compile_seconds >= 0.0 and ker.fit_seconds > 0.0


@pytest.mark.parametrize(
    "case",
    [
        {"reg": 0.05, "weights": True},  # penalty and weights
        {"mf": True, "reg": 0.02, "bs": 50},  # no sigmoid, a global mean, a merged last batch
        {"drop_last": True, "bs": 128, "wd": 0.0},
    ],
)
def test_other_settings_follow_the_step_by_step_path(case: dict[str, Any]) -> None:
    case = dict(case)
    d = _data(2001, seed=1, weights=case.pop("weights", False))

    def model() -> Any:
        if case.get("mf"):
            return BiasedMF(d.n_users, d.n_items, 7, global_mean=float(d.rating.mean()), seed=1)
        return None

    kw = {k: v for k, v in case.items() if k != "mf"}
    ref = _learner(d, False, model(), **kw).fit(2, 3e-3)
    ker = _learner(d, True, model(), **kw).fit(2, 3e-3)
    assert ker.path is not None and ker.path.dense_epochs
    _close(ref, ker)
    assert ker.history[-1]["train_loss"] == pytest.approx(ref.history[-1]["train_loss"], rel=1e-5)
    assert ker.history[-1]["reg_loss"] == pytest.approx(
        ref.history[-1]["reg_loss"], rel=1e-5, nan_ok=True
    )


@settings(max_examples=8, deadline=None)
@given(
    bs=st.integers(1, 90),
    n_factors=st.integers(0, 20),
    wd=st.sampled_from([0.0, 0.01, 0.3]),
    reg=st.sampled_from([0.0, 0.1]),
    seed=st.integers(0, 1000),
)
def test_fuzz_the_kernel_against_the_step_by_step_path(
    bs: int, n_factors: int, wd: float, reg: float, seed: int
) -> None:
    d = _data(300, seed=seed % 7)

    def model() -> DotBias:
        return DotBias(d.n_users, d.n_items, n_factors, y_range=(0.5, 5.5), seed=seed)

    ref = _learner(d, False, model(), bs=bs, wd=wd, reg=reg).fit_one_cycle(2, 1e-2)
    ker = _learner(d, True, model(), bs=bs, wd=wd, reg=reg).fit_one_cycle(2, 1e-2)
    _close(ref, ker, tol=5e-5)


class _Counter(Callback):
    def __init__(self) -> None:
        self.n = 0

    def after_batch(self) -> None:
        self.n += 1


def test_batch_callbacks_get_every_batch_and_the_paths_mix() -> None:
    """An epoch with a batch callback runs step by step, on the state the kernel left."""
    d = _data()
    ref = _learner(d, compiled=False)
    ker = _learner(d, compiled=True)
    for learn in (ref, ker):
        learn.fit(1, 2e-3)
        count = _Counter()
        learn.fit_schedule(1, Constant(2e-3), cbs=[count])
        assert count.n == learn.steps_per_epoch
        learn.fit(1, 1e-3)
    assert ker.path is not None and ker.path.dense_epochs
    _close(ref, ker)


def test_lr_find_and_trial_restore_the_state() -> None:
    d = _data()
    learn = _learner(d, compiled=True)
    learn.fit(1, 1e-3)
    before = {n: getattr(learn.model, n).detach().clone() for n in TABLES}
    with learn.trial():
        learn.fit(1, 1e-2)
    for n in TABLES:
        assert torch.equal(getattr(learn.model, n).detach(), before[n])
    learn.lr_find(num_it=20)
    for n in TABLES:
        assert torch.equal(getattr(learn.model, n).detach(), before[n])


def test_divergence_stops_at_the_same_step() -> None:
    d = _data()
    errors = []
    for compiled in (False, True):
        learn = _learner(d, compiled=compiled)
        with pytest.raises(TrainingDivergedError) as e:
            learn.fit(1, 1e12)
        errors.append((e.value.epoch, e.value.step, e.value.what))
        assert learn.history == []
    assert errors[0] == errors[1]


def test_paths_it_does_not_take() -> None:
    d = _data(500)
    with pytest.raises(ConfigError, match="compiled=True"):
        Learner(DotBias(d.n_users, d.n_items, 4), d, loss="mae", progress=False,
                execution=Execution(compiled=True)).fit(1, 1e-3)  # fmt: skip
    mae = Learner(DotBias(d.n_users, d.n_items, 4), d, loss="mae", progress=False).fit(1, 1e-3)
    assert mae.path is not None and not mae.path.dense_epochs
    sgd = Learner(DotBias(d.n_users, d.n_items, 4), d, opt="sgd", progress=False).fit(1, 1e-3)
    assert sgd.path is not None and not sgd.path.dense_epochs
    off = Learner(DotBias(d.n_users, d.n_items, 4), d, progress=False,
                  execution=Execution(compiled=False)).fit(1, 1e-3)  # fmt: skip
    assert off.path == Path(fused=True)
    cpu = torch.device("cpu")
    assert dense_epoch.supports(BiasedMF(3, 4, 2), off.loss_func, cpu)
    reference = SVDpp(3, 4, 2)
    reference.fused_kernel = False  # the PyTorch step, kept as the reference
    assert not dense_epoch.supports(reference, off.loss_func, cpu)
    assert not dense_epoch.supports(DotBias(3, 4, 2), off.loss_func, cpu, bf16=True)


def test_hyper_arrays_are_pytorch_adamw_constants() -> None:
    lr, b1 = np.array([1e-2, 2e-2]), np.array([0.9, 0.8])
    h = dense_epoch.hyper_arrays(lr, b1, 0.1, 0.99, 1e-5, 4)
    t = np.array([5.0, 6.0])
    np.testing.assert_allclose(h["ss"], lr / (1 - b1**t))
    np.testing.assert_allclose(h["ibc2"], 1 / np.sqrt(1 - 0.99**t))
    assert h["keep"].dtype == np.float32 and h["keep"][1] == np.float32(1 - 2e-3)


def test_svdpp_follows_the_step_by_step_path() -> None:
    """SVD++'s implicit term: a third table (y) brought up to date the same way."""
    d = _data(2500, seed=2)

    def model() -> SVDpp:
        m = SVDpp(d.n_users, d.n_items, 9, y_range=(0.0, 5.5), implicit_init_std=0.01, seed=4)
        m.set_implicit(torch.from_numpy(d.user.astype(np.int64)),
                       torch.from_numpy(d.item.astype(np.int64)))  # fmt: skip
        return m

    ref = _learner(d, False, model(), reg=0.05, wd=0.05).fit_one_cycle(2, 5e-3)
    ker = _learner(d, True, model(), reg=0.05, wd=0.05).fit_one_cycle(2, 5e-3)
    assert ref.path == Path(fused=True) and ker.path is not None and ker.path.dense_epochs
    _close(ref, ker)
    ya, yb = ref.model.implicit_factors.detach(), ker.model.implicit_factors.detach()
    assert torch.allclose(ya, yb, rtol=2e-5, atol=2e-5), float((ya - yb).abs().max())
    assert ker.history[-1]["mse"] == pytest.approx(ref.history[-1]["mse"], rel=1e-5)


def test_schedule_recorder_gets_every_step_of_a_kernel_epoch() -> None:
    d = _data()
    recs = []
    for compiled in (False, True):
        rec = ScheduleRecorder()
        learn = _learner(d, compiled, callbacks=[rec]).fit_one_cycle(2, 5e-3)
        assert learn.path is not None and learn.path.dense_epochs == compiled
        recs.append(rec)
    assert recs[1].lrs == recs[0].lrs and recs[1].moms == recs[0].moms
    np.testing.assert_allclose(recs[1].losses, recs[0].losses, rtol=1e-4)


def test_checkpoints_keep_the_kernel_unless_saved_every_n_steps(
    tmp_path: Any, kernel_epochs: list[int]
) -> None:
    calls = kernel_epochs
    d = _data()
    # recfit train's callbacks: a checkpoint at each epoch's end, the schedule, progress
    cbs = [TrainCheckpoint(tmp_path / "a"), ScheduleRecorder(), ProgressBar(quiet=True)]
    _learner(d, True, callbacks=cbs).fit(2, 1e-3)
    assert len(calls) == 2 and (tmp_path / "a").is_dir()
    calls.clear()
    _learner(d, True, callbacks=[TrainCheckpoint(tmp_path / "b", every=10)]).fit(2, 1e-3)
    assert calls == []
