"""timeSVD++ (Koren 2009, "Collaborative filtering with temporal dynamics").

A rating of user ``u`` for item ``i`` on day ``t`` is predicted as

    x = mu + b_u + alpha_u · dev_u(t) + b_{u,t} + b_i + b_{i,Bin(t)}
          + q_i · (p_u + |N(u)|^-1/2 · Σ_{j ∈ N(u)} y_j)

* ``dev_u(t) = sign(t - t_u) · |t - t_u|^beta`` with ``t_u`` the mean day of the user's
  training ratings (in days; Koren: ``beta`` 0.4): a user's drift in the scale they use;
* ``b_{u,t}``: one bias per (user, day) pair seen in training (a day's mood; 0 on a day
  the user did not rate in training);
* ``b_{i,Bin(t)}``: the item's bias in one of ``n_bins`` equal periods of the training
  time span (a time outside the span takes the nearest period);
* ``N(u)``: the items ``u`` rated (with a positive weight) in training: SVD++'s implicit
  term.

The family ``timesvdpp`` trains by its own fit (trainer ``closed_form``): ``epochs`` of
stochastic gradient steps in a compiled kernel (:mod:`recfit.models._kernels_timesvdpp`),
one thread, users in a seeded order, the learning rates multiplied by ``lr_decay`` after
each epoch (Koren's schedule). Compiling the kernel (or loading it from the cache under
the user's cache folder) is timed apart (``fit_info["compile_seconds"]``). Training data
without timestamps puts every rating on one day: the model is then SVD++ with biases.

Predictions read the batch's ``timestamp`` column (int64 seconds, added to every
prediction batch when the data has timestamps). **Without a timestamp a prediction uses
the user's last training day**: the user's drift and item periods as of then, and that
day's ``b_{u,t}`` (recommendations through the recommender have no timestamp, so they
score as of the user's last training day). After the fit the user vectors hold
``p_u`` plus the implicit term, so the saved model needs no lists. Predictions are clipped
into the training rating range.

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> rng = np.random.default_rng(0)
    >>> d = Interactions.from_arrays(rng.integers(0, 20, 300), rng.integers(0, 15, 300),
    ...     rng.integers(1, 6, 300).astype(float), timestamp=rng.integers(0, 10**8, 300))
    >>> m = create_timesvdpp(d, n_factors=4, epochs=3)
    >>> fit_timesvdpp(m, d)
    >>> len(m.fit_info["loss"]), m.config()["n_days"] == len(m.day_keys)
    (3, True)
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models._fitted import FittedFactors, check_settings, rating_range, training_rows
from recfit.models.base import Batch, RatingModel
from recfit.models.registry import Family, family, mean_rating, register_family, sized_build
from recfit.models.search import Param

__all__ = ["TimeSVDpp", "create_timesvdpp", "fit_timesvdpp"]

DAY = 86_400
"""Seconds in a day (the unit of ``t``)."""
_KEY_SHIFT = 32
_DAY_OFFSET = 1 << 31


class TimeSVDpp(FittedFactors):
    """timeSVD++ (see the module documentation).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        n_factors: width of the factor vectors.
        n_days: number of stored (user, day) biases (the fit sets it).
        n_bins: item-bias periods over the training time span.
        epochs: passes of stochastic gradient steps.
        lr: learning rate of the factors.
        reg: L2 penalty of the factors.
        lr_bias: learning rate of every bias.
        reg_bias: L2 penalty of ``b_u`` and ``b_i``.
        reg_time: L2 penalty of ``b_{u,t}`` and ``b_{i,Bin(t)}``.
        lr_alpha: learning rate of ``alpha_u``.
        reg_alpha: L2 penalty of ``alpha_u``.
        beta: exponent of ``dev_u(t)``.
        lr_decay: factor of every learning rate after each epoch.
        init_std: std of the initial factors.
        first_day: the first training day (days since 1970-01-01).
        bin_days: the length of an item period in days.
        **common: :class:`~recfit.models._fitted.FittedFactors`'s ``seed`` (of the
            initial factors and the order of the steps), ``global_mean`` (``mu``, the
            weighted mean training rating) and ``rating_range`` (predictions are clipped
            into it).
    """

    day_keys: Tensor
    user_mean_day: Tensor
    user_last_day: Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 100,
        *,
        n_days: int = 0,
        n_bins: int = 30,
        epochs: int = 30,
        lr: float = 0.0105,
        reg: float = 0.007,
        lr_bias: float = 0.007,
        reg_bias: float = 0.025,
        reg_time: float = 0.3,
        lr_alpha: float = 1e-5,
        reg_alpha: float = 50.0,
        beta: float = 0.4,
        lr_decay: float = 0.91,
        init_std: float = 0.013,
        first_day: int = 0,
        bin_days: int = 1,
        **common: Any,
    ) -> None:
        super().__init__(n_users, n_items, n_factors, **common)
        check_settings(integer=True, n_factors=n_factors, n_bins=n_bins, bin_days=bin_days)
        check_settings(integer=True, zero=True, n_days=n_days, epochs=epochs)
        check_settings(lr=lr, lr_bias=lr_bias, lr_decay=lr_decay)
        check_settings(zero=True, reg=reg, reg_bias=reg_bias, reg_time=reg_time,
                       lr_alpha=lr_alpha, reg_alpha=reg_alpha, beta=beta, init_std=init_std)  # fmt: skip
        self.n_factors, self.n_bins, self.epochs = int(n_factors), int(n_bins), int(epochs)
        self.lr, self.reg, self.lr_bias, self.reg_bias = float(lr), float(reg), float(lr_bias), float(reg_bias)  # fmt: skip
        self.reg_time, self.lr_alpha, self.reg_alpha = float(reg_time), float(lr_alpha), float(reg_alpha)  # fmt: skip
        self.beta, self.lr_decay, self.init_std = float(beta), float(lr_decay), float(init_std)
        self.first_day, self.bin_days = int(first_day), int(bin_days)
        u, i = self.n_users, self.n_items
        self.item_bin_bias = nn.Parameter(torch.zeros(i, self.n_bins))
        self.user_alpha = nn.Parameter(torch.zeros(u))
        self.day_bias = nn.Parameter(torch.zeros(int(n_days)))
        self.register_buffer("day_keys", torch.zeros(int(n_days), dtype=torch.long))
        self.register_buffer("user_mean_day", torch.zeros(u, dtype=torch.float64))
        self.register_buffer("user_last_day", torch.full((u,), self.first_day, dtype=torch.long))

    def config(self) -> dict[str, Any]:
        return self._head() | dict(
            n_factors=self.n_factors, n_days=int(self.day_keys.numel()), n_bins=self.n_bins,
            epochs=self.epochs, lr=self.lr, reg=self.reg, lr_bias=self.lr_bias,
            reg_bias=self.reg_bias, reg_time=self.reg_time, lr_alpha=self.lr_alpha,
            reg_alpha=self.reg_alpha, beta=self.beta, lr_decay=self.lr_decay,
            init_std=self.init_std, first_day=self.first_day, bin_days=self.bin_days,
        )  # fmt: skip

    def days(self, batch: Batch) -> Tensor:
        """The day of each row (days since 1970-01-01): from ``timestamp`` when the batch
        has it, else the user's last training day."""
        user = batch["user"]
        ts = batch.get("timestamp")
        if ts is None:
            return self.user_last_day.index_select(0, user.clamp_min(0))
        return torch.div(ts.to(torch.long), DAY, rounding_mode="floor").to(user.device)

    def forward(self, batch: Batch) -> Tensor:
        u, i = batch["user"].clamp_min(0), batch["item"].clamp_min(0)
        day = self.days(batch)
        dt = day.to(torch.float64) - self.user_mean_day.index_select(0, u)
        dev = (torch.sign(dt) * dt.abs().pow(self.beta)).to(self.user_alpha.dtype)
        b = torch.div(day - self.first_day, self.bin_days, rounding_mode="floor")
        b = b.clamp(0, self.n_bins - 1)
        x = (
            self.base_terms(u, i)
            + self.user_alpha.index_select(0, u) * dev
            + self._day_bias(u, day)
            + self.item_bin_bias[i, b]
        )
        return self.clip(x)

    def _day_bias(self, u: Tensor, day: Tensor) -> Tensor:
        """``b_{u,t}`` of each row (0 for a pair not seen in training)."""
        keys = self.day_keys
        if keys.numel() == 0:
            return torch.zeros(u.shape, dtype=self.day_bias.dtype, device=u.device)
        key = day_key(u, day)
        pos = torch.searchsorted(keys, key).clamp_max(keys.numel() - 1)
        hit = keys.index_select(0, pos) == key
        return torch.where(hit, self.day_bias.index_select(0, pos), 0.0)


def day_key(user: Any, day: Any) -> Any:
    """One sortable integer per (user, day) pair (arrays or tensors of int64; a day
    beyond +-2**31, some six million years from 1970, counts as the last one).

    Example:
        >>> int(day_key(np.int64(1), np.int64(-1))) == (1 << 32) + 2**31 - 1
        True
    """
    return (user << _KEY_SHIFT) | (day.clip(-_DAY_OFFSET, _DAY_OFFSET - 1) + _DAY_OFFSET)


@cache
def _kernels() -> Any:
    """The kernel module, each kernel compiled (or loaded from the cache) by one call on
    tiny arrays."""
    from recfit.models import _kernels_timesvdpp as kern

    f32, i64 = np.float32, np.int64
    ptr, idx, one = np.array([0, 1], i64), np.zeros(1, i64), np.ones(1, f32)
    x, t = np.zeros((1, 2), f32), np.zeros((1, 1), f32)
    kern.implicit_sum(ptr, idx, x, x.copy())
    kern.epoch(idx, np.ones(1, np.uint64), ptr, idx, one, one, idx, one, idx, ptr, idx,
               one.copy(), one.copy(), t, one.copy(), one.copy(), x.copy(), x.copy(), x.copy(),
               0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # fmt: skip
    return kern


def load_kernels() -> tuple[Any, float]:
    """The compiled kernels and the seconds it took to get them (about 0 once loaded)."""
    t0 = time.perf_counter()
    kern = _kernels()
    return kern, time.perf_counter() - t0


@torch.no_grad()
def fit_timesvdpp(model: RatingModel, train: Interactions) -> None:
    """Fit a :class:`TimeSVDpp` on ``train`` in place (see the module documentation).

    Training data without timestamps puts every rating on one day (day 0): the time terms
    then add one more bias per user and per item, and ``fit_info["timestamps"]`` is
    ``False``."""
    m = cast(TimeSVDpp, model)
    kern, compile_s = load_kernels()
    t0 = time.perf_counter()
    order, u, i, r, w, indptr = training_rows(train)
    n_users, k = m.n_users, m.n_factors
    ts_all = train.timestamp
    day = np.zeros(len(order), np.int64) if ts_all is None else np.floor_divide(ts_all[order], DAY)
    first = int(day.min()) if len(day) else 0
    span = int(day.max()) - first + 1 if len(day) else 1
    bin_days = max(1, math.ceil(span / m.n_bins))
    counts = np.bincount(u, minlength=n_users)
    mean_day = np.bincount(u, weights=day - first, minlength=n_users) / np.maximum(counts, 1)
    mean_day += first
    last = np.full(n_users, first, np.int64)
    np.maximum.at(last, u, day)
    dt = day - mean_day[u]
    dev = (np.sign(dt) * np.abs(dt) ** m.beta).astype(np.float32)
    bins = np.clip((day - first) // bin_days, 0, m.n_bins - 1).astype(np.int64)
    keys, day_idx = np.unique(day_key(u, day), return_inverse=True)
    pairs = np.unique(u * m.n_items + i)  # N(u): distinct items, sorted by user then item
    imp_items = (pairs % m.n_items).astype(np.int64)
    imp_indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(pairs // m.n_items, minlength=n_users), out=imp_indptr[1:])

    rng = np.random.default_rng(m.seed)
    std = m.init_std

    def init(n: int) -> np.ndarray:
        return (rng.standard_normal((n, k)) * std).astype(np.float32)

    p, q, y = init(n_users), init(m.n_items), init(m.n_items)
    bu, bi = np.zeros(n_users, np.float32), np.zeros(m.n_items, np.float32)
    bib = np.zeros((m.n_items, m.n_bins), np.float32)
    au, bud = np.zeros(n_users, np.float32), np.zeros(len(keys), np.float32)
    mu = float(np.average(r, weights=w)) if len(r) else 0.0
    lr, lr_b, lr_a = m.lr, m.lr_bias, m.lr_alpha
    losses: list[float] = []
    total_w = float(w.sum()) or 1.0
    for _ in range(m.epochs):
        visit = rng.permutation(n_users).astype(np.int64)
        seeds = rng.integers(1, 2**63 - 1, n_users, dtype=np.int64).astype(np.uint64)
        sse = kern.epoch(
            visit, seeds, indptr, i, r, w, day_idx.astype(np.int64), dev, bins,
            imp_indptr, imp_items, bu, bi, bib, au, bud, p, q, y,
            mu, lr, m.reg, lr_b, m.reg_bias, m.reg_time, lr_a, m.reg_alpha,
        )  # fmt: skip
        if not math.isfinite(sse):
            raise ConfigError(
                f"expected a finite training loss, received {sse!r} at epoch {len(losses)} "
                f"(lower lr or lr_bias: {m.lr!r}, {m.lr_bias!r})"
            )
        losses.append(sse / total_w)
        lr, lr_b, lr_a = lr * m.lr_decay, lr_b * m.lr_decay, lr_a * m.lr_decay
    eff = np.empty_like(p)
    kern.implicit_sum(imp_indptr, imp_items, y, eff)
    eff += p
    m.global_mean, m.first_day, m.bin_days = mu, first, bin_days
    m.day_keys = torch.from_numpy(keys.astype(np.int64))
    m.day_bias = nn.Parameter(torch.from_numpy(bud))
    for name, arr in (("user_factors", eff), ("item_factors", q), ("user_bias", bu),
                      ("item_bias", bi), ("item_bin_bias", bib), ("user_alpha", au)):  # fmt: skip
        getattr(m, name).copy_(torch.from_numpy(arr))
    m.user_mean_day.copy_(torch.from_numpy(mean_day))
    m.user_last_day.copy_(torch.from_numpy(last))
    m.fit_info = {
        "compile_seconds": compile_s, "fit_seconds": time.perf_counter() - t0,
        "loss": losses, "epochs": m.epochs, "threads": 1, "timestamps": ts_all is not None,
    }  # fmt: skip


def _prepare(kwargs: dict[str, Any], train: Interactions) -> None:
    """``global_mean``, ``rating_range`` from the data; the config's ``time_bins`` and
    ``time_reg`` as the constructor's ``n_bins`` and ``reg_time``."""
    mean_rating(kwargs, train)
    kwargs.setdefault("rating_range", rating_range(train))
    for field, arg in (("time_bins", "n_bins"), ("time_reg", "reg_time")):
        if field in kwargs:
            kwargs[arg] = kwargs.pop(field)


def create_timesvdpp(train: Interactions, **settings: Any) -> TimeSVDpp:
    """A :class:`TimeSVDpp` sized for ``train`` (``settings``: constructor arguments)."""
    return cast(TimeSVDpp, family("timesvdpp").build(settings, train))


register_family(Family(
    name="timesvdpp", task="rating", model_class=TimeSVDpp, output="rating",
    reads=frozenset({"n_factors", "epochs", "lr", "reg", "seed", "time_bins", "time_reg"}),
    trainers=("closed_form",), adapter="generic", closed_form=fit_timesvdpp,
    warm_up=lambda trainer, device: load_kernels(),  # CPU kernels on any device
    # how these were chosen: docs/families.md (inner cuts of the training rows)
    defaults={"n_factors": 100, "epochs": 30, "lr": 0.0105, "reg": 0.007},
    build=sized_build(TimeSVDpp, prepare=_prepare),
    summary="timeSVD++ (Koren 2009): time-aware biases (user drift, user-day, item "
    "periods) plus SVD++'s implicit term; SGD in a compiled kernel",
    search={
        "n_factors": Param(8, 200, integer=True, log=True),
        "epochs": Param(5, 40, integer=True),
        "lr": Param(1e-3, 2e-2, log=True),
        "reg": Param(1e-3, 0.1, log=True),
        "time_reg": Param(1e-3, 1.0, log=True),
        "time_bins": Param(4, 60, integer=True),
    },
))  # fmt: skip
