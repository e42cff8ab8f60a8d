"""The conformance suite every rating model passes.

Every registered family whose predictions are ratings is a case by itself, built by its
family's ``build`` from small settings (:data:`SMALL`, each family taking the fields it
reads) and trained by its family's default trainer: a family added by one module and one
registry line is covered without editing this file. ``VARIANTS`` adds other settings of
the same families (a raw dot model, dropout, the ordinal head). Each test below runs for
every case.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import DataError
from recfit.metrics import mae, mse, r2, rmse
from recfit.metrics.levels import LEVEL_METRICS
from recfit.models import (
    DotBias,
    EmbeddingNN,
    LevelModel,
    RatingClassifier,
    RatingModel,
    create_model,
    families,
    family_of,
    read_model_file,
    write_model_file,
)
from recfit.models.registry import Family
from recfit.train import Learner
from recfit.train.execution import Execution
from recfit.train.trainers import FitSpec, trainer_for

Factory = Callable[[Interactions], RatingModel]

SMALL: dict[str, Any] = {"n_factors": 8, "layers": (16,), "y_range": (0.5, 5.5), "seed": 1}
"""Settings for tiny data; a family takes those among the fields it reads."""


def _from_family(fam: Family) -> Factory:
    return lambda d: fam.build(fam.settings(SMALL), d)


VARIANTS: dict[str, Factory] = {
    "dot-raw": lambda d: DotBias(d.n_users, d.n_items, 8, global_mean=3.0, seed=1),
    "svdpp-implicit": lambda d: create_model(
        "svdpp", d, n_factors=8, y_range=(0.5, 5.5), implicit_init_std=0.01, seed=1
    ),
    "nn-dropout": lambda d: EmbeddingNN(
        d.n_users, d.n_items, layers=(16, 8), dropout=0.1, batch_norm=False, seed=1
    ),
    "ordrec-implicit-shared": lambda d: create_model(
        "ordrec", d, n_factors=8, implicit=True, user_thresholds=False, seed=1
    ),
    "classifier-ordinal": lambda d: RatingClassifier(
        d.n_users,
        d.n_items,
        levels=[1, 2, 3, 4, 5],
        layers=(16,),
        head="ordinal",
        decode="argmax",
        seed=1,
    ),
}

CASES: dict[str, Factory] = {
    **{f.name: _from_family(f) for f in families() if f.output == "rating"},
    **VARIANTS,
}

pytestmark = pytest.mark.parametrize("case", sorted(CASES))


def _learner(case: str, data: Interactions, **kw: object) -> Learner:
    args: dict[str, object] = {"bs": 32, "progress": False, "seed": 3, **kw}
    return Learner(CASES[case](data), data, **args)  # type: ignore[arg-type]


def _trainer(learn: Learner) -> str:
    """The default trainer of the model's family."""
    return family_of(learn.model).trainers[0]


def _fit(learn: Learner, epochs: int, lr: float, *, one_cycle: bool = False) -> Learner:
    """Train by the family's default trainer (SGD: ``epochs`` at ``lr``, one-cycle or
    constant; ALS: ``epochs`` sweeps; closed form: one solve)."""
    schedule = "one_cycle" if one_cycle else "constant"
    spec = FitSpec(epochs=epochs, lr=lr, schedule=schedule)
    return trainer_for(_trainer(learn)).fit(learn, spec)


def _weighted(tiny: Interactions) -> Interactions:
    w = np.random.default_rng(5).choice([0.0, 0.5, 1.0, 2.0], size=len(tiny))
    return tiny.with_weights(w)


def test_fit_lowers_training_loss(case: str, tiny: Interactions) -> None:
    learn = _learner(case, tiny, valid=tiny)
    before = learn.evaluate(tiny)["mse"]
    _fit(learn, 4, 2e-2, one_cycle=True)
    after = learn.evaluate(tiny)["mse"]
    assert len(learn.history) == (1 if _trainer(learn) == "closed_form" else 4)
    assert after < before


def test_predict_shape_and_units(case: str, tiny: Interactions) -> None:
    learn = _fit(_learner(case, tiny), 1, 1e-2)
    pred = learn.predict(tiny)
    assert pred.shape == (len(tiny),) and pred.dtype == np.float32
    assert np.isfinite(pred).all()
    assert learn.predict(tiny.take(np.arange(0))).shape == (0,)


def test_config_and_weights_round_trip(case: str, tiny: Interactions, tmp_path: Path) -> None:
    learn = _fit(_learner(case, tiny), 1, 1e-2)
    path = write_model_file(learn.model, tmp_path / "m.safetensors")
    model2 = read_model_file(path)
    assert model2.config() == learn.model.config()
    learn2 = Learner(model2, tiny, progress=False)
    np.testing.assert_array_equal(learn2.predict(tiny), learn.predict(tiny))


def test_same_seed_same_numbers(case: str, tiny: Interactions) -> None:
    runs = [_fit(_learner(case, tiny, valid=tiny), 2, 1e-2, one_cycle=True) for _ in range(2)]
    assert (
        runs[0]
        .history_frame()
        .drop(columns="time")
        .equals(runs[1].history_frame().drop(columns="time"))
    )
    np.testing.assert_array_equal(runs[0].predict(tiny), runs[1].predict(tiny))
    if _trainer(runs[0]) == "closed_form":  # one exact solve: no seed, no batch order
        return
    other = _fit(_learner(case, tiny, seed=4), 2, 1e-2, one_cycle=True)
    assert not np.array_equal(_raw(other, tiny), _raw(runs[0], tiny))


def _raw(learn: Learner, data: Interactions) -> np.ndarray:
    """The model's finest output: level probabilities for classifiers (an argmax decoding
    can coincide for two seeds), else its own output before the predicted ratings are
    clipped into the rating scale (two seeds can both clip to the same bound)."""
    if isinstance(learn.model, LevelModel):
        return learn.predict_proba(data)
    learn.model.eval()
    with torch.no_grad():
        parts = [learn.model(b) for b in learn.tensor_data(data).epoch(learn.eval_bs, None)]
    return torch.cat(parts).cpu().numpy()


def test_evaluate_equals_metrics_of_predict(case: str, tiny: Interactions) -> None:
    d = _weighted(tiny)
    levels = tuple(LEVEL_METRICS) if isinstance(CASES[case](d), LevelModel) else ()
    learn = _learner(case, d, reg=0.05, metrics=("mse", "rmse", "mae", "r2", *levels))
    _fit(learn, 2, 1e-2)
    res = learn.evaluate(d)
    pred = learn.predict(d)
    assert res["mse"] == mse(pred, d.rating, d.weight)
    assert res["rmse"] == rmse(pred, d.rating, d.weight)
    assert res["mae"] == mae(pred, d.rating, d.weight)
    assert res["r2"] == r2(pred, d.rating, d.weight)
    assert res["reg_loss"] > 0
    per_row = learn.loss_func.name
    if per_row == "mse":
        assert res["loss"] == pytest.approx(res["mse"] + res["reg_loss"], rel=1e-6)
    if isinstance(learn.model, LevelModel):  # level metrics ≡ functions of predict_proba
        proba = learn.predict_proba(d)
        assert proba.shape == (len(d), len(learn.model.levels))
        for name, fn in LEVEL_METRICS.items():
            assert res[name] == fn(proba, learn.model.levels, d.rating, d.weight), name
        keep = d.weights() > 0
        levels = np.asarray(learn.model.levels)
        true = np.abs(d.rating[keep, None] - levels[None, :]).argmin(1)
        ce = -np.log(proba[keep][np.arange(keep.sum()), true])
        w = d.weights()[keep]
        assert res["loss"] - res["reg_loss"] == pytest.approx((w * ce).sum() / w.sum(), rel=1e-5)


def test_indices_beyond_the_model_are_a_typed_error(case: str, tiny: Interactions) -> None:
    learn = _learner(case, tiny)
    bigger = Interactions.from_arrays(
        np.arange(tiny.n_users + 1),
        np.zeros(tiny.n_users + 1, dtype=int),
        np.ones(tiny.n_users + 1),
    )
    with pytest.raises(DataError, match="expected user indices"):
        learn.predict(bigger)


def test_gradients_reach_every_parameter(case: str, tiny: Interactions) -> None:
    learn = _learner(case, tiny, reg=0.01, execution=Execution(fused=False))
    if "sgd" not in family_of(learn.model).trainers:
        pytest.skip("a family not trained by gradients")
    model = learn.model
    model.train()
    batch = next(learn._train_td.epoch(len(tiny), None))
    out = model(batch)
    loss = learn.loss_func(out, batch).mean() + 0.01 * model.penalty(batch).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad.abs().sum()) > 0, name


def test_weight_zero_rows_change_nothing(case: str, tiny: Interactions) -> None:
    rng = np.random.default_rng(9)
    n_bad = 50
    u = np.concatenate([tiny.user, rng.integers(0, tiny.n_users, n_bad)]).astype(np.int32)
    i = np.concatenate([tiny.item, rng.integers(0, tiny.n_items, n_bad)]).astype(np.int32)
    r = np.concatenate([tiny.rating, rng.uniform(-50, 50, n_bad)]).astype(np.float32)
    w = np.concatenate([np.ones(len(tiny)), np.zeros(n_bad)]).astype(np.float32)
    inv = np.argsort(rng.permutation(len(u)))  # interleave the garbage rows
    mixed = Interactions(
        user=u[inv], item=i[inv], rating=r[inv], users=tiny.users, items=tiny.items, weight=w[inv]
    )
    clean_rows = np.flatnonzero(mixed.weight > 0)
    clean = mixed.take(clean_rows).with_weights(None)
    a = _fit(_learner(case, clean, valid=clean), 2, 1e-2, one_cycle=True)
    b = _fit(_learner(case, mixed, valid=mixed), 2, 1e-2, one_cycle=True)
    # training is bit-identical: the same weights after the same batches
    for (name, p), q in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    ha, hb = (x.history_frame().drop(columns="time") for x in (a, b))
    assert (ha["train_loss"] == hb["train_loss"]).all()
    # predictions of the same rows in batches of another size may differ in the last
    # float32 bit (matrix products block by batch size); the metrics agree to that
    pd.testing.assert_frame_equal(ha, hb, check_exact=False, rtol=1e-6)
    np.testing.assert_allclose(a.predict(clean), b.predict(mixed)[clean_rows], rtol=1e-6)


def _cold(tiny: Interactions) -> tuple[Interactions, np.ndarray]:
    """``tiny`` without any row of its first user and first item (both stay in the
    vocabularies, never trained), and the mask of the rows of ``tiny`` they touch."""
    cold = (tiny.user == 0) | (tiny.item == 0)
    return tiny.take(np.flatnonzero(~cold)), cold


def test_never_trained_users_and_items_get_the_baseline(
    case: str, tiny: Interactions, tmp_path: Path
) -> None:
    from recfit.models import fit_baseline

    train, cold = _cold(tiny)
    assert train.n_users == tiny.n_users and train.n_items == tiny.n_items
    learn = _fit(_learner(case, train), 2, 1e-2)
    np.testing.assert_array_equal(learn.fallback(tiny), cold)
    mu, bu, bi, cu, ci = fit_baseline(
        train.user, train.item, train.rating, None, tiny.n_users, tiny.n_items
    )
    assert cu[0] == 0 and ci[0] == 0 and (cu[1:] > 0).all() and (ci[1:] > 0).all()
    want = (mu + bu[tiny.user] + bi[tiny.item])[cold]  # the known side's bias only
    pred = learn.predict(tiny)
    model = learn.model
    if isinstance(model, RatingClassifier) and model.decode == "argmax":
        levels = np.asarray(model.levels)
        want = levels[np.abs(want[:, None] - levels[None, :]).argmin(1)]
    np.testing.assert_allclose(pred[cold], want, rtol=1e-5, atol=1e-5)
    # evaluate ≡ predict, and it says how many rows fell back
    res = learn.evaluate(tiny)
    assert res["mse"] == mse(pred, tiny.rating, tiny.weight)
    assert res["n_fallback"] == cold.sum()
    assert learn.evaluate(train)["n_fallback"] == 0
    # the record survives save / load: a Learner on other data keeps it
    back = read_model_file(write_model_file(model, tmp_path / "m.safetensors"))
    again = Learner(back, tiny, progress=False)
    np.testing.assert_array_equal(again.fallback(tiny), cold)
    np.testing.assert_array_equal(again.predict(tiny), pred)
