"""The lean AdamW equals PyTorch's AdamW (fused and fallback)."""

from __future__ import annotations

import torch

from recfit.train.optim import AdamW


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
