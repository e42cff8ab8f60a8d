"""Losses of two-tower retrieval models (each a :class:`~recfit.models.losses.Loss`: one
value per row, which the Learner averages as ``Σ w·ℓ / Σ w``, so sample weights count in
every one).

* :class:`RescaledMSELoss`: ``(score - (rating - lo) / (hi - lo))²``, the keras-rs *Deep
  Recommenders* objective (rating rescaled to ``[0, 1]``), kept for parity.
* :class:`InBatchSoftmaxLoss`: sampled softmax over the batch's candidates. Row ``i``
  of a batch has logits ``l_ij = q_i·c_j / T - log Q_j`` over the batch's items ``j``
  (plus optional extra sampled negatives), with

  - temperature ``T``;
  - **log-Q correction**: ``Q_j = B·p(j) + M·p_neg(j)``, the expected number of times
    item ``j`` appears among the ``B`` in-batch candidates (``p(j)``: its share of the
    training rows) and the ``M`` extra negatives (``p_neg``: their sampling
    distribution); without extra negatives this is ``log p(j)`` up to a constant;
  - **accidental hits removed**: a column holding the row's own positive item
    (another row of the same item, or a sampled negative equal to it) is masked out,
    so the positive is never its own negative;
  - optional **hard-negative mining**: only the ``num_hard_negatives`` highest-scoring
    negatives of each row enter its softmax;
  - optional **extra negatives**: ``num_negatives`` items per batch drawn uniformly or
    by popularity (``count ** popularity_alpha``), shared by the rows.

  ``ℓ_i = logsumexp_j l_ij - l_ii``. A row of weight 0 is absent: its loss counts zero
  and its item is removed from the other rows' negatives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError, DataError
from recfit.models.losses import Loss
from recfit.models.two_tower import TwoTower

__all__ = ["InBatchSoftmaxLoss", "RescaledMSELoss", "item_counts"]


class RescaledMSELoss(Loss):
    """``(score - (rating - lo) / (hi - lo))²``: keras-rs's deep-recommender objective.

    Args:
        rating_scale: ``(lo, hi)``; ml-100k's ``(1, 5)`` gives the target ``(r - 1) / 4``.

    Example:
        >>> import torch
        >>> RescaledMSELoss((1, 5))(torch.tensor([0.5, 1.0]), {"rating": torch.tensor([3.0, 5.0])})
        tensor([0., 0.])
    """

    name = "mse_rescaled"

    def __init__(self, rating_scale: tuple[float, float] = (1.0, 5.0)) -> None:
        lo, hi = (float(v) for v in rating_scale)
        if not hi > lo:
            raise ConfigError(
                f"expected rating_scale (lo, hi) with hi > lo, received {rating_scale!r}"
            )
        self.lo, self.hi = lo, hi

    def target(self, rating: Tensor) -> Tensor:
        """The rescaled rating ``(rating - lo) / (hi - lo)``."""
        return (rating - self.lo) / (self.hi - self.lo)

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        d = output - self.target(batch["rating"]).to(output.dtype)
        return d * d

    def grad(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor | None:
        return 2.0 * (output - self.target(batch["rating"]).to(output.dtype))

    def __repr__(self) -> str:
        return f"RescaledMSELoss(rating_scale=({self.lo}, {self.hi}))"


def item_counts(train: Interactions) -> np.ndarray:
    """Training rows (weight > 0) per item index, ``int64`` of length ``n_items``.

    Example:
        >>> d = Interactions.from_arrays([1, 2, 2], [7, 7, 8], [4.0, 2.0, 5.0])
        >>> item_counts(d).tolist()
        [2, 1]
    """
    keep = train.weights() > 0
    return np.bincount(train.item[keep], minlength=train.n_items).astype(np.int64)


class InBatchSoftmaxLoss(Loss):
    """Sampled softmax over in-batch (and optional extra) candidates; see the module docs.

    Args:
        model: the :class:`~recfit.models.two_tower.TwoTower` being trained (the loss
            reads its last query/candidate vectors and embeds extra negatives).
        temperature: divides every logit (> 0).
        item_counts: training rows per item (:func:`item_counts`): enables the log-Q
            correction and popularity sampling; ``None``: no correction.
        logq: apply the log-Q correction (needs ``item_counts``).
        remove_accidental_hits: mask columns holding the row's own item.
        num_hard_negatives: keep only this many hardest negatives per row (``None``: all).
        num_negatives: extra negatives sampled per batch (0: none).
        negative_sampling: ``"uniform"`` over the catalogue or ``"popularity"``
            (``count ** popularity_alpha``; needs ``item_counts``).
        popularity_alpha: exponent of the popularity sampler.

    Example:
        >>> import torch
        >>> from recfit.models.two_tower import CandidateTower, QueryTower, TwoTower
        >>> m = TwoTower(QueryTower(3, layer_sizes=(4,)), CandidateTower(5, layer_sizes=(4,)))
        >>> b = {"user": torch.tensor([0, 1, 2]), "item": torch.tensor([0, 3, 3])}
        >>> InBatchSoftmaxLoss(m, temperature=0.5)(m(b), b).shape
        torch.Size([3])
    """

    name = "softmax"

    def __init__(
        self,
        model: TwoTower,
        *,
        temperature: float = 0.1,
        item_counts: np.ndarray | None = None,
        logq: bool = True,
        remove_accidental_hits: bool = True,
        num_hard_negatives: int | None = None,
        num_negatives: int = 0,
        negative_sampling: Literal["uniform", "popularity"] = "uniform",
        popularity_alpha: float = 1.0,
    ) -> None:
        if not isinstance(model, TwoTower):
            raise ConfigError(f"expected a TwoTower model, received {type(model).__name__}")
        if not (
            isinstance(temperature, int | float) and temperature > 0 and math.isfinite(temperature)
        ):
            raise ConfigError(f"expected temperature > 0, received {temperature!r}")
        if num_hard_negatives is not None and (
            not isinstance(num_hard_negatives, int) or num_hard_negatives < 1
        ):
            raise ConfigError(
                f"expected num_hard_negatives an integer >= 1 or None, received {num_hard_negatives!r}"
            )
        if not isinstance(num_negatives, int) or num_negatives < 0:
            raise ConfigError(f"expected num_negatives an integer >= 0, received {num_negatives!r}")
        if negative_sampling not in ("uniform", "popularity"):
            raise ConfigError(
                f"expected negative_sampling 'uniform' or 'popularity', received {negative_sampling!r}"
            )
        counts: Tensor | None = None
        if item_counts is not None:
            c = np.asarray(item_counts, dtype=np.float64).reshape(-1)
            if len(c) != model.n_items or (len(c) and (c.min() < 0 or not np.isfinite(c).all())):
                raise DataError(
                    f"expected {model.n_items} finite item counts >= 0, received {len(c)} values",
                    column="item_counts",
                )
            counts = torch.from_numpy(c)
        if (logq or negative_sampling == "popularity") and counts is None:
            if negative_sampling == "popularity" and num_negatives > 0:
                raise ConfigError(
                    "expected item_counts for popularity-sampled negatives, received None"
                )
            logq = False
        self.model = model
        self.temperature = float(temperature)
        self.logq = bool(logq)
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.num_hard_negatives = num_hard_negatives
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.popularity_alpha = float(popularity_alpha)
        n = model.n_items
        self._p_pos: Tensor | None = None
        if counts is not None:
            total = float(counts.sum())
            self._p_pos = (counts / total if total > 0 else torch.full((n,), 1.0 / n)).float()
        if negative_sampling == "popularity" and counts is not None:
            w = counts.pow(self.popularity_alpha)
            self._p_neg = (w / w.sum()).float()
        else:
            self._p_neg = torch.full((n,), 1.0 / n)

    def __repr__(self) -> str:
        return (
            f"InBatchSoftmaxLoss(temperature={self.temperature}, logq={self.logq}, "
            f"remove_accidental_hits={self.remove_accidental_hits}, "
            f"num_hard_negatives={self.num_hard_negatives}, num_negatives={self.num_negatives}, "
            f"negative_sampling={self.negative_sampling!r})"
        )

    def _vectors(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        last = self.model.last_
        if last is None or last[0] is not batch["user"] or last[1] is not batch["item"]:
            self.model(batch)
            last = self.model.last_
            assert last is not None
        return last[2], last[3]

    def sample_negatives(self, device: torch.device) -> Tensor:
        """``num_negatives`` item indices from the negative sampler (torch's global RNG)."""
        p = self._p_neg
        if self.negative_sampling == "uniform":
            idx = torch.randint(0, len(p), (self.num_negatives,))
        else:
            idx = torch.multinomial(p, self.num_negatives, replacement=True)
        return idx.to(device)

    def _operands(
        self, q: Tensor, c: Tensor, items: Tensor, weight: Tensor | None, negatives: Tensor | None
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """``(qs, cs, dropped)`` with ``qs @ cs.T`` the logits before masking.

        The temperature and the log-Q correction are folded into the operands
        (``[q / T, 1] · [c, -log Q]ᵀ``), so no elementwise pass over the matrix is spent
        on them. ``dropped`` (or ``None``) holds the ``(rows, columns)`` of the logits to
        drop (never the diagonal; repeats possible), found without a ``B × N`` mask.
        """
        b = q.shape[0]
        cols = items
        if negatives is not None and len(negatives):
            c = torch.cat([c, self.model.candidate_tower(negatives)])
            cols = torch.cat([items, negatives])
        m = len(cols) - b
        qs = q / self.temperature
        if self.logq and self._p_pos is not None:
            p_pos = self._p_pos.to(q.device)[cols]
            expected = b * p_pos + m * self._p_neg.to(q.device)[cols] if m else p_pos
            corr = -torch.log(expected.clamp_min(1e-30)).to(q.dtype)
            qs = torch.cat([qs, torch.ones_like(qs[:, :1])], dim=1)
            c = torch.cat([c, corr.unsqueeze(1)], dim=1)
        parts: list[tuple[Tensor, Tensor]] = []
        if self.remove_accidental_hits:
            parts.append(_equal_pairs(items, cols))
        if weight is not None and bool((weight == 0).any()):
            absent = torch.nonzero(weight == 0).squeeze(1)
            rows = torch.arange(b, device=q.device).repeat_interleave(len(absent))
            parts.append((rows, absent.repeat(b)))
        if not parts:
            return qs, c, None
        rows = torch.cat([r for r, _ in parts])
        where = torch.cat([k for _, k in parts])
        off = rows != where  # never the diagonal
        return qs, c, (rows[off], where[off])

    def logits(
        self, q: Tensor, c: Tensor, items: Tensor, weight: Tensor | None, negatives: Tensor | None
    ) -> Tensor:
        """The ``(B, B + M)`` logit matrix with corrections and masks (−inf) applied;
        the positive of row ``i`` is column ``i``."""
        qs, cs, dropped = self._operands(q, c, items, weight, negatives)
        s = qs @ cs.T
        if dropped is not None:
            s.index_put_(dropped, torch.tensor(-math.inf, dtype=s.dtype, device=s.device))
        return s

    def __call__(self, output: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        q, c = self._vectors(batch)
        q, c = q.to(output.dtype), c.to(output.dtype)
        negatives = self.sample_negatives(q.device) if self.num_negatives > 0 else None
        items, weight = batch["item"], batch.get("weight")
        if self.num_hard_negatives is None:
            return self.fused(q, c, items, weight, negatives)
        s = self.logits(q, c, items, weight, negatives)
        b = s.shape[0]
        diag = torch.arange(b, device=s.device)
        pos = s[diag, diag]
        if s.shape[1] == 1:
            return torch.zeros_like(pos)
        neg = s.index_put((diag, diag), torch.tensor(-math.inf, dtype=s.dtype, device=s.device))
        k = min(self.num_hard_negatives, s.shape[1] - 1)
        top = torch.topk(neg, k, dim=1).values
        return torch.logsumexp(torch.cat([pos.unsqueeze(1), top], dim=1), dim=1) - pos

    def fused(
        self, q: Tensor, c: Tensor, items: Tensor, weight: Tensor | None, negatives: Tensor | None
    ) -> Tensor:
        """The per-row losses over the batch's **distinct** candidates, each column weighted
        by its multiplicity: the same softmax as :meth:`logits`' ``B × (B + M)`` matrix
        (a candidate that fills ``k`` columns adds ``k·exp(l)`` to a row's sum, so its
        column gets ``+ log k``), on a ``B × U`` matrix, ``U`` the distinct items.

        A row's own item counts once (the other columns holding it are accidental hits;
        without their removal it counts as often as it appears, the row's own column
        included); the columns of weight-0 rows count for no other row.
        """
        b = q.shape[0]
        cols, cvec = items, c
        if negatives is not None and len(negatives):
            cvec = torch.cat([c, self.model.candidate_tower(negatives)])
            cols = torch.cat([items, negatives])
        n_cols, dev = len(cols), q.device
        uniq, inv = torch.unique(cols, return_inverse=True)
        present = torch.ones(n_cols, dtype=q.dtype, device=dev)
        absent = None if weight is None else weight[:b] == 0
        if absent is not None:
            present[:b] = (~absent).to(q.dtype)
        count = torch.zeros(len(uniq), dtype=q.dtype, device=dev).index_add_(0, inv, present)
        first = torch.full((len(uniq),), n_cols, dtype=torch.int64, device=dev)
        first.scatter_reduce_(0, inv, torch.arange(n_cols, device=dev), "amin")
        cu = cvec.index_select(0, first)  # each distinct candidate's vector, once
        pos = inv[:b]
        bias = torch.log(count)  # -inf: held only by weight-0 rows
        pos_bias = torch.zeros(b, dtype=q.dtype, device=dev)
        if self.logq and self._p_pos is not None:
            p_pos = self._p_pos.to(dev)[uniq]
            m = n_cols - b
            expected = b * p_pos + m * self._p_neg.to(dev)[uniq] if m else p_pos
            corr = -torch.log(expected.clamp_min(1e-30)).to(q.dtype)
            bias = bias + corr
            pos_bias = corr[pos]
        if self.remove_accidental_hits:
            log_m = torch.zeros(b, dtype=q.dtype, device=dev)
        else:
            own = count[pos] if absent is None else count[pos] + absent.to(q.dtype)
            log_m = torch.log(own)
        out: Tensor = _SoftmaxCE.apply(  # type: ignore[no-untyped-call]
            q / self.temperature, cu, bias, pos, pos_bias + log_m, log_m
        )
        return out


def _equal_pairs(items: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """Every ``(i, j)`` with ``items[i] == cols[j]`` (the diagonal included), by a sort
    of ``cols`` and a binary search per row: ``O((B + N) log N)``, no ``B × N`` mask.

    Example:
        >>> r, c = _equal_pairs(torch.tensor([3, 5, 3]), torch.tensor([3, 5, 3, 3]))
        >>> sorted(zip(r.tolist(), c.tolist()))
        [(0, 0), (0, 2), (0, 3), (1, 1), (2, 0), (2, 2), (2, 3)]
    """
    ordered, order = torch.sort(cols)
    lo = torch.searchsorted(ordered, items, right=False)
    n = torch.searchsorted(ordered, items, right=True) - lo
    rows = torch.arange(len(items), device=items.device).repeat_interleave(n)
    start = torch.cumsum(n, 0) - n
    within = torch.arange(len(rows), device=items.device) - start.repeat_interleave(n)
    return rows, order[lo.repeat_interleave(n) + within]


class _SoftmaxCE(torch.autograd.Function):
    """Row-wise softmax cross-entropy over distinct candidates, in few passes.

    ``S = qs @ cu.T + bias`` (``bias``: each column's log multiplicity and log-Q
    correction), with row ``i``'s positive entry ``S[i, pos[i]]`` set to
    ``qs[i]·cu[pos[i]] + pos_bias[i]``; the loss is ``logsumexp(S[i]) - S[i, pos[i]] +
    log_m[i]`` (``log_m``: the log multiplicity inside ``pos_bias``, which belongs to the
    sum, not to the positive). One softmax pass ``P`` over the matrix, kept for the
    backward pass, which never touches the matrix elementwise: with
    ``dS = diag(g) (P - E)`` (``E`` the one-hot positives), ``dS @ cu = g · (P @ cu -
    cu[pos])`` and ``dS.T @ qs = P.T @ (g · qs)`` minus ``g · qs`` scattered to ``pos``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        qs: Tensor,
        cu: Tensor,
        bias: Tensor,
        pos: Tensor,
        pos_bias: Tensor,
        log_m: Tensor,
    ) -> Tensor:
        b = qs.shape[0]
        rows = torch.arange(b, device=qs.device)
        c_pos = cu.index_select(0, pos)
        s_pos = (qs * c_pos).sum(1) + pos_bias
        s = torch.addmm(bias, qs, cu.T)
        s.index_put_((rows, pos), s_pos)
        p = torch.softmax(s, 1)
        p_pos = p[rows, pos]
        out = log_m - torch.log(p_pos)
        low = p_pos < _P_LOW  # -log(p) loses precision (or is inf): the long way
        if bool(low.any()):
            k = torch.nonzero(low).squeeze(1)
            out[k] = torch.logsumexp(s[k], 1) - s_pos[k] + log_m[k]
        del s
        ctx.save_for_backward(qs, cu, p, pos, c_pos)
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, g: Tensor
    ) -> tuple[Tensor, Tensor, None, None, None, None]:
        qs, cu, p, pos, c_pos = ctx.saved_tensors
        gc = g.unsqueeze(1)
        gq = qs * gc
        d_qs = torch.mm(p, cu).sub_(c_pos).mul_(gc)
        d_cu = torch.mm(gq.T, p).T  # (U, D) as a view: MKL's faster layout for P.T @ gq
        d_cu.index_add_(0, pos, gq, alpha=-1)
        return d_qs, d_cu, None, None, None, None


_P_LOW = 1e-30
"""Below this softmax probability of a positive its loss is taken from ``logsumexp``."""
