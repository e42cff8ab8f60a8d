"""SVD++'s compiled fused step against its PyTorch step (the reference)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recfit
from recfit.data import Interactions
from recfit.models import SVDpp
from recfit.models.svdpp import _KernelSaved
from recfit.train import Learner

pytest.importorskip("numba")

TABLES = ("user_factors", "item_factors", "user_bias", "item_bias", "implicit_factors")


def _model(n_users: int, n_items: int, k: int, seed: int, **kw: object) -> SVDpp:
    m = SVDpp(
        n_users, n_items, k, seed=seed, init_std=0.3, bias_init_std=0.2,
        implicit_init_std=0.3, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    n = 3 * n_users
    m.set_implicit(torch.randint(0, n_users, (n,), generator=g),
                   torch.randint(0, n_items, (n,), generator=g))  # fmt: skip
    return m


def _step(
    m: SVDpp, batch: dict[str, torch.Tensor], d_out: torch.Tensor, d_pen: torch.Tensor | None,
    kernel: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor], object]:  # fmt: skip
    m.fused_kernel = kernel
    out, pen, saved = m.fused_forward(batch, d_pen is not None)
    m.fused_backward(batch, saved, d_out, d_pen)
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}  # type: ignore[union-attr]
    return out.clone(), None if pen is None else pen.clone(), grads, saved


@settings(max_examples=40, deadline=None)
@given(
    n_users=st.integers(1, 12),
    n_items=st.integers(1, 15),
    k=st.integers(1, 9),
    n=st.integers(1, 60),
    y_range=st.sampled_from([None, (0.0, 5.5), (-1.0, 2.0)]),
    mean=st.sampled_from([0.0, 3.2]),
    alpha=st.sampled_from([0.0, 0.5, 1.0]),
    with_pen=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernel_step_equals_the_pytorch_step(
    n_users: int, n_items: int, k: int, n: int, y_range: tuple[float, float] | None,
    mean: float, alpha: float, with_pen: bool, seed: int,
) -> None:  # fmt: skip
    m = _model(n_users, n_items, k, seed, y_range=y_range, global_mean=mean, alpha=alpha)
    g = torch.Generator().manual_seed(seed + 1)
    batch = {  # small tables: many repeated users and items
        "user": torch.randint(0, n_users, (n,), generator=g),
        "item": torch.randint(0, n_items, (n,), generator=g),
    }
    d_out = torch.randn(n, generator=g)
    d_pen = torch.rand(n, generator=g) if with_pen else None
    ref = _step(m, batch, d_out, d_pen, kernel=False)
    ker = _step(m, batch, d_out, d_pen, kernel=True)
    assert isinstance(ker[3], _KernelSaved) and not isinstance(ref[3], _KernelSaved)
    torch.testing.assert_close(ker[0], ref[0], rtol=1e-5, atol=1e-6)
    if with_pen:
        torch.testing.assert_close(ker[1], ref[1], rtol=1e-5, atol=1e-6)
    else:
        assert ker[1] is None and ref[1] is None
    for name in TABLES:
        torch.testing.assert_close(ker[2][name], ref[2][name], rtol=1e-5, atol=1e-6)


def test_kernel_step_is_deterministic_and_overwrites_old_gradients() -> None:
    m = _model(20, 30, 8, 3, y_range=(0.0, 5.5))
    g = torch.Generator().manual_seed(0)
    batch = {"user": torch.randint(0, 20, (64,), generator=g),
             "item": torch.randint(0, 30, (64,), generator=g)}  # fmt: skip
    d_out, d_pen = torch.randn(64, generator=g), torch.rand(64, generator=g)
    for p in m.parameters():
        p.grad = torch.full_like(p, 7.0)  # stale: the step starts from zero
    first = _step(m, batch, d_out, d_pen, kernel=True)[2]
    second = _step(m, batch, d_out, d_pen, kernel=True)[2]
    ref = _step(m, batch, d_out, d_pen, kernel=False)[2]
    for name in TABLES:
        assert torch.equal(first[name], second[name])
        torch.testing.assert_close(first[name], ref[name], rtol=1e-5, atol=1e-6)


def test_kernel_zeroes_only_the_last_rows_unless_the_gradients_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Steps in a row zero only the rows the last one wrote; a gradient changed in place
    by PyTorch in between (or a new one) is zeroed whole."""
    from recfit.models import _kernels_svdpp

    whole: list[bool] = []
    backward = _kernels_svdpp.backward

    def spy(*args: object) -> None:
        whole.append(args[-2] is None)
        backward(*args)

    monkeypatch.setattr(_kernels_svdpp, "backward", spy)
    ker_m = _model(20, 30, 8, 5, y_range=(0.0, 5.5))
    ref_m = _model(20, 30, 8, 5, y_range=(0.0, 5.5))
    g = torch.Generator().manual_seed(2)
    for k in range(5):
        batch = {"user": torch.randint(0, 20, (16,), generator=g),
                 "item": torch.randint(0, 30, (16,), generator=g)}  # fmt: skip
        d_out, d_pen = torch.randn(16, generator=g), torch.rand(16, generator=g)
        for m in (ker_m, ref_m):
            if k == 2:
                m.user_factors.grad[19] += 5.0  # type: ignore[index]
                m.item_bias.grad.add_(1.0)  # type: ignore[union-attr]
            if k == 3:
                m.item_factors.grad = torch.full_like(m.item_factors, 3.0)
        ker = _step(ker_m, batch, d_out, d_pen, kernel=True)[2]
        ref = _step(ref_m, batch, d_out, d_pen, kernel=False)[2]
        for name in TABLES:
            torch.testing.assert_close(ker[name], ref[name], rtol=1e-5, atol=1e-6)
    assert whole == [True, False, True, True, False]


def test_kernel_runs_without_lists_and_falls_back_off_float32() -> None:
    fresh = SVDpp(4, 5, 3, seed=0, y_range=(0.0, 5.5))  # no N(u) yet
    batch = {"user": torch.tensor([0, 3, 3]), "item": torch.tensor([4, 0, 4])}
    out, _, saved = fresh.fused_forward(batch, False)
    assert isinstance(saved, _KernelSaved)
    torch.testing.assert_close(out, fresh(batch).detach())
    double = _model(4, 5, 3, 0).double()
    _, _, saved = double.fused_forward(batch, True)
    assert not isinstance(saved, _KernelSaved)  # the PyTorch step
    assert double.compile_kernels() == 0.0


def test_compile_kernels_leaves_the_gradients() -> None:
    m = _model(5, 6, 4, 1)
    assert m.compile_kernels() >= 0.0
    assert all(p.grad is None for p in m.parameters())
    m.user_factors.grad = torch.ones_like(m.user_factors)
    m.compile_kernels()
    assert torch.equal(m.user_factors.grad, torch.ones_like(m.user_factors))


def _fit(tiny: Interactions, kernel: bool) -> Learner:
    SVDpp.fused_kernel = kernel
    try:
        m = SVDpp(tiny.n_users, tiny.n_items, 6, y_range=(0.0, 5.5), seed=0)
        keep = tiny.weights() > 0
        m.set_implicit(torch.from_numpy(np.asarray(tiny.user)[keep]),
                       torch.from_numpy(np.asarray(tiny.item)[keep]))  # fmt: skip
        learn = Learner(m, tiny, tiny, bs=16, wd=0.05, reg=0.05, seed=0, progress=False)
        learn.fit_one_cycle(2, 5e-3)
    finally:
        SVDpp.fused_kernel = True
    return learn


def test_learner_fit_with_the_kernel_matches_the_pytorch_step(tiny: Interactions) -> None:
    ref, ker = _fit(tiny, False), _fit(tiny, True)
    assert ker.fused and not ker.sparse
    for a, b in zip(ref.history, ker.history, strict=True):
        assert a["mse"] == pytest.approx(b["mse"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    for (name, a), b in zip(ref.model.named_parameters(), ker.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)


FIT = """
import json
import numpy as np
import torch
from recfit.data import Interactions
from recfit.models import SVDpp
from recfit.train import Callback, Learner

class Seen(Callback):
    def before_fit(self):
        from recfit.models import _kernels_svdpp as k
        self.ready = bool(k.forward.signatures) and bool(k.backward.signatures)

rng = np.random.default_rng(0)
d = Interactions.from_arrays(rng.integers(0, 30, 300), rng.integers(0, 20, 300),
                             rng.integers(1, 6, 300).astype(float))
m = SVDpp(30, 20, 4, y_range=(0.0, 5.5))
m.set_implicit(torch.from_numpy(np.asarray(d.user)), torch.from_numpy(np.asarray(d.item)))
seen = Seen()
learn = Learner(m, d, bs=64, reg=0.05, progress=False, callbacks=[seen])
learn.fit_one_cycle(1, 0.02)
from recfit.models import _kernels_svdpp as k
print(json.dumps({"compile": learn.compile_seconds, "ready": seen.ready, "cache": k.CACHE}))
"""


def test_kernels_compile_into_the_cache_folder_before_the_fit(
    tmp_path: Path, run_fresh: Callable[[str, dict[str, str]], Any]
) -> None:
    """A fresh cache: the kernels compile into ``$RECFIT_CACHE_DIR/numba`` (nothing under
    the package) before the fit's timer, as ``compile_seconds``."""
    package = Path(recfit.__file__).parent
    before = sorted(package.rglob("*.nb[ic]"))
    out = run_fresh(FIT, {"RECFIT_CACHE_DIR": str(tmp_path)})
    assert out["cache"] is True and out["ready"] is True and out["compile"] > 0.0
    assert any("svdpp" in p.name for p in (tmp_path / "numba").rglob("*.nbi"))
    assert sorted(package.rglob("*.nb[ic]")) == before
