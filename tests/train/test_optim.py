"""The lean AdamW equals PyTorch's AdamW (fused and fallback)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.models import DotBias
from recfit.train import optim
from recfit.train.learner import Learner
from recfit.train.optim import AdamW

_FUSED = getattr(torch, "_fused_adamw_", None)


def test_matches_torch_adamw_with_changing_hypers() -> None:
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(20, 5, generator=g), torch.randn(20, generator=g)]
    grads = [[torch.randn(t.shape, generator=g) for t in init] for _ in range(6)]
    results = []
    for kind in ("torch", "fused", "plain"):
        ps = [torch.nn.Parameter(t.clone()) for t in init]
        opt: object
        if kind == "torch":
            opt = torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.1)
        else:
            opt = AdamW(ps, lr=1e-2, weight_decay=0.1, fused=kind == "fused")
            assert opt.fused == (kind == "fused")
        for step, gs in enumerate(grads):
            for p, gr in zip(ps, gs, strict=True):
                p.grad = gr.clone()
            for group in opt.param_groups:  # type: ignore[attr-defined]
                group["lr"] = 1e-2 * (step + 1)
                group["betas"] = (0.95 - 0.02 * step, 0.99)
            opt.step()  # type: ignore[attr-defined]
        results.append([p.detach() for p in ps])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_and_missing_grads() -> None:
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = AdamW([p, q], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert q.tolist() == [1.0, 1.0]  # no grad: untouched
    state = opt.state_dict()
    p.grad = torch.ones(3)
    opt.step()
    opt.load_state_dict(state)
    assert opt.step_count == 1 and opt.exp_avg[0].tolist() == state["exp_avg"][0].tolist()
    opt.zero_grad()
    assert p.grad is None


def _run(opt_factory: Any, n_steps: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    init = [torch.randn(30, 4, generator=g), torch.randn(30, generator=g)]
    grads = [[torch.randn(t.shape, generator=g) for t in init] for _ in range(n_steps)]
    ps = [torch.nn.Parameter(t.clone()) for t in init]
    opt = opt_factory(ps)
    for gs in grads:
        for p, gr in zip(ps, gs, strict=True):
            p.grad = gr.clone()
        opt.step()
    return [p.detach() for p in ps]


def _torch_adamw(ps: list[torch.nn.Parameter], **kw: Any) -> torch.optim.AdamW:
    return torch.optim.AdamW(ps, lr=0.05, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.2, **kw)


def test_without_the_private_kernel_the_plain_path_equals_torch_adamw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PyTorch without ``torch._fused_adamw_``: the plain path runs and gives
    ``torch.optim.AdamW``'s numbers (decoupled weight decay, bias correction)."""
    monkeypatch.setattr(optim, "_FUSED_OP", None)
    opts: list[AdamW] = []

    def make(ps: list[torch.nn.Parameter]) -> AdamW:
        opts.append(AdamW(ps, lr=0.05, weight_decay=0.2))
        return opts[-1]

    ours = _run(make)
    assert opts[0].fused is False
    for a, b in zip(ours, _run(_torch_adamw), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_kernel_that_fails_or_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed private kernel (another signature, other numbers) fails the self-test."""

    def wrong_signature(*args: Any, **kwargs: Any) -> None:
        raise TypeError("unexpected keyword argument 'lr'")

    def no_weight_decay(*args: Any, **kwargs: Any) -> None:
        assert _FUSED is not None
        _FUSED(*args, **{**kwargs, "weight_decay": 0.0})

    for op in (wrong_signature, no_weight_decay):
        monkeypatch.setattr(optim, "_FUSED_OP", op)
        p = torch.nn.Parameter(torch.ones(3))
        assert not optim.can_fuse([p])
        assert AdamW([p], fused=True).fused is False
        ours = _run(lambda ps: AdamW(ps, lr=0.05, weight_decay=0.2))
        for a, b in zip(ours, _run(_torch_adamw), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(_FUSED is None, reason="this PyTorch has no fused AdamW kernel")
def test_the_fused_path_equals_torch_fused_adamw_exactly() -> None:
    """Where the kernel exists it passes the self-test and gives bit for bit the numbers
    of ``torch.optim.AdamW(fused=True)`` (the same kernel through the public API)."""
    assert optim.can_fuse([torch.zeros(2)])
    ours = _run(lambda ps: AdamW(ps, lr=0.05, weight_decay=0.2))
    for a, b in zip(ours, _run(lambda ps: _torch_adamw(ps, fused=True)), strict=True):
        assert torch.equal(a, b)


def test_a_learner_without_the_private_kernel_trains_on_the_plain_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fallback, forced, through the Learner's default optimiser: same history as
    the fused kernel up to float rounding (any PyTorch without a working kernel)."""
    rng = np.random.default_rng(0)
    d = Interactions.from_arrays(
        rng.integers(0, 30, 800), rng.integers(0, 40, 800), rng.integers(1, 6, 800).astype(float)
    )

    def fit() -> Learner:
        learn = Learner(DotBias(30, 40, 8, y_range=(0.0, 5.5)), d, d, bs=64, wd=0.1,
                        progress=False)  # fmt: skip
        return learn.fit_one_cycle(2, 5e-3)

    fused = fit()
    monkeypatch.setattr(optim, "_FUSED_OP", None)
    plain = fit()
    assert isinstance(plain.opt, AdamW) and plain.opt.fused is False
    assert isinstance(fused.opt, AdamW) and fused.opt.fused is (_FUSED is not None)
    for a, b in zip(plain.history, fused.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["mse"] == pytest.approx(b["mse"], rel=1e-5)
