"""Learner: objective vs metrics (Keras lessons), weights, fused path, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import ConfigError, DataError
from recfit.metrics import mse
from recfit.models import BiasedMF, DotBias, EmbeddingNN, create_model
from recfit.train import Cyclic, Learner, ScheduleRecorder
from recfit.train.execution import Execution


def _synthetic(n_users: int = 40, n_items: int = 30, k: int = 3, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    pu, qi = rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k))
    u, i = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    keep = rng.random(u.shape) < 0.7
    u, i = u[keep], i[keep]
    r = 3 + 0.7 * (pu[u] * qi[i]).sum(1)
    return Interactions.from_arrays(u, i, r)


def test_keras_lesson_1_penalty_is_not_in_the_metric() -> None:
    """A penalised dot model: evaluate()["mse"] is the MSE of predict(); loss adds reg_loss."""
    d = _synthetic()
    model = DotBias(d.n_users, d.n_items, 8, global_mean=3.0, init_std=0.3)
    learn = Learner(model, d, reg=0.5, wd=0.0, progress=False).fit(3, 1e-2)
    res = learn.evaluate(d)
    pred_mse = mse(learn.predict(d), d.rating)
    assert res["mse"] == pred_mse
    assert res["reg_loss"] > 0.05
    assert res["loss"] == pytest.approx(pred_mse + res["reg_loss"], rel=1e-9)
    assert res["loss"] > res["mse"] + 0.05  # Keras reported this number as "MSE"
    hist = learn.history_frame()
    assert (hist["reg_loss"] > 0).all() and (hist["train_loss"] > hist["reg_loss"]).all()


def test_keras_lesson_2_sample_weight_used_by_loss_and_metric() -> None:
    """sample_weight [0, 1, 1]: the padded row counts neither in the loss nor the metric."""
    d = Interactions.from_arrays([0, 1, 2], [0, 1, 2], [5.0, 1.0, 1.0], weight=[0.0, 1.0, 1.0])
    learn = Learner(DotBias(3, 3, 2, global_mean=1.0, seed=0), d, bs=3, wd=0.0, progress=False)
    res = learn.evaluate(d)
    pred = learn.predict(d)
    assert pred[0] == pytest.approx(1.0, abs=0.05)  # far from its rating 5: would add ~16/3
    assert res["mse"] == mse(pred[1:], d.rating[1:])
    # predictions are clipped into the training ratings' range (here [1, 1]); the loss
    # is the objective on the model's own output
    with torch.no_grad():
        raw = learn.model({"user": torch.tensor([1, 2]), "item": torch.tensor([1, 2])})
    assert res["loss"] == pytest.approx(mse(raw.numpy(), d.rating[1:]), rel=1e-6)
    assert res["mse"] < 0.01
    learn.fit(3, 0.1)
    # training never saw row 0: its item/user rows only decayed / stayed put
    assert learn.history[0]["train_loss"] < 0.01
    res = learn.evaluate(d)
    assert res["mse"] == mse(learn.predict(d)[1:], d.rating[1:])


def test_tiny_dataset_overfits(tiny: Interactions) -> None:
    model = DotBias(tiny.n_users, tiny.n_items, 10, y_range=(0.5, 5.5), init_std=0.1)
    learn = Learner(model, tiny, bs=16, wd=0.0, progress=False).fit_one_cycle(60, 3e-2)
    assert learn.evaluate(tiny)["mse"] < 0.01


@pytest.mark.parametrize("name", ["dot", "svdpp"])
def test_fused_and_autograd_paths_agree(tiny: Interactions, name: str) -> None:
    d = tiny.with_weights(np.random.default_rng(1).uniform(0.2, 2.0, len(tiny)))
    for reg in (0.0, 0.1):
        runs = []
        for fused in (True, False):
            model = create_model(name, d, n_factors=6, y_range=(0.5, 5.5), seed=2)
            learn = Learner(
                model,
                d,
                d,
                bs=16,
                wd=0.05,
                reg=reg,
                execution=Execution(fused=fused),
                progress=False,
            )
            learn.fit_one_cycle(2, 1e-2)
            runs.append(learn)
        assert runs[0].fused and not runs[1].fused
        for pa, pb in zip(runs[0].model.parameters(), runs[1].model.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6)
        for ha, hb in zip(runs[0].history, runs[1].history, strict=True):
            assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-5)
            assert ha["mse"] == pytest.approx(hb["mse"], rel=1e-5)


def test_fused_is_auto_only_where_available(tiny: Interactions) -> None:
    dot = Learner(DotBias(tiny.n_users, tiny.n_items), tiny, progress=False)
    nn_ = Learner(EmbeddingNN(tiny.n_users, tiny.n_items), tiny, progress=False)
    assert dot.fused and not nn_.fused
    with pytest.raises(ConfigError, match="fused"):
        Learner(
            EmbeddingNN(tiny.n_users, tiny.n_items),
            tiny,
            execution=Execution(fused=True),
            progress=False,
        )


def test_history_records(tiny: Interactions) -> None:
    learn = Learner(BiasedMF(tiny.n_users, tiny.n_items, 4, global_mean=3.0), tiny, tiny,
                    metrics=("mse", "r2"), reg=0.02, progress=False)  # fmt: skip
    learn.fit(2, 1e-2)
    h = learn.history_frame()
    assert list(h.columns) == [
        "epoch", "train_loss", "reg_loss", "valid_loss", "valid_reg_loss", "mse", "r2", "lr", "time"
    ]  # fmt: skip
    assert h["lr"].tolist() == [1e-2, 1e-2]
    last = learn.evaluate()
    assert h["mse"].iloc[-1] == last["mse"] and h["valid_loss"].iloc[-1] == last["loss"]


def test_other_optimisers_and_schedules(tiny: Interactions) -> None:
    for opt in ("sgd", "momentum", "adagrad"):
        learn = Learner(BiasedMF(tiny.n_users, tiny.n_items, 4, global_mean=3.0), tiny,
                        opt=opt, wd=0.01, progress=False)  # fmt: skip
        before = learn.evaluate(tiny)["mse"]
        learn.fit(3, 0.05)
        assert learn.evaluate(tiny)["mse"] < before, opt
    rec = ScheduleRecorder()
    learn = Learner(DotBias(tiny.n_users, tiny.n_items, 4), tiny, bs=64, callbacks=[rec],
                    progress=False)  # fmt: skip
    learn.fit(2, schedule=Cyclic(1e-3, 1e-2, step_size=3))
    assert rec.lrs[:4] == pytest.approx([1e-3, 4e-3, 7e-3, 1e-2])
    custom = Learner(DotBias(tiny.n_users, tiny.n_items, 4), tiny, progress=False,
                     opt=lambda ps: torch.optim.SGD(ps, lr=0.1))  # fmt: skip
    custom.fit(1, 0.1)


def test_bad_arguments(tiny: Interactions) -> None:
    m = DotBias(tiny.n_users, tiny.n_items, 4)
    with pytest.raises(ConfigError, match="opt"):
        Learner(m, tiny, opt="lion")
    with pytest.raises(ConfigError, match="bs"):
        Learner(m, tiny, bs=0)
    with pytest.raises(ConfigError, match="wd"):
        Learner(m, tiny, wd=-1.0)
    with pytest.raises(ConfigError, match="RatingModel"):
        Learner(torch.nn.Linear(2, 2), tiny)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="weight > 0"):
        Learner(m, tiny.with_weights(np.zeros(len(tiny))), progress=False)
    small = DotBias(2, 2, 2)
    with pytest.raises(DataError, match="user indices"):
        Learner(small, tiny)
    learn = Learner(m, tiny, progress=False)
    with pytest.raises(ConfigError, match="evaluate"):
        learn.evaluate()
    with pytest.raises(ConfigError, match="epochs"):
        learn.fit(-1)
    with pytest.raises(ConfigError, match="device"):
        Learner(m, tiny, device="tpu:9", progress=False)


def test_device_auto_and_threads_restored(tiny: Interactions) -> None:
    learn = Learner(DotBias(tiny.n_users, tiny.n_items, 4), tiny, progress=False)
    assert learn.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    before = torch.get_num_threads()
    learn.fit(1, 1e-2)
    assert torch.get_num_threads() == before


def test_fit_does_not_touch_the_global_rng(tiny: Interactions) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Learner(EmbeddingNN(tiny.n_users, tiny.n_items, dropout=0.2), tiny, progress=False).fit(1)
    assert torch.equal(torch.rand(3), expected)
