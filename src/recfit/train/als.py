"""Alternating least squares for the dot models with biases (batched ridge solves).

:func:`fit_als` trains a :class:`~recfit.models.BiasedMF` or a
:class:`~recfit.models.DotBias` without ``y_range`` (``prediction = mu + b_u + b_i +
p_u · q_i``) by minimising exactly the Learner's objective with an MSE loss and the
per-row L2 penalty ``reg`` (Surprise's semantics), times the total weight::

    J = Σ w (r - mu - b_u - b_i - p_u·q_i)²  +  reg · Σ w (|p_u|² + b_u² + |q_i|² + b_i²)

i.e. a user with ratings of total weight ``n_u`` has ridge ``reg · n_u`` on ``[p_u, b_u]``
("ALS-WR" weighting). ``mu`` is the weighted training mean, fixed. Each sweep solves
every user's ``[p_u, b_u]`` with the items fixed (each item augmented with a constant 1
so the bias is one more unknown), then every item's ``[q_i, b_i]``; each half-sweep is an
exact block minimisation, so ``J`` never increases.

Users (items) are grouped by their number of ratings into buckets of similar length;
each bucket is padded into a ``(users, length, n_factors + 1)`` tensor, the Gram
matrices and right-hand sides come from one ``bmm`` per chunk, and the ``(k+1)×(k+1)``
systems are solved together with a batched Cholesky factorisation.

Example:
    >>> from recfit.data.synthetic import synthetic
    >>> from recfit.models import BiasedMF
    >>> d = synthetic(600, 30, 40, seed=0)
    >>> m = BiasedMF(d.n_users, d.n_items, n_factors=4)
    >>> res = fit_als(m, d, epochs=3, reg=0.1)
    >>> bool(res.history[0]["objective"] >= res.history[-1]["objective"])
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError
from recfit.models.dot import DotBias
from recfit.models.registry import find_family

if TYPE_CHECKING:
    from recfit.train.learner import Learner

__all__ = ["ALSResult", "als_objective", "fit_als", "fit_als_learner"]

_PAD_BUDGET = 1 << 21  # padded (rows x length) entries per bmm chunk


@dataclass
class ALSResult:
    """What :func:`fit_als` did.

    Attributes:
        model: the trained model (the one passed in, updated in place).
        history: one dict per sweep: ``epoch``, ``objective`` (``J / Σw``, the Learner's
            ``loss`` on the training data), ``train_mse`` and, with ``valid``, the
            validation ``mse`` and ``rmse``; ``time`` is the sweep's seconds.
        fit_seconds: total training time.
    """

    model: DotBias
    history: list[dict[str, float]] = field(default_factory=list)
    fit_seconds: float = 0.0


class _Side:
    """Ratings grouped by one side (users or items), padded into length buckets.

    Everything that does not change between sweeps is built once per chunk: the other
    side's index (padding points at an extra all-zero row), the weights (``None`` when
    all are 1), the centred ratings and each row's ridge weight ``Σw``.
    """

    def __init__(
        self,
        own: np.ndarray,
        other: np.ndarray,
        centred: np.ndarray,
        weight: np.ndarray | None,
        n: int,
        n_other: int,
        device: torch.device,
    ) -> None:
        order = np.argsort(own, kind="stable")
        counts = np.bincount(own, minlength=n)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        other_s = np.append(other[order].astype(np.int64), n_other)  # last: the zero row
        r_s = np.append(centred[order].astype(np.float32), np.float32(0))
        w_s = None if weight is None else np.append(weight[order], 0.0).astype(np.float32)
        row_w = np.bincount(own, weights=weight, minlength=n)
        pad = len(order)
        self.chunks: list[tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]] = []
        active = np.flatnonzero(counts > 0)
        if len(active) == 0:
            return
        # geometric length buckets: padding wastes at most ~25%
        bucket = np.floor(np.log(counts[active]) / math.log(1.25)).astype(np.int64)
        for b in np.unique(bucket):
            rows = active[bucket == b]
            length = int(counts[rows].max())
            per = max(1, _PAD_BUDGET // length)
            ar = np.arange(length)
            for s in range(0, len(rows), per):
                r = rows[s : s + per]
                mask = ar[None, :] < counts[r][:, None]
                pos = np.where(mask, starts[r][:, None] + ar[None, :], pad)

                def t(a: np.ndarray) -> Tensor:
                    return torch.from_numpy(np.ascontiguousarray(a)).to(device)

                self.chunks.append(
                    (
                        t(r.astype(np.int64)),
                        t(other_s[pos]),
                        t(r_s[pos]),
                        None if w_s is None else t(w_s[pos]),
                        t(row_w[r].astype(np.float32)),
                    )
                )

    @torch.no_grad()
    def solve(
        self,
        fixed: Tensor,
        fixed_bias: Tensor,
        reg: float,
        out_factors: Tensor,
        out_bias: Tensor,
        exponent: float = 1.0,
    ) -> None:
        """Ridge solve of ``[factors, bias]`` for every row with ratings.

        ``fixed`` / ``fixed_bias``: the other side's factors and biases; a row's ridge is
        ``reg · (Σw of its ratings) ** exponent``.
        """
        n_other, k = fixed.shape
        dev, dt = fixed.device, fixed.dtype
        aug = torch.zeros(n_other + 1, k + 1, dtype=dt, device=dev)  # + the zero row
        aug[:n_other, :k] = fixed
        aug[:n_other, k] = 1.0
        bias = torch.cat([fixed_bias, torch.zeros(1, dtype=dt, device=dev)])
        eye = torch.eye(k + 1, dtype=dt, device=dev)
        for rows, other, centred, w, row_w in self.chunks:
            z = aug.index_select(0, other.view(-1)).view(*other.shape, k + 1)
            y = centred - bias[other]
            zw = z if w is None else z * w.unsqueeze(2)
            zt = zw.transpose(1, 2)
            a = torch.bmm(zt, z)
            rhs = torch.bmm(zt, y.unsqueeze(2))
            ridge = row_w if exponent == 1.0 else row_w**exponent
            a += (reg * ridge + 1e-6).view(-1, 1, 1) * eye
            chol, info = torch.linalg.cholesky_ex(a)
            if bool((info != 0).any()):  # pragma: no cover - the ridge keeps A positive definite
                x = torch.linalg.lstsq(a, rhs).solution
            else:
                x = torch.cholesky_solve(rhs, chol)
            x = x.squeeze(2)
            out_factors.index_copy_(0, rows, x[:, :k])
            out_bias.index_copy_(0, rows, x[:, k])


def _check_family(model: Any) -> None:
    """ALS trains the families that list it among their trainers (the row-wise dot
    models: ``dot`` and ``mf``)."""
    fam = find_family(model)
    if fam is None or "als" not in fam.trainers:
        raise ConfigError(
            f"expected a model of a family trained by 'als' (dot, mf), received "
            f"{type(model).__name__}" + (f" (family {fam.name!r})" if fam else "")
        )


def _check(model: DotBias, data: Interactions, epochs: int, reg: float) -> None:
    _check_family(model)
    if model.y_range is not None:
        raise ConfigError(
            f"expected a model without y_range for ALS (a sigmoid output has no closed-form "
            f"solve), received y_range={model.y_range}"
        )
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"expected epochs an integer >= 0, received {epochs!r}")
    if not (reg > 0 and math.isfinite(reg)):
        raise ConfigError(f"expected reg > 0 for ALS, received {reg!r}")
    for side, size in (("user", model.n_users), ("item", model.n_items)):
        idx = getattr(data, side)
        if len(idx) and int(idx.max()) >= size:
            raise DataError(
                f"expected {side} indices < {size} (the model's size), received {int(idx.max())}",
                column=side,
            )


@torch.no_grad()
def als_objective(
    model: DotBias, data: Interactions, reg: float, reg_exponent: float = 1.0
) -> tuple[float, float]:
    """``(J / Σw, weighted MSE)`` of ``model`` on ``data`` (the objective :func:`fit_als`
    minimises; with ``reg`` and ``reg_exponent=1`` it equals the Learner's ``loss`` with
    that ``reg``; otherwise a row's penalty is weighted by ``(Σw of its ratings) **
    reg_exponent`` instead of once per rating).

    Example:
        >>> from recfit.data import Interactions
        >>> from recfit.models import BiasedMF
        >>> d = Interactions.from_arrays([1, 2], [1, 1], [4.0, 2.0])
        >>> m = BiasedMF(2, 1, n_factors=2, init_std=0.0, global_mean=3.0)
        >>> als_objective(m, d, reg=0.1)
        (1.0, 1.0)
    """
    u = torch.from_numpy(data.user.astype(np.int64))
    i = torch.from_numpy(data.item.astype(np.int64))
    r = torch.from_numpy(data.rating.astype(np.float32))
    w = torch.from_numpy(data.weights().astype(np.float64))
    sq = torch.zeros(len(r), dtype=torch.float64)
    pen = torch.zeros(len(r), dtype=torch.float64)
    for s in range(0, len(r), 1 << 18):  # chunks: float32 products, float64 sums
        sl = slice(s, s + (1 << 18))
        pu, qi = model.user_factors[u[sl]], model.item_factors[i[sl]]
        bu, bi = model.user_bias[u[sl]], model.item_bias[i[sl]]
        pred = (pu * qi).sum(1) + bu + bi + model.global_mean
        sq[sl] = (r[sl] - pred).double() ** 2
        pen[sl] = ((pu * pu).sum(1) + (qi * qi).sum(1) + bu * bu + bi * bi).double()
    wsum = float(w.sum())
    mse = float((w * sq).sum()) / wsum
    if reg_exponent == 1.0:
        pen_mean = float((w * pen).sum()) / wsum
    else:
        pen_sum = 0.0
        for idx, fac, bias in (
            (data.user, model.user_factors, model.user_bias),
            (data.item, model.item_factors, model.item_bias),
        ):
            n = np.bincount(idx, weights=data.weights(), minlength=fac.shape[0])
            rows = ((fac * fac).sum(1) + bias * bias).double().numpy()
            pen_sum += float((n**reg_exponent * rows).sum())
        pen_mean = pen_sum / wsum
    return mse + reg * pen_mean, mse


def fit_als(
    model: DotBias,
    train: Interactions,
    *,
    epochs: int = 10,
    reg: float = 0.05,
    reg_exponent: float = 1.0,
    valid: Interactions | None = None,
    set_global_mean: bool = True,
    num_threads: int | None = None,
    callback: Callable[[dict[str, float]], bool | None] | None = None,
) -> ALSResult:
    """Train ``model`` by alternating least squares (see the module docstring).

    Args:
        model: a BiasedMF or a DotBias with ``y_range=None``; its user factors are
            overwritten by the first half-sweep, its item factors (initialised by the
            model's seed) are the starting point.
        train: training interactions (weights are used; weight-0 rows change nothing).
        epochs: sweeps (users then items).
        reg: ridge weight per rating, the Learner's ``reg`` (> 0).
        reg_exponent: a row's ridge is ``reg · n ** reg_exponent`` for ``n`` the total
            weight of its ratings: 1 (default) is the Learner's objective ("ALS-WR");
            below 1 regularises heavy users and popular items less (0.75 is best on
            R1 and R4, see BENCHMARKS.md).
        valid: evaluated after each sweep (``mse``, ``rmse`` in the history).
        set_global_mean: set ``model.global_mean`` to the weighted training mean first.
        num_threads: CPU threads while solving (``None``: PyTorch's setting).
        callback: called with each sweep's history record; returning ``True`` stops.

    Returns:
        an :class:`ALSResult` (the model is trained in place).

    Raises:
        ConfigError: a model with ``y_range``, ``reg <= 0`` or bad ``epochs``.
        DataError: indices outside the model's tables, or no rating with weight > 0.
    """
    _check(model, train, epochs, reg)
    if not (0.0 < reg_exponent <= 1.0):
        raise ConfigError(f"expected reg_exponent in (0, 1], received {reg_exponent!r}")
    keep = train.weights() > 0
    if not keep.any():
        raise DataError("expected training rows with weight > 0, received none")
    data = train if keep.all() else train.take(np.flatnonzero(keep))
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        result = ALSResult(model)
        dev = model.user_factors.device
        w_np = data.weights().astype(np.float64)
        unweighted = bool((w_np == 1.0).all())
        if set_global_mean:
            model.global_mean = float((w_np * data.rating).sum() / w_np.sum())
        centred = data.rating.astype(np.float64) - model.global_mean
        wt = None if unweighted else w_np
        users = _Side(data.user, data.item, centred, wt, model.n_users, model.n_items, dev)
        items = _Side(data.item, data.user, centred, wt, model.n_items, model.n_users, dev)
        with torch.no_grad():
            for epoch in range(epochs):
                ts = time.perf_counter()
                users.solve(
                    model.item_factors.data, model.item_bias.data, reg,
                    model.user_factors.data, model.user_bias.data, reg_exponent,
                )  # fmt: skip
                items.solve(
                    model.user_factors.data, model.user_bias.data, reg,
                    model.item_factors.data, model.item_bias.data, reg_exponent,
                )  # fmt: skip
                obj, mse = als_objective(model, data, reg, reg_exponent)
                rec: dict[str, float] = {"epoch": float(epoch), "objective": obj, "train_mse": mse}
                if valid is not None and len(valid):
                    _, vmse = als_objective(model, valid, 0.0)
                    rec["mse"], rec["rmse"] = vmse, math.sqrt(vmse)
                rec["time"] = time.perf_counter() - ts
                result.history.append(rec)
                if callback is not None and callback(rec):
                    break
    finally:
        torch.set_num_threads(old_threads)
    result.fit_seconds = time.perf_counter() - t0
    return result


def fit_als_learner(
    learner: Learner, epochs: int, reg: float | None = None, reg_exponent: float = 1.0
) -> Learner:
    """Train ``learner.model`` by ALS on ``learner.train``; fill the Learner's history.

    The Learner's ``evaluate`` / ``predict`` / ``history`` / ``fit_seconds`` then work as
    after an SGD fit: each sweep appends a history row (``train_loss`` is the objective
    ``J / Σw``, the validation metrics come from ``learner.evaluate``). Callbacks do not
    fire (there are no batches) and nothing is checkpointed.

    Args:
        learner: a Learner holding a BiasedMF or a DotBias without ``y_range``.
        epochs: ALS sweeps.
        reg: the ridge per rating (default: ``learner.reg``, so the Learner's ``loss``
            is the objective ALS minimises).

    Example:
        >>> from recfit.data.synthetic import synthetic
        >>> from recfit.models import BiasedMF
        >>> from recfit.train import Learner
        >>> d = synthetic(500, 30, 40, seed=0)
        >>> learn = Learner(BiasedMF(d.n_users, d.n_items, 4), d, d, reg=0.1, progress=False)
        >>> len(fit_als_learner(learn, 3).history)
        3
    """
    lam = learner.reg if reg is None else float(reg)
    model = learner.model
    _check_family(model)
    learner.model.train()

    spent = [0.0]

    def record(rec: dict[str, float]) -> None:
        t = time.perf_counter()
        sweep = len(learner.history)
        learner.epoch, learner.train_iter, learner.lr = sweep, sweep + 1, math.nan
        learner.check_finite(rec["objective"])  # the same guard as the Learner's fits
        objective = rec["objective"]
        learner.record_epoch(objective, objective - rec["train_mse"], seconds=rec["time"])
        spent[0] += time.perf_counter() - t

    t0 = time.perf_counter()
    with learner.threads():
        fit_als(
            cast(DotBias, model), learner.train, epochs=epochs, reg=lam,
            reg_exponent=reg_exponent, callback=record,
        )  # fmt: skip
    learner.fit_seconds = time.perf_counter() - t0 - spent[0]  # ALS alone, not validation
    learner.model.eval()
    return learner
