"""Whole epochs of dense AdamW as one compiled CPU kernel (fastai's configuration).

fastai trains a dot model with dense gradients: decoupled weight decay over every row at
every step, and rows the batch did not read still move by their Adam moments. The
Learner's default AdamW does exactly that (:mod:`recfit.train.optim`); for a
DotBias-family model or an SVD++ on CPU with the MSE loss and AdamW on the dense path
(fastai's R1 configuration: DotBias 50 on ml-100k, batches of 64; ``recfit train``'s
default SVD++), one call of the kernel in :mod:`recfit.train._kernels_dense` runs a whole
epoch of those steps: forward, MSE loss, hand-written gradient, AdamW. It gives the same
weights as the step-by-step path up to float rounding (the same updates, some sums in
another order), about 5x faster than that path (R1: 0.25 against 1.2 CPU seconds).

A row no batch reads between two steps follows the gradient-free AdamW update, whose
moments are known in closed form, so the kernel brings a row up to date only when a
batch reads it, every few steps and at the epoch's end: the same number of updates as the
dense step (one division per weight and step), but on a few rows in the L1 cache instead
of every table at every step. The weights and the optimiser's moments are read from the
model and the :class:`~recfit.train.optim.AdamW` at each epoch's start and written back at
its end, so anything between two epochs (validation, callbacks, checkpoints, a later fit
on another path) sees the usual state.

An epoch runs here when the Learner resolved this path (:class:`Execution`'s
``compiled``), in one process, from its first batch, and when every callback that
handles a batch event takes the epoch's steps at once instead
(:attr:`~recfit.train.callbacks.Callback.steps_in_bulk`: the schedule recorder, a
checkpoint without ``every``); otherwise (e.g. the LR finder's recorder, a checkpoint
every N steps, a resumed epoch) that epoch runs the fused step. The kernel is
single-threaded (a step is a few microseconds of work; a hand-off between threads would
cost as much).
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any

import numpy as np
import torch

from recfit.errors import ConfigError
from recfit.models.base import RatingModel
from recfit.models.dot import DotBias
from recfit.models.losses import Loss, MSELoss
from recfit.models.svdpp import SVDpp
from recfit.train import kernels
from recfit.train.optim import AdamW
from recfit.train.sparse import supports_rows

__all__ = [
    "BATCH_EVENTS",
    "DenseEpochs",
    "ensure_compiled",
    "fit_epoch",
    "hyper_arrays",
    "supports",
]

BATCH_EVENTS = (
    "before_batch", "after_pred", "after_loss", "before_backward", "after_backward",
    "after_step", "after_batch",
)  # fmt: skip
"""Events of each batch: a callback that handles one makes its epochs run step by step."""
LANES = 16
"""Rows are padded to a multiple of this many float32 (one 512-bit vector)."""


_DOT_TABLES = {"user_factors", "item_factors", "user_bias", "item_bias"}


def supports(model: RatingModel, loss: Loss, device: torch.device, bf16: bool = False) -> bool:
    """Whether the dense epochs' kernel can train ``model``: a DotBias-family model (its
    output reads only the user's and item's rows) with exactly the four tables of
    :class:`~recfit.models.DotBias`, or an :class:`~recfit.models.SVDpp` (whose
    ``fused_kernel`` is on), on CPU, float32, with the MSE loss, numba present.

    Example:
        >>> from recfit.models import DotBias, EmbeddingNN
        >>> cpu = torch.device("cpu")
        >>> supports(DotBias(3, 4, 2), MSELoss(), cpu), supports(EmbeddingNN(3, 4), MSELoss(), cpu)
        (True, False)
    """
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    if type(model) is SVDpp:
        fits = model.fused_kernel and names == _DOT_TABLES | {"implicit_factors"}
    else:
        fits = supports_rows(model) and names == _DOT_TABLES
    return (
        fits
        and device.type == "cpu"
        and not bf16
        and type(loss) is MSELoss
        and all(p.dtype == torch.float32 for p in model.parameters())
        and kernels.available()
    )


@cache
def _kernel() -> Any:
    from recfit.train import _kernels_dense

    return _kernels_dense


_STATE = ("p", "m", "x", "last", "a", "sb")
"""A side's arrays, in the kernels' order."""


class DenseEpochs:
    """The padded tables, moments and scratch arrays of one model and its AdamW.

    Each side (users, items, and SVD++'s ``y``) holds ``p``, ``m``, ``x``, ``last``, ``a``,
    ``sb`` as the kernel module describes: ``(rows, kp)`` float32 tables with the factors,
    then the bias in column ``n_factors`` (zero for ``y``), then zeros up to ``kp`` (a
    multiple of :data:`LANES`).
    """

    def __init__(self, model: Any, opt: AdamW) -> None:
        self.model, self.opt = model, opt
        self.k = int(model.n_factors)
        self.kp = -(-(self.k + 1) // LANES) * LANES
        self.svdpp = type(model) is SVDpp
        where = {id(p): j for j, p in enumerate(opt.params)}
        pairs: list[tuple[Any, Any]] = [
            (model.user_factors, model.user_bias),
            (model.item_factors, model.item_bias),
            (model.implicit_factors if self.svdpp else None, None),  # DotBias: an empty y
        ]
        self.sides: list[dict[str, Any]] = []
        for fac, bias in pairs:
            n = 1 if fac is None else fac.shape[0]
            side: dict[str, Any] = {k: np.zeros((n, self.kp), np.float32) for k in "pmx"}
            side.update(
                params=(fac, bias),
                slots=tuple(None if t is None else where[id(t)] for t in (fac, bias)),
                last=np.full(n, -1, np.int64), a=np.ones(n), sb=np.ones(n),
                slot=np.full(n, -1, np.int64), uniq=np.zeros(n, np.int64),
            )  # fmt: skip
            self.sides.append(side)
        self.rows = np.arange(max(s["p"].shape[0] for s in self.sides), dtype=np.int64)
        self.no_lists = (np.zeros(1, np.int64), np.zeros(0, np.int64), 1.0)
        """A DotBias's implicit lists: none (the kernel does not read them)."""
        self.cap = 0
        self._scratch(1)

    def _scratch(self, n: int) -> None:
        if n > self.cap:
            self.cap = n
            self.grads = [np.zeros((n, self.kp), np.float32) for _ in range(2)]
            self.grads.append(np.zeros((self.sides[2]["p"].shape[0], self.kp), np.float32))
            self.extra = [np.zeros((n, self.kp), np.float32) for _ in range(3)]
            self.scale_u = np.zeros(n, np.float32)

    def _tensors(self, side: dict[str, Any]) -> list[tuple[str, Any, Any]]:
        """``(key, factor tensor, bias tensor or None)`` of the weights and moments."""
        (fac, bias), (jf, jb) = side["params"], side["slots"]
        opt = self.opt
        if fac is None:
            return []
        return [
            ("p", fac, bias),
            ("m", opt.exp_avg[jf], None if jb is None else opt.exp_avg[jb]),
            ("x", opt.exp_avg_sq[jf], None if jb is None else opt.exp_avg_sq[jb]),
        ]

    def steps_done(self) -> int | None:
        """The AdamW step count of every table (``None`` when they differ)."""
        counts = {float(self.opt.steps[j]) for s in self.sides for j in s["slots"] if j is not None}
        return int(counts.pop()) if len(counts) == 1 else None

    def load(self) -> None:
        """Copy the weights and moments in (every row current before step 0)."""
        k = self.k
        for s in self.sides:
            for key, f, b in self._tensors(s):
                s[key][:, :k] = f.detach().numpy()
                if b is not None:
                    s[key][:, k] = b.detach().numpy()
            np.sqrt(s["x"], out=s["x"])
            s["last"].fill(-1)
            s["a"].fill(1.0)
            s["sb"].fill(1.0)

    def store(self) -> None:
        """Copy the weights and moments back (every row current)."""
        k = self.k
        with torch.no_grad():
            for s in self.sides:
                x = s["x"] * s["sb"].astype(np.float32)[:, None]
                now = {"p": s["p"], "m": s["m"] * s["a"].astype(np.float32)[:, None], "x": x * x}
                for key, f, b in self._tensors(s):
                    f.copy_(torch.from_numpy(now[key][:, :k]))
                    if b is not None:
                        b.copy_(torch.from_numpy(np.ascontiguousarray(now[key][:, k])))

    def run(
        self, cols: dict[str, np.ndarray], starts: np.ndarray, hyper: dict[str, Any],
        model: tuple[float, float, float, bool], reg: float,
    ) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
        """The steps of one epoch (batch ``b``: rows ``starts[b]:starts[b+1]`` of ``cols``,
        hyper-parameters ``hyper[...][b]``) from the loaded state; returns each step's
        mean loss and penalty and the steps done (fewer when a loss was not finite), then
        stores the weights and moments."""
        kern = _kernel()
        nb = starts.shape[0] - 1
        self._scratch(int(np.diff(starts).max(initial=1)))
        losses, pens = np.zeros(nb), np.zeros(nb)
        mu, lo, span, squash = model
        h = (
            hyper["keep"], hyper["beta1"], hyper["ss"], hyper["ibc2"], float(hyper["eps"]),
        )  # fmt: skip
        spec = (self.k, float(mu), float(lo), float(span), bool(squash), float(reg))
        tail = (*h, float(hyper["beta2"]), losses, pens)
        batch = (cols["user"], cols["item"], cols["rating"], cols["weight"], starts)
        state = [a for s in self.sides for a in (s[key] for key in _STATE)]
        slots = [s["slot"] for s in self.sides] + [s["uniq"] for s in self.sides]
        done = 0
        m = self.model
        if self.svdpp:
            lists = (m.implicit_indptr.numpy(), m.implicit_items.numpy(), float(m.alpha))
        else:
            lists = self.no_lists
        try:
            done = kern.epoch(
                *batch, self.svdpp, *lists, *state, *spec, *tail, *self.grads, *slots,
                *self.extra, self.scale_u, self.rows,
            )  # fmt: skip
        finally:
            sqb2 = math.sqrt(float(hyper["beta2"]))
            for s in self.sides:
                kern.catch_up(
                    *(s[key] for key in _STATE), self.rows, s["p"].shape[0], done - 1, *h, sqb2
                )  # fmt: skip
            self.store()
        return losses, pens, int(done)


def hyper_arrays(
    lr: np.ndarray, beta1: np.ndarray, wd: float, beta2: float, eps: float, step0: int
) -> dict[str, Any]:
    """Per-step constants of AdamW (PyTorch's formulas) for steps ``step0 + 1 ...``.

    Example:
        >>> h = hyper_arrays(np.array([0.1]), np.array([0.9]), 0.5, 0.99, 1e-5, 0)
        >>> float(h["keep"][0]), round(float(h["ss"][0]), 6)
        (0.949999988079071, 1.0)
    """
    t = np.arange(step0 + 1, step0 + 1 + lr.shape[0], dtype=np.float64)
    return {
        "keep": (1.0 - lr * wd).astype(np.float32),
        "beta1": beta1.astype(np.float64),
        "ss": lr / (1.0 - beta1**t),
        "ibc2": 1.0 / np.sqrt(1.0 - beta2**t),
        "beta2": beta2,
        "eps": eps,
    }


def ensure_compiled() -> float:
    """Compile (or load from the cache) the kernel on a one-row model; returns the seconds.
    Call it before a fit's timer starts (compiling is not training)."""
    t0 = time.perf_counter()
    model = DotBias(1, 1, 1, y_range=(0.0, 1.0))
    opt = AdamW(list(model.parameters()), weight_decay=0.0)
    runner = DenseEpochs(model, opt)
    runner.load()
    cols: dict[str, np.ndarray] = {
        "user": np.zeros(1, np.int64), "item": np.zeros(1, np.int64),
        "rating": np.zeros(1, np.float32), "weight": np.ones(1, np.float32),
    }  # fmt: skip
    hyper = hyper_arrays(np.zeros(1), np.full(1, 0.9), 0.0, 0.99, 1e-5, 0)
    runner.run(cols, np.array([0, 1], np.int64), hyper, (0.0, 0.0, 1.0, True), 0.0)
    return time.perf_counter() - t0


def fit_epoch(
    runner: DenseEpochs, cols: dict[str, np.ndarray], starts: np.ndarray, lr: np.ndarray,
    beta1: np.ndarray, wd: float, reg: float,
) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """One epoch of ``runner``'s model at learning rates ``lr`` and Adam's ``beta1`` per
    step (batch ``b``: rows ``starts[b]:starts[b+1]`` of ``cols``); the AdamW is left as
    its step-by-step use would leave it (step counts, hyper-parameters of the last step).
    Returns each step's mean loss and penalty and the number of steps done."""
    opt, model = runner.opt, runner.model
    g = opt.param_groups[0]
    step0 = runner.steps_done()
    if step0 is None:
        raise ConfigError(
            f"expected one AdamW step count for every table, received "
            f"{[float(s) for s in opt.steps]}"
        )
    beta2, eps = float(g["betas"][1]), float(g["eps"])
    hyper = hyper_arrays(lr, beta1, wd, beta2, eps, step0)
    y = model.y_range
    spec = (model.global_mean, 0.0 if y is None else y[0],
            1.0 if y is None else y[1] - y[0], y is not None)  # fmt: skip
    runner.load()
    losses, pens, done = runner.run(cols, starts, hyper, spec, reg)
    for t in opt.steps:
        t.fill_(float(step0 + done))
    opt.step_count += done
    last = max(0, done - 1)
    g.update(lr=float(lr[last]), weight_decay=wd, betas=(float(beta1[last]), beta2))
    return losses, pens, done
