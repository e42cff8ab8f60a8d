"""Dot-product models: fastai's ``EmbeddingDotBias`` and Surprise-style biased MF.

Both predict ``x = mu + b_u + b_i + p_u · q_i``; :class:`DotBias` optionally squashes it
into ``y_range`` with ``lo + (hi - lo) * sigmoid(x)``. Both provide a fused training
step (hand-written gradient on the looked-up rows, written with ``index_add_``), which
the Learner uses instead of autograd.

Example:
    >>> import torch
    >>> m = DotBias(3, 4, n_factors=2, y_range=(0.0, 5.5))
    >>> batch = {"user": torch.tensor([0, 2]), "item": torch.tensor([1, 3])}
    >>> out = m(batch)
    >>> out.shape, bool(((out > 0) & (out < 5.5)).all())
    (torch.Size([2]), True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import Batch, RatingModel, squash
from recfit.models.registry import Family, mean_rating, register_family, sized_build
from recfit.models.search import SGD_SEARCH, Param

__all__ = ["BiasedMF", "DotBias"]


def _trunc_normal(shape: tuple[int, ...], std: float, gen: torch.Generator) -> Tensor:
    """fastai's init: normal(0, std) truncated at ±2 std."""
    t = torch.empty(shape)
    if std > 0:
        nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2 * std, b=2 * std, generator=gen)
    else:
        t.zero_()
    return t


def _check_sizes(n_users: int, n_items: int, n_factors: int) -> None:
    for name, v, lo in (
        ("n_users", n_users, 1),
        ("n_items", n_items, 1),
        ("n_factors", n_factors, 0),
    ):
        if not isinstance(v, int) or v < lo:
            raise ConfigError(f"expected {name} an integer >= {lo}, received {v!r}")


def _check_range(y_range: Any) -> tuple[float, float] | None:
    if y_range is None:
        return None
    lo, hi = (float(v) for v in y_range)
    if not hi > lo:
        raise ConfigError(f"expected y_range (lo, hi) with hi > lo, received {y_range!r}")
    return lo, hi


class DotBias(RatingModel):
    """User/item embeddings and biases, optional global mean and sigmoid ``y_range``.

    ``prediction = lo + (hi - lo) * sigmoid(mu + b_u + b_i + p_u · q_i)`` with ``y_range``,
    else the raw sum. Weights are initialised like fastai's (normal, std ``init_std``,
    truncated at ±2 std), biases too (``bias_init_std``), from ``seed``.

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        n_factors: embedding width.
        y_range: ``(lo, hi)`` in rating units, or ``None`` for no squashing. fastai's
            R1 configuration uses ``(0, 5.5)``.
        global_mean: a fixed offset ``mu`` added inside (before the sigmoid); usually
            the training mean rating when ``y_range`` is None.
        init_std: std of the factor init.
        bias_init_std: std of the bias init (fastai: 0.01, Surprise: 0).
        seed: seed of the initialisation.

    Example:
        >>> DotBias(10, 20).config()["n_factors"]
        50
    """

    supports_fused = True

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
    ) -> None:
        super().__init__()
        _check_sizes(n_users, n_items, n_factors)
        self.n_users, self.n_items, self.n_factors = n_users, n_items, n_factors
        self.y_range = _check_range(y_range)
        self.global_mean = float(global_mean)
        self.init_std, self.bias_init_std, self.seed = float(init_std), float(bias_init_std), seed
        g = torch.Generator().manual_seed(seed)
        self.user_factors = nn.Parameter(_trunc_normal((n_users, n_factors), init_std, g))
        self.item_factors = nn.Parameter(_trunc_normal((n_items, n_factors), init_std, g))
        self.user_bias = nn.Parameter(_trunc_normal((n_users,), bias_init_std, g))
        self.item_bias = nn.Parameter(_trunc_normal((n_items,), bias_init_std, g))
        self._register_record(n_users, n_items)

    def config(self) -> dict[str, Any]:
        return self._config(
            n_factors=self.n_factors,
            y_range=None if self.y_range is None else list(self.y_range),
            global_mean=self.global_mean,
            init_std=self.init_std,
            bias_init_std=self.bias_init_std,
            seed=self.seed,
        )

    def effective_user_factors(self) -> Tensor:
        """The factors each user scores items with (here ``user_factors`` itself)."""
        return self.user_factors

    def _user_rows(self, u: Tensor) -> tuple[Tensor, Tensor, Any]:
        """For batch users ``u``: their ``p_u`` rows (penalised), the vectors that multiply
        ``q_i`` (here the same rows) and what :meth:`_extra_grads` needs (here nothing).
        Subclasses with more to a user (:class:`~recfit.models.SVDpp`) override both."""
        pu = self.user_factors.index_select(0, u)
        return pu, pu, None

    def _extra_grads(self, extra: Any, d_eff: Tensor) -> list[tuple[nn.Parameter, Tensor, Tensor]]:
        """``(parameter, row indices, row gradients)`` beyond the four tables, given the
        gradient of the objective with respect to each row's user vector."""
        return []

    def _raw(
        self, u: Tensor, i: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Any]:
        pu, eff, extra = self._user_rows(u)
        qi = self.item_factors.index_select(0, i)
        bu = self.user_bias.index_select(0, u)
        bi = self.item_bias.index_select(0, i)
        x = (eff * qi).sum(1) + bu + bi
        if self.global_mean:
            x = x + self.global_mean
        return x, pu, qi, bu, bi, eff, extra

    def forward(self, batch: Batch) -> Tensor:
        return squash(self._raw(batch["user"], batch["item"])[0], self.y_range)

    def penalty(self, batch: Batch) -> Tensor:
        """``|p_u|² + |q_i|² + b_u² + b_i²`` per row (Surprise's regularised terms)."""
        u, i = batch["user"], batch["item"]
        pu = self.user_factors.index_select(0, u)
        qi = self.item_factors.index_select(0, i)
        bu = self.user_bias.index_select(0, u)
        bi = self.item_bias.index_select(0, i)
        return (pu * pu).sum(1) + (qi * qi).sum(1) + bu * bu + bi * bi

    # fused path ---------------------------------------------------------------
    @torch.no_grad()
    def fused_forward(self, batch: Batch, with_penalty: bool) -> tuple[Tensor, Tensor | None, Any]:
        """Output, penalty and ``saved = (p_u, q_i, b_u, b_i, s, user vectors, extra)``
        (``s``: the sigmoid, or None without ``y_range``)."""
        x, pu, qi, bu, bi, eff, extra = self._raw(batch["user"], batch["item"])
        pen = None
        if with_penalty:
            pen = (pu * pu).sum(1) + (qi * qi).sum(1) + bu * bu + bi * bi
        if self.y_range is None:
            return x, pen, (pu, qi, bu, bi, None, eff, extra)
        lo, hi = self.y_range
        s = torch.sigmoid(x)
        return s * (hi - lo) + lo, pen, (pu, qi, bu, bi, s, eff, extra)

    @torch.no_grad()
    def fused_backward(
        self, batch: Batch, saved: Any, d_output: Tensor, d_penalty: Tensor | None
    ) -> None:
        pu, qi, bu, bi, s, eff, extra = saved
        if s is None:
            dx = d_output
        else:
            lo, hi = self.y_range  # type: ignore[misc]
            dx = d_output * (hi - lo) * s * (1.0 - s)
        u, i = batch["user"], batch["item"]
        d_eff, di = dx.unsqueeze(1) * qi, dx.unsqueeze(1) * eff
        du = d_eff
        dbu, dbi = dx, dx
        if d_penalty is not None:
            two = 2.0 * d_penalty
            du = d_eff.addcmul(two.unsqueeze(1), pu)
            di = di.addcmul_(two.unsqueeze(1), qi)
            dbu = dx + two * bu
            dbi = dx + two * bi
        for p, idx, g in (
            (self.user_factors, u, du),
            (self.item_factors, i, di),
            (self.user_bias, u, dbu),
            (self.item_bias, i, dbi),
            *self._extra_grads(extra, d_eff),
        ):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            else:
                p.grad.zero_()
            p.grad.index_add_(0, idx, g)


DOT_SEARCH = {"n_factors": Param(8, 256, integer=True, log=True), **SGD_SEARCH}
"""What ``recfit tune`` searches for the dot-product families (dot, mf, svdpp)."""

_SURPRISE_INIT = {"init_std": 0.1, "bias_init_std": 0.0}
"""BiasedMF's defaults that differ from DotBias's (Surprise SVD's initialisation)."""


class BiasedMF(DotBias):
    """Biased matrix factorisation with Surprise SVD's semantics (no sigmoid).

    ``prediction = mu + b_u + b_i + p_u · q_i`` with ``mu`` the training mean (fixed),
    factors initialised normal(0, ``init_std``) (Surprise: 0.1) and zero biases (the
    ``mf`` family's build starts them at the training baseline instead). Train
    it with the Learner's ``reg`` (an L2 penalty on the rows in each batch, Surprise's
    ``reg_all``) rather than, or as well as, decoupled ``wd``.

    Args:
        n_users, n_items, n_factors: as for :class:`DotBias` (100 factors by default).
        **dot: the other :class:`DotBias` arguments, with Surprise's defaults:
            ``init_std`` 0.1, ``bias_init_std`` 0, no ``y_range``.

    Example:
        >>> m = BiasedMF(5, 6, n_factors=4, global_mean=3.5)
        >>> float(m.user_bias.detach().abs().sum()), m.init_std
        (0.0, 0.1)
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 100, **dot: Any) -> None:
        super().__init__(n_users, n_items, n_factors, **{**_SURPRISE_INIT, **dot})
        if self.init_std > 0:  # Surprise uses a plain (untruncated) normal
            g = torch.Generator().manual_seed(self.seed)
            with torch.no_grad():
                self.user_factors.normal_(0.0, self.init_std, generator=g)
                self.item_factors.normal_(0.0, self.init_std, generator=g)


def baseline_biases(model: DotBias, train: Interactions) -> None:
    """A ``finish`` for :func:`sized_build`: the biases start at the ridge baseline of the
    training rows that the model's training record holds
    (:meth:`~recfit.models.base.RatingModel.record_training`) instead of 0. Without a
    sigmoid they carry most of a rating's spread, and row-wise Adagrad at its defaults
    moves biases that start at 0 only about half way in 5 epochs (on 100k ratings with
    few per user: mean ``|b_i|`` 0.08 against the baseline's 0.24, inner RMSE 1.043
    against 0.955 when they start at the baseline)."""
    with torch.no_grad():
        model.user_bias.copy_(model.baseline_user)
        model.item_bias.copy_(model.baseline_item)


register_family(Family(
    name="dot", task="rating", model_class=DotBias, output="rating",
    reads=frozenset({"n_factors", "y_range", "seed"}),
    trainers=("sgd", "als"), adapter="dot", row_wise=True,
    kernels=("dense_epoch", "row_step"),
    defaults={}, build=sized_build(DotBias), search=DOT_SEARCH,
    summary="fastai's EmbeddingDotBias: mu + b_u + b_i + p_u · q_i, optional y_range",
))  # fmt: skip
register_family(Family(
    name="mf", task="rating", model_class=BiasedMF, output="rating",
    reads=frozenset({"n_factors", "seed"}),
    trainers=("sgd", "als"), adapter="dot", row_wise=True,
    kernels=("dense_epoch", "row_step"),
    defaults={}, build=sized_build(BiasedMF, prepare=mean_rating, finish=baseline_biases),
    search=DOT_SEARCH,
    summary="biased matrix factorisation with Surprise SVD's semantics (mu: the mean rating)",
))  # fmt: skip
