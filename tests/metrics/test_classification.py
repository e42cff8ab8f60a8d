"""Classification metrics: hand-computed cases, scikit-learn parity with weights, properties."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from recfit.errors import ConfigError, DataError
from recfit.metrics.classification import (
    accuracy,
    balanced_accuracy,
    classification_report,
    confusion_matrix,
    f1,
    format_classification_report,
    precision_recall_f1_support,
)

# A hand-worked example: 3 levels, 6 rows.
#   target: 0 0 1 1 2 2 ; pred: 0 1 1 1 2 0 ; weights 1 2 1 1 3 1
# weighted confusion (true rows, pred cols):
#   [[1, 2, 0],
#    [0, 2, 0],
#    [1, 0, 3]]
T = np.array([0, 0, 1, 1, 2, 2])
P = np.array([0, 1, 1, 1, 2, 0])
W = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 1.0])


def test_hand_computed_example() -> None:
    cm = confusion_matrix(P, T, W)
    assert cm.tolist() == [[1, 2, 0], [0, 2, 0], [1, 0, 3]]
    assert accuracy(P, T, W) == pytest.approx(6 / 9)
    # recalls 1/3, 1, 3/4 ; precisions 1/2, 1/2, 1
    r = precision_recall_f1_support(P, T, W)
    assert r.labels.tolist() == [0, 1, 2]
    assert r.recall == pytest.approx([1 / 3, 1.0, 0.75])
    assert r.precision == pytest.approx([0.5, 0.5, 1.0])
    assert r.support.tolist() == [3.0, 2.0, 4.0]
    f = [2 * p * q / (p + q) for p, q in zip([0.5, 0.5, 1.0], [1 / 3, 1.0, 0.75], strict=True)]
    assert r.f1 == pytest.approx(f)
    assert f1(P, T, W) == pytest.approx(sum(f) / 3)
    assert f1(P, T, W, average="weighted") == pytest.approx((3 * f[0] + 2 * f[1] + 4 * f[2]) / 9)
    assert balanced_accuracy(P, T, W) == pytest.approx((1 / 3 + 1 + 0.75) / 3)
    # unweighted accuracy differs, so the weights really are used
    assert accuracy(P, T) == pytest.approx(4 / 6)


def test_confusion_normalisations() -> None:
    cm = confusion_matrix(P, T, W, normalize="true")
    assert cm.sum(axis=1) == pytest.approx([1, 1, 1])
    assert cm[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0])
    cm = confusion_matrix(P, T, W, normalize="pred")
    assert cm.sum(axis=0) == pytest.approx([1, 1, 1])
    cm = confusion_matrix(P, T, W, normalize="all")
    assert cm.sum() == pytest.approx(1.0)
    # an absent level keeps a zero row/column, never nan
    cm = confusion_matrix([0, 0], [0, 0], n_classes=3, normalize="true")
    assert cm.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    with pytest.raises(ConfigError, match="normalize"):
        confusion_matrix(P, T, normalize="rows")  # type: ignore[arg-type]


def test_zero_weight_rows_do_not_exist() -> None:
    # a level that only occurs in a weight-0 row is not "present"
    p = np.array([0, 1, 2])
    t = np.array([0, 1, 1])
    w = np.array([1.0, 1.0, 0.0])
    assert precision_recall_f1_support(p, t, w).labels.tolist() == [0, 1]
    assert f1(p, t, w) == 1.0
    assert accuracy(p, t, w) == 1.0
    assert balanced_accuracy(p, t, w) == 1.0
    assert math.isnan(accuracy(p, t, np.zeros(3)))
    assert math.isnan(balanced_accuracy(p, t, np.zeros(3)))


def test_errors_name_the_row() -> None:
    with pytest.raises(DataError, match="levels >= 0") as e:
        accuracy([0, -1], [0, 1])
    assert e.value.row == 1
    with pytest.raises(DataError, match="integer levels") as e:
        accuracy([0.0, 1.5], [0, 1])
    assert e.value.row == 1
    with pytest.raises(DataError, match="non-negative weights") as e:
        accuracy([0, 1], [0, 1], weight=[1.0, -1.0])
    assert e.value.row == 1
    with pytest.raises(DataError, match="expected 3 predictions"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(DataError, match=r"levels in \[0, 1\]") as e:
        confusion_matrix([0, 2], [0, 1], n_classes=2)
    assert e.value.row == 1 and e.value.column == "pred"


# ----------------------------------------------------------------- scikit-learn parity
labels_st = st.integers(min_value=2, max_value=5).flatmap(
    lambda k: st.integers(min_value=1, max_value=60).flatmap(
        lambda n: st.tuples(
            st.just(k),
            st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
            st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
            st.lists(
                st.floats(min_value=0.05, max_value=10.0, allow_nan=False), min_size=n, max_size=n
            ),
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(labels_st)
def test_matches_sklearn_with_sample_weights(
    case: tuple[int, list[int], list[int], list[float]],
) -> None:
    k, pl, tl, wl = case
    p, t, w = np.array(pl), np.array(tl), np.array(wl)
    assert accuracy(p, t, w) == pytest.approx(skm.accuracy_score(t, p, sample_weight=w))
    assert confusion_matrix(p, t, w, n_classes=k) == pytest.approx(
        skm.confusion_matrix(t, p, sample_weight=w, labels=list(range(k)))
    )
    for norm in ("true", "pred", "all"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = skm.confusion_matrix(t, p, sample_weight=w, labels=list(range(k)), normalize=norm)
        assert confusion_matrix(p, t, w, n_classes=k, normalize=norm) == pytest.approx(
            np.nan_to_num(ref)
        )
    for average in ("macro", "weighted"):
        ref = skm.f1_score(t, p, sample_weight=w, average=average, zero_division=0.0)
        assert f1(p, t, w, average=average) == pytest.approx(ref)
    pr, rc, ff, sup = skm.precision_recall_fscore_support(t, p, sample_weight=w, zero_division=0.0)
    r = precision_recall_f1_support(p, t, w)
    assert r.labels.tolist() == sorted(set(pl) | set(tl))
    assert r.precision == pytest.approx(pr)
    assert r.recall == pytest.approx(rc)
    assert r.f1 == pytest.approx(ff)
    # scikit-learn reports weighted support from confusion counts
    assert r.support == pytest.approx(np.asarray(sup, dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_ba = skm.balanced_accuracy_score(t, p, sample_weight=w)
    assert balanced_accuracy(p, t, w) == pytest.approx(ref_ba)
    # explicit labels, including an absent one
    lab = list(range(k + 1))
    ref = skm.f1_score(t, p, sample_weight=w, labels=lab, average="macro", zero_division=0.0)
    assert f1(p, t, w, labels=lab) == pytest.approx(ref)


def test_report_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.5, t, rng.integers(0, 5, 300))
    w = rng.uniform(0.1, 3.0, 300)
    names = ["1", "2", "3", "4", "5"]
    ours = classification_report(p, t, w, names=names)
    ref = skm.classification_report(t, p, sample_weight=w, target_names=names, output_dict=True)
    for name in names:
        assert ours[name]["precision"] == pytest.approx(ref[name]["precision"])
        assert ours[name]["recall"] == pytest.approx(ref[name]["recall"])
        assert ours[name]["f1"] == pytest.approx(ref[name]["f1-score"])
        assert ours[name]["support"] == pytest.approx(ref[name]["support"])
    for avg in ("macro avg", "weighted avg"):
        assert ours[avg]["f1"] == pytest.approx(ref[avg]["f1-score"])
        assert ours[avg]["precision"] == pytest.approx(ref[avg]["precision"])
    assert ours["accuracy"] == pytest.approx(ref["accuracy"])
    text = format_classification_report(ours)
    assert "weighted avg" in text and "balanced acc." in text
    assert len(text.splitlines()) == 1 + 5 + 1 + 4
    with pytest.raises(ConfigError, match="expected 5 names"):
        classification_report(p, t, w, names=names[:3])


# ----------------------------------------------------------------- properties
weighted_st = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
    )
)


def _all_metrics(p: np.ndarray, t: np.ndarray, w: np.ndarray | None) -> list[float]:
    r = precision_recall_f1_support(p, t, w, labels=[0, 1, 2, 3])
    return [
        accuracy(p, t, w),
        balanced_accuracy(p, t, w),
        f1(p, t, w),
        f1(p, t, w, average="weighted"),
        *confusion_matrix(p, t, w, n_classes=4).ravel().tolist(),
        *r.precision.tolist(),
        *r.recall.tolist(),
        *r.support.tolist(),
    ]


@settings(max_examples=80, deadline=None)
@given(weighted_st)
def test_integer_weight_equals_duplicated_rows(
    case: tuple[list[int], list[int], list[int]],
) -> None:
    p, t, w = (np.array(x) for x in case)
    if w.sum() == 0:
        return
    rep_p, rep_t = np.repeat(p, w), np.repeat(t, w)
    ours = _all_metrics(p, t, w.astype(float))
    dup = _all_metrics(rep_p, rep_t, None)
    assert ours == pytest.approx(dup, nan_ok=True)


@settings(max_examples=50, deadline=None)
@given(weighted_st, st.integers(1, 5))
def test_weight_scale_invariance(case: tuple[list[int], list[int], list[int]], c: int) -> None:
    p, t, w = (np.array(x) for x in case)
    if w.sum() == 0:
        return
    a = _all_metrics(p, t, w.astype(float))[:4]
    b = _all_metrics(p, t, (c * w).astype(float))[:4]
    assert a == pytest.approx(b, nan_ok=True)
