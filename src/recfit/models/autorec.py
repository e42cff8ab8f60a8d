"""I-AutoRec (Sedhain et al. 2015): an item-based autoencoder of the rating matrix.

Each item ``i`` is the vector ``r_i`` of its training ratings over all users (0 where a
user did not rate it). The network encodes it into ``hidden`` sigmoid units and decodes
one rating per user:

    h(r_i) = W · sigmoid(V r_i + mu) + b        (V: hidden x users, W: users x hidden)

and the prediction of user ``u`` for item ``i`` is ``h(r_i)_u``, clipped into the
training rating range. The fit minimises, as in the paper,

    Σ_(u,i) observed  w_ui (r_ui - h(r_i)_u)²  +  reg / 2 · (|W|² + |V|²)

by Adam over random batches of items (each batch's dense rows, one matrix product each
way), the penalty shared among the batches of an epoch in proportion to their items, the
learning rate annealed to 0 along a cosine over ``epochs`` passes. Only rows of positive
weight count; a pair rated twice is one entry (the weighted mean rating, the summed
weight). The same seed gives the same weights. A deadline
(:func:`recfit.models._budget.fit_until`, set by ``model="auto"`` within its budget)
shortens the fit to the epochs that the pace says end by it (at least one), the cosine
compressed to them; ``epochs`` (and the bundle's config) then says how many ran.

The training ratings the prediction reads (``r_i`` for every item) are stored in the
model as a CSR of buffers (``rated_indptr``, ``rated_user``, ``rated_value``), so a
saved model or a bundle predicts without the data. Users and items without a training
row are answered by the baseline, as for every rating family.

The family ``autorec`` trains by this fit (trainer ``closed_form``); its settings are
``autorec_hidden``, ``epochs``, ``lr``, ``reg`` (the paper's λ, on the sum of squares)
and ``seed``.

Example:
    >>> from recfit.data.synthetic import synthetic
    >>> d = synthetic(400, 30, 20, seed=0)
    >>> m = create_autorec(d, hidden=8, epochs=3)
    >>> fit_autorec(m, d)
    >>> m.item_codes().shape, len(m.fit_info["train_mse"])
    (torch.Size([20, 8]), 3)
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from recfit.data.interactions import Interactions
from recfit.errors import BundleError, ConfigError, TrainingDivergedError
from recfit.models._budget import steps_that_fit
from recfit.models._fitted import rating_range
from recfit.models.base import Batch, RatingModel
from recfit.models.ials import check_positive
from recfit.models.registry import Family, family, register_family, sized_build
from recfit.models.search import Param

__all__ = ["AUTOREC_SEARCH", "IAutoRec", "create_autorec", "fit_autorec", "rating_matrix"]

AUTOREC_SEARCH: dict[str, Param] = {
    "autorec_hidden": Param(100, 1000, integer=True, log=True),
    "reg": Param(10.0, 3000.0, log=True),
    "lr": Param(1e-3, 3e-2, log=True),
    "epochs": Param(10, 80, integer=True),
}
"""The settings worth tuning and their ranges (``reg``: the paper's λ)."""


def rating_matrix(
    train: Interactions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of positive weight of ``train`` as an items x users CSR: ``(indptr
    [n_items + 1], user, rating, weight)``, sorted by item then user; a pair given twice
    is one entry with the weighted mean rating and the summed weight.

    Example:
        >>> d = Interactions.from_arrays([1, 2, 1], [7, 7, 7], [4.0, 2.0, 5.0])
        >>> [a.tolist() for a in rating_matrix(d)]
        [[0, 2], [0, 1], [4.5, 2.0], [2.0, 1.0]]
    """
    w = train.weights()
    keep = np.flatnonzero(w > 0)
    u = np.asarray(train.user, dtype=np.int64)[keep]
    i = np.asarray(train.item, dtype=np.int64)[keep]
    key, inv = np.unique(i * train.n_users + u, return_inverse=True)
    wk = w[keep].astype(np.float64)
    wsum = np.bincount(inv, weights=wk, minlength=len(key))
    rsum = np.bincount(
        inv, weights=wk * np.asarray(train.rating, np.float64)[keep], minlength=len(key)
    )
    item, user = np.divmod(key, train.n_users)
    indptr = np.zeros(train.n_items + 1, np.int64)
    np.cumsum(np.bincount(item, minlength=train.n_items), out=indptr[1:])
    return indptr, user, (rsum / wsum).astype(np.float32), wsum.astype(np.float32)


class IAutoRec(RatingModel):
    """I-AutoRec, the item-based autoencoder (see the module documentation).

    Args:
        n_users: number of user indices (the width of an item's rating vector).
        n_items: number of item indices.
        hidden: sigmoid units of the code (the paper: 500).
        reg: λ, the L2 penalty of both weight matrices on the sum of squared errors.
        epochs: passes over the items.
        lr: Adam's initial learning rate (annealed to 0 by a cosine).
        batch_items: items per step.
        init_std: std of the normal initial weights.
        seed: seeds the initial weights and the order of the items.
        rating_range: predictions are clipped into it (``None``: not clipped).
        n_ratings: entries of the stored rating matrix (the fit sets it).

    Raises:
        ConfigError: a size, count or rate out of range (naming the argument).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        hidden: int = 500,
        *,
        reg: float = 300.0,
        epochs: int = 30,
        lr: float = 2.5e-3,
        batch_items: int = 256,
        init_std: float = 0.03,
        seed: int = 0,
        rating_range: tuple[float, float] | None = None,
        n_ratings: int = 0,
    ) -> None:
        super().__init__()
        for name, n in (("n_users", n_users), ("n_items", n_items), ("hidden", hidden),
                        ("epochs", epochs), ("batch_items", batch_items)):  # fmt: skip
            check_positive(name, n, integer=True)
        check_positive("n_ratings", n_ratings, integer=True, zero=True)
        check_positive("lr", lr)
        for name, v in (("reg", reg), ("init_std", init_std)):
            check_positive(name, v, zero=True)
        if rating_range is not None and not float(rating_range[0]) <= float(rating_range[1]):
            raise ConfigError(f"expected rating_range (low, high), received {rating_range!r}")
        self.n_users, self.n_items, self.hidden = int(n_users), int(n_items), int(hidden)
        self.reg, self.epochs, self.lr = float(reg), int(epochs), float(lr)
        self.batch_items, self.init_std, self.seed = int(batch_items), float(init_std), int(seed)
        self.rating_range = None if rating_range is None else (float(rating_range[0]), float(rating_range[1]))  # fmt: skip
        g = torch.Generator().manual_seed(self.seed)
        self.encoder_weight = nn.Parameter(torch.randn(n_users, hidden, generator=g) * init_std)
        self.encoder_bias = nn.Parameter(torch.zeros(hidden))
        self.decoder_weight = nn.Parameter(torch.randn(n_users, hidden, generator=g) * init_std)
        self.decoder_bias = nn.Parameter(torch.zeros(n_users))
        self.register_buffer("rated_indptr", torch.zeros(n_items + 1, dtype=torch.long))
        self.register_buffer("rated_user", torch.zeros(n_ratings, dtype=torch.long))
        self.register_buffer("rated_value", torch.zeros(n_ratings))
        self._register_record(self.n_users, self.n_items)
        self.fit_info: dict[str, Any] = {}
        self._codes: tuple[tuple[int, ...], Tensor] | None = None

    def config(self) -> dict[str, Any]:
        return self._config(
            hidden=self.hidden, reg=self.reg, epochs=self.epochs, lr=self.lr,
            batch_items=self.batch_items, init_std=self.init_std, seed=self.seed,
            rating_range=None if self.rating_range is None else list(self.rating_range),
            n_ratings=len(self.rated_value),
        )  # fmt: skip

    @torch.no_grad()
    def set_ratings(self, indptr: Any, user: Any, value: Any) -> None:
        """Store the items x users training ratings (a CSR) that predictions encode."""
        indptr = torch.as_tensor(np.asarray(indptr), dtype=torch.long)
        if indptr.shape != (self.n_items + 1,):
            raise ConfigError(
                f"expected rated_indptr of length n_items + 1 = {self.n_items + 1}, "
                f"received {tuple(indptr.shape)}"
            )
        self.rated_indptr = indptr
        self.rated_user = torch.as_tensor(np.asarray(user), dtype=torch.long)
        self.rated_value = torch.as_tensor(np.asarray(value), dtype=torch.float32)
        self._codes = None

    def dense_rows(self, items: Tensor, values: Tensor | None = None) -> Tensor:
        """The items' rating vectors as a dense ``[len(items), n_users]`` matrix (of
        ``values`` instead of the stored ratings when given, aligned with them)."""
        indptr = self.rated_indptr
        starts, counts = indptr[items], indptr[items + 1] - indptr[items]
        total = int(counts.sum())
        rows = torch.repeat_interleave(torch.arange(len(items)), counts)
        offsets = torch.cumsum(counts, 0) - counts
        pos = torch.arange(total) + torch.repeat_interleave(starts - offsets, counts)
        src = self.rated_value if values is None else values
        out = torch.zeros(len(items), self.n_users, dtype=src.dtype)
        out[rows, self.rated_user[pos]] = src[pos]
        return out

    def encode(self, x: Tensor) -> Tensor:
        """The code ``sigmoid(V r + mu)`` of dense rating vectors ``x`` (rows)."""
        return torch.sigmoid(torch.addmm(self.encoder_bias, x, self.encoder_weight))

    def item_codes(self) -> Tensor:
        """Every item's code from the stored ratings ``[n_items, hidden]`` (kept until a
        weight or the ratings change)."""
        key = tuple(t._version for t in (self.encoder_weight, self.encoder_bias, self.rated_value))
        key += (id(self.encoder_weight), id(self.rated_value))
        if self._codes is not None and self._codes[0] == key and not torch.is_grad_enabled():
            return self._codes[1]
        rows = torch.repeat_interleave(torch.arange(self.n_items), self.rated_indptr.diff())
        x = torch.sparse_coo_tensor(
            torch.stack([rows, self.rated_user]), self.rated_value,
            (self.n_items, self.n_users), is_coalesced=True, check_invariants=True,
        )  # fmt: skip
        codes = torch.sigmoid(torch.sparse.mm(x, self.encoder_weight) + self.encoder_bias)
        if not torch.is_grad_enabled():
            self._codes = (key, codes)
        return codes

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._codes = None
        super()._load_from_state_dict(*args, **kwargs)
        self.check_ratings()

    def check_ratings(self) -> None:
        """Check the stored rating matrix (a file may be hostile).

        Raises:
            BundleError: ``rated_indptr`` is not a non-decreasing run from 0 to the number
                of ratings, or a user index is outside ``[0, n_users)``.
        """
        ptr, users, n = self.rated_indptr, self.rated_user, len(self.rated_value)
        ok = len(ptr) == self.n_items + 1 and len(users) == n and int(ptr[0]) == 0
        ok = ok and int(ptr[-1]) == n and bool((ptr.diff() >= 0).all())
        if not ok or (n and (int(users.min()) < 0 or int(users.max()) >= self.n_users)):
            raise BundleError(
                f"expected rated_indptr rising from 0 to {n} over {self.n_items} items and "
                f"rated_user in [0, {self.n_users}), received indptr "
                f"{ptr[:1].tolist()}..{ptr[-1:].tolist()} and users "
                f"{users.min().item() if n else None}..{users.max().item() if n else None}"
            )

    def forward(self, batch: Batch) -> Tensor:
        u, i = batch["user"].clamp_min(0), batch["item"].clamp_min(0)
        h = self.item_codes().index_select(0, i)
        x = (self.decoder_weight.index_select(0, u) * h).sum(1) + self.decoder_bias[u]
        if self.rating_range is not None:
            x = x.clamp(*self.rating_range)
        return x

    def penalty(self, batch: Batch) -> Tensor:
        """``|W_u|² + |V_u|²`` per row: the user's rows of both weight matrices."""
        u = batch["user"]
        w = self.decoder_weight.index_select(0, u)
        v = self.encoder_weight.index_select(0, u)
        out: Tensor = (w * w).sum(1) + (v * v).sum(1)
        return out


def fit_autorec(model: RatingModel, train: Interactions) -> None:
    """Fit an :class:`IAutoRec` on ``train`` in place (see the module documentation).

    Raises:
        TrainingDivergedError: the objective became NaN or infinite.
    """
    m = cast(IAutoRec, model)  # the family's closed form: its models only
    t0 = time.perf_counter()
    indptr, user, value, weight = rating_matrix(train)
    m.set_ratings(indptr, user, value)
    wt = torch.from_numpy(weight)
    g = torch.Generator().manual_seed(m.seed)
    with torch.no_grad():  # start each user's output at the mean rating
        total = float(wt.sum())
        mean = float((wt * m.rated_value).sum()) / total if total > 0 else 0.0
        m.decoder_bias.fill_(mean)
    wanted = m.epochs
    params = [m.encoder_weight, m.encoder_bias, m.decoder_weight, m.decoder_bias]
    opt = torch.optim.Adam(params, lr=m.lr)
    m.train()
    with torch.enable_grad():
        losses = _epochs(m, opt, wt, g, total)
    m.eval()
    m._codes = None
    m.fit_info = {
        "fit_seconds": time.perf_counter() - t0, "train_mse": losses, "epochs_wanted": wanted,
    }  # fmt: skip


def _epochs(
    m: IAutoRec, opt: torch.optim.Optimizer, wt: Tensor, g: torch.Generator, total: float
) -> list[float]:
    """Run the fit's epochs; returns each one's weighted training MSE (before the
    penalty)."""
    n_batches = math.ceil(m.n_items / m.batch_items)
    steps, step, losses = m.epochs * n_batches, 0, []
    n_epochs, epoch, t0 = m.epochs, 0, time.perf_counter()
    while epoch < n_epochs:
        order = torch.randperm(m.n_items, generator=g)
        sse = 0.0
        for s in range(0, m.n_items, m.batch_items):
            idx = order[s : s + m.batch_items]
            x, w = m.dense_rows(idx), m.dense_rows(idx, wt)
            out = torch.addmm(m.decoder_bias, m.encode(x), m.decoder_weight.T)
            err = (w * (out - x) ** 2).sum()
            share = len(idx) / m.n_items
            pen = m.encoder_weight.square().sum() + m.decoder_weight.square().sum()
            loss = err + (m.reg / 2 * share) * pen
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"expected a finite I-AutoRec objective, received {value} at epoch "
                    f"{epoch}, step {step} (lower lr, received {m.lr})",
                    epoch=epoch, step=step, what="loss",
                )  # fmt: skip
            for group in opt.param_groups:
                group["lr"] = m.lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sse += float(err.detach())
            step += 1
        losses.append(sse / total if total > 0 else 0.0)
        epoch += 1
        # a deadline (auto's budget): the epochs that end by it, the schedule shortened
        now = time.perf_counter()
        n_epochs = steps_that_fit(epoch, now - t0, now, n_epochs)
        steps = n_epochs * n_batches
    m.epochs = n_epochs
    return losses


def _prepare(kwargs: dict[str, Any], train: Interactions) -> None:
    kwargs.setdefault("rating_range", rating_range(train))
    if "autorec_hidden" in kwargs:
        kwargs["hidden"] = kwargs.pop("autorec_hidden")


def create_autorec(train: Interactions, **settings: Any) -> IAutoRec:
    """An :class:`IAutoRec` sized for ``train`` (``settings``: constructor arguments or
    the config's ``autorec_hidden``)."""
    return cast(IAutoRec, family("autorec").build(settings, train))


register_family(Family(
    name="autorec", task="rating", model_class=IAutoRec, output="rating",
    reads=frozenset({"autorec_hidden", "epochs", "lr", "reg", "seed"}),
    trainers=("closed_form",), adapter="generic", closed_form=fit_autorec, anytime=True,
    # chosen on an inner cut of R4's training rows: docs/families.md
    defaults={"epochs": 30, "lr": 2.5e-3, "reg": 300.0},
    build=sized_build(IAutoRec, prepare=_prepare),
    summary="I-AutoRec (Sedhain et al. 2015): item-based autoencoder of the rating matrix, "
    "one sigmoid hidden layer, trained by Adam on batches of items",
    search=AUTOREC_SEARCH,
))  # fmt: skip
