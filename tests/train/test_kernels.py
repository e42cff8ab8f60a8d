"""Compiled row-wise step: the same numbers as the PyTorch path, on any thread count."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import BiasedMF, DotBias, HuberLoss
from recfit.train import Learner, kernels
from recfit.train.batches import PARALLEL_SHUFFLE_MIN, TensorData, shuffled
from recfit.train.execution import Execution
from recfit.train.sparse import RowAdagrad, RowAdamW, RowOptimizer

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def _model(y_range: tuple[float, float] | None) -> DotBias:
    return DotBias(9, 7, n_factors=5, y_range=y_range, init_std=0.3, bias_init_std=0.1, seed=1)


def _batches(n_steps: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_steps):
        n = 23
        out.append(
            {
                "user": torch.randint(0, 9, (n,), generator=g),  # repeated rows
                "item": torch.randint(0, 7, (n,), generator=g),
                "rating": (torch.rand(n, generator=g) * 4 + 1),
                "weight": torch.rand(n, generator=g) + torch.tensor([0.0] * 3 + [0.5] * 20),
            }
        )
    return out


def _torch_step(opt: RowOptimizer, batch: dict[str, torch.Tensor], reg: float) -> float:
    """The PyTorch path of the Learner's row-wise step (MSE loss)."""
    m = opt.model
    out, pen, saved = m.fused_forward(batch, reg > 0)
    scale = batch["weight"] / batch["weight"].sum()
    d_out = 2.0 * (out - batch["rating"]) * scale
    opt.fused_step(batch, saved, d_out, None if pen is None else reg * scale)
    return float((((out - batch["rating"]) ** 2) * scale).sum())


@pytest.mark.parametrize("cls", [RowAdamW, RowAdagrad])
@pytest.mark.parametrize("y_range", [(0.0, 5.5), None])
@pytest.mark.parametrize("reg", [0.0, 0.2])
def test_compiled_step_equals_torch_step(
    cls: type[RowOptimizer], y_range: tuple[float, float] | None, reg: float
) -> None:
    """Predictions, loss, parameters and optimiser state agree after several steps."""
    a, b = _model(y_range), _model(y_range)
    opt_a, opt_b = cls(a, lr=0.05, weight_decay=0.1), cls(b, lr=0.05, weight_decay=0.1)
    for step, batch in enumerate(_batches(5)):
        for opt in (opt_a, opt_b):
            opt.param_groups[0]["lr"] = 0.05 * (1 + step) / 3
        loss_a = _torch_step(opt_a, batch, reg)
        _out_b, loss_b, pen_b = opt_b.compiled_step(batch, float(batch["weight"].sum()), reg)
        assert loss_b == pytest.approx(loss_a, rel=1e-5)
        if reg == 0:
            assert pen_b == 0.0
    for opt in (opt_a, opt_b):
        opt.flush()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for name in cls.state_names:
        for s, t in zip(getattr(opt_a, name), getattr(opt_b, name), strict=True):
            torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-7)


def test_compiled_penalty_and_predictions_match_the_model() -> None:
    m = _model((0.0, 5.5))
    batch = _batches(1)[0]
    expect_out = m(batch).detach()
    w = batch["weight"]
    expect_pen = 0.3 * float((m.penalty(batch).detach() * w).sum() / w.sum())
    out, _, pen = RowAdamW(m, lr=0.0).compiled_step(batch, float(w.sum()), 0.3)
    torch.testing.assert_close(out, expect_out)
    assert pen == pytest.approx(expect_pen, rel=1e-5)


def test_same_weights_on_one_and_two_threads() -> None:
    runs = []
    for threads in (1, 2):
        m = _model((0.0, 5.5))
        opt = RowAdamW(m, lr=0.05, weight_decay=0.1)
        for batch in _batches(4):
            opt.compiled_step(batch, float(batch["weight"].sum()), 0.1, threads)
        runs.append([p.detach().clone() for p in m.parameters()])
    for p, q in zip(*runs, strict=True):
        assert torch.equal(p, q)


def test_learner_uses_the_compiled_step_on_cpu_with_mse() -> None:
    rng = np.random.default_rng(0)
    d = Interactions.from_arrays(
        rng.integers(0, 40, 500), rng.integers(0, 30, 500), rng.integers(1, 6, 500).astype(float)
    )
    results = {}
    for compiled in (True, False):
        learn = Learner(
            BiasedMF(40, 30, 8, global_mean=3.0), d, d, bs=64, wd=0.05, reg=0.05,
            execution=Execution(row_wise=True, compiled=compiled), progress=False,
        )  # fmt: skip
        learn.fit_one_cycle(2, 0.02)
        assert learn.compiled is compiled
        results[compiled] = (learn.history[-1], learn.evaluate(d))
    (h1, e1), (h2, e2) = results[True], results[False]
    for key in ("train_loss", "reg_loss"):
        assert h1[key] == pytest.approx(h2[key], rel=1e-4)
    assert e1["mse"] == pytest.approx(e2["mse"], rel=1e-4)
    with pytest.raises(ConfigError, match="compiled=True"):
        Learner(DotBias(40, 30, 8), d, loss=HuberLoss(), progress=False,
                execution=Execution(row_wise=True, compiled=True)).fit(1)  # fmt: skip
    with pytest.raises(ConfigError, match="compiled"):
        Learner(
            DotBias(40, 30, 8),
            d,
            execution=Execution(compiled="yes"),  # type: ignore[arg-type]
            progress=False,
        )


def test_adagrad_option_trains_row_wise() -> None:
    rng = np.random.default_rng(1)
    d = Interactions.from_arrays(
        rng.integers(0, 40, 800), rng.integers(0, 30, 800), rng.integers(1, 6, 800).astype(float)
    )
    m = DotBias(40, 30, 8, y_range=(0.0, 5.5))
    learn = Learner(
        m, d, d, bs=64, opt="adagrad", progress=False, execution=Execution(row_wise=True)
    )
    learn.fit(3, 0.05)
    assert isinstance(learn.opt, RowAdagrad)
    losses = [h["train_loss"] for h in learn.history]
    assert losses[-1] < losses[0]


def test_permutation_is_uniform_and_reproducible() -> None:
    p = kernels.permutation(100_000, 5)
    assert np.array_equal(np.sort(p), np.arange(100_000))
    assert np.array_equal(p, kernels.permutation(100_000, 5))
    assert not np.array_equal(p, kernels.permutation(100_000, 6))
    assert kernels.permutation(0, 1).shape == (0,)
    # where element 0 lands, over many seeds: no decile far from 10 %
    pos = np.array(
        [int(np.flatnonzero(kernels.permutation(20_000, s) == 0)[0]) for s in range(600)]
    )
    counts = np.histogram(pos, bins=10, range=(0, 20_000))[0]
    assert counts.min() > 30 and counts.max() < 95
    # neighbours stay neighbours no more often than chance
    q = kernels.permutation(50_000, 9)
    assert np.mean(np.abs(np.diff(q)) == 1) < 0.01


def test_epoch_shuffle_is_the_generator_s_and_take_gathers() -> None:
    for n in (1000, PARALLEL_SHUFFLE_MIN):  # torch.randperm, then the parallel one
        a = shuffled(n, torch.Generator().manual_seed(3))
        b = shuffled(n, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and torch.equal(torch.sort(a).values, torch.arange(n))
    src = np.arange(10, 20, dtype=np.float32)
    assert kernels.take(src, np.array([9, 0, 4])).tolist() == [19.0, 10.0, 14.0]
    d = Interactions.from_arrays(np.arange(50) % 7, np.arange(50) % 5, np.ones(50) * 3)
    td = TensorData.from_interactions(d)
    seen = torch.cat([bt["user"] for bt in td.epoch(16, torch.Generator().manual_seed(1))])
    assert sorted(seen.tolist()) == sorted((np.arange(50) % 7).tolist())


def test_huge_zeros_are_zero_and_writable() -> None:
    a = kernels.huge_zeros((1 << 20,), np.float32)  # 4 MB: eligible for huge pages
    assert a.shape == (1 << 20,) and a.dtype == np.float32 and not a.any()
    a[:] = 1.0
    assert a.sum() == 1 << 20
    small = kernels.huge_zeros((4, 3), np.float64)
    assert small.dtype == np.float64 and not small.any()


def test_parts_run_on_threads_and_a_failing_part_raises() -> None:
    sync = np.zeros(2, np.int64)
    assert kernels._WORKERS.run(lambda c, s, x: c + x, 3, sync, (10,)) == [10, 11, 12]

    def fails(c: int, s: np.ndarray, x: int) -> int:
        if c == 1:
            raise RuntimeError("part 1 failed")
        return c

    with pytest.raises(RuntimeError, match="part 1 failed"):
        kernels._WORKERS.run(fails, 2, sync, (0,))
    assert sync[1] == 1  # the signal that stops the other parts at their next barrier


def test_a_part_that_fails_stops_the_others_at_their_barrier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Part 1 never enters the kernel: part 0 leaves at its first barrier (no hang, no
    half-grouped batch), the error is raised, and the next step runs normally."""
    real = kernels._WORKERS.run

    def run(fn: object, parts: int, sync: np.ndarray, args: tuple[object, ...]) -> list[object]:
        def part(c: int, s: np.ndarray, *a: object) -> object:
            if c == 1:
                raise RuntimeError("part 1 failed")
            return fn(c, s, *a)  # type: ignore[operator]

        return real(part, parts, sync, args)

    opt = RowAdamW(_model((0.0, 5.5)), lr=0.05, weight_decay=0.1)
    batch = _batches(1)[0]
    w = float(batch["weight"].sum())
    monkeypatch.setattr(kernels._WORKERS, "run", run)
    done: list[BaseException] = []
    t = threading.Thread(target=lambda: done.append(_raises(opt, batch, w)), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive() and isinstance(done[0], RuntimeError)
    monkeypatch.undo()
    assert np.isfinite(opt.compiled_step(batch, w, 0.1, 2)[1])


def _raises(opt: RowOptimizer, batch: dict[str, torch.Tensor], w: float) -> BaseException:
    try:
        opt.compiled_step(batch, w, 0.1, 2)
    except RuntimeError as exc:
        return exc
    raise AssertionError("expected the failing part's error")
