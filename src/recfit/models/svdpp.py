"""SVD++ (Koren 2008) on recfit's DotBias: the user vector also sums the rated items.

A user is described by their factors *and* by which items they rated in training:

    x = mu + b_u + b_i + q_i · (p_u + |N(u)|^-alpha · Σ_{j ∈ N(u)} y_j)

with ``N(u)`` the items the user rated (with a positive weight) in the training data and
``y_j`` a second table of item factors. With ``y_range`` the sum goes through the same
scaled sigmoid as :class:`~recfit.models.DotBias`. The implicit part lets a user with few
ratings borrow from what the items they chose say about them. It is ``recfit train``'s
default rating model on the dense path (docs/defaults.md says how that was chosen).

``N(u)`` is stored in the model as a CSR pair of buffers (``implicit_indptr``,
``implicit_items``), filled from the training interactions by :meth:`SVDpp.set_implicit`
(:func:`recfit.models.create_model` does it), so a saved model predicts without the data.
Training uses DotBias's fused step (hand-written gradient, no autograd) plus the gradient
of the ``y`` rows in the batch users' lists; ``reg`` penalises the looked-up ``p_u``,
``q_i``, ``b_u`` and ``b_i`` rows as in DotBias, while the ``y`` table is regularised by the
decoupled weight decay ``wd``. On CPU float32 tables that step runs as two numba kernels
(:mod:`recfit.models._kernels_svdpp`: each distinct batch user's sum once, every touched
row's gradient written in place, the same order as the PyTorch step); the optimiser step
is unchanged. ``SVDpp.fused_kernel = False`` keeps the PyTorch step, the reference.

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

import time
import weakref
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import Batch
from recfit.models.dot import DOT_SEARCH, DotBias, _trunc_normal
from recfit.models.registry import Family, family, register_family, sized_build

__all__ = ["ImplicitLists", "SVDpp", "implicit_lists"]


class ImplicitLists:
    """``N(u)`` as CSR buffers (``implicit_indptr``, ``implicit_items``) and the gathering
    of the batch users' lists: the part of SVD++'s implicit term that other families with
    one (OrdRec) share. The class using it registers the two buffers and holds
    ``implicit_factors``, ``alpha``, ``n_users`` and ``n_items``."""

    n_users: int
    n_items: int
    alpha: float
    implicit_indptr: Tensor
    implicit_items: Tensor
    implicit_factors: nn.Parameter

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

    def _gather(self, users: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For distinct ``users``: the items of their lists, the bag offsets, the per-item
        weights ``|N(u)|^-alpha`` and the list lengths."""
        starts = self.implicit_indptr[users]
        lens = self.implicit_indptr[users + 1] - starts
        offsets = torch.cumsum(lens, 0) - lens
        total = int(lens.sum())
        pos = torch.repeat_interleave(starts - offsets, lens, output_size=total)
        pos += torch.arange(total, device=users.device)
        scale = lens.clamp_min(1).to(self.implicit_factors.dtype).pow(-self.alpha)
        weights = torch.repeat_interleave(scale, lens, output_size=total)
        return self.implicit_items[pos], offsets, weights, lens


class SVDpp(ImplicitLists, DotBias):
    """DotBias plus an implicit-feedback term over each user's rated items (SVD++).

    Args:
        *sizes: ``n_users``, ``n_items`` and ``n_factors`` of
            :class:`~recfit.models.DotBias` (or given by name).
        n_implicit: length of the stored ``N(u)`` lists (the number of training pairs);
            :meth:`set_implicit` sets it. A fresh model has empty lists (no implicit
            term) until then.
        alpha: the normalisation exponent: the implicit term is ``|N(u)|^-alpha`` times
            the sum of ``y_j`` (Koren: 0.5; the default 1 is the mean, see
            docs/defaults.md).
        implicit_init_std: std of the ``y`` init (0: zeros, so the model starts as DotBias).
        **dot: the other :class:`~recfit.models.DotBias` arguments (``y_range``,
            ``global_mean``, ``init_std``, ``bias_init_std``, ``seed``).
    """

    implicit_indptr: Tensor
    implicit_items: Tensor
    fused_kernel: bool = True
    """Whether the fused step runs as the compiled kernels (numba) where it can (CPU,
    float32); ``False`` (on an instance or the class) keeps the PyTorch step, the
    reference the kernels are tested against."""

    def __init__(
        self,
        *sizes: Any,
        n_implicit: int = 0,
        alpha: float = 1.0,
        implicit_init_std: float = 0.0,
        **dot: Any,
    ) -> None:
        super().__init__(*sizes, **dot)
        if n_implicit < 0 or not alpha >= 0:
            raise ConfigError(
                f"expected n_implicit >= 0 and alpha >= 0, received {n_implicit!r}, {alpha!r}"
            )
        self.alpha, self.implicit_init_std = float(alpha), float(implicit_init_std)
        g = torch.Generator().manual_seed(self.seed + 1)
        self.implicit_factors = nn.Parameter(
            _trunc_normal((self.n_items, self.n_factors), implicit_init_std, g)
        )
        self.register_buffer("implicit_indptr", torch.zeros(self.n_users + 1, dtype=torch.long))
        self.register_buffer("implicit_items", torch.zeros(n_implicit, dtype=torch.long))

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "n_implicit": int(self.implicit_items.numel()),
            "alpha": self.alpha,
            "implicit_init_std": self.implicit_init_std,
        }

    def _implicit(self, users: Tensor) -> tuple[Tensor, Any]:
        """The implicit term of each user index, and the lists its gradient needs."""
        uniq, inv = torch.unique(users, return_inverse=True)
        items, offsets, weights, lens = self._gather(uniq)
        bags = F.embedding_bag(
            items, self.implicit_factors, offsets, mode="sum", per_sample_weights=weights
        )
        return bags.index_select(0, inv), (inv, items, weights, lens)

    def implicit_vectors(self, users: Tensor) -> Tensor:
        """``|N(u)|^-alpha · Σ_{j ∈ N(u)} y_j`` for each user index (0 for empty lists)."""
        return self._implicit(users)[0]

    def effective_user_factors(self) -> Tensor:
        """``p_u`` plus the implicit term, for every user (what a query scores with)."""
        users = torch.arange(self.n_users, device=self.user_factors.device)
        return self.user_factors + self.implicit_vectors(users)

    def _user_rows(self, u: Tensor) -> tuple[Tensor, Tensor, Any]:
        """``p_u``, ``p_u`` plus the implicit term, and the lists for the ``y`` gradient."""
        imp, extra = self._implicit(u)
        pu = self.user_factors.index_select(0, u)
        return pu, pu + imp, extra

    # compiled fused step ---------------------------------------------------------
    def _tables(self) -> tuple[nn.Parameter, ...]:
        """``p, q, b_u, b_i, y``: the tables the fused step writes gradients to."""
        p = self._parameters  # not through nn.Module.__getattr__: this runs twice a step
        return (
            p["user_factors"],
            p["item_factors"],
            p["user_bias"],
            p["item_bias"],
            p["implicit_factors"],
        )  # type: ignore[return-value]

    def _kernel_tables(self) -> list[np.ndarray] | None:
        """NumPy views of ``p, q, b_u, b_i, y`` and of the ``N(u)`` lists when the
        compiled step can run on them (CPU float32, numba importable, :attr:`fused_kernel`
        on); kept while the tensors' memory stays the same."""
        if not self.fused_kernel:
            return None
        buf = self._buffers
        tensors = (*self._tables(), buf["implicit_indptr"], buf["implicit_items"])
        return _numpy_views(self, "tables", tensors, _kernel_ready)  # type: ignore[arg-type]

    def compile_kernels(self) -> float:
        """Compile (or load from numba's cache) the compiled fused step; the seconds it
        took (0 when it does not run: no numba, not CPU float32)."""
        t0 = time.perf_counter()
        if self._kernel_tables() is None:
            return 0.0
        batch = {"user": torch.zeros(1, dtype=torch.long), "item": torch.zeros(1, dtype=torch.long)}
        grads = [None if p.grad is None else p.grad.clone() for p in self.parameters()]
        for pen in (False, True):
            _, _, saved = self.fused_forward(batch, pen)
            zero = torch.zeros(1)
            self.fused_backward(batch, saved, zero, zero if pen else None)
        for p, g in zip(self.parameters(), grads, strict=True):
            p.grad = g
        return time.perf_counter() - t0

    @torch.no_grad()
    def fused_forward(self, batch: Batch, with_penalty: bool) -> tuple[Tensor, Tensor | None, Any]:
        tables = self._kernel_tables()
        if tables is None:
            return super().fused_forward(batch, with_penalty)
        kern = _svdpp_kernels()
        lo, hi = self.y_range if self.y_range is not None else (0.0, 1.0)
        users, items = _index_array(batch["user"]), _index_array(batch["item"])
        out, pen, *saved = kern.forward(
            users, items, tables[5], tables[6], *tables[:5], self.alpha, self.global_mean, lo, hi, self.y_range is not None,
        )  # fmt: skip
        pen_t = torch.from_numpy(pen) if with_penalty else None
        return torch.from_numpy(out), pen_t, _KernelSaved(users, items, tables, saved)

    @torch.no_grad()
    def fused_backward(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> None:
        if not isinstance(saved, _KernelSaved):
            super().fused_backward(batch, saved, d_output, d_penalty)
            return
        grads = []
        for t in self._tables():
            if t.grad is None:
                t.grad = torch.zeros_like(t)
            grads.append(t.grad)
        views = _numpy_views(self, "grads", grads, lambda ts: True)
        assert views is not None
        # the rows the last kernel step wrote are the only non-zero ones while the same
        # gradient tensors (held here, so never another one at their address) are unchanged
        # since: no in-place PyTorch operation on them, so the same versions
        cache = _VIEWS[self]
        versions = [g._version for g in grads]
        last = cache.get("written")
        rows = (None, None)
        if (
            last is not None
            and last[1] == versions
            and all(a is b for a, b in zip(last[0], grads, strict=True))
        ):
            rows = last[2]
        lo, hi = self.y_range if self.y_range is not None else (0.0, 1.0)
        d_out = _value_array(d_output)
        d_pen = d_out if d_penalty is None else _value_array(d_penalty)
        tables = saved.tables
        _svdpp_kernels().backward(
            saved.users, saved.items, tables[5], tables[6], *tables[:4],
            d_out, d_pen, d_penalty is not None, *saved.saved,
            lo, hi, self.y_range is not None, *views, *rows,
        )  # fmt: skip
        cache["written"] = (grads, versions, (saved.users, saved.items))

    def _extra_grads(self, extra: Any, d_eff: Tensor) -> list[tuple[nn.Parameter, Tensor, Tensor]]:
        # d/dy_j = |N(u)|^-alpha · Σ over the batch rows of user u of d_eff, for j in N(u)
        inv, items, weights, lens = extra
        d_user = d_eff.new_zeros(len(lens), d_eff.shape[1]).index_add_(0, inv, d_eff)
        d_y = torch.repeat_interleave(d_user, lens, dim=0, output_size=len(items))
        return [(self.implicit_factors, items, d_y.mul_(weights.unsqueeze(1)))]


class _KernelSaved(NamedTuple):
    """What the compiled forward hands its backward: the batch's index arrays, the
    tables' NumPy views and the kernel's own results (see :mod:`._kernels_svdpp`)."""

    users: np.ndarray
    items: np.ndarray
    tables: list[np.ndarray]
    saved: list[np.ndarray]


@cache
def _svdpp_kernels() -> Any:
    """The compiled kernels' module (numba's cache under the user's cache folder), or
    ``None`` without numba."""
    try:
        from recfit.models import _kernels_svdpp
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return _kernels_svdpp


_VIEWS: weakref.WeakKeyDictionary[nn.Module, dict[str, Any]] = weakref.WeakKeyDictionary()
"""Per model: the NumPy views of its tables and gradients, keyed by their memory."""


def _numpy_views(
    owner: nn.Module,
    name: str,
    tensors: Sequence[Tensor],
    ready: Callable[[Sequence[Tensor]], bool],
) -> list[np.ndarray] | None:
    """NumPy views of ``tensors`` (``None`` where ``ready`` refuses them), made again only
    when one of them has moved (a view holds its memory, so an address is never reused
    while it is cached)."""
    key = tuple(t.data_ptr() for t in tensors)
    cache = _VIEWS.setdefault(owner, {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]  # type: ignore[no-any-return]
    views = [t.detach().numpy() for t in tensors] if ready(tensors) else None
    cache[name] = (key, views)
    return views


def _kernel_ready(tensors: Sequence[Tensor]) -> bool:
    """Whether the kernels run on these tables (CPU float32) and numba imports."""
    cpu = all(t.device.type == "cpu" for t in tensors)
    f32 = all(t.dtype == torch.float32 for t in tensors[:5])
    return cpu and f32 and _svdpp_kernels() is not None


def _index_array(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy(), dtype=np.int64)


def _value_array(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)


def implicit_lists(model: ImplicitLists, train: Interactions) -> None:
    """``N(u)``: the items each user rated with a positive weight in ``train``."""
    keep = train.weights() > 0
    model.set_implicit(
        torch.from_numpy(np.asarray(train.user)[keep]),
        torch.from_numpy(np.asarray(train.item)[keep]),
    )


def _warm_up(trainer: str, device: torch.device) -> None:
    """Compile (or load from numba's cache) the compiled fused step for a fit on ``device``
    (:data:`~recfit.models.registry.WarmUp`): on a model sized for two ratings, the same
    dtypes as any; nothing off the CPU, where it does not run."""
    if device.type == "cpu":
        tiny = Interactions.from_arrays([0, 1], [0, 1], [1.0, 2.0])
        family("svdpp").build({"n_factors": 2, "seed": 0}, tiny).compile_kernels()


register_family(Family(
    name="svdpp", task="rating", model_class=SVDpp, output="rating",
    reads=frozenset({"n_factors", "y_range", "seed"}),
    trainers=("sgd",), adapter="svdpp", kernels=("dense_epoch",), warm_up=_warm_up,
    # how these were chosen: docs/defaults.md
    defaults={"epochs": 6, "pct_start": 0.3}, build=sized_build(SVDpp, finish=implicit_lists),
    search=DOT_SEARCH,
    summary="DotBias plus SVD++'s implicit term over each user's rated items",
))  # fmt: skip
