"""Classification metrics over rating levels.

Ratings treated as classes are *levels* ``0..K-1`` on a grid of rating values
(:func:`recfit.metrics.decoding.levels_for_scale`: 5 levels for 1..5 stars, 10 for half
stars 0.5..5; :mod:`recfit.metrics.decoding` also turns level probabilities back into
ratings).
Every metric is a pure numpy function of ``(pred, target, weight)``:

* weights count everywhere: a count is a sum of weights, and a ratio is
  ``Σw·e / Σw`` over the whole set;
* a row of weight 0 does not exist: it changes no number, not even which levels
  are "present" in the data;
* confusion matrices have true levels as rows and predicted levels as columns
  (the scikit-learn convention).

A set whose weights sum to 0 has no accuracy: ratio metrics return ``nan`` then.

Example:
    >>> pred, target = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    >>> accuracy(pred, target)
    0.75
    >>> accuracy(pred, target, weight=np.array([1.0, 1.0, 0.0, 1.0]))
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from recfit.data.checks import row_weights
from recfit.errors import ConfigError, DataError

__all__ = [
    "PRFS",
    "Average",
    "Normalize",
    "accuracy",
    "balanced_accuracy",
    "classification_report",
    "confusion_matrix",
    "f1",
    "format_classification_report",
    "normalize_confusion",
    "precision_recall_f1_support",
]

Average = Literal["macro", "weighted"]
Normalize = Literal["true", "pred", "all"]


class PRFS(NamedTuple):
    """Per-level precision, recall, F1 and (weighted) support, aligned with ``labels``."""

    labels: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray


# --------------------------------------------------------------------------- inputs
def _labels_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"expected a 1-d array of levels, received {arr.ndim}-d", column=name)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise DataError(f"expected integer levels, received dtype {arr.dtype}", column=name)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"expected integer levels, received {arr[row]!r}", row=row, column=name)
    out = arr.astype(np.int64, copy=False)
    neg = out < 0
    if neg.any():
        row = int(np.argmax(neg))
        raise DataError(f"expected levels >= 0, received {int(out[row])}", row=row, column=name)
    return out


def _prepare(pred: Any, target: Any, weight: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = _labels_array(pred, "pred")
    t = _labels_array(target, "target")
    if len(p) != len(t):
        raise DataError(f"expected {len(t)} predictions (one per target), received {len(p)}")
    return p, t, row_weights(weight, len(t))


def _present_labels(p: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    keep = w > 0
    return np.union1d(p[keep], t[keep]).astype(np.int64)


def _label_list(labels: Any) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.dtype.kind not in "iu":
        raise ConfigError(f"expected a 1-d sequence of integer levels, received {labels!r}")
    if len(np.unique(lab)) != len(lab) or (lab < 0).any():
        raise ConfigError(f"expected distinct levels >= 0, received {lab.tolist()}")
    return lab.astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    out = np.full(num.shape, float(zero_division), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------- metrics
def accuracy(pred: Any, target: Any, weight: Any = None) -> float:
    """Weighted share of rows whose predicted level equals the true level.

    Args:
        pred: predicted levels, shape ``(n,)``.
        target: true levels, shape ``(n,)``.
        weight: optional non-negative row weights; 0 removes a row.

    Returns:
        ``Σw·[pred == target] / Σw``, or ``nan`` when ``Σw == 0``.

    Example:
        >>> accuracy([0, 1, 2], [0, 2, 2], weight=[1.0, 3.0, 1.0])
        0.4
    """
    p, t, w = _prepare(pred, target, weight)
    total = w.sum()
    if total <= 0:
        return float("nan")
    return float(w[p == t].sum() / total)


def confusion_matrix(
    pred: Any,
    target: Any,
    weight: Any = None,
    n_classes: int | None = None,
    normalize: Normalize | None = None,
) -> np.ndarray:
    """Weighted confusion matrix: ``cm[i, j]`` = weight of rows with true ``i``, predicted ``j``.

    Args:
        pred: predicted levels.
        target: true levels.
        weight: optional row weights.
        n_classes: number of levels ``K``; defaults to ``max(level) + 1``.
        normalize: ``None`` (weighted counts), ``"true"`` (rows sum to 1),
            ``"pred"`` (columns sum to 1) or ``"all"`` (the matrix sums to 1).
            Empty rows / columns stay 0.

    Returns:
        A ``float64`` array of shape ``(K, K)``.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 0, 1]).tolist()
        [[1.0, 1.0], [0.0, 1.0]]
        >>> confusion_matrix([0, 1, 1], [0, 0, 1], normalize="true").tolist()
        [[0.5, 0.5], [0.0, 1.0]]
    """
    p, t, w = _prepare(pred, target, weight)
    top = int(max(p.max(initial=-1), t.max(initial=-1))) + 1
    if n_classes is None:
        k = top
    else:
        if n_classes < 1:
            raise ConfigError(f"expected n_classes >= 1, received {n_classes}")
        k = int(n_classes)
        for name, arr in (("pred", p), ("target", t)):
            big = arr >= k
            if big.any():
                row = int(np.argmax(big))
                raise DataError(
                    f"expected levels in [0, {k - 1}], received {int(arr[row])}",
                    row=row,
                    column=name,
                )
    cm = np.bincount(t * k + p, weights=w, minlength=k * k).reshape(k, k)
    return normalize_confusion(cm, normalize)


def normalize_confusion(cm: Any, normalize: Normalize | None) -> np.ndarray:
    """A confusion matrix as is (``None``), or with rows (``"true"``), columns
    (``"pred"``) or the whole matrix (``"all"``) summing to 1; empty ones stay 0.

    Example:
        >>> normalize_confusion([[1.0, 3.0], [0.0, 0.0]], "true").tolist()
        [[0.25, 0.75], [0.0, 0.0]]
    """
    m = np.asarray(cm, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise DataError(f"expected a square matrix, received shape {m.shape}", column="cm")
    if normalize is None:
        return m
    if normalize == "true":
        return _ratio(m, m.sum(axis=1, keepdims=True), 0.0)
    if normalize == "pred":
        return _ratio(m, m.sum(axis=0, keepdims=True), 0.0)
    if normalize == "all":
        return _ratio(m, np.full_like(m, m.sum()), 0.0)
    raise ConfigError(f"expected normalize None, 'true', 'pred' or 'all', received {normalize!r}")


def precision_recall_f1_support(
    pred: Any,
    target: Any,
    weight: Any = None,
    labels: Sequence[int] | np.ndarray | None = None,
    zero_division: float = 0.0,
) -> PRFS:
    """Per-level precision, recall, F1 and weighted support.

    Args:
        pred: predicted levels.
        target: true levels.
        weight: optional row weights.
        labels: the levels to report, in order; by default every level that occurs
            (with positive weight) in ``pred`` or ``target``.
        zero_division: the value of a ratio whose denominator is 0 (as scikit-learn).

    Returns:
        A :class:`PRFS` of arrays aligned with ``labels``; ``support`` is the summed
        weight of the rows whose true level is that label.

    Example:
        >>> r = precision_recall_f1_support([0, 1, 1, 1], [0, 0, 1, 1])
        >>> r.precision.tolist(), r.recall.tolist(), r.support.tolist()
        ([1.0, 0.6666666666666666], [0.5, 1.0], [2.0, 2.0])
    """
    p, t, w = _prepare(pred, target, weight)
    lab = _present_labels(p, t, w) if labels is None else _label_list(labels)
    k = int(max(p.max(initial=-1), t.max(initial=-1), lab.max(initial=-1))) + 1
    hit = p == t
    tp_all = np.bincount(t[hit], weights=w[hit], minlength=k)
    pred_all = np.bincount(p, weights=w, minlength=k)
    true_all = np.bincount(t, weights=w, minlength=k)
    tp, pred_sum, true_sum = tp_all[lab], pred_all[lab], true_all[lab]
    precision = _ratio(tp, pred_sum, zero_division)
    recall = _ratio(tp, true_sum, zero_division)
    f1_score = _ratio(2.0 * tp, pred_sum + true_sum, zero_division)
    return PRFS(lab, precision, recall, f1_score, true_sum)


def f1(
    pred: Any,
    target: Any,
    weight: Any = None,
    average: Average | None = "macro",
    labels: Sequence[int] | np.ndarray | None = None,
    zero_division: float = 0.0,
) -> Any:
    """F1 score: per level (``average=None``), macro mean, or support-weighted mean.

    Args:
        pred: predicted levels.
        target: true levels.
        weight: optional row weights.
        average: ``"macro"`` (plain mean over ``labels``), ``"weighted"`` (mean
            weighted by each level's weighted support) or ``None`` (the array).
        labels: levels to include; by default those present with positive weight.
        zero_division: F1 of a level that is neither predicted nor true.

    Returns:
        A float, or a ``float64`` array aligned with the labels when ``average=None``.

    Example:
        >>> round(f1([0, 1, 1, 1], [0, 0, 1, 1]), 4)
        0.7333
        >>> f1([0, 1, 1, 1], [0, 0, 1, 1], average=None).round(4).tolist()
        [0.6667, 0.8]
    """
    r = precision_recall_f1_support(pred, target, weight, labels, zero_division)
    if average is None:
        return r.f1
    if average == "macro":
        return float(r.f1.mean()) if len(r.f1) else float("nan")
    if average == "weighted":
        total = r.support.sum()
        return float((r.f1 * r.support).sum() / total) if total > 0 else float("nan")
    raise ConfigError(f"expected average 'macro', 'weighted' or None, received {average!r}")


def balanced_accuracy(pred: Any, target: Any, weight: Any = None) -> float:
    """Mean recall over the levels that occur (with positive weight) in ``target``.

    Example:
        >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
        0.75
        >>> balanced_accuracy([0, 0, 1, 1], [0, 0, 0, 1])
        0.8333333333333333
    """
    p, t, w = _prepare(pred, target, weight)
    if w.sum() <= 0:
        return float("nan")
    lab = np.unique(t[w > 0])
    r = precision_recall_f1_support(p, t, w, labels=lab)
    return float(r.recall.mean())


def classification_report(
    pred: Any,
    target: Any,
    weight: Any = None,
    labels: Sequence[int] | np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-level precision / recall / F1 / support plus accuracy and averages, as a dict.

    The layout follows scikit-learn's ``output_dict=True``: one entry per level name
    with ``precision``, ``recall``, ``f1``, ``support``; then ``accuracy``,
    ``balanced_accuracy``, ``macro avg`` and ``weighted avg``. Supports are weighted.
    :func:`format_classification_report` renders it as text.

    Args:
        pred: predicted levels.
        target: true levels.
        weight: optional row weights.
        labels: levels to report (default: those present with positive weight).
        names: display names aligned with ``labels`` (e.g. ``["1", "1.5", ...]``);
            default ``str(level)``.

    Example:
        >>> rep = classification_report([0, 1, 1], [0, 1, 0], names=["1 star", "2 stars"])
        >>> rep["1 star"]["recall"], rep["accuracy"]
        (0.5, 0.6666666666666666)
    """
    r = precision_recall_f1_support(pred, target, weight, labels)
    if names is None:
        keys = [str(int(x)) for x in r.labels]
    else:
        keys = [str(x) for x in names]
        if len(keys) != len(r.labels):
            raise ConfigError(
                f"expected {len(r.labels)} names (one per level), received {len(keys)}"
            )
        if len(set(keys)) != len(keys):
            raise ConfigError(f"expected distinct names, received {keys}")
    out: dict[str, Any] = {}
    for i, key in enumerate(keys):
        out[key] = {
            "precision": float(r.precision[i]),
            "recall": float(r.recall[i]),
            "f1": float(r.f1[i]),
            "support": float(r.support[i]),
        }
    total = float(r.support.sum())
    nan = float("nan")
    out["accuracy"] = accuracy(pred, target, weight)
    out["balanced_accuracy"] = balanced_accuracy(pred, target, weight)
    n = len(r.labels)
    out["macro avg"] = {
        "precision": float(r.precision.mean()) if n else nan,
        "recall": float(r.recall.mean()) if n else nan,
        "f1": float(r.f1.mean()) if n else nan,
        "support": total,
    }
    out["weighted avg"] = {
        m: float((getattr(r, m) * r.support).sum() / total) if total > 0 else nan
        for m in ("precision", "recall", "f1")
    }
    out["weighted avg"]["support"] = total
    return out


def format_classification_report(report: dict[str, Any], digits: int = 3) -> str:
    """Render a :func:`classification_report` dict as an aligned text table.

    Example:
        >>> print(format_classification_report(classification_report([0, 1], [0, 0])))
        level         precision  recall     f1  support
        0                 1.000   0.500  0.667        2
        1                 0.000   0.000  0.000        0
        <BLANKLINE>
        accuracy                         0.500        2
        balanced acc.                    0.500        2
        macro avg         0.500   0.250  0.333        2
        weighted avg      1.000   0.500  0.667        2
    """
    special = {"accuracy", "balanced_accuracy", "macro avg", "weighted avg"}
    width = max([13, *(len(k) for k in report if k not in special)])
    head = f"{'level':<{width}} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"
    lines = [head]

    def fmt_support(s: float) -> str:
        return f"{s:>8.0f}" if float(s).is_integer() else f"{s:>8.2f}"

    def row(key: str, d: dict[str, float]) -> str:
        return (
            f"{key:<{width}} {d['precision']:>9.{digits}f} {d['recall']:>7.{digits}f} "
            f"{d['f1']:>6.{digits}f} {fmt_support(d['support'])}"
        )

    for key, val in report.items():
        if key not in special:
            lines.append(row(key, val))
    total = float(report["macro avg"]["support"])
    lines.append("")
    blank = " " * (9 + 1 + 7 + 1)
    lines.append(
        f"{'accuracy':<{width}} {blank}{report['accuracy']:>6.{digits}f} {fmt_support(total)}"
    )
    lines.append(
        f"{'balanced acc.':<{width}} {blank}{report['balanced_accuracy']:>6.{digits}f} "
        f"{fmt_support(total)}"
    )
    lines.append(row("macro avg", report["macro avg"]))
    lines.append(row("weighted avg", report["weighted avg"]))
    return "\n".join(lines)
