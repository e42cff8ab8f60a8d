"""Compiling every kernel some families' fits use ahead of them (``compile_families``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch

from recfit.errors import ConfigError
from recfit.models import SVDpp
from recfit.models.registry import KERNEL_SETS, families, family
from recfit.train import kernels, precompile
from recfit.train.execution import resolve_device

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def test_every_kernel_set_has_its_warmer_and_the_families_name_theirs() -> None:
    assert set(precompile.WARMERS) == {*KERNEL_SETS, "shuffle"}
    named = {f.name: f.kernels for f in families() if f.kernels}
    assert named == {
        "svdpp": ("dense_epoch",),
        "dot": ("dense_epoch", "row_step"),
        "mf": ("dense_epoch", "row_step"),
    }
    own = {f.name for f in families() if f.warm_up is not None}
    assert own == {"svdpp", "timesvdpp", "bmf"}


def test_kernel_sets_once_each_and_the_shuffle_for_a_large_learner_fit() -> None:
    assert precompile.kernel_sets(["baseline", "autorec"]) == []
    assert precompile.kernel_sets(["svdpp", "dot", "mf"]) == [
        "svdpp", "dense_epoch", "row_step",
    ]  # fmt: skip
    big = 1 << 20
    assert precompile.kernel_sets(["nn", "bmf"], rows=big) == ["shuffle", "bmf"]
    assert precompile.kernel_sets(["nn", "bmf"], rows=big - 1) == ["bmf"]
    assert precompile.kernel_sets(["baseline"], rows=big) == []  # closed form: no Learner
    with pytest.raises(ConfigError, match="expected a model name"):
        precompile.kernel_sets(["no-such-family"])


def test_the_trainer_and_the_device_skip_what_their_fits_do_not_run() -> None:
    big = 1 << 20
    names = ["svdpp", "dot", "mf", "timesvdpp", "bmf", "nn"]
    assert precompile.kernel_sets(names, big, device="cpu", trainer="sgd") == [
        "svdpp", "dense_epoch", "shuffle", "row_step", "timesvdpp", "bmf",
    ]  # fmt: skip
    # ALS fits dot and mf without the Learner; the others keep their default trainer
    assert precompile.kernel_sets(["dot", "mf", "bmf"], big, trainer="als") == ["bmf"]
    assert precompile.kernel_sets(["svdpp", "nn"], big, trainer="als") == [
        "svdpp", "dense_epoch", "shuffle",
    ]  # fmt: skip
    # on CUDA: SVD++'s warm-up is asked (it skips its CPU step), the shuffle's permutation
    # runs on the CPU, and timeSVD++ / BMF fit on the CPU anyway
    cuda = torch.device("cuda")
    assert precompile.kernel_sets(names, big, device=cuda, trainer="sgd") == [
        "svdpp", "shuffle", "timesvdpp", "bmf",
    ]  # fmt: skip
    auto = precompile.kernel_sets(names, big, device="auto", trainer="sgd")
    assert auto == precompile.kernel_sets(names, big, device=resolve_device("auto"))
    with pytest.raises(ConfigError, match="expected a device"):
        precompile.kernel_sets(names, device="warp")


def test_each_set_is_warmed_once_per_call_and_the_seconds_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, Any, Any]] = []

    def fake(set_name: str) -> Callable[..., None]:
        return lambda *args: calls.append((set_name, *args, None)[:3])

    for name in precompile.WARMERS:
        monkeypatch.setitem(precompile.WARMERS, name, fake(name))
    own = fake("svdpp's own")
    cpu = torch.device("cpu")
    svdpp = replace(family("svdpp"), warm_up=own)
    twin = replace(svdpp, name="svdpp_twin")  # the same warm-up: run once
    other = replace(svdpp, name="svdpp_other", warm_up=fake("other"))
    seconds = precompile.compile_families([svdpp, "dot", family("mf"), "baseline", twin, other])
    assert seconds >= 0.0
    assert calls == [
        ("svdpp's own", "sgd", cpu), ("dense_epoch", cpu, None), ("row_step", cpu, None),
        ("other", "sgd", cpu),
    ]  # fmt: skip
    calls.clear()
    assert precompile.compile_families(["baseline", "nn"]) == 0.0 and calls == []
    cuda = torch.device("cuda")
    precompile.compile_families([svdpp, "nn"], rows=1 << 20, device="cuda", trainer="als")
    assert calls == [("svdpp's own", "sgd", cuda), ("shuffle", cuda, None)]


def test_off_the_cpu_the_shuffle_warms_only_the_permutation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(kernels, "ensure_compiled", lambda **kw: seen.append(kw) or 0.0)
    precompile.WARMERS["shuffle"](torch.device("cuda"))
    precompile.WARMERS["shuffle"](torch.device("cpu"))
    assert [kw["shuffle"] for kw in seen] == [True, True]
    assert seen[0]["columns"] is None and sorted(seen[1]["columns"]) == ["f", "i"]


def test_svdpps_warm_up_compiles_nothing_off_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(SVDpp, "compile_kernels", lambda self: ran.append("step") or 0.0)
    warm = family("svdpp").warm_up
    assert warm is not None
    warm("sgd", torch.device("cuda"))
    assert ran == []
    warm("sgd", torch.device("cpu"))
    assert ran == ["step"]


def test_compile_families_makes_the_kernels_ready() -> None:
    """Afterwards each family's kernels hold a compiled specialisation (compiled here,
    or loaded from numba's cache), and PyTorch's random state is as it was."""
    from recfit.models import _kernels_bmf, _kernels_svdpp, _kernels_timesvdpp
    from recfit.train import _kernels_dense, _kernels_numba

    before = torch.random.get_rng_state()
    assert precompile.compile_families(["svdpp", "dot", "timesvdpp", "bmf"]) >= 0.0
    assert torch.equal(torch.random.get_rng_state(), before)
    ready: list[Any] = [
        _kernels_svdpp.forward, _kernels_svdpp.backward, _kernels_dense.epoch,
        _kernels_numba.step_part, _kernels_timesvdpp.epoch, _kernels_timesvdpp.implicit_sum,
        _kernels_bmf.sample_rows, _kernels_bmf.squared_error,
    ]  # fmt: skip
    assert [k.__name__ for k in ready if not k.signatures] == []


# tiny fits of every family with kernels in a fresh process, with or without the warm-up
# first; prints a digest of each model's weights and the kernels' signatures added by the
# fits (none after the warm-up: the fits use exactly what it compiled)
FITS = """
import hashlib, json, sys
import numpy as np
from recfit.config import RatingConfig
from recfit.data.synthetic import synthetic
from recfit.tasks import blend
from recfit.tasks.common import get_task
from recfit.train import precompile

def signatures():
    out = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("recfit.") and "._kernels_" in name:
            for a, v in vars(mod).items():
                if hasattr(v, "py_func") and isinstance(getattr(v, "signatures", None), list):
                    out[name + "." + a] = len(v.signatures)
    return out

specs = [
    {"model": "svdpp", "epochs": 2, "n_factors": 8},
    {"model": "dot", "epochs": 2, "n_factors": 8},
    {"model": "mf", "epochs": 1, "n_factors": 200},  # the row-wise step
    {"model": "timesvdpp", "epochs": 2, "n_factors": 8},
    {"model": "bmf", "n_factors": 4, "gibbs_samples": 4, "gibbs_burn_in": 1},
]
warm = WARM
if warm:
    precompile.compile_families([s["model"] for s in specs])
before = signatures()
data = synthetic(2000, 700, 600, seed=0)
sp = get_task("rating").load_split(RatingConfig(seed=0), data)
out = {}
for spec in specs:
    learner = blend.train_on(RatingConfig(seed=0, **spec), sp, [])
    h = hashlib.sha256()
    for k, v in sorted(learner.model.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    out[spec["model"]] = h.hexdigest()
after = signatures()
added = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
rows = after.get("recfit.train._kernels_numba.step_part", 0)
print(json.dumps({"weights": out, "added": added, "row_step": rows}))
"""


def test_weights_are_the_same_with_and_without_the_warm_up(
    run_fresh: Callable[[str, dict[str, str]], Any],
) -> None:
    env = {k: os.environ[k] for k in ("RECFIT_CACHE_DIR", "NUMBA_CACHE_DIR") if k in os.environ}
    cold = run_fresh(FITS.replace("WARM", "False"), env)
    warm = run_fresh(FITS.replace("WARM", "True"), env)
    assert warm["weights"] == cold["weights"]
    assert cold["row_step"] == 1  # mf ran the row-wise step
    assert cold["added"]  # the fits alone compile (or load) their kernels
    assert warm["added"] == {}  # after the warm-up they find them all ready
