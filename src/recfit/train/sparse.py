"""Row-wise (lazy) AdamW for the dot models, fused with their hand-written gradient.

The dense optimiser (:class:`recfit.train.optim.AdamW`) touches every row of every
table at every step: with ml-25m's 162,541 users and 59,047 items a step costs the same
whether the batch holds 64 or 65,536 ratings. :class:`RowAdamW` updates only the rows
the batch looked up, so a step costs O(batch × n_factors) whatever the size of the
tables:

1. the gradient of each looked-up row (factors and bias together, ``n_factors + 1``
   columns) is computed by hand as in :meth:`recfit.models.DotBias.fused_backward`, and
   rows that occur several times in the batch are summed (``unique`` + ``index_add_``);
2. the parameter rows and their Adam moments are gathered, updated by PyTorch's fused
   AdamW kernel, and scattered back.

Semantics (documented, tested in ``tests/train/test_sparse.py``):

* **Lazy moments.** A row's first and second moments change only on steps that touch
  it (as in ``torch.optim.SparseAdam`` and TensorFlow's LazyAdam); bias corrections use
  the global step count. Dense AdamW would keep moving an untouched row along its
  decaying momentum; the lazy update does not. On a row touched at every step the two
  are identical.
* **Exact decoupled weight decay.** Every row decays by ``Π_t (1 - lr_t·wd)`` over every
  step, touched or not, exactly as in dense AdamW: the product since a row's last
  update is applied the next time the row is touched, and to every row at
  :meth:`RowAdamW.flush` (the Learner flushes before each validation and at the end of
  every fit, so the weights a user sees are always the exact ones).

Batch size and learning rate for large data
-------------------------------------------
:func:`auto_batch_size` picks a batch size from the number of training ratings
(``64`` up to 200,000 ratings, the fastai configuration; then about ``n / 500``
rounded to the nearest power of two, between 256 and 16,384: about 500 steps per
epoch) and :func:`scaled_lr` scales the learning rate by ``(bs / 64) ** 0.4`` (capped
at 8×) when the batch is larger than 64.

Example:
    >>> import torch
    >>> from recfit.models import DotBias
    >>> m = DotBias(4, 3, n_factors=2, y_range=None, bias_init_std=0.0)
    >>> opt = RowAdamW(m, lr=0.1, weight_decay=0.0)
    >>> batch = {"user": torch.tensor([0, 0]), "item": torch.tensor([1, 2])}
    >>> out, _, saved = m.fused_forward(batch, with_penalty=False)
    >>> before = m.user_bias.detach().clone()
    >>> opt.fused_step(batch, saved, torch.tensor([1.0, 1.0]), None)
    >>> [round(x, 4) for x in (m.user_bias - before).tolist()]
    [-0.1, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recfit._row_path import SPARSE_MIN_PARAMS
from recfit.errors import ConfigError
from recfit.models.base import unique_index
from recfit.models.dot import DotBias
from recfit.models.registry import find_family
from recfit.train import kernels
from recfit.train.optim import adamw_, can_fuse, load_state, save_state

__all__ = [
    "AUTO_BS_MAX",
    "AUTO_BS_MIN_ROWS",
    "SPARSE_MIN_PARAMS",
    "RowAdagrad",
    "RowAdamW",
    "RowOptimizer",
    "auto_batch_size",
    "scaled_lr",
    "supports_rows",
]

AUTO_BS_MIN_ROWS = 200_000
"""Up to this many training ratings, :func:`auto_batch_size` keeps fastai's 64."""
AUTO_BS_MAX = 16_384
"""Largest batch :func:`auto_batch_size` picks."""


def auto_batch_size(n_ratings: int) -> int:
    """The default batch size for ``n_ratings`` training ratings.

    ``64`` up to :data:`AUTO_BS_MIN_ROWS` ratings (fastai's collab default, so ml-100k
    keeps fastai's semantics); above, ``n / 500`` rounded to the nearest power of two,
    between 256 and :data:`AUTO_BS_MAX` (about 500 steps per epoch, each large enough
    that per-step overhead stays small).

    Example:
        >>> auto_batch_size(80_000), auto_batch_size(900_000), auto_batch_size(25_000_000)
        (64, 2048, 16384)
    """
    if n_ratings <= AUTO_BS_MIN_ROWS:
        return 64
    bs = 1 << max(0, round(math.log2(max(1.0, n_ratings / 500))))
    return max(256, min(AUTO_BS_MAX, bs))


def scaled_lr(lr: float, bs: int, base_bs: int = 64) -> float:
    """``lr`` scaled for batch size ``bs``: ``lr·(bs / base_bs) ** 0.4``, between 1× and 8×.

    A rule between no scaling and the square-root rule, which suits Adam (its step size
    does not grow with the gradient's scale, while larger batches make fewer steps).

    Example:
        >>> scaled_lr(5e-3, 64), round(scaled_lr(5e-3, 2048), 6), scaled_lr(5e-3, 16384)
        (0.005, 0.02, 0.04)
    """
    return lr * min(8.0, max(1.0, float((bs / base_bs) ** 0.4)))


def row_tables(model: Any) -> tuple[tuple[tuple[Tensor, ...], ...], tuple[Tensor, ...]]:
    """The tables a row-wise optimiser updates, by the index that reads them (users'
    tables, items' tables, ...), and the model's dense parameters: its ``row_tables()``
    and ``row_dense()`` where it has them (e.g. :class:`~recfit.models.OrdRec`, whose
    third side is SVD++'s ``y`` table read by the batch users' lists), else a DotBias's
    four tables and none.

    Example:
        >>> from recfit.models import DotBias
        >>> [[tuple(t.shape) for t in s] for s in row_tables(DotBias(3, 4, 2))[0]]
        [[(3, 2), (3,)], [(4, 2), (4,)]]
    """
    own = getattr(model, "row_tables", None)
    if callable(own):
        dense = getattr(model, "row_dense", None)
        return tuple(tuple(s) for s in own()), tuple(dense()) if callable(dense) else ()
    m = model
    return ((m.user_factors, m.user_bias), (m.item_factors, m.item_bias)), ()


def _spans(tables: tuple[Tensor, ...]) -> list[tuple[int, int]]:
    """The columns ``[a, b)`` each table takes in a side's gathered rows."""
    out, col = [], 0
    for t in tables:
        w = 1 if t.ndim == 1 else t.shape[1]
        out.append((col, col + w))
        col += w
    return out


def supports_rows(model: Any) -> bool:
    """Whether the row-wise optimisers can train ``model``: its family says so
    (``row_wise`` in :mod:`recfit.models.registry`: a prediction reads only its user's and
    item's rows ``p_u``, ``b_u``, ``q_i``, ``b_i`` of a :class:`~recfit.models.DotBias`).

    Example:
        >>> from recfit.models import BiasedMF, SVDpp
        >>> supports_rows(BiasedMF(3, 3, 2)), supports_rows(SVDpp(3, 3, 2))
        (True, False)
    """
    fam = find_family(model)
    return fam is not None and fam.row_wise


class RowOptimizer:
    """Base of the row-wise optimisers of a :class:`~recfit.models.DotBias`.

    Keeps the lazy, exact decoupled weight decay (a per-row log of the decay product
    received), the step count and ``param_groups[0]`` (``lr``, ``betas``, ``eps``,
    ``weight_decay``, changed between steps by the Learner's schedules). Subclasses give
    the per-row rule twice: :meth:`_update` in PyTorch operations (any device) and
    :meth:`_consts` for the compiled CPU kernel of :mod:`recfit.train.kernels`, and
    allocate its state in :meth:`_init_state`; ``lr`` and ``eps`` default to the rule's
    :attr:`default_lr` and :attr:`default_eps`.
    """

    state_names: tuple[str, ...] = ("row_decay",)
    rule = -1
    default_lr = 1e-3
    """``lr`` when none is given."""
    default_eps = 1e-5
    """``eps`` when none is given."""

    def __init__(
        self,
        model: DotBias,
        lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        if not supports_rows(model):
            raise ConfigError(
                f"expected a DotBias-family model (a family with row_wise: dot, mf) for "
                f"{type(self).__name__}, received {type(model).__name__}"
            )
        self.model = model
        self.tables, self.dense = row_tables(model)
        self.widths = [sum(1 if t.ndim == 1 else t.shape[1] for t in side) for side in self.tables]
        self.params = [*self.tables[0], *self.tables[1], *self.dense]
        if self.dense:  # the shared parameters' own state
            self.state_names = (*type(self).state_names, "dense_avg", "dense_avg_sq")
        lr = self.default_lr if lr is None else lr
        eps = self.default_eps if eps is None else eps
        self.param_groups: list[dict[str, Any]] = [
            {"params": self.params, "lr": lr, "betas": betas, "eps": eps,
             "weight_decay": weight_decay}
        ]  # fmt: skip
        dev = self.params[0].device
        self._dev = dev
        if dev.type == "cpu":  # tables in huge pages: fewer TLB misses on random rows
            with torch.no_grad():
                for p in self.params:
                    if p.numel() * p.element_size() >= kernels.HUGE_PAGE:
                        moved = self._zeros(tuple(p.shape), p.dtype)
                        moved.copy_(p.data)
                        p.data = moved
        # log of the decay product each row has received, and of the global product
        self.row_decay = [self._zeros((len(side[0]),), torch.float64) for side in self.tables]
        self.log_decay = 0.0
        self.step_count = 0
        self._buffers: kernels.RowStepBuffers | None = None
        self._init_state()

    def _zeros(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        """A zeroed state tensor (in huge pages on CPU, see :func:`kernels.huge_zeros`)."""
        if self._dev.type == "cpu":
            np_dtype = torch.empty((), dtype=dtype).numpy().dtype
            return torch.from_numpy(kernels.huge_zeros(shape, np_dtype))
        return torch.zeros(shape, dtype=dtype, device=self._dev)

    # ------------------------------------------------------------------ rule
    def _init_state(self) -> None:
        """Allocate the rule's per-row state (zeros, see :meth:`_zeros`)."""
        raise NotImplementedError

    def _state(self, side: int) -> tuple[Tensor, Tensor]:
        """The per-row state tensors of ``side`` (0 users, 1 items) given to the kernel."""
        raise NotImplementedError

    def _consts(self, lr: float) -> list[float]:
        """The kernel's constants after ``keep`` (see :func:`recfit.train.kernels.row_step`)."""
        raise NotImplementedError

    def _update(self, p: Tensor, g: Tensor, side: int, uniq: Tensor, lr: float, wd: float) -> None:
        """Update the gathered rows ``p`` (``(rows, k + 1)``) in place from their summed
        gradient ``g``; the per-row state of ``uniq`` is read and written here."""
        raise NotImplementedError

    def _update_dense(self, grads: list[Tensor], lr: float) -> None:
        """Update the model's dense parameters (:func:`row_tables`), without weight decay."""
        raise NotImplementedError

    def compiled(self) -> bool:
        """Whether :meth:`compiled_step` can run (CPU tensors, numba present)."""
        return self.model.user_factors.device.type == "cpu" and kernels.available()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: gradients never live in ``.grad`` (kept for the protocol)."""

    def _advance(self, lr: float, wd: float) -> float:
        """Count a step and extend the global decay product; returns the log before."""
        self.step_count += 1
        before = self.log_decay
        if wd:
            self.log_decay += math.log1p(-min(lr * wd, 1.0 - 1e-12))
        return before

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def compiled_step(
        self, batch: dict[str, Tensor], w_tot: float, reg: float, threads: int | None = None
    ) -> tuple[Tensor, float, float]:
        """Forward, weighted MSE loss, gradient and update in one compiled CPU kernel.

        The same step as ``model.fused_forward`` + :meth:`fused_step` with an MSE loss,
        without intermediate tensors (:mod:`recfit.train.kernels`). Returns the batch's
        predictions, its loss ``Σ w·(out - r)² / w_tot`` and penalty
        ``reg · Σ w·|rows|² / w_tot``.
        """
        consts, before = self._next_consts()
        return self._run_kernel(batch, w_tot, reg, consts, before, threads)

    def _next_consts(self) -> tuple[np.ndarray, float]:
        """Count a step; the kernel's constants and the global log decay before it."""
        grp = self.param_groups[0]
        lr, wd = grp["lr"], grp["weight_decay"]
        before = self._advance(lr, wd)
        return np.array([1.0 - lr * wd, *self._consts(lr), self.rule], dtype=np.float32), before

    @torch.no_grad()
    def warm_up(self, batch: dict[str, Tensor]) -> None:
        """Compile (or load from the cache) the kernel :meth:`compiled_step` will run on
        batches like ``batch``: one call on its first 0 rows, which changes nothing."""
        empty = {k: batch[k][:0] for k in ("user", "item", "rating", "weight")}
        consts = np.ones(7, dtype=np.float32)  # read by no row of an empty batch
        self._run_kernel(empty, 1.0, 0.0, consts, self.log_decay, None)

    def _run_kernel(
        self,
        batch: dict[str, Tensor],
        w_tot: float,
        reg: float,
        consts: np.ndarray,
        before: float,
        threads: int | None,
    ) -> tuple[Tensor, float, float]:
        arrays, out = self._kernel_batch(batch)
        loss, pen = kernels.row_step(
            arrays,
            w_tot,
            self._tables(),
            self._kernel_state(),
            (self.row_decay[0].numpy(), self.row_decay[1].numpy()),
            self._model_consts(),
            reg,
            consts,
            (before, self.log_decay),
            out.numpy(),
            self._kernel_buffers(),
            threads,
        )
        return out, loss, pen

    def _kernel_buffers(self) -> kernels.RowStepBuffers:
        if self._buffers is None:
            m = self.model
            self._buffers = kernels.RowStepBuffers(m.n_users, m.n_items, m.n_factors)
        return self._buffers

    def _kernel_batch(self, batch: dict[str, Tensor]) -> tuple[dict[str, np.ndarray], Tensor]:
        arrays = {k: batch[k].numpy() for k in ("user", "item", "rating", "weight")}
        out = torch.empty(arrays["user"].shape[0], dtype=self.model.user_factors.dtype)
        return arrays, out

    def _tables(self) -> Any:
        m = self.model
        return (
            (m.user_factors.detach().numpy(), m.user_bias.detach().numpy()),
            (m.item_factors.detach().numpy(), m.item_bias.detach().numpy()),
        )

    def _kernel_state(self) -> Any:
        return tuple(tuple(t.numpy() for t in self._state(side)) for side in (0, 1))

    def _model_consts(self) -> tuple[float, float, float, bool]:
        m = self.model
        lo, hi = m.y_range if m.y_range is not None else (0.0, 1.0)
        return (m.global_mean, lo, hi - lo, m.y_range is not None)

    @torch.no_grad()
    def fused_step(
        self, batch: dict[str, Tensor], saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> None:
        """One step from ``model.fused_forward``'s ``saved`` and ``d objective / d output``.

        ``d_penalty`` is the weight of each row's penalty ``|p_u|² + |q_i|² + b_u² + b_i²``
        in the objective (``reg · w / Σw``), or ``None``.
        """
        own = getattr(self.model, "row_steps", getattr(self.model, "row_grads", None))
        if callable(own):  # a model that gives its rows' gradients (and its dense ones)
            rows, dense = own(batch, saved, d_output, d_penalty)
            self.apply_rows(rows, dense)
            return
        self.apply_rows(self.row_grads(batch, saved, d_output, d_penalty))

    def row_grads(
        self, batch: dict[str, Tensor], saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> list[tuple[Tensor, Tensor]]:
        """The gradient of each looked-up row, one per rating (:meth:`fused_step`'s
        arguments): ``[(batch users, g), (batch items, g)]`` as :meth:`apply_rows` takes."""
        own = getattr(self.model, "row_grads", None)
        if callable(own):
            given: list[tuple[Tensor, Tensor]] = own(batch, saved, d_output, d_penalty)[0]
            return given
        m = self.model
        pu, qi, bu, bi, s = saved[:5]  # row-wise families: the user vectors are p_u
        if s is None:
            dx = d_output
        else:
            lo, hi = m.y_range  # type: ignore[misc]
            dx = d_output * (hi - lo) * s * (1.0 - s)
        k = m.n_factors
        grads = []
        for rows, other, bias in ((pu, qi, bu), (qi, pu, bi)):
            g = torch.empty(dx.shape[0], k + 1, dtype=rows.dtype, device=rows.device)
            torch.mul(other, dx.unsqueeze(1), out=g[:, :k])
            if d_penalty is None:
                g[:, k] = dx
            else:
                two = 2.0 * d_penalty
                g[:, :k].addcmul_(rows, two.unsqueeze(1))
                torch.addcmul(dx, two, bias, out=g[:, k])
            grads.append(g)
        return [(batch["user"], grads[0]), (batch["item"], grads[1])]

    @torch.no_grad()
    def apply_rows(self, rows: list[tuple[Tensor, Any]], dense: list[Tensor] | None = None) -> None:
        """Update the users' rows ``rows[0] = (index, grad)`` and the items' ``rows[1]``,
        then the dense parameters from their gradients ``dense`` (models with some).

        ``grad`` has one row per index: the columns of the side's tables side by side (a
        DotBias: factors then bias; repeated indices summed), or a model's own update of the
        side (OrdRec's ``y`` rows), called with its tables, state, decay log and constants.
        """
        grp = self.param_groups[0]
        lr, wd = grp["lr"], grp["weight_decay"]
        if self.dense and dense is None:
            name = type(self.model).__name__
            raise ConfigError(f"expected the shared parameters' gradients of {name}, received none")
        consts, before = self._next_consts()
        for side, ((idx, g), tables) in enumerate(zip(rows, self.tables, strict=True)):
            if not isinstance(g, Tensor):  # the side's own update, with this step's constants
                g(tables, self._state(side), self.row_decay[side], consts, before, self.log_decay)
                continue
            uniq, inv = unique_index(idx, len(tables[0]))
            gsum = torch.zeros(uniq.shape[0], self.widths[side], dtype=g.dtype, device=g.device)
            gsum.index_add_(0, inv, g)
            p = torch.empty_like(gsum)
            spans = _spans(tables)
            for t, (a, b) in zip(tables, spans, strict=True):
                if t.ndim == 1:
                    p[:, a] = t.index_select(0, uniq)
                else:
                    torch.index_select(t, 0, uniq, out=p[:, a:b])
            rd = self.row_decay[side]
            last = rd.index_select(0, uniq)
            if before != 0.0:  # decay owed since the rows' last update (exact)
                owed = torch.exp(before - last).to(p.dtype)
                p.mul_(owed.unsqueeze(1))
            if self.log_decay != 0.0:
                rd.index_fill_(0, uniq, self.log_decay)
            self._update(p, gsum, side, uniq, lr, wd)
            for t, (a, b) in zip(tables, spans, strict=True):
                t.index_copy_(0, uniq, p[:, a] if t.ndim == 1 else p[:, a:b])
        if dense is not None and self.dense:
            self._update_dense(dense, lr)

    @torch.no_grad()
    def flush(self, items: slice = slice(None)) -> None:
        """Apply the weight decay every row is owed, so the weights are exact (O(table));
        of the items, only the rows ``items`` (the others flushed by other processes).
        A model's pending row step comes first (OrdRec's deferred ``y`` step)."""
        pending = getattr(self.model, "step_pending", None)
        if callable(pending):
            pending(*self._last_side())
        if self.log_decay == 0.0:
            return
        sides = (slice(None), *[items] * (len(self.tables) - 1))  # OrdRec's y rows: items too
        for tables, rd, rows in zip(self.tables, self.row_decay, sides, strict=True):
            owed = torch.exp(self.log_decay - rd[rows]).to(tables[0].dtype)
            for t in tables:
                t[rows].mul_(owed if t.ndim == 1 else owed.unsqueeze(1))
            rd[rows].fill_(self.log_decay)

    def step(self) -> None:
        """Not used: :meth:`fused_step` does the work (the gradient never lives in ``.grad``)."""
        raise ConfigError(
            f"expected {type(self).__name__}.fused_step(batch, saved, d_output, d_penalty), "
            "received step()"
        )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Per-row state, decay logs, step count and hyper-parameters (tensors cloned)."""
        own = getattr(self.model, "pending_state", None)  # OrdRec's deferred y step
        extra = {"pending": own()} if callable(own) else {}
        return save_state(self, self.state_names, log_decay=self.log_decay, **extra)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        load_state(self, state, self.state_names)
        self.log_decay = float(state["log_decay"])
        own = getattr(self.model, "load_pending", None)
        if callable(own):
            own(state.get("pending"), self._last_side()[1][0])

    def _last_side(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, Tensor], Tensor]:
        """The last side's tables, per-row state and decay log (OrdRec's ``y`` rows)."""
        side = len(self.tables) - 1
        return self.tables[side], self._state(side), self.row_decay[side]


class RowAdamW(RowOptimizer):
    """AdamW that updates only the looked-up rows of a :class:`~recfit.models.DotBias`.

    ``param_groups[0]`` holds ``lr``, ``betas``, ``eps`` and ``weight_decay`` (changed
    between steps by the Learner's schedules), like :class:`recfit.train.optim.AdamW`.
    Call :meth:`fused_step` with what ``model.fused_forward`` saved and the gradient of
    the objective with respect to the outputs (or :meth:`compiled_step` on CPU); call
    :meth:`flush` before reading the weights (the Learner does).

    Args:
        model: a DotBias or BiasedMF.
        lr, betas, eps, weight_decay: AdamW's hyper-parameters (default lr 1e-3; fastai's
            Adam defaults: betas (0.9, 0.99), eps 1e-5).
    """

    state_names = ("exp_avg", "exp_avg_sq", "row_decay")
    rule = 0

    def _init_state(self) -> None:
        sizes = [(len(side[0]), w) for side, w in zip(self.tables, self.widths, strict=True)]
        self.exp_avg = [self._zeros(s) for s in sizes]
        self.exp_avg_sq = [self._zeros(s) for s in sizes]
        self._step_t = torch.zeros((), dtype=torch.float32, device=self._dev)
        self.dense_avg = [torch.zeros_like(p.data) for p in self.dense]
        self.dense_avg_sq = [torch.zeros_like(p.data) for p in self.dense]

    def _state(self, side: int) -> tuple[Tensor, Tensor]:
        return self.exp_avg[side], self.exp_avg_sq[side]

    def _consts(self, lr: float) -> list[float]:
        beta1, beta2 = self.param_groups[0]["betas"]
        t = self.step_count
        return [beta1, beta2, lr / (1.0 - beta1**t), 1.0 / math.sqrt(1.0 - beta2**t),
                self.param_groups[0]["eps"]]  # fmt: skip

    def _update(self, p: Tensor, g: Tensor, side: int, uniq: Tensor, lr: float, wd: float) -> None:
        eps = self.param_groups[0]["eps"]
        mm = self.exp_avg[side].index_select(0, uniq)
        vv = self.exp_avg_sq[side].index_select(0, uniq)
        self._step_t.fill_(float(self.step_count))
        adamw_(
            [p], [g], [mm], [vv], [self._step_t],
            lr=lr, betas=self.param_groups[0]["betas"], eps=eps, weight_decay=wd,
            fused=can_fuse([p]),
        )  # fmt: skip
        self.exp_avg[side].index_copy_(0, uniq, mm)
        self.exp_avg_sq[side].index_copy_(0, uniq, vv)

    def _update_dense(self, grads: list[Tensor], lr: float) -> None:
        params = [p.data for p in self.dense]
        steps = [self._step_t for _ in params]
        adamw_(
            params, [g.contiguous() for g in grads], self.dense_avg, self.dense_avg_sq, steps,
            lr=lr, betas=self.param_groups[0]["betas"], eps=self.param_groups[0]["eps"],
            weight_decay=0.0, fused=can_fuse(params),
        )  # fmt: skip


class RowAdagrad(RowOptimizer):
    """Row-wise Adagrad: one accumulator per row, only the looked-up rows updated.

    Each row's factors keep ``a ← a + mean(g²)`` and move by ``-lr · g / (sqrt(a) +
    eps)`` (DLRM-style "row-wise Adagrad" embedding tables); the row's bias keeps its own
    accumulator (its gradient is on another scale). Decoupled weight decay is lazy and
    exact as in :class:`RowAdamW`. The state is two floats per row instead of AdamW's two
    rows, so a step moves about a third of the bytes. ``betas`` is kept in
    ``param_groups`` only for the Learner's momentum schedule and is not used; ``lr``
    defaults to 1e-2 and ``eps`` to 1e-10.

    Example:
        >>> import torch
        >>> from recfit.models import DotBias
        >>> m = DotBias(4, 3, n_factors=2, y_range=None, bias_init_std=0.0, init_std=0.0)
        >>> opt = RowAdagrad(m, lr=0.1)
        >>> opt.apply_rows([(torch.tensor([1]), torch.tensor([[0.0, 0.0, 3.0]])),
        ...                 (torch.tensor([0]), torch.tensor([[0.0, 0.0, 0.0]]))])
        >>> round(float(m.user_bias.detach()[1]), 4)  # -0.1 · 3 / sqrt(9)
        -0.1
    """

    state_names = ("sum_sq", "row_decay")
    rule = 1
    default_lr = 1e-2
    default_eps = 1e-10

    def _init_state(self) -> None:
        model = self.model
        k = model.n_factors
        if self.dense or self.widths != [k + 1, k + 1]:
            name = type(model).__name__
            raise ConfigError(f"expected a DotBias's tables for RowAdagrad, received {name}")
        self.sum_sq = [self._zeros((n, 2)) for n in (model.n_users, model.n_items)]
        self._unused = torch.zeros(1, model.n_factors + 1, device=self._dev)

    def _state(self, side: int) -> tuple[Tensor, Tensor]:
        return self._unused, self.sum_sq[side]

    def _consts(self, lr: float) -> list[float]:
        return [0.0, 0.0, lr, 0.0, self.param_groups[0]["eps"]]

    def _update(self, p: Tensor, g: Tensor, side: int, uniq: Tensor, lr: float, wd: float) -> None:
        eps = self.param_groups[0]["eps"]
        if wd:
            p.mul_(1.0 - lr * wd)
        k = p.shape[1] - 1
        acc = self.sum_sq[side].index_select(0, uniq)
        acc[:, 0] += (g[:, :k] * g[:, :k]).mean(1) if k else 0.0
        acc[:, 1] += g[:, k] * g[:, k]
        p[:, :k].addcdiv_(g[:, :k], acc[:, :1].sqrt().add_(eps), value=-lr)
        p[:, k].addcdiv_(g[:, k], acc[:, 1].sqrt().add_(eps), value=-lr)
        self.sum_sq[side].index_copy_(0, uniq, acc)
