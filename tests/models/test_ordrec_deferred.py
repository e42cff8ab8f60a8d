"""OrdRec's deferred y steps: the pending step at an epoch's end, checkpoints between two
y steps, and implicit_every=None decided by the fit's length."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import CancelFitException, ConfigError
from recfit.models import CrossEntropyLoss, OrdRec, create_model
from recfit.models.ordrec import IMPLICIT_EVERY, IMPLICIT_MIN_STEPS
from recfit.train import Learner
from recfit.train.callbacks import Callback
from recfit.train.checkpoint import TrainCheckpoint, read_checkpoint
from recfit.train.execution import Execution
from recfit.train.sparse import RowAdamW

HALF = [0.5 * k for k in range(1, 11)]


def _data() -> tuple[Interactions, Interactions]:
    """640 training and 160 validation half-star ratings (user and item effects)."""
    rng = np.random.default_rng(3)
    n, nu, ni = 800, 30, 60
    u, i = rng.integers(0, nu, n), rng.integers(0, ni, n)
    x = rng.normal(0, 1, nu)[u] + rng.normal(0, 1, ni)[i] + rng.normal(0, 0.5, n)
    r = np.clip(np.round(2 * (2.75 + x)) / 2, 0.5, 5.0)
    d = Interactions.from_arrays(u, i, r, rating_scale=(0.5, 5))
    return d.take(np.arange(640)), d.take(np.arange(640, 800))


def _model(every: int) -> OrdRec:
    m = OrdRec(5, 9, n_factors=3, levels=HALF, implicit=True, implicit_every=every)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    m.set_implicit(torch.tensor([0, 0, 1, 2, 3]), torch.tensor([1, 2, 3, 4, 5]))
    return m


def test_flush_applies_the_pending_y_step_as_a_shorter_window() -> None:
    """Three steps with implicit_every=8 then the epoch's end (flush) give the weights of
    implicit_every=3 (its step on the third, at sqrt(3) times the rate); after it
    nothing is pending."""
    got = []
    for every in (8, 3):
        m = _model(every)
        y0 = m.implicit_factors.detach().clone()
        opt = RowAdamW(m, lr=0.01, weight_decay=0.1)
        ce = CrossEntropyLoss().bind(m)
        for users in ([0, 1], [2, 0], [3, 4]):
            batch = {"user": torch.tensor(users), "item": torch.tensor([1, 2]),
                     "rating": torch.tensor([1.0, 4.5]), "weight": torch.ones(2)}  # fmt: skip
            out, _, saved = m.fused_forward(batch, False)
            opt.fused_step(batch, saved, ce.grad(out, batch), None)
        if every == 8:
            assert torch.equal(m.implicit_factors.detach(), y0)  # still pending
            assert m.pending_state() is not None
        opt.flush()
        assert m.pending_state() is None
        got.append(m.state_dict())
    for k, v in got[0].items():
        torch.testing.assert_close(v, got[1][k], rtol=0, atol=0, msg=k)


class _Watch(Callback):
    """The y table after the last batch of the fit (before the epoch's end)."""

    def after_batch(self) -> None:
        self.y = self.learn.model.implicit_factors.detach().clone()


def test_fit_applies_the_last_partial_window() -> None:
    """10 steps, a y step every 8: the 2 steps after the last are applied at the end."""
    train, valid = _data()
    m = create_model("ordrec", train, n_factors=4, implicit=True, implicit_every=8)
    watch = _Watch()
    learn = Learner(m, train, valid, bs=64, wd=0.0, reg=0.01, progress=False,
                    callbacks=[watch], execution=Execution(row_wise=True))  # fmt: skip
    learn.fit(1, 0.01)
    assert learn.train_iter == 10
    assert not torch.equal(m.implicit_factors.detach(), watch.y)
    assert m.pending_state() is None


def _learner(train: Interactions, valid: Interactions, cbs: list[Callback]) -> Learner:
    m = create_model("ordrec", train, n_factors=4, implicit=True, implicit_every=8, seed=1)
    return Learner(m, train, valid, bs=64, wd=0.05, reg=0.01, progress=False,
                   callbacks=cbs, execution=Execution(row_wise=True))  # fmt: skip


@pytest.mark.parametrize(("every", "crash", "at"), [(None, 15, 10), (7, 16, 14)])
def test_resumed_fit_follows_the_uninterrupted_one(
    tmp_path: Path, every: int | None, crash: int, at: int, crash_at: Callable[[int], Callback]
) -> None:
    """Resumed from an epoch-end checkpoint (nothing pending) or from one 4 steps into
    the second epoch's window (the pending sums saved with the optimiser's state)."""
    train, valid = _data()
    ref = _learner(train, valid, [TrainCheckpoint(tmp_path / "ref", every=every)])
    ref.fit_one_cycle(3, 1e-2)
    crashed = _learner(train, valid, [TrainCheckpoint(tmp_path, every=every), crash_at(crash)])
    with pytest.raises(RuntimeError, match="crash"):
        crashed.fit_one_cycle(3, 1e-2)
    state = read_checkpoint(tmp_path)
    assert state.meta["position"]["train_iter"] == at
    assert (state.meta["optimizer"]["state"]["pending"] is None) == (every is None)
    resumed = _learner(train, valid, [TrainCheckpoint(tmp_path, every=every)])
    resumed.resume_state = state
    resumed.fit_one_cycle(3, 1e-2)
    for (k, a), b in zip(resumed.model.state_dict().items(), ref.model.state_dict().values(),
                         strict=True):  # fmt: skip
        assert torch.equal(a, b), k


class _Stop(Callback):
    def after_batch(self) -> None:
        raise CancelFitException()


@pytest.mark.parametrize(
    ("epochs", "want"), [(4, 1), (-(-IMPLICIT_MIN_STEPS // 10), IMPLICIT_EVERY)]
)
def test_implicit_every_none_is_decided_by_the_fits_length(epochs: int, want: int) -> None:
    """10 steps an epoch: a 40-step fit steps y every step, a fit of IMPLICIT_MIN_STEPS
    steps every 8 (decided when it starts; its config records the value used)."""
    train, valid = _data()
    m = create_model("ordrec", train, n_factors=4, implicit=True)
    assert isinstance(m, OrdRec) and m.implicit_every is None and m.every == 1
    learn = Learner(m, train, valid, bs=64, progress=False, callbacks=[_Stop()],
                    execution=Execution(row_wise=True))  # fmt: skip
    learn.fit(epochs, 0.01)
    assert m.implicit_every == want and m.config()["implicit_every"] == want
    m.plan_fit(IMPLICIT_MIN_STEPS - 1 if want > 1 else IMPLICIT_MIN_STEPS)  # every fit decides
    assert m.implicit_every == (1 if want > 1 else IMPLICIT_EVERY)
    fixed = OrdRec(3, 3, implicit=True, implicit_every=8)
    fixed.plan_fit(10)
    assert fixed.implicit_every == 8
    with pytest.raises(ConfigError, match="implicit_every"):
        OrdRec(3, 3, implicit=True, implicit_every=0)


def _fresh(m: OrdRec) -> np.ndarray:
    """Every user's implicit term computed now from the ``y`` table."""
    with torch.no_grad():
        return m._implicit_rows(torch.arange(m.n_users), False)[0].numpy()


class _CacheCheck(Callback):
    """After each step, the largest gap between the cached users' terms and fresh ones
    (``None`` while no cache is held)."""

    def __init__(self) -> None:
        self.gaps: list[float] = []

    def after_batch(self) -> None:
        m = self.learn.model
        cache = m._fit_state.terms
        if cache is not None:
            self.gaps.append(float(np.abs(cache[0] - _fresh(m)).max()))


@pytest.mark.parametrize("row_wise", [False, True])
def test_a_long_fit_trains_with_fresh_terms_on_either_path(row_wise: bool) -> None:
    """560 steps (bs 16): off the row-wise path the fit steps y every step (no cache to go
    stale: y is written there without moving its version); on it every 8, and the cache
    equals fresh terms after every step, y steps included."""
    train, valid = _data()
    m = create_model("ordrec", train, n_factors=4, implicit=True, seed=0)
    assert isinstance(m, OrdRec)
    check = _CacheCheck()
    learn = Learner(m, train, valid, bs=16, progress=False, callbacks=[check],
                    execution=Execution(row_wise=row_wise))  # fmt: skip
    learn.fit(14, 0.01)
    assert learn.train_iter >= IMPLICIT_MIN_STEPS and learn.sparse == row_wise
    assert m.implicit_every == (IMPLICIT_EVERY if row_wise else 1)
    if row_wise:
        assert len(check.gaps) == learn.train_iter and max(check.gaps) < 1e-5
    else:
        assert check.gaps == [] and m.every == 1


def test_an_every_step_y_write_drops_the_cache() -> None:
    """A y step of the every-step rule (written through NumPy, its version unchanged)
    drops the cached terms, so a later deferred fit does not start on stale ones."""
    m = _model(8)
    opt = RowAdamW(m, lr=0.05, weight_decay=0.0)
    ce = CrossEntropyLoss().bind(m)
    batch = {"user": torch.tensor([0, 1]), "item": torch.tensor([1, 2]),
             "rating": torch.tensor([1.0, 4.5]), "weight": torch.ones(2)}  # fmt: skip
    m.fused_forward(batch, False)  # builds the cache
    assert m._fit_state.terms is not None
    m.implicit_every = 1
    out, _, saved = m.fused_forward(batch, False)
    opt.fused_step(batch, saved, ce.grad(out, batch), None)
    m.implicit_every = 8
    _, _, saved = m.fused_forward(batch, False)
    np.testing.assert_allclose(saved[2].terms.detach().numpy(),
                               _fresh(m)[saved[2].users.numpy()], atol=1e-6)  # fmt: skip
