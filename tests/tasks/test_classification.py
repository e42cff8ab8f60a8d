"""Training classifiers with imbalance strategies: end to end, leakage, SMOTE step, runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recfit.config import ClassificationConfig, validate_config
from recfit.data import Interactions
from recfit.data.sources import split_dataset
from recfit.errors import ConfigError
from recfit.runs import config_runner
from recfit.tasks import classification as clf
from recfit.tasks.classification import (
    STRATEGIES,
    SyntheticRows,
    train_classifier,
    write_classification_report,
)

LEVEL_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mse_expected")


@pytest.fixture
def skewed() -> Interactions:
    """600 ratings, 1 star rare (about 7%)."""
    rng = np.random.default_rng(1)
    n = 600
    u, i = rng.integers(0, 40, n), rng.integers(0, 50, n)
    r = rng.choice([1, 2, 3, 4, 5], n, p=[0.07, 0.13, 0.25, 0.3, 0.25]).astype(float)
    return Interactions.from_arrays(u, i, r, rating_scale=(1, 5))


def _parts(d: Interactions) -> tuple[Interactions, Interactions]:
    return d.take(np.arange(480)), d.take(np.arange(480, 600))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_end_to_end(strategy: Any, skewed: Interactions) -> None:
    train, valid = _parts(skewed)
    fit = train_classifier(
        train, valid, strategy=strategy, epochs=2, bs=64, layers=(8,), seed=0, smote_epochs=1
    )
    res = fit.learner.evaluate()
    for k in LEVEL_KEYS:
        assert np.isfinite(res[k]), k
    assert fit.learner.valid is valid
    counts = fit.resampled.counts_after
    if strategy in ("undersample", "oversample", "class_weights"):
        vals = list(counts.values())  # balanced (weighted) counts
        assert max(vals) == pytest.approx(min(vals), rel=1e-5)
    if strategy == "smote":
        assert fit.resampled.n_synthetic > 0 and {"smote", "head"} <= set(fit.seconds)
        assert len(fit.learner.history) == 3  # 2 epochs + 1 head epoch
    else:
        assert fit.resampled.n_synthetic == 0


def test_strategies_change_the_model(skewed: Interactions) -> None:
    train, valid = _parts(skewed)
    p = {
        s: train_classifier(
            train, valid, strategy=s, epochs=2, bs=64, layers=(8,), seed=0
        ).learner.predict_proba(valid)
        for s in ("none", "class_weights")
    }
    # class weights move probability towards the rare levels
    assert p["class_weights"][:, 0].mean() > p["none"][:, 0].mean()


def test_validation_rows_are_never_resampled_or_synthesised(
    skewed: Interactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, valid = _parts(skewed)
    # poison: validation rows all 1 star; if they leaked, level 1 counts would grow
    valid = Interactions(
        user=valid.user, item=valid.item, rating=np.ones(len(valid), np.float32),
        users=valid.users, items=valid.items,
    )  # fmt: skip
    train_pairs = set(zip(train.user.tolist(), train.item.tolist(), strict=True))
    n1 = float((train.rating == 1).sum())
    seen: list[tuple[Interactions, Any]] = []
    real = clf.resample

    def spy(data: Interactions, strategy: Any, **kw: Any) -> Any:
        seen.append((data, kw.get("vectors")))
        return real(data, strategy, **kw)

    monkeypatch.setattr(clf, "resample", spy)
    for strategy in STRATEGIES:
        seen.clear()
        fit = train_classifier(
            train, valid, strategy=strategy, epochs=1, bs=64, layers=(8,), seed=3, smote_epochs=1
        )
        for data, vectors in seen:
            assert data is train  # every strategy saw the training rows only
            if vectors is not None:
                assert len(vectors) == len(train)
        assert fit.resampled.counts_before[1.0] == n1
        learn = fit.learner
        pairs = set(zip(learn.train.user.tolist(), learn.train.item.tolist(), strict=True))
        assert pairs <= train_pairs  # only training rows (a subset or repeats) are trained on
        assert learn.valid is valid and np.all(valid.rating == 1)
        if strategy == "smote":
            # synthetic vectors lie between training vectors of their own level
            sv, sl = fit.resampled.synthetic_vectors, fit.resampled.synthetic_levels
            assert sv is not None and sl is not None and len(sv) > 0
            # embeddings were frozen after SMOTE, so these are the vectors SMOTE saw
            real = clf._features(learn, train)
            codes = (train.rating - 1).astype(int)
            for level in np.unique(sl):
                box = real[codes == level]
                mine = sv[sl == level]
                assert np.all(mine >= box.min(0) - 1e-6) and np.all(mine <= box.max(0) + 1e-6)


def test_synthetic_rows_train_only_the_head(skewed: Interactions) -> None:
    train, valid = _parts(skewed)
    base = train_classifier(train, valid, strategy="none", epochs=2, bs=64, layers=(8,), seed=0)
    smote = train_classifier(
        train, valid, strategy="smote", epochs=2, bs=64, layers=(8,), seed=0, smote_epochs=1
    )
    mb, ms = base.learner.model, smote.learner.model
    # phase 1 is the baseline; phase 2 froze the embeddings and moved the head
    torch.testing.assert_close(mb.user_emb, ms.user_emb)
    torch.testing.assert_close(mb.item_bias, ms.item_bias)
    assert not torch.equal(mb.out.weight, ms.out.weight)
    assert all(p.requires_grad for p in ms.parameters())  # unfrozen afterwards


def test_synthetic_rows_objective(skewed: Interactions) -> None:
    from recfit.models import RatingClassifier
    from recfit.train import Callback, Learner

    train, _ = _parts(skewed)
    model = RatingClassifier(
        train.n_users, train.n_items, levels=[1, 2, 3, 4, 5], layers=(8,), batch_norm=False
    )
    vec = torch.randn(10, model.feature_dim, generator=torch.Generator().manual_seed(0))
    lev = np.arange(10) % 5
    seen: list[float] = []

    class Probe(Callback):
        order = 10  # after SyntheticRows

        def after_loss(self) -> None:
            assert self.learn.loss is not None
            seen.append(float(self.learn.loss.detach()))

    learn = Learner(
        model, train, bs=len(train), progress=False,
        callbacks=[SyntheticRows(vec.numpy(), lev, seed=0), Probe()],
    )  # fmt: skip
    with torch.no_grad():
        cols = learn._train_td.columns
        real = float(learn.loss_func(model(cols), cols).sum())
        syn = float(torch.nn.functional.cross_entropy(model.head(vec), torch.as_tensor(lev),
                                                      reduction="sum"))  # fmt: skip
    learn.fit(1, 0.0)  # one step over all rows
    assert seen == [pytest.approx((real + syn) / (len(train) + 10), rel=1e-5)]
    with pytest.raises(ConfigError):
        SyntheticRows(np.zeros((3, 2)), np.zeros(2))


def test_train_run_classification_writes_report(skewed: Interactions, tmp_path: Path) -> None:
    from recfit.runs import train_run

    cfg = ClassificationConfig(split="random:0.2", epochs=1, layers=(8,), bs=64)
    res = train_run(cfg, tmp_path / "run", data=skewed, progress=False)
    assert res.learner.model.config()["name"] == "classifier"
    assert {"accuracy", "mse_expected", "mse_argmax", "loss"} <= set(res.metrics)
    out = tmp_path / "run"
    assert (out / "confusion_matrix.png").stat().st_size > 0
    rep = json.loads((out / "classification_report.json").read_text())
    assert rep["levels"] == ["1", "2", "3", "4", "5"]
    cm = np.array(rep["confusion_matrix"])
    assert cm.sum() == pytest.approx(len(res.split.test))
    assert rep["report"]["accuracy"] == pytest.approx(res.metrics["accuracy"])
    assert "macro avg" in (out / "classification_report.txt").read_text()
    write_classification_report(res.learner, res.split.test, tmp_path / "again")
    assert (tmp_path / "again" / "confusion_matrix.png").exists()


def test_config_rules() -> None:
    cfg = validate_config({"task": "classification", "imbalance": "smote"})
    assert (cfg.model, cfg.loss) == ("classifier", "cross_entropy")
    with pytest.raises(ConfigError, match="classifier"):
        validate_config({"task": "classification", "model": "dot"})
    with pytest.raises(ConfigError, match="imbalance"):
        validate_config({"imbalance": "oversample"})
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config({"task": "classification", "imbalanse": "smote"})


def test_config_runner_same_split_per_seed(skewed: Interactions) -> None:
    run = config_runner(skewed)
    base = {"task": "classification", "epochs": 1, "layers": [8], "bs": 64}
    a = run("a", base, 5)
    b = run("b", {**base, "imbalance": "oversample"}, 5)
    c = run("a", base, 5)
    assert a == {**c, "fit_seconds": a["fit_seconds"]}
    assert a["accuracy"] != b["accuracy"] or a["loss"] != b["loss"]
    sp1 = split_dataset(skewed, "random:0.2", seed=5)
    sp2 = split_dataset(skewed, "random:0.2", seed=5)
    np.testing.assert_array_equal(sp1.test.rating, sp2.test.rating)
    with pytest.raises(ConfigError, match="seed"):
        run("a", {**base, "seed": 1}, 5)
    with pytest.raises(ConfigError, match="unknown key"):
        run("a", {**base, "epoch": 1}, 5)


@pytest.mark.slow
def test_r1_classifier_targets(data_dir: Path) -> None:
    """Protocol R1 (ml-100k, random 20% validation, seed 42): accuracy >= 0.45 and
    expected-rating MSE <= 0.83 (published: accuracy 0.45, argmax MSE 1.16)."""
    from recfit.data.sources import load_dataset

    d = load_dataset("ml-100k", data_dir=str(data_dir))
    sp = split_dataset(d, "random:0.2", seed=42)
    fit = train_classifier(
        sp.train, sp.test, epochs=5, lr=5e-3, bs=256, wd=0.3, n_factors=32, seed=0
    )
    res = fit.learner.evaluate()
    assert res["accuracy"] >= 0.45
    assert res["mse_expected"] <= 0.83
    assert res["mse_argmax"] < 1.16


def test_a_newly_registered_classification_family_trains(skewed: Interactions) -> None:
    """train_classifier asks the registry which families and arguments there are."""
    from recfit.models import RatingClassifier
    from recfit.models.classifier import prepare_levels
    from recfit.models.registry import Family, register_family, sized_build, unregister_family

    class WideClassifier(RatingClassifier):
        def __init__(self, n_users: int, n_items: int, width: int = 4, **kw: Any) -> None:
            super().__init__(n_users, n_items, layers=(width,), **kw)

    register_family(Family(
        name="wide_clf", task="classification", model_class=WideClassifier, output="rating",
        reads=frozenset({"n_factors", "seed"}), trainers=("sgd",), adapter="generic",
        defaults={"epochs": 1}, build=sized_build(WideClassifier, prepare=prepare_levels),
    ))  # fmt: skip
    try:
        train, valid = _parts(skewed)
        fit = train_classifier(train, valid, model="wide_clf", width=6, bs=64)
        net = fit.learner.model
        assert type(net) is WideClassifier and net.body[0].out_features == 6
        assert len(fit.learner.history) == 1  # the family's default epochs
        with pytest.raises(ConfigError, match="wide_clf arguments"):
            train_classifier(train, valid, model="wide_clf", layers=(4,))
    finally:
        unregister_family("wide_clf")
    with pytest.raises(ConfigError, match="expected model among"):
        train_classifier(train, valid, model="wide_clf")


def test_train_classifier_takes_the_family_defaults_as_the_config_path(
    skewed: Interactions,
) -> None:
    """One path: train_classifier(model="ordrec") trains what a classification run with
    model ordrec trains (the family's epochs, lr, wd, reg; the config's implicit term)."""
    cfg = ClassificationConfig(model="ordrec", n_factors=4, seed=3, split="random:0.2")
    from recfit.runs import train_run

    res = train_run(cfg, data=skewed, progress=False)
    fit = train_classifier(res.split.train, res.split.test, model="ordrec", n_factors=4, seed=3)
    learn, ref = fit.learner, res.learner
    resolved = cfg.resolve_model(big=False)
    assert (learn.wd, learn.reg, len(learn.history)) == (resolved.wd, resolved.reg, resolved.epochs)
    assert (learn.wd, learn.reg, len(learn.history)) == (0.05, 0.01, 8)
    assert learn.model.implicit and learn.model.config() == ref.model.config()
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(learn.model.state_dict()[k], v, msg=k)
