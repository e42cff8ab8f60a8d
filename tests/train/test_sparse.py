"""Row-wise AdamW: equals dense AdamW on touched rows, documented lazy semantics elsewhere."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import BiasedMF, DotBias, EmbeddingNN
from recfit.train import Learner
from recfit.train.execution import Execution
from recfit.train.optim import AdamW
from recfit.train.sparse import (
    SPARSE_MIN_PARAMS,
    RowAdagrad,
    RowAdamW,
    auto_batch_size,
    scaled_lr,
    supports_rows,
)


def _model(y_range: tuple[float, float] | None = (0.0, 5.5)) -> DotBias:
    return DotBias(6, 5, n_factors=3, y_range=y_range, init_std=0.3, bias_init_std=0.1, seed=1)


def _params(m: DotBias) -> list[torch.Tensor]:
    return [p.detach().clone() for p in (m.user_factors, m.user_bias, m.item_factors, m.item_bias)]


def _hyper(opt: object, step: int) -> None:
    for g in opt.param_groups:  # type: ignore[attr-defined]
        g["lr"] = 0.05 * (1 + step) / 3
        g["betas"] = (0.95 - 0.03 * step, 0.99)


@pytest.mark.parametrize("reg", [0.0, 0.3])
@pytest.mark.parametrize("y_range", [(0.0, 5.5), None])
def test_equals_dense_adamw_when_every_row_is_touched(
    reg: float, y_range: tuple[float, float] | None
) -> None:
    """Batches touching every user and item (with duplicates): identical to dense AdamW."""
    g = torch.Generator().manual_seed(0)
    dense, rows = _model(y_range), _model(y_range)
    opt_d = AdamW(list(dense.parameters()), lr=0.01, weight_decay=0.1)
    opt_r = RowAdamW(rows, lr=0.01, weight_decay=0.1)
    for step in range(4):
        u = torch.cat([torch.arange(6), torch.randint(0, 6, (7,), generator=g)])
        i = torch.cat([torch.arange(5), torch.randint(0, 5, (8,), generator=g)])
        batch = {"user": u, "item": i, "rating": torch.rand(13, generator=g) * 4 + 1}
        d_out = torch.randn(13, generator=g) / 13
        d_pen = torch.full((13,), reg / 13) if reg else None
        _hyper(opt_d, step)
        _hyper(opt_r, step)
        _, _, saved = dense.fused_forward(batch, reg > 0)
        dense.fused_backward(batch, saved, d_out, d_pen)
        opt_d.step()
        _, _, saved = rows.fused_forward(batch, reg > 0)
        opt_r.fused_step(batch, saved, d_out, d_pen)
    opt_r.flush()
    for a, b in zip(_params(dense), _params(rows), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert rows.user_factors.grad is None  # nothing dense was allocated


def _lazy_reference(
    p0: np.ndarray, grads: list[np.ndarray | None], lrs: list[float], wd: float
) -> np.ndarray:
    """One row under the documented semantics: lazy moments, decay at every step."""
    b1, b2, eps = 0.9, 0.99, 1e-5
    p, m, v = p0.astype(np.float64).copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        p *= 1 - lr * wd
        if g is None:
            continue
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p -= lr / (1 - b1**t) * m / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


def test_untouched_rows_keep_moments_and_decay_exactly() -> None:
    m = _model(None)
    start = _params(m)
    opt = RowAdamW(m, lr=0.01, weight_decay=0.2)
    lrs = [0.01, 0.03, 0.02, 0.05]
    # user 0 in steps 1 and 3 only, user 5 never; items 0 and 1 always
    plan = [[0, 1], [1, 2], [0, 2], [3, 4]]
    grads_u0: list[np.ndarray | None] = []
    for step, users in enumerate(plan):
        opt.param_groups[0]["lr"] = lrs[step]
        u = torch.tensor(users)
        batch = {"user": u, "item": torch.tensor([0, 1])}
        _, _, saved = m.fused_forward(batch, False)
        d_out = torch.tensor([0.5, -0.25])
        qi = saved[1]
        if 0 in users:  # the row's gradient: d_out * q_i (factors), d_out (bias)
            j = users.index(0)
            grads_u0.append(np.append((d_out[j] * qi[j]).numpy(), float(d_out[j])))
        else:
            grads_u0.append(None)
        opt.fused_step(batch, saved, d_out, None)
    decay = math.prod(1 - lr * 0.2 for lr in lrs)
    # before the flush, user 5 (never touched) still holds its initial weights
    torch.testing.assert_close(m.user_factors[5].detach(), start[0][5])
    opt.flush()
    torch.testing.assert_close(m.user_factors[5].detach(), start[0][5] * decay)
    torch.testing.assert_close(m.user_bias[5].detach(), start[1][5] * decay)
    assert float(opt.exp_avg[0][5].abs().sum()) == 0.0
    p0 = np.append(start[0][0].numpy(), start[1][0].numpy())
    expect = _lazy_reference(p0, grads_u0, lrs, 0.2)
    got = np.append(m.user_factors[0].detach().numpy(), m.user_bias[0].detach().numpy())
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_continues_identically() -> None:
    def run(split: bool) -> list[torch.Tensor]:
        m = _model()
        opt = RowAdamW(m, lr=0.02, weight_decay=0.1)
        g = torch.Generator().manual_seed(3)
        for step in range(4):
            if split and step == 2:
                state = opt.state_dict()
                weights = {k: v.clone() for k, v in m.state_dict().items()}
                m = _model()
                m.load_state_dict(weights)
                opt = RowAdamW(m, lr=0.5, weight_decay=0.0)
                opt.load_state_dict(state)
            batch = {
                "user": torch.randint(0, 6, (4,), generator=g),
                "item": torch.randint(0, 5, (4,), generator=g),
            }
            _, _, saved = m.fused_forward(batch, False)
            opt.fused_step(batch, saved, torch.randn(4, generator=g), None)
        opt.flush()
        return _params(m)

    for a, b in zip(run(False), run(True), strict=True):
        torch.testing.assert_close(a, b)


def _data(n_users: int, n_items: int, n: int = 600, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    return Interactions.from_arrays(
        rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(1, 6, n).astype(float)
    )


def test_default_path_is_row_wise_for_large_tables() -> None:
    """A large table trains with RowAdamW by default; the dense path would allocate .grad."""
    d = _data(40, 30)
    big = DotBias(SPARSE_MIN_PARAMS // 9 + 1, 30, n_factors=8)  # >= SPARSE_MIN_PARAMS
    assert big.n_parameters() >= SPARSE_MIN_PARAMS
    learn = Learner(big, d, bs=64, progress=False).fit(1, 1e-2)
    assert learn.sparse and isinstance(learn.opt, RowAdamW)
    assert big.user_factors.grad is None  # no dense gradient of the 250k-row table
    small = Learner(DotBias(40, 30, 8), d, bs=64, progress=False).fit(1, 1e-2)
    assert not small.sparse and isinstance(small.opt, AdamW)  # fastai's exact semantics
    forced = Learner(
        DotBias(40, 30, 8), d, bs=64, progress=False, execution=Execution(row_wise=True)
    ).fit(1, 1e-2)
    assert forced.sparse


def test_learner_full_batch_sparse_equals_dense() -> None:
    """With every row in every batch, the row-wise and dense Learners agree end to end."""
    u, i = np.meshgrid(np.arange(12), np.arange(9), indexing="ij")
    rng = np.random.default_rng(1)
    d = Interactions.from_arrays(u.ravel(), i.ravel(), rng.integers(1, 6, u.size).astype(float))
    runs = []
    for sparse in (True, False):
        m = DotBias(12, 9, 4, y_range=(0.0, 5.5), seed=0)
        learn = Learner(
            m,
            d,
            d,
            bs=len(d),
            wd=0.1,
            reg=0.05,
            execution=Execution(row_wise=sparse),
            progress=False,
        )
        learn.fit_one_cycle(3, 5e-2)
        assert learn.sparse == sparse
        runs.append(learn.evaluate(d))
    assert runs[0]["mse"] == pytest.approx(runs[1]["mse"], rel=1e-5)
    assert runs[0]["loss"] == pytest.approx(runs[1]["loss"], rel=1e-5)


def test_sparse_true_needs_a_dot_model_and_rejects_bad_values() -> None:
    d = _data(40, 30)
    with pytest.raises(ConfigError, match="DotBias-family"):
        Learner(EmbeddingNN(40, 30), d, execution=Execution(row_wise=True), progress=False).fit(1)
    with pytest.raises(ConfigError, match="row_wise"):
        Learner(DotBias(40, 30), d, execution=Execution(row_wise="yes"), progress=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="DotBias-family"):
        RowAdamW(EmbeddingNN(40, 30))  # type: ignore[arg-type]
    assert supports_rows(BiasedMF(3, 3, 2)) and not supports_rows(EmbeddingNN(3, 3))


def test_each_rule_has_its_own_default_lr_and_eps() -> None:
    groups = [opt(_model()).param_groups[0] for opt in (RowAdamW, RowAdagrad)]
    assert [(g["lr"], g["eps"]) for g in groups] == [(1e-3, 1e-5), (1e-2, 1e-10)]
    given = RowAdagrad(_model(), lr=0.5, eps=1e-3).param_groups[0]
    assert (given["lr"], given["eps"], given["betas"]) == (0.5, 1e-3, (0.9, 0.99))


def test_batch_size_rule_and_lr_scaling() -> None:
    assert auto_batch_size(100_000) == 64
    sizes = [auto_batch_size(n) for n in (200_001, 900_000, 5_000_000, 25_000_000, 10**9)]
    assert sizes == sorted(sizes) and sizes[0] == 512 and sizes[1] == 2048
    assert sizes[-1] == sizes[-2] == 16384
    assert all(s & (s - 1) == 0 for s in sizes)  # powers of two
    assert scaled_lr(1e-3, 64) == 1e-3 and scaled_lr(1e-3, 32) == 1e-3
    assert scaled_lr(1e-3, 2048) == pytest.approx(4e-3)
    assert scaled_lr(1e-3, 10**6) == pytest.approx(8e-3)
