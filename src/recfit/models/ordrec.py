"""OrdRec: a biased-MF score with an ordinal head and per-user thresholds.

Koren & Sill's OrdRec ("OrdRec: an ordinal model for predicting personalized item rating
distributions", RecSys 2011) keeps matrix factorisation's score and replaces the squared
error by an ordinal likelihood:

* the score of a pair is ``s = b_u + b_i + p_u · q_i`` (biased MF, no global mean: the
  thresholds take its place);
* each user has ``K - 1`` ordered thresholds ``t_u0 < t_u1 < … < t_u,K-2``:
  ``t_u0 = θ_0 + a_u0`` and ``t_uj = t_u,j-1 + exp(γ_j + a_uj)``, where ``θ_0`` and the
  log gaps ``γ`` are shared by every user and ``a_u`` is the user's own offset (kept
  near 0 by the regularisation, so a user with few ratings uses the shared thresholds);
  ``user_thresholds=False`` drops ``a_u`` (one threshold set for everyone);
* ``P(y ≤ j | u, i) = σ(t_uj - s)``, so the probability of level ``j`` is
  ``σ(t_uj - s) - σ(t_u,j-1 - s)``: a proper distribution over the ``K`` levels by
  construction, trained by cross-entropy (the negative log-likelihood of the level).

``forward`` returns the level log-probabilities ``[B, K]`` (the same output contract as
:class:`~recfit.models.RatingClassifier`); ``to_rating`` decodes them to the expected
rating (the MSE-optimal choice) or the most likely level.

Training: the model supplies its gradient on the rows a batch reads (``fused_forward`` /
``row_grads``: autograd over the gathered rows of the batch only, never over the tables),
so the Learner trains it on the row-wise path of :mod:`recfit.train.sparse` (lazy AdamW
on the looked-up rows: a step costs the same whatever the size of the catalogue) or the
fused dense path. The tables a row-wise step updates are :meth:`OrdRec.row_tables`
(users: ``p_u``, ``b_u``, ``a_u``; items: ``q_i``, ``b_i``); the shared thresholds are
:meth:`OrdRec.row_dense` (updated at every step, without weight decay).

Example:
    >>> import torch
    >>> m = OrdRec(3, 4, n_factors=2, levels=[1, 2, 3, 4, 5])
    >>> out = m({"user": torch.tensor([0, 2]), "item": torch.tensor([1, 3])})
    >>> out.shape, m.to_proba(out).sum(1).round(decimals=5).tolist()
    (torch.Size([2, 5]), [1.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from recfit.errors import ConfigError
from recfit.models.base import Batch, RatingModel, unique_index
from recfit.models.classifier import (
    Decode,
    LevelOutput,
    check_levels,
    ordinal_log_proba,
    prepare_levels,
)
from recfit.models.dot import _check_sizes, _trunc_normal
from recfit.models.registry import Family, register_family, sized_build
from recfit.models.svdpp import ImplicitLists, implicit_lists

__all__ = ["IMPLICIT_EVERY", "IMPLICIT_MIN_STEPS", "OrdRec"]

IMPLICIT_EVERY = 8
"""``implicit_every`` a long enough fit uses when none is given."""
IMPLICIT_MIN_STEPS = 64 * IMPLICIT_EVERY
"""The fewest steps of a fit (64 deferred ``y`` steps) for which ``implicit_every=None``
means :data:`IMPLICIT_EVERY`; below, every step (1). The half-star proxies' fits with
their defaults run about 2,500 steps (8 epochs), 626 and 632 in the speed part of
benchmarks/bench_halfstar.py (2 epochs): all keep 8; 80 steps (10 ``y`` steps) trained
clearly worse than every step (docs/classification.md)."""


class OrdRec(LevelOutput, ImplicitLists, RatingModel):
    """Biased-MF score, ordinal head with per-user thresholds (see the module docs).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        n_factors: width of ``p_u`` and ``q_i``.
        levels: the rating of each level, increasing (10 for half stars 0.5..5).
        user_thresholds: each user's own threshold offsets ``a_u`` (OrdRec); ``False``:
            one threshold set shared by every user.
        implicit: SVD++'s implicit term in the score: ``q_i · (p_u + |N(u)|^-alpha ·
            Σ_{j ∈ N(u)} y_j)`` over the items ``N(u)`` the user rated in training
            (stored in the model, :meth:`set_implicit`).
        n_implicit: length of the stored ``N(u)`` lists (set by :meth:`set_implicit`).
        alpha: the exponent of the implicit term's normalisation (SVD++'s default).
        implicit_every: on the compiled row-wise path, the ``y`` rows take one AdamW step
            every this many steps, from the users' term gradients summed since the last
            one, with the learning rate times ``sqrt`` of the steps it stands for; the
            users' terms are computed for every user after it and read from there until
            the next (1: every step, the PyTorch path's rule, which the PyTorch path
            always follows). What is pending at an epoch's end (fewer steps) is applied
            then. ``None`` (default): each fit decides when it starts (:meth:`plan_fit`):
            :data:`IMPLICIT_EVERY` (8, chosen on inner cuts of both half-star proxies,
            docs/classification.md: a step then costs about what it costs without the
            implicit term) for a fit of at least :data:`IMPLICIT_MIN_STEPS` steps, else
            1 (on small data the deferred rule trains worse); ``config()`` records the
            value used (``None`` before any fit, when the rule is every step).
        decode: what ``to_rating`` returns: the ``"expected"`` rating or the ``"argmax"``
            level's rating.
        init_std: std of the factors' init (biases and offsets start at 0).
        seed: seed of the initialisation.

    Example:
        >>> m = OrdRec(3, 4, n_factors=2, levels=[1, 2, 3])
        >>> [round(t, 3) for t in m.thresholds(torch.tensor([0]))[0].tolist()]
        [-0.693, 0.693]
    """

    supports_fused: ClassVar[bool] = True
    fused_kernel: bool = True
    """Whether the implicit term's forward and row-wise step run as the compiled kernels
    (numba) where they can (CPU, float32); ``False`` (on an instance or the class) keeps
    the PyTorch operations, the reference the kernels are tested against."""
    _fit_state: _FitState
    """What a fit keeps between steps: no parameter or buffer, so in no ``state_dict``."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 32,
        levels: Sequence[float] = (1.0, 2.0, 3.0, 4.0, 5.0),
        user_thresholds: bool = True,
        implicit: bool = False,
        n_implicit: int = 0,
        alpha: float = 1.0,
        implicit_every: int | None = None,
        decode: Decode = "expected",
        init_std: float = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_sizes(n_users, n_items, n_factors)
        if decode not in ("expected", "argmax"):
            raise ConfigError(f"expected decode 'expected' or 'argmax', received {decode!r}")
        if not (isinstance(init_std, int | float) and np.isfinite(init_std) and init_std >= 0):
            raise ConfigError(f"expected init_std >= 0, received {init_std!r}")
        grid = check_levels(levels)
        k = len(grid)
        self.n_users, self.n_items, self.n_factors = n_users, n_items, n_factors
        self.levels, self.n_levels = grid, k
        self.user_thresholds, self.decode = bool(user_thresholds), decode
        self.implicit, self.alpha = bool(implicit), float(alpha)
        if implicit_every is not None and not (
            isinstance(implicit_every, int) and implicit_every >= 1
        ):
            raise ConfigError(f"expected implicit_every None or >= 1, received {implicit_every!r}")
        self.implicit_every, self._every_auto = implicit_every, implicit_every is None
        if not (isinstance(n_implicit, int) and n_implicit >= 0 and self.alpha >= 0):
            raise ConfigError(
                f"expected n_implicit >= 0 and alpha >= 0, received {n_implicit!r}, {alpha!r}"
            )
        self.init_std, self.seed = float(init_std), seed
        self.register_buffer("level_values", torch.tensor(grid, dtype=torch.float32), False)
        g = torch.Generator().manual_seed(seed)
        self.user_factors = nn.Parameter(_trunc_normal((n_users, n_factors), init_std, g))
        self.item_factors = nn.Parameter(_trunc_normal((n_items, n_factors), init_std, g))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        if self.user_thresholds:
            self.user_offsets = nn.Parameter(torch.zeros(n_users, k - 1))
        if self.implicit:  # SVD++'s y table (starting at 0, like SVDpp's default)
            self.implicit_factors = nn.Parameter(torch.zeros(n_items, n_factors))
        self.register_buffer("implicit_indptr", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("implicit_items", torch.zeros(n_implicit, dtype=torch.long))
        # shared thresholds at the logistic quantiles of a uniform distribution over levels
        q = np.arange(1, k) / k
        theta = np.log(q / (1 - q))
        self.theta0 = nn.Parameter(torch.tensor([theta[0]], dtype=torch.float32))
        self.log_gaps = nn.Parameter(torch.tensor(np.log(np.diff(theta)), dtype=torch.float32))
        self._register_record(n_users, n_items)
        self._fit_state = _FitState()

    # ------------------------------------------------------------------ contract
    def config(self) -> dict[str, Any]:
        return self._config(
            n_factors=self.n_factors, levels=list(self.levels),
            user_thresholds=self.user_thresholds, implicit=self.implicit,
            n_implicit=int(self.implicit_items.numel()), alpha=self.alpha,
            implicit_every=self.implicit_every, decode=self.decode,
            init_std=self.init_std, seed=self.seed,
        )  # fmt: skip

    @property
    def every(self) -> int:
        """The ``y`` rows' step interval in force (1 until a fit decides ``None``, and on
        a fit off the compiled row-wise path: :meth:`plan_fit`)."""
        return (self.implicit_every or 1) if self._fit_state.deferred else 1

    def plan_fit(self, n_steps: int, row_wise: bool = True) -> None:
        """Called by the Learner when each epoch of a fit of ``n_steps`` steps starts, with
        whether the row-wise optimiser trains: with ``implicit_every=None``, decide the
        interval from the fit's length, :data:`IMPLICIT_EVERY` only where the compiled
        row-wise step runs (elsewhere 1). Off that path :attr:`every` is 1 whatever
        ``implicit_every`` says. The cached users' terms are dropped (``y`` may have
        been written since they were computed, by a path that does not tell)."""
        deferred = row_wise and self._kernels() is not None
        self._fit_state.deferred = deferred
        self._fit_state.terms = None
        if self._every_auto:
            big = n_steps >= IMPLICIT_MIN_STEPS
            self.implicit_every = IMPLICIT_EVERY if deferred and big else 1

    def row_tables(self) -> tuple[tuple[Tensor, ...], ...]:
        """The tables a row-wise step updates, by the index that reads them: the batch's
        users, its items and (with ``implicit``) the items of its users' lists, in the
        column order of :meth:`row_grads`."""
        users: tuple[Tensor, ...] = (self.user_factors, self.user_bias)
        if self.user_thresholds:
            users = (*users, self.user_offsets)
        items = (self.item_factors, self.item_bias)
        return (users, items, (self.implicit_factors,)) if self.implicit else (users, items)

    def row_dense(self) -> tuple[Tensor, ...]:
        """The shared parameters every step updates (the shared thresholds)."""
        return self.theta0, self.log_gaps

    def _rows(self, batch: Batch) -> list[Tensor]:
        u, i = batch["user"], batch["item"]
        rows = [self.user_factors.index_select(0, u), self.user_bias.index_select(0, u)]
        if self.user_thresholds:
            rows.append(self.user_offsets.index_select(0, u))
        return [*rows, self.item_factors.index_select(0, i), self.item_bias.index_select(0, i)]

    def _thresholds(self, offsets: Tensor | None, n: int) -> Tensor:
        """``[n, K - 1]`` ordered thresholds from the users' offsets (or the shared ones)."""
        base = torch.cat([self.theta0, self.log_gaps]).unsqueeze(0).expand(n, -1)
        x = base if offsets is None else base + offsets
        if x.shape[1] == 1:
            return x
        return torch.cat([x[:, :1], x[:, :1] + torch.cumsum(torch.exp(x[:, 1:]), 1)], 1)

    def thresholds(self, user: Tensor) -> Tensor:
        """The ordered thresholds of each user in ``user``, shape ``[B, K - 1]``."""
        off = self.user_offsets.index_select(0, user) if self.user_thresholds else None
        return self._thresholds(off, len(user))

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        """``[n_items, n_factors]`` item factors ``q_i`` (float32): what similar items compare."""
        return self.item_factors.detach().float().clone()

    @torch.no_grad()
    def user_vectors(self) -> Tensor:
        """``[n_users, n_factors]`` effective user factors ``p_u`` plus the implicit term
        (float32): the vectors whose dot product with ``q_i`` is the score's interaction."""
        p = self.user_factors.detach().float()
        if not self.implicit:
            return p.clone()
        users = torch.arange(self.n_users, device=p.device)
        return p + self._implicit_rows(users, False)[0].float()

    def _implicit_rows(self, users: Tensor, leaf: bool) -> tuple[Tensor, _Lists | None]:
        """The implicit term of each batch row and, with ``leaf``, what its gradient
        needs (:class:`_Lists`: the distinct users' terms as a leaf requiring a gradient).
        The compiled kernel computes the terms where it can (:meth:`_kernels`) and no
        gradient flows through them; else ``embedding_bag`` over the gathered lists."""
        uniq, inv = unique_index(users, self.n_users)
        kern = self._kernels() if leaf or not torch.is_grad_enabled() else None
        gathered: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        if kern is not None and leaf and self.every > 1:  # the cached terms
            cache = self._fit_state.terms
            if cache is None or cache[1] != self.implicit_factors._version:
                cache = self._all_terms(kern)  # y written (a step, decay, load): recompute
            z = torch.from_numpy(cache[0]).index_select(0, uniq)
        elif kern is not None:
            z = torch.empty(len(uniq), self.n_factors)
            scale = torch.empty(len(uniq))
            kern.implicit_terms(uniq.numpy(), *self._list_arrays(), self.alpha, z.numpy(),
                                scale.numpy())  # fmt: skip
        else:
            gathered = self._gather(uniq)
            items, offsets, weights, _ = gathered
            with torch.set_grad_enabled(not leaf):
                z = F.embedding_bag(
                    items, self.implicit_factors, offsets, mode="sum", per_sample_weights=weights
                )
        if not leaf:
            return z.index_select(0, inv), None
        z = z.detach().requires_grad_()
        return z.index_select(0, inv), _Lists(z, uniq, gathered)

    def _all_terms(self, kern: Any) -> tuple[np.ndarray, int]:
        """Every user's implicit term (kept, with the ``y`` table's version, as the cache
        the steps read while :attr:`every` > 1)."""
        users = np.arange(self.n_users, dtype=np.int64)
        z = np.empty((self.n_users, self.n_factors), np.float32)
        scale = np.empty(self.n_users, np.float32)
        kern.implicit_terms(users, *self._list_arrays(), self.alpha, z, scale)
        cache = (z, self.implicit_factors._version)
        self._fit_state.terms = cache
        return cache

    def _kernels(self) -> Any:
        """The compiled kernels' module when they can run on this model (implicit term,
        CPU float32, :attr:`fused_kernel` on), else ``None``."""
        y = self.implicit_factors if self.implicit else None
        if not self.fused_kernel or y is None or y.device.type != "cpu":
            return None
        return _ordrec_kernels() if y.dtype == torch.float32 else None

    def _list_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NumPy views of ``N(u)`` (indptr, items) and of the ``y`` table."""
        y = self.implicit_factors.detach()
        return self.implicit_indptr.numpy(), self.implicit_items.numpy(), y.numpy()

    def _log_proba(self, rows: Sequence[Tensor], z: Tensor | None) -> Tensor:
        if self.user_thresholds:
            pu, bu, au, qi, bi = rows
        else:
            (pu, bu, qi, bi), au = rows, None
        s = bu + bi + ((pu if z is None else pu + z) * qi).sum(1)
        return ordinal_log_proba(torch.sigmoid(self._thresholds(au, len(s)) - s.unsqueeze(1)))

    def forward(self, batch: Batch) -> Tensor:
        z = self._implicit_rows(batch["user"], False)[0] if self.implicit else None
        return self._log_proba(self._rows(batch), z)

    def penalty(self, batch: Batch) -> Tensor:
        """Sum of squares of the looked-up rows (factors, biases, threshold offsets)."""
        return _penalty(self._rows(batch))

    # ------------------------------------------------------------------ gradient
    def fused_forward(self, batch: Batch, with_penalty: bool) -> tuple[Tensor, Tensor | None, Any]:
        """Output, penalty and ``saved``: the batch's gathered rows as autograd leaves
        and the output's small graph (nothing table-sized)."""
        with torch.enable_grad():
            rows = [r.detach().requires_grad_() for r in self._rows(batch)]
            z, lists = self._implicit_rows(batch["user"], True) if self.implicit else (None, None)
            out = self._log_proba(rows, z)
        pen = _penalty(rows).detach() if with_penalty else None
        return out.detach(), pen, (rows, out, lists)

    def row_grads(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
        """The gradient of each looked-up row (one per rating, the columns of
        :meth:`row_tables` side by side) and of :meth:`row_dense`:
        ``([(users, g_u), (items, g_i), (list items, g_y)], [d θ_0, d γ])`` (the third
        side with ``implicit`` only)."""
        sides, dense, lists = self._sides(batch, saved, d_output, d_penalty)
        if lists is not None:  # the y rows of the batch users' lists (the implicit term)
            d_user, (_, uniq, gathered) = lists
            items, _, weights, lens = self._gather(uniq) if gathered is None else gathered
            g_y = torch.repeat_interleave(d_user, lens, dim=0, output_size=len(items))
            sides.append((items, g_y.mul_(weights.unsqueeze(1))))
        return sides, dense

    def row_steps(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> tuple[list[tuple[Tensor, Any]], list[Tensor]]:
        """:meth:`row_grads` for a row-wise optimiser: where the compiled kernels run
        (:meth:`_kernels`), the implicit side is ``(distinct batch users, step)``, a
        :class:`ListStep` that sums and applies the ``y`` rows' gradients itself (no
        per-list-item tensors); else the same as :meth:`row_grads`."""
        if self._kernels() is None or not self.implicit:
            grads, dense = self.row_grads(batch, saved, d_output, d_penalty)
            return list(grads), dense
        rows, dense, lists = self._sides(batch, saved, d_output, d_penalty)
        assert lists is not None
        d_user, (_, uniq, _) = lists
        sides: list[tuple[Tensor, Any]] = [*rows, (uniq, ListStep(self, uniq, d_user))]
        return sides, dense

    def _sides(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor], tuple[Tensor, _Lists] | None]:
        """The users' and items' sides of :meth:`row_grads`, the dense gradients and,
        with the implicit term, the gradient of each distinct user's term and its
        :class:`_Lists`."""
        rows, out, lists = saved
        dense = list(self.row_dense())
        leaves = [*rows, *dense] if lists is None else [*rows, *dense, lists.terms]
        grads = torch.autograd.grad(out, leaves, d_output)
        g_rows = list(grads[: len(rows)])
        if d_penalty is not None:
            two = (2.0 * d_penalty).unsqueeze(1)
            g_rows = [g + (two * r if r.ndim == 2 else two[:, 0] * r) for g, r in zip(
                g_rows, rows, strict=True)]  # fmt: skip
        n_user = len(self.row_tables()[0])
        cols = [g if g.ndim == 2 else g.unsqueeze(1) for g in g_rows]
        sides = [(batch["user"], torch.cat(cols[:n_user], 1)),
                 (batch["item"], torch.cat(cols[n_user:], 1))]  # fmt: skip
        d_dense = list(grads[len(rows) : len(rows) + len(dense)])
        return sides, d_dense, None if lists is None else (grads[-1], lists)

    @torch.no_grad()
    def fused_backward(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> None:
        """Write every parameter's ``.grad`` from :meth:`row_grads` (dense path)."""
        sides, dense = self.row_grads(batch, saved, d_output, d_penalty)
        for (idx, g), tables in zip(sides, self.row_tables(), strict=True):
            col = 0
            for t in tables:
                w = 1 if t.ndim == 1 else t.shape[1]
                grad = torch.zeros_like(t)
                grad.index_add_(0, idx, g[:, col : col + w].reshape(-1, *t.shape[1:]))
                t.grad = grad if t.grad is None else t.grad + grad
                col += w
        for t, g in zip(self.row_dense(), dense, strict=True):
            t.grad = g.clone() if t.grad is None else t.grad + g

    # ------------------------------------------------------------------ deferred y
    def step_pending(
        self, tables: Sequence[Tensor], state: Sequence[Tensor], row_decay: Tensor
    ) -> int:
        """Apply the pending ``y`` step (the users' term gradients summed since the last),
        with the learning rate times ``sqrt`` of the steps it stands for; the optimiser's
        ``y`` side: ``tables``, ``state`` and ``row_decay``. Called every :attr:`every`
        steps and by :meth:`RowOptimizer.flush <recfit.train.sparse.RowOptimizer.flush>`
        at an epoch's end. Returns the number of ``y`` rows updated."""
        pend = self._fit_state.pending
        if pend is None or pend.steps == 0 or pend.owner is not state[0]:
            return 0
        users = np.flatnonzero(pend.seen)
        d_user = pend.grad[users]
        pend.grad[users] = 0.0
        pend.seen[:] = False
        consts = pend.last[0].copy()
        consts[3] *= math.sqrt(pend.steps)  # for the steps it stands for
        pend.steps = 0
        n = _update_lists(self, torch.from_numpy(users), torch.from_numpy(d_user), tables,
                          state, row_decay, (consts, *pend.last[1:]))  # fmt: skip
        self._all_terms(_ordrec_kernels())
        return n

    def pending_state(self) -> dict[str, Any] | None:
        """The pending ``y`` step's sums, for the optimiser's ``state_dict`` (a checkpoint
        between two ``y`` steps); ``None`` when nothing is pending."""
        pend = self._fit_state.pending
        if pend is None or pend.steps == 0:
            return None
        consts, before, after = pend.last
        return {"grad": torch.from_numpy(pend.grad.copy()), "seen": torch.from_numpy(
            pend.seen.copy()), "steps": pend.steps, "consts": torch.from_numpy(consts.copy()),
            "before": before, "after": after}  # fmt: skip

    def load_pending(self, saved: dict[str, Any] | None, owner: Tensor) -> None:
        """Put back what :meth:`pending_state` returned, for the optimiser whose ``y``
        state is ``owner`` (its first tensor)."""
        self._fit_state.pending = None
        if saved is not None:
            pend = _Pending(self.n_users, self.n_factors, owner)
            pend.grad[:], pend.seen[:] = saved["grad"].numpy(), saved["seen"].numpy()
            pend.steps = int(saved["steps"])
            pend.last = (saved["consts"].numpy().copy(), float(saved["before"]),
                         float(saved["after"]))  # fmt: skip
            self._fit_state.pending = pend


class _Lists(NamedTuple):
    """What the implicit term's gradient needs: the distinct users' ``terms`` (a leaf),
    the ``users`` and, from the PyTorch forward, their gathered lists
    (:meth:`~recfit.models.svdpp.ImplicitLists._gather`; ``None`` from the kernel's)."""

    terms: Tensor
    users: Tensor
    gathered: tuple[Tensor, Tensor, Tensor, Tensor] | None


class ListStep:
    """The row-wise AdamW step of the ``y`` rows a batch's users' lists read, by the
    compiled kernel (:func:`recfit.models._kernels_ordrec.update_lists`): called by the
    optimiser with the side's tables, its per-row state, decay log and constants. With
    :attr:`OrdRec.every` > 1 it sums the users' gradients (:class:`_Pending`) and steps
    every that many calls (see :class:`OrdRec`).

    Args:
        model: the OrdRec whose ``y`` rows it updates.
        users: the batch's distinct users (sorted).
        d_user: the gradient of each one's implicit term, ``[len(users), n_factors]``.
    """

    def __init__(self, model: OrdRec, users: Tensor, d_user: Tensor) -> None:
        self.model, self.users, self.d_user = model, users, d_user.contiguous()

    def __call__(
        self,
        tables: Sequence[Tensor],
        state: Sequence[Tensor],
        row_decay: Tensor,
        consts: np.ndarray,
        before: float,
        after: float,
    ) -> int:
        """Apply the step; ``consts`` as :class:`recfit.train.sparse.RowAdamW`'s kernel
        takes them (rule 0, AdamW). Returns the number of ``y`` rows updated."""
        if consts[6] != 0.0:
            raise ConfigError(
                f"expected AdamW's row rule (0) for OrdRec's y rows, received {consts[6]}"
            )
        m = self.model
        if m.every == 1:
            return _update_lists(m, self.users, self.d_user, tables, state, row_decay,
                                 (consts, before, after))  # fmt: skip
        pend = m._fit_state.pending
        if pend is None or pend.owner is not state[0]:  # another optimiser: start again
            pend = _Pending(m.n_users, m.n_factors, state[0])
            m._fit_state.pending = pend
        un = self.users.numpy()
        pend.grad[un] += self.d_user.numpy()
        pend.seen[un] = True
        pend.steps += 1
        pend.last = (consts.copy(), before, after)
        return m.step_pending(tables, state, row_decay) if pend.steps >= m.every else 0


@dataclass
class _FitState:
    """What an :class:`OrdRec` fit keeps between its steps (none of it is saved): whether
    the ``y`` steps may be deferred (``deferred``, :meth:`OrdRec.plan_fit`), every user's
    implicit term with the ``y`` version it was computed at (``terms``, ``None``: to
    compute), the compiled ``y`` step's work arrays (``list_scratch``) and the deferred
    step's sums (``pending``)."""

    deferred: bool = True
    terms: tuple[np.ndarray, int] | None = None
    list_scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    pending: _Pending | None = None


class _Pending:
    """The deferred ``y`` step's state: each user's term gradient summed since the last
    ``y`` step (``grad``), which users (``seen``), how many steps (``steps``), the
    optimiser state it belongs to (``owner``) and the last step's constants (``last``:
    the pending step applied at an epoch's end uses them, as if that step had made it)."""

    def __init__(self, n_users: int, k: int, owner: Tensor) -> None:
        self.grad = np.zeros((n_users, k), np.float32)
        self.seen = np.zeros(n_users, bool)
        self.steps, self.owner = 0, owner
        self.last: tuple[np.ndarray, float, float] = (np.zeros(7, np.float32), 0.0, 0.0)


def _update_lists(
    m: OrdRec,
    users: Tensor,
    d_user: Tensor,
    tables: Sequence[Tensor],
    state: Sequence[Tensor],
    row_decay: Tensor,
    call: tuple[np.ndarray, float, float],
) -> int:
    """The kernel's AdamW step of the ``y`` rows of ``users``' lists from their terms'
    gradients ``d_user``; ``call``: the step's constants and decay logs before and after."""
    n_items, k = tables[0].shape
    m._fit_state.terms = None  # y is written through NumPy: its version does not move
    scratch = m._fit_state.list_scratch
    if scratch is None or scratch[0].shape != (n_items, k):
        scratch = (np.zeros((n_items, k), np.float32), np.zeros(n_items, np.int8),
                   np.empty(n_items, np.int64))  # fmt: skip
        m._fit_state.list_scratch = scratch
    indptr, items, _ = m._list_arrays()
    lens = m.implicit_indptr[users + 1] - m.implicit_indptr[users]
    scale = lens.clamp_min(1).to(torch.float32).pow(-m.alpha)  # as _gather's weights
    n: int = _ordrec_kernels().update_lists(
        users.numpy(), scale.numpy(), d_user.numpy(), indptr, items,
        tables[0].detach().numpy(), state[0].numpy(), state[1].numpy(), row_decay.numpy(),
        *call, *scratch,
    )  # fmt: skip
    return n


def _ordrec_kernels() -> Any:
    """The compiled kernels' module (imported, and compiled or loaded from numba's cache,
    on first use; numba is a dependency)."""
    from recfit.models import _kernels_ordrec

    return _kernels_ordrec


def _lists(model: OrdRec, train: Any) -> None:
    if model.implicit:
        implicit_lists(model, train)


def _penalty(rows: Sequence[Tensor]) -> Tensor:
    return torch.stack([(r * r).sum(1) if r.ndim == 2 else r * r for r in rows]).sum(0)


register_family(Family(
    name="ordrec", task="classification", model_class=OrdRec, output="rating",
    reads=frozenset({"n_factors", "user_thresholds", "implicit", "decode", "seed"}),
    trainers=("sgd",), adapter="ordrec", row_wise=True,
    # how these were chosen: docs/classification.md
    defaults={"epochs": 8, "lr": 0.01, "wd": 0.05, "reg": 0.01},
    build=sized_build(OrdRec, prepare=prepare_levels, finish=_lists),
    summary="OrdRec: biased-MF score, ordinal head with per-user thresholds over the levels",
))  # fmt: skip
