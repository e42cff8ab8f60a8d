"""Inference of a Learner: predictions, per-row losses and metrics (one process).

``evaluate(learn, data)`` reports ``loss`` (the objective over the whole set), ``reg_loss``
(its penalty part) and each metric computed by the metric functions of
:mod:`recfit.metrics` on ``predict(learn, data)`` in the original rating units (clipped
into the training data's rating scale; ``loss`` is on the unclipped output), so
``evaluate(d)["mse"] == mse(predict(d), d.rating, d.weights())`` always holds. Rows of
weight 0 count in no sum. :mod:`recfit.train.distributed` gives the same numbers across
ranks.

Example:
    >>> import numpy as np
    >>> from recfit.data import Interactions
    >>> from recfit.models import DotBias
    >>> from recfit.train.learner import Learner
    >>> d = Interactions.from_arrays([0, 1, 1], [0, 0, 1], [4.0, 3.0, 5.0])
    >>> learn = Learner(DotBias(2, 2, 2), d, progress=False)
    >>> predict(learn, d).shape, sorted(evaluate(learn, d))[:2]
    ((3,), ['loss', 'mae'])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from recfit.data.interactions import Interactions
from recfit.errors import ConfigError
from recfit.metrics.levels import is_level_metric
from recfit.models.base import clip_ratings, output_kind
from recfit.models.classifier import LevelModel

if TYPE_CHECKING:
    from recfit.train.learner import Learner

__all__ = ["evaluate", "fallback", "outputs", "predict", "predict_proba"]


def outputs(
    learn: Learner, data: Interactions, with_loss: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Predicted ratings (float32, clipped into the training data's
    :meth:`~recfit.data.Interactions.prediction_scale`), and per-row loss and penalty
    (float64, on the model's own output) if asked."""
    td = learn.tensor_data(data)
    model = learn.model
    preds, losses, pens = [], [], []
    was_training = model.training
    model.eval()
    try:
        with learn.threads(), torch.inference_mode():
            for b in td.epoch(learn.eval_bs, None):
                out = model(b)
                shown = model.apply_fallback(b, out)[0]  # unknown pairs: baseline
                preds.append(model.to_rating(shown).float().cpu())
                if with_loss:  # per-row loss in float64, like the metrics
                    b64 = {**b, "rating": b["rating"].double()}
                    losses.append(learn.loss_func(out.double(), b64).cpu())
                    if learn.reg > 0:
                        pen = model.penalty(b)
                        if pen is not None:
                            pens.append(pen.double().cpu())
    finally:
        model.train(was_training)
    cat = (lambda xs: torch.cat(xs).numpy()) if len(data) else (lambda xs: np.zeros(0))
    pred = cat(preds).astype(np.float32, copy=False)
    pred = clip_ratings(pred, learn.train.prediction_scale(), output_kind(model))
    if not with_loss:
        return pred, None, None
    return pred, cat(losses), (cat(pens) if pens else None)


def predict(learn: Learner, data: Interactions) -> np.ndarray:
    """Predicted ratings for every row of ``data`` (see :meth:`Learner.predict`)."""
    return outputs(learn, data, with_loss=False)[0]


def fallback(learn: Learner, data: Interactions) -> np.ndarray:
    """``bool`` per row: the prediction is the baseline (see :meth:`Learner.fallback`)."""
    learn.check_data(data, "given")
    u = torch.from_numpy(np.asarray(data.user, dtype=np.int64))
    i = torch.from_numpy(np.asarray(data.item, dtype=np.int64))
    return learn.model.unknown(u.to(learn.device), i.to(learn.device)).cpu().numpy()


def predict_proba(learn: Learner, data: Interactions) -> np.ndarray:
    """The distribution over the rating levels per row (see :meth:`Learner.predict_proba`)."""
    model = learn.model
    if not isinstance(model, LevelModel):
        raise ConfigError(
            f"expected a model with rating levels for predict_proba, received "
            f"{type(model).__name__}"
        )
    td = learn.tensor_data(data)
    parts: list[Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with learn.threads(), torch.inference_mode():
            for b in td.epoch(learn.eval_bs, None):
                out = model.apply_fallback(b, model(b))[0]
                parts.append(model.to_proba(out).double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros((0, len(model.levels)))


def evaluate(learn: Learner, data: Interactions) -> dict[str, float]:
    """``loss``, ``reg_loss``, ``n_fallback`` and every metric (see :meth:`Learner.evaluate`)."""
    pred, per_row, pen = outputs(learn, data, with_loss=True)
    w = data.weights().astype(np.float64)
    keep = w > 0
    assert per_row is not None
    w_k = w[keep]
    total = w_k.sum()
    data_loss = float((w_k * per_row[keep]).sum() / total) if total > 0 else math.nan
    reg_loss = 0.0
    if pen is not None:
        reg_loss = learn.reg * float((w_k * pen[keep]).sum() / total) if total > 0 else math.nan
    out: dict[str, float] = {"loss": data_loss + reg_loss, "reg_loss": reg_loss}
    if learn.model.has_record:  # rows (of positive weight) answered by the baseline
        out["n_fallback"] = float(fallback(learn, data)[keep].sum())
    weight = data.weight
    proba = None
    for name, fn in learn.metric_fns.items():
        if is_level_metric(name):
            if proba is None:
                proba = predict_proba(learn, data)
            levels = learn.model.levels  # type: ignore[attr-defined]
            out[name] = fn(proba, levels, data.rating, weight)  # type: ignore[call-arg]
        else:
            out[name] = fn(pred, data.rating, weight)  # type: ignore[call-arg]
    return out
