"""SVD++ (Koren 2008) on recfit's DotBias: the user vector also sums the rated items.

A user is described by their factors *and* by which items they rated in training:

    x = mu + b_u + b_i + q_i · (p_u + |N(u)|^-alpha · Σ_{j ∈ N(u)} y_j)

with ``N(u)`` the items the user rated (with a positive weight) in the training data and
``y_j`` a second table of item factors. With ``y_range`` the sum goes through the same
scaled sigmoid as :class:`~recfit.models.DotBias`. The implicit part lets a user with few
ratings borrow from what the items they chose say about them. On protocol R1 (split seeds
0-4) ``recfit train``'s default, this model, has a median validation MSE of 0.7995 against
0.8040 for DotBias (``benchmarks/bench_r1.py``; BENCHMARKS.md).

``N(u)`` is stored in the model as a CSR pair of buffers (``implicit_indptr``,
``implicit_items``), filled from the training interactions by :meth:`SVDpp.set_implicit`
(:func:`recfit.models.create_model` does it), so a saved model predicts without the data.
Training uses a fused step like DotBias's (hand-written gradient, no autograd); ``reg``
penalises the looked-up ``p_u``, ``q_i``, ``b_u`` and ``b_i`` rows as in DotBias, while the
``y`` table is regularised by the decoupled weight decay ``wd``.

Example:
    >>> import torch
    >>> m = SVDpp(3, 4, n_factors=2, y_range=(0.0, 5.5))
    >>> m.set_implicit(torch.tensor([0, 0, 2]), torch.tensor([1, 3, 0]))
    >>> m.implicit_indptr.tolist(), m.implicit_items.tolist()
    ([0, 2, 2, 3], [1, 3, 0])
    >>> tuple(m({"user": torch.tensor([0, 1]), "item": torch.tensor([2, 2])}).shape)
    (2,)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recfit.errors import ConfigError
from recfit.models.base import Batch, register_model
from recfit.models.dot import DotBias, _trunc_normal

__all__ = ["SVDpp"]


@register_model("svdpp")
class SVDpp(DotBias):
    """DotBias plus an implicit-feedback term over each user's rated items (SVD++).

    Args:
        n_users, n_items, n_factors, y_range, global_mean, init_std, bias_init_std, seed:
            as for :class:`~recfit.models.DotBias`.
        n_implicit: length of the stored ``N(u)`` lists (the number of training pairs);
            :meth:`set_implicit` sets it. A fresh model has empty lists (no implicit
            term) until then.
        alpha: the normalisation exponent: the implicit term is ``|N(u)|^-alpha`` times
            the sum of ``y_j`` (Koren: 0.5; 1, the mean, is more accurate under the
            sigmoid on R1).
        implicit_init_std: std of the ``y`` init (0: zeros, so the model starts as DotBias).
    """

    rows_only: ClassVar[bool] = False
    implicit_indptr: Tensor
    implicit_items: Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 50,
        y_range: tuple[float, float] | None = None,
        global_mean: float = 0.0,
        init_std: float = 0.01,
        bias_init_std: float = 0.01,
        seed: int = 0,
        n_implicit: int = 0,
        alpha: float = 1.0,
        implicit_init_std: float = 0.0,
    ) -> None:
        super().__init__(
            n_users,
            n_items,
            n_factors=n_factors,
            y_range=y_range,
            global_mean=global_mean,
            init_std=init_std,
            bias_init_std=bias_init_std,
            seed=seed,
        )
        if n_implicit < 0 or not alpha >= 0:
            raise ConfigError(
                f"expected n_implicit >= 0 and alpha >= 0, received {n_implicit!r}, {alpha!r}"
            )
        self.alpha, self.implicit_init_std = float(alpha), float(implicit_init_std)
        g = torch.Generator().manual_seed(seed + 1)
        self.implicit_factors = nn.Parameter(
            _trunc_normal((n_items, n_factors), implicit_init_std, g)
        )
        self.register_buffer("implicit_indptr", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("implicit_items", torch.zeros(n_implicit, dtype=torch.long))

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "n_implicit": int(self.implicit_items.numel()),
            "alpha": self.alpha,
            "implicit_init_std": self.implicit_init_std,
        }

    @torch.no_grad()
    def set_implicit(self, users: Tensor, items: Tensor) -> None:
        """Store ``N(u)``: the items of each (user, item) pair given (duplicates count once)."""
        u = torch.as_tensor(users, dtype=torch.long).cpu()
        i = torch.as_tensor(items, dtype=torch.long).cpu()
        if u.shape != i.shape or u.dim() != 1:
            raise ConfigError(
                f"expected two 1-D index arrays of one length, received shapes "
                f"{tuple(u.shape)} and {tuple(i.shape)}"
            )
        if len(u) and (
            int(u.min()) < 0
            or int(u.max()) >= self.n_users
            or int(i.min()) < 0
            or int(i.max()) >= self.n_items
        ):
            raise ConfigError(
                f"expected user indices in [0, {self.n_users}) and item indices in "
                f"[0, {self.n_items}), received users in [{int(u.min())}, {int(u.max())}] "
                f"and items in [{int(i.min())}, {int(i.max())}]"
            )
        pairs = torch.unique(u * self.n_items + i)  # sorted by user, then item
        pu, pi = pairs // self.n_items, pairs % self.n_items
        counts = torch.bincount(pu, minlength=self.n_users)
        device = self.implicit_indptr.device
        self.implicit_indptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(device)
        self.implicit_items = pi.to(device)

    def implicit_counts(self) -> Tensor:
        """``|N(u)|`` for every user."""
        return self.implicit_indptr[1:] - self.implicit_indptr[:-1]

    def _gather(self, users: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For distinct ``users``: the items of their lists, the bag offsets, and the
        per-item weights ``|N(u)|^-alpha``."""
        starts = self.implicit_indptr[users]
        lens = self.implicit_indptr[users + 1] - starts
        offsets = torch.cumsum(lens, 0) - lens
        total = int(lens.sum())
        pos = torch.repeat_interleave(starts - offsets, lens, output_size=total)
        pos += torch.arange(total, device=users.device)
        scale = lens.clamp_min(1).to(self.implicit_factors.dtype).pow(-self.alpha)
        weights = torch.repeat_interleave(scale, lens, output_size=total)
        return self.implicit_items[pos], offsets, weights

    def implicit_vectors(self, users: Tensor) -> Tensor:
        """``|N(u)|^-alpha · Σ_{j ∈ N(u)} y_j`` for each user index (0 for empty lists)."""
        uniq, inv = torch.unique(users, return_inverse=True)
        items, offsets, weights = self._gather(uniq)
        bags = F.embedding_bag(
            items, self.implicit_factors, offsets, mode="sum", per_sample_weights=weights
        )
        return bags.index_select(0, inv)

    def effective_user_factors(self) -> Tensor:
        """``p_u`` plus the implicit term, for every user (what a query scores with)."""
        users = torch.arange(self.n_users, device=self.user_factors.device)
        return self.user_factors + self.implicit_vectors(users)

    def _raw(self, u: Tensor, i: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        pu = self.user_factors.index_select(0, u) + self.implicit_vectors(u)
        qi = self.item_factors.index_select(0, i)
        bu = self.user_bias.index_select(0, u)
        bi = self.item_bias.index_select(0, i)
        x = (pu * qi).sum(1) + bu + bi
        if self.global_mean:
            x = x + self.global_mean
        return x, pu, qi, bu, bi

    # fused path ---------------------------------------------------------------
    @torch.no_grad()
    def fused_forward(self, batch: Batch, with_penalty: bool) -> tuple[Tensor, Tensor | None, Any]:
        u, i = batch["user"], batch["item"]
        uniq, inv = torch.unique(u, return_inverse=True)
        items, offsets, weights = self._gather(uniq)
        imp = F.embedding_bag(
            items, self.implicit_factors, offsets, mode="sum", per_sample_weights=weights
        )
        pu = self.user_factors.index_select(0, u)
        eff = pu + imp.index_select(0, inv)
        qi = self.item_factors.index_select(0, i)
        bu = self.user_bias.index_select(0, u)
        bi = self.item_bias.index_select(0, i)
        x = (eff * qi).sum(1) + bu + bi
        if self.global_mean:
            x = x + self.global_mean
        pen = None
        if with_penalty:
            pen = (pu * pu).sum(1) + (qi * qi).sum(1) + bu * bu + bi * bi
        s = None
        out = x
        if self.y_range is not None:
            lo, hi = self.y_range
            s = torch.sigmoid(x)
            out = s * (hi - lo) + lo
        return out, pen, (pu, eff, qi, bu, bi, s, uniq, inv, items, offsets, weights)

    @torch.no_grad()
    def fused_backward(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> None:
        pu, eff, qi, bu, bi, s, uniq, inv, items, offsets, weights = saved
        if s is None:
            dx = d_output
        else:
            lo, hi = self.y_range  # type: ignore[misc]
            dx = d_output * (hi - lo) * s * (1.0 - s)
        u, i = batch["user"], batch["item"]
        d_eff = dx.unsqueeze(1) * qi
        di = dx.unsqueeze(1) * eff
        du = d_eff
        dbu, dbi = dx, dx
        if d_penalty is not None:
            two = 2.0 * d_penalty
            du = d_eff.addcmul(two.unsqueeze(1), pu)
            di = di.addcmul_(two.unsqueeze(1), qi)
            dbu = dx + two * bu
            dbi = dx + two * bi
        # d/dy_j = |N(u)|^-alpha · Σ over the batch rows of user u of d_eff, for j in N(u)
        d_user = d_eff.new_zeros(len(uniq), d_eff.shape[1]).index_add_(0, inv, d_eff)
        lens = torch.diff(offsets, append=offsets.new_tensor([len(items)]))
        d_y = torch.repeat_interleave(d_user, lens, dim=0, output_size=len(items))
        d_y.mul_(weights.unsqueeze(1))
        for p, idx, g in (
            (self.user_factors, u, du),
            (self.item_factors, i, di),
            (self.user_bias, u, dbu),
            (self.item_bias, i, dbi),
            (self.implicit_factors, items, d_y),
        ):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            else:
                p.grad.zero_()
            p.grad.index_add_(0, idx, g)
