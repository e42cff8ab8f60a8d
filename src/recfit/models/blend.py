"""A ridge blend of rating models: ``b + Σ_k w_k · member_k(user, item)``, clipped.

Each member is a model of another rating family (a submodule, so the bundle saves its
weights next to the blend's and loads them with no pickle); its prediction is its own
rating (its fallback applied for pairs it never saw). The weights ``w`` and the intercept
``b`` are buffers, fitted by ridge regression of the ratings on the members' predictions
(:func:`ridge_blend`; the intercept is not penalised); the sum is clipped into ``clip``
(the training ratings' range).

How a blend is trained: the rating task (``model="blend"``, or ``model="auto"`` when a
blend wins) trains each member by its own trainer on an inner cut of the training part,
fits the weights on the other rows of the cut (predictions of members that never saw
them), then trains the members again on the whole training part and keeps the weights.
The family's closed form alone (:func:`fit_closed_form`) fits the members that train by
a closed form and the weights on the rows it is given, the members as they are.

Example:
    >>> from recfit.data import Interactions
    >>> from recfit.models import create_model
    >>> d = Interactions.from_arrays([1, 1, 2, 2], [7, 8, 7, 9], [5.0, 3.0, 4.0, 2.0])
    >>> m = create_model("blend", d, blend_members=("baseline", "mf"), seed=0)
    >>> [c["name"] for c in m.config()["members"]], m.blend_weights.tolist()
    (['baseline', 'mf'], [0.5, 0.5])
    >>> fit_closed_form(m, d)
    >>> len(m.blend_weights), m.clip
    (2, (2.0, 5.0))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.models.base import Batch, RatingModel
from recfit.models.registry import (
    Family,
    build_model,
    family,
    family_of,
    record_training_of,
    register_family,
)

__all__ = [
    "BLEND_RIDGE",
    "Blend",
    "cross_fitted_rmse",
    "fit_closed_form",
    "member_settings",
    "predict_rows",
    "ridge_blend",
]

BLEND_RIDGE = 1e-3
"""Ridge of the blend weights per unit of row weight (the penalty is ``BLEND_RIDGE · Σw ·
|w|²``): a light shrinkage that keeps near-collinear members' weights finite."""

MAX_MEMBERS = 16
"""At most this many members (a bundle's config is untrusted: its size is bounded)."""


def member_settings(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """A member spec as config fields: a family name (``"svdpp"``), a JSON object of
    rating config fields (``'{"model": "svdpp", "n_factors": 100}'``) or that mapping.

    Raises:
        ConfigError: not a name or a JSON object with a string ``model``.

    Example:
        >>> member_settings('{"model": "dot", "n_factors": 8}')
        {'model': 'dot', 'n_factors': 8}
    """
    if isinstance(spec, str):
        text = spec.strip()
        if not text.startswith("{"):
            return {"model": text}
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"expected a family name or a JSON object for a blend member, received "
                f"{spec!r}: {e}"
            ) from None
    if not isinstance(spec, Mapping) or not isinstance(spec.get("model"), str):
        raise ConfigError(
            f"expected a blend member with a family name under 'model', received {spec!r}"
        )
    return dict(spec)


def _check_member(name: str) -> None:
    fam = family(name)  # an unknown name is a ConfigError listing the known ones
    if fam.task != "rating" or fam.output != "rating" or name == "blend":
        raise ConfigError(
            f"expected a blend member of a rating family other than 'blend', received {name!r}"
        )


class Blend(RatingModel):
    """A ridge blend of rating models (see the module documentation).

    Args:
        n_users: number of user indices.
        n_items: number of item indices.
        members: the member models, or their configs (``model.config()``, rebuilt by
            :func:`~recfit.models.registry.build_model`, as loading does); each of a rating
            family other than ``blend``, sized ``n_users`` x ``n_items``.
        clip: ``(lo, hi)``: each member's prediction and the blend's output are clipped
            into it (``None``: not clipped).

    The weights start as the plain mean of the members (each ``1 / k``, intercept 0).

    Raises:
        ConfigError: no member, more than :data:`MAX_MEMBERS`, a member of another size or
            family kind, or a bad ``clip``.
    """

    blend_weights: Tensor
    blend_intercept: Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        members: Sequence[RatingModel | Mapping[str, Any]] = (),
        clip: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not members or len(members) > MAX_MEMBERS:
            raise ConfigError(f"expected 1 to {MAX_MEMBERS} blend members, received {len(members)}")
        built: list[RatingModel] = []
        for k, m in enumerate(members):
            if isinstance(m, Mapping):
                _check_member(str(m.get("name")))
                m = build_model(m)
            _check_member(family_of(m).name)
            if (m.n_users, m.n_items) != (n_users, n_items):
                raise ConfigError(
                    f"expected blend member {k} sized {n_users} x {n_items}, received "
                    f"{m.n_users} x {m.n_items}"
                )
            built.append(m)
        if clip is not None:
            lo, hi = (float(v) for v in clip)
            if not hi >= lo:
                raise ConfigError(f"expected clip (lo, hi) with lo <= hi, received {clip!r}")
            clip = (lo, hi)
        self.n_users, self.n_items = n_users, n_items
        self.clip: tuple[float, float] | None = None if clip is None else (clip[0], clip[1])
        self.members = nn.ModuleList(built)
        k = len(built)
        self.register_buffer("blend_weights", torch.full((k,), 1.0 / k, dtype=torch.float64))
        self.register_buffer("blend_intercept", torch.zeros(1, dtype=torch.float64))
        self._register_record(n_users, n_items)

    def member_models(self) -> list[RatingModel]:
        """The members, in order."""
        return [m for m in self.members if isinstance(m, RatingModel)]

    def member_outputs(self, batch: Batch) -> Tensor:
        """``[B, k]``: each member's predicted rating (its fallback applied), float64,
        clipped into ``clip`` like the members' predictions the weights were fitted on."""
        cols = []
        for m in self.member_models():
            out = m.to_rating(m.apply_fallback(batch, m(batch))[0]).double()
            cols.append(out if self.clip is None else out.clamp(self.clip[0], self.clip[1]))
        return torch.stack(cols, dim=1)

    def combine(self, outputs: Tensor) -> Tensor:
        """The blend of members' predictions ``outputs`` ``[B, k]`` (float32, clipped)."""
        pred = outputs @ self.blend_weights.to(outputs) + self.blend_intercept.to(outputs)
        if self.clip is not None:
            pred = pred.clamp(self.clip[0], self.clip[1])
        return pred.float()

    def forward(self, batch: Batch) -> Tensor:
        return self.combine(self.member_outputs(batch))

    def penalty(self, batch: Batch) -> Tensor | None:
        """The sum of the members' penalties (``None`` when none has one)."""
        parts = [p for m in self.member_models() if (p := m.penalty(batch)) is not None]
        if not parts:
            return None
        return torch.stack(parts).sum(0)

    @torch.no_grad()
    def set_weights(self, weights: Sequence[float] | np.ndarray, intercept: float) -> None:
        """Set the blend's weights (one per member) and intercept.

        Raises:
            ConfigError: not one finite weight per member, or a non-finite intercept.
        """
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if w.shape != self.blend_weights.shape or not bool(torch.isfinite(w).all()):
            raise ConfigError(
                f"expected {len(self.blend_weights)} finite blend weights, received "
                f"{list(np.asarray(weights).ravel())}"
            )
        if not np.isfinite(intercept):
            raise ConfigError(f"expected a finite blend intercept, received {intercept!r}")
        self.blend_weights.copy_(w)
        self.blend_intercept.fill_(float(intercept))

    def summary(self) -> dict[str, Any]:
        """The members' families, their settings (numbers, names: a fit ended early by a
        deadline shows its samples or epochs), the weights and the intercept (JSON-ready)."""
        return {
            "members": [family_of(m).name for m in self.member_models()],
            "member_settings": [
                {k: v for k, v in m.config().items() if isinstance(v, int | float | str)}
                for m in self.member_models()
            ],
            "weights": [float(x) for x in self.blend_weights.tolist()],
            "intercept": float(self.blend_intercept.item()),
        }

    def config(self) -> dict[str, Any]:
        return self._config(
            members=[m.config() for m in self.member_models()],
            clip=None if self.clip is None else list(self.clip),
        )


def ridge_blend(
    outputs: np.ndarray,
    rating: np.ndarray,
    weight: np.ndarray | None = None,
    ridge: float = BLEND_RIDGE,
) -> tuple[np.ndarray, float]:
    """Weights and intercept minimising ``Σ w (r - b - P·c)² + ridge · Σw · |c|²``.

    ``outputs`` ``P`` is ``[n, k]`` (members' predictions), ``rating`` ``r`` ``[n]``; rows
    of weight 0 count nowhere; the intercept ``b`` is not penalised (the columns are
    centred first).

    Example:
        >>> p = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [4.0, 5.0]])
        >>> c, b = ridge_blend(p, p[:, 0], ridge=0.0)
        >>> np.round(c, 6).tolist()[0], abs(round(b, 6))
        (1.0, 0.0)
    """
    p = np.asarray(outputs, dtype=np.float64)
    r = np.asarray(rating, dtype=np.float64)
    w = np.ones(len(r)) if weight is None else np.asarray(weight, dtype=np.float64)
    keep = w > 0
    p, r, w = p[keep], r[keep], w[keep]
    k = p.shape[1]
    if not len(r):
        return np.full(k, 1.0 / max(k, 1)), 0.0
    tw = w.sum()
    pm = (w[:, None] * p).sum(0) / tw
    rm = float((w * r).sum() / tw)
    pc = p - pm
    lhs = (pc * w[:, None]).T @ pc + ridge * tw * np.eye(k)
    rhs = (pc * w[:, None]).T @ (r - rm)
    c = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    return c, rm - float(pm @ c)


def cross_fitted_rmse(
    preds: np.ndarray, rating: np.ndarray, weight: np.ndarray, seed: int
) -> float:
    """Two-fold cross-fitted RMSE of a ridge blend (:func:`ridge_blend`) of ``preds``
    ``[n, k]``: weights fitted on one half of the rows (drawn by ``seed``) score the other
    half, and back.

    Example:
        >>> p = np.array([[1.0], [2.0], [3.0], [4.0]])
        >>> cross_fitted_rmse(p, p[:, 0], np.ones(4), seed=0) < 0.01  # ridge shrinks a bit
        True
    """
    n = len(rating)
    half = np.random.default_rng([seed, 0xB1E]).permutation(n) < n // 2
    err = np.zeros(n)
    for a in (half, ~half):
        c, b = ridge_blend(preds[a], rating[a], weight[a])
        err[~a] = preds[~a] @ c + b - rating[~a]
    w = weight.astype(np.float64)
    return float(np.sqrt((w * err**2).sum() / w.sum()))


def batch_of(data: Interactions) -> dict[str, Tensor]:
    """``data``'s rows as one prediction batch (``user``, ``item``, ``timestamp`` when
    the data has timestamps)."""
    batch = {
        "user": torch.from_numpy(data.user.astype(np.int64)),
        "item": torch.from_numpy(data.item.astype(np.int64)),
    }
    ts = data.timestamp
    if ts is not None:
        batch["timestamp"] = torch.from_numpy(ts)
    return batch


@torch.no_grad()
def predict_rows(model: Blend, data: Interactions, chunk: int = 1 << 16) -> np.ndarray:
    """``[len(data), k]``: each member's predicted rating for every row of ``data``."""
    was = model.training
    model.eval()
    try:
        full = batch_of(data)
        parts = [
            model.member_outputs({k: v[s : s + chunk] for k, v in full.items()})
            for s in range(0, len(data), chunk)
        ]
    finally:
        model.train(was)
    k = len(model.member_models())
    return torch.cat(parts).numpy() if parts else np.zeros((0, k))


def fit_closed_form(model: RatingModel, train: Interactions) -> None:
    """The ``blend`` family's closed form: fit each member whose family trains by a
    closed form (on ``train``), then the weights on ``train`` (:func:`ridge_blend`); the
    other members stay as they are (the rating task trains them first, see the module
    documentation)."""
    if not isinstance(model, Blend):
        raise ConfigError(f"expected a Blend, received {type(model).__name__}")
    for m in model.member_models():
        fam = family_of(m)
        if fam.trainers[0] == "closed_form" and fam.closed_form is not None:
            fam.closed_form(m, train)
            record_training_of(m, train)
    c, b = ridge_blend(predict_rows(model, train), train.rating, train.weights())
    model.set_weights(c, b)


def _build(settings: Mapping[str, Any], train: Interactions) -> RatingModel:
    specs = settings.get("blend_members", ("svdpp", "dot"))
    seed = settings.get("seed", 0)
    members: list[RatingModel] = []
    for spec in specs:
        given = member_settings(spec)
        _check_member(given["model"])
        fam = family(given["model"])
        members.append(fam.build(fam.settings({"seed": seed, **given}), train))
    scale = train.prediction_scale()  # declared, else the ratings of positive weight
    return record_training_of(Blend(train.n_users, train.n_items, members, scale), train)


register_family(Family(
    name="blend", task="rating", model_class=Blend, output="rating",
    reads=frozenset({"blend_members", "seed"}), trainers=("closed_form",), adapter="blend",
    closed_form=fit_closed_form, defaults={}, build=_build,
    summary="a ridge blend of other rating families' predictions, weights fitted on an inner cut",
))  # fmt: skip
