"""OrdRec: proper distributions, its gradient, the row-wise path and the task around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.config import ClassificationConfig
from recfit.data import Interactions
from recfit.errors import ConfigError
from recfit.models import CrossEntropyLoss, OrdRec, create_model
from recfit.train import Learner
from recfit.train.execution import Execution
from recfit.train.optim import AdamW
from recfit.train.sparse import RowAdagrad, RowAdamW, row_tables

HALF = [0.5 * k for k in range(1, 11)]


@pytest.fixture
def half_stars() -> Interactions:
    """800 half-star ratings whose level follows a user and an item effect."""
    rng = np.random.default_rng(3)
    n, nu, ni = 800, 30, 60
    u, i = rng.integers(0, nu, n), rng.integers(0, ni, n)
    x = rng.normal(0, 1, nu)[u] + rng.normal(0, 1, ni)[i] + rng.normal(0, 0.5, n)
    r = np.clip(np.round(2 * (2.75 + x)) / 2, 0.5, 5.0)
    return Interactions.from_arrays(u, i, r, rating_scale=(0.5, 5))


def _randomise(m: OrdRec, seed: int, scale: float = 1.0) -> OrdRec:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return m


def _batch(n_users: int, n_items: int, levels: list[float], b: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    lv = torch.tensor(levels, dtype=torch.float32)
    return {
        "user": torch.randint(0, n_users, (b,), generator=g),
        "item": torch.randint(0, n_items, (b,), generator=g),
        "rating": lv[torch.randint(0, len(levels), (b,), generator=g)],
        "weight": torch.ones(b),
    }


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 10),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.01, 4.0),
    per_user=st.booleans(),
)
def test_distribution_is_proper_and_cumulative_is_ordered(
    k: int, seed: int, scale: float, per_user: bool
) -> None:
    levels = [float(v) for v in range(1, k + 1)]
    m = _randomise(OrdRec(4, 5, n_factors=3, levels=levels, user_thresholds=per_user), seed, scale)
    b = _batch(4, 5, levels, 16, seed)
    p = m.to_proba(m(b))
    assert p.shape == (16, k)
    assert bool((p >= 0).all()) and torch.allclose(p.sum(1), torch.ones(16), atol=1e-5)
    t = m.thresholds(b["user"])
    assert bool((t[:, 1:] >= t[:, :-1]).all())  # ordered thresholds for every user
    cum = torch.cumsum(p, 1)[:, :-1]  # P(y <= j) = sigmoid(t_uj - s): ordered in j
    assert bool((cum[:, 1:] >= cum[:, :-1] - 1e-6).all())
    expected = m.to_rating(m(b))
    assert torch.allclose(expected, p @ torch.tensor(levels), atol=1e-5)
    assert bool(((expected >= levels[0] - 1e-5) & (expected <= levels[-1] + 1e-5)).all())


def test_argmax_decoding_and_fallback() -> None:
    m = _randomise(OrdRec(3, 3, n_factors=2, levels=HALF, decode="argmax"), 0)
    b = _batch(3, 3, HALF, 8, 0)
    out = m(b)
    assert torch.equal(m.to_rating(out), torch.tensor(HALF)[out.argmax(1)])
    fb = m.fallback_output(torch.tensor([3.25]))
    assert float(m.to_proba(fb) @ torch.tensor(HALF)) == pytest.approx(3.25, abs=1e-5)


@pytest.mark.parametrize(("implicit", "per_user", "reg"), [
    (False, True, 0.0), (True, True, 0.1), (True, False, 0.0), (False, False, 0.3),
])  # fmt: skip
def test_row_grads_match_autograd(implicit: bool, per_user: bool, reg: float) -> None:
    m = OrdRec(6, 7, n_factors=3, levels=HALF, implicit=implicit, user_thresholds=per_user)
    m.set_implicit(torch.tensor([0, 0, 1, 3, 5, 5, 5]), torch.tensor([1, 2, 3, 6, 0, 1, 4]))
    _randomise(m, 1, 0.5)
    b = _batch(6, 7, HALF, 12, 2)
    ce = CrossEntropyLoss().bind(m)
    w = torch.rand(12, generator=torch.Generator().manual_seed(0))
    out, pen, saved = m.fused_forward(b, reg > 0)
    assert torch.allclose(out, m(b), atol=1e-6)
    assert (pen is None) == (reg == 0) and (pen is None or torch.allclose(pen, m.penalty(b)))
    d_out = ce.grad(out, b) * w.unsqueeze(1)
    sides, dense = m.row_grads(b, saved, d_out, reg * w if reg else None)
    m.zero_grad()
    objective = (ce(m(b), b) * w).sum() + (reg * (m.penalty(b) * w).sum() if reg else 0.0)
    objective.backward()
    for (idx, g), tables in zip(sides, m.row_tables(), strict=True):
        col = 0
        for t in tables:
            width = 1 if t.ndim == 1 else t.shape[1]
            got = torch.zeros(len(t), width).index_add_(0, idx, g[:, col : col + width])
            assert t.grad is not None
            assert torch.allclose(got.reshape(t.shape), t.grad, atol=1e-5)
            col += width
    for t, g in zip(m.row_dense(), dense, strict=True):
        assert torch.allclose(g, t.grad, atol=1e-5)


def test_row_wise_adamw_equals_dense_adamw_when_every_row_is_read() -> None:
    """One batch reading every user and item: lazy row-wise AdamW is dense AdamW (no
    weight decay, the shared thresholds decay in neither)."""
    levels = [1.0, 2.0, 3.0, 4.0]
    a = _randomise(OrdRec(3, 3, n_factors=2, levels=levels), 5, 0.3)
    b = OrdRec(3, 3, n_factors=2, levels=levels)
    b.load_state_dict(a.state_dict())
    batch = {"user": torch.tensor([0, 1, 2, 0]), "item": torch.tensor([2, 1, 0, 1]),
             "rating": torch.tensor([1.0, 4.0, 2.0, 3.0]), "weight": torch.ones(4)}  # fmt: skip
    ce = CrossEntropyLoss().bind(a)
    rows = RowAdamW(a, lr=0.05, weight_decay=0.0)
    dense = AdamW(list(b.parameters()), lr=0.05, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.0)
    for _ in range(3):
        out, _, saved = a.fused_forward(batch, False)
        rows.fused_step(batch, saved, ce.grad(out, batch) / 4, None)
        dense.zero_grad()
        (ce(b(batch), batch).sum() / 4).backward()
        dense.step()
    rows.flush()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        # each step moves a weight by about lr = 0.05; Adam divides tiny gradients by
        # their own size, so float rounding of the two gradients shows at 1e-4
        assert torch.allclose(pa, pb, atol=1e-3), name


def test_row_wise_step_touches_only_the_batch_rows() -> None:
    """The cost of a step does not grow with the catalogue: rows no batch reads keep
    their weights and their optimiser state (zeros) exactly."""
    m = OrdRec(50, 400, n_factors=4, levels=HALF, implicit=True, implicit_every=1)
    m = _randomise(m, 2, 0.1)
    m.set_implicit(torch.tensor([0, 0, 1]), torch.tensor([5, 6, 7]))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = RowAdamW(m, lr=0.01, weight_decay=0.0)
    batch = {"user": torch.tensor([0, 1]), "item": torch.tensor([3, 9]),
             "rating": torch.tensor([1.0, 4.5]), "weight": torch.ones(2)}  # fmt: skip
    out, _, saved = m.fused_forward(batch, False)
    opt.fused_step(batch, saved, CrossEntropyLoss().bind(m).grad(out, batch), None)
    touched = {"user": {0, 1}, "item": {3, 9}, "implicit": {5, 6, 7}}
    for name, table in (("user_factors", "user"), ("user_offsets", "user"),
                        ("item_factors", "item"), ("implicit_factors", "implicit")):  # fmt: skip
        new, old = m.state_dict()[name], before[name]
        changed = {int(r) for r in torch.nonzero((new != old).any(1)).flatten()}
        assert changed == touched[table], name
    sides = row_tables(m)[0]
    assert [len(s[0]) for s in sides] == [50, 400, 400]
    idle = [r for r in range(400) if r not in (3, 9)]
    assert float(opt.exp_avg[1][idle].abs().sum()) == 0.0


def test_shared_parameters_need_their_gradients_and_adagrad_refuses() -> None:
    m = OrdRec(3, 3, n_factors=2, levels=[1, 2, 3])
    opt = RowAdamW(m, lr=0.01)
    g = [(torch.tensor([0]), torch.zeros(1, 5)), (torch.tensor([1]), torch.zeros(1, 3))]
    with pytest.raises(ConfigError, match="shared parameters' gradients"):
        opt.apply_rows(g)  # e.g. the distributed exchange, which carries only rows
    with pytest.raises(ConfigError, match="for RowAdagrad"):
        RowAdagrad(m)


def test_learner_trains_ordrec_row_wise(half_stars: Interactions) -> None:
    train, valid = half_stars.take(np.arange(640)), half_stars.take(np.arange(640, 800))
    m = create_model("ordrec", train, n_factors=4, implicit=True, seed=0)
    learn = Learner(m, train, valid, bs=64, wd=0.05, progress=False,
                    execution=Execution(row_wise=True))  # fmt: skip
    learn.fit_one_cycle(4, 0.02)
    assert learn.path is not None and learn.path.name == "row-wise"
    losses = [h["train_loss"] for h in learn.history]
    assert losses[-1] < losses[0]
    res = learn.evaluate()
    assert res["mse"] == pytest.approx(res["mse_expected"], rel=1e-6)
    assert np.isfinite(res["mse_argmax"]) and 0 <= res["accuracy"] <= 1


def test_classification_task_trains_ordrec_and_bundle_round_trips(
    half_stars: Interactions, tmp_path: Path
) -> None:
    from recfit.recommender import Recommender
    from recfit.runs import train_run

    cfg = ClassificationConfig(model="ordrec", implicit=True, epochs=2, n_factors=4,
                               split="random:0.2", bs=64)  # fmt: skip
    assert cfg.applies("implicit") and cfg.applies("user_thresholds")
    assert not cfg.applies("layers") and not ClassificationConfig().applies("implicit")
    res = train_run(cfg, tmp_path / "run", data=half_stars, progress=False)
    model = res.learner.model
    assert isinstance(model, OrdRec) and model.implicit and model.levels == HALF
    assert res.learner.path is not None and res.learner.path.row_wise
    assert {"mse_expected", "mse_argmax", "accuracy"} <= set(res.metrics)
    rec = Recommender.load(tmp_path / "run" / "bundle")
    test = res.split.test
    got = rec.predict(test.users.id(test.user), test.items.id(test.item), on_unknown="baseline")
    np.testing.assert_allclose(got, res.learner.predict(test), rtol=1e-5)
    loaded = rec.model
    assert isinstance(loaded, OrdRec) and loaded.config() == model.config()
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_train_classifier_refuses_smote_and_unknown_arguments(half_stars: Interactions) -> None:
    from recfit.tasks.classification import train_classifier

    with pytest.raises(ConfigError, match="smote"):
        train_classifier(half_stars, model="ordrec", strategy="smote", epochs=1)
    with pytest.raises(ConfigError, match="ordrec arguments"):
        train_classifier(half_stars, model="ordrec", layers=(8,), epochs=1)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_cross_entropy_gradient_is_autograds(k: int, seed: int) -> None:
    levels = [float(v) for v in range(k)]
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(9, k, generator=g, requires_grad=True)
    batch = {"rating": torch.tensor(levels)[torch.randint(0, k, (9,), generator=g)]}
    ce = CrossEntropyLoss(levels)
    ce(out, batch).sum().backward()
    grad = ce.grad(out, batch)
    assert grad is not None and torch.allclose(grad, out.grad, atol=1e-6)


def _fit_row_wise(data: Interactions, kernel: bool) -> tuple[OrdRec, list[float]]:
    train, valid = data.take(np.arange(640)), data.take(np.arange(640, 800))
    m = create_model("ordrec", train, n_factors=4, implicit=True, implicit_every=1, seed=0)
    assert isinstance(m, OrdRec)
    m.fused_kernel = kernel
    learn = Learner(m, train, valid, bs=64, wd=0.05, reg=0.01, progress=False,
                    execution=Execution(row_wise=True))  # fmt: skip
    learn.fit_one_cycle(3, 0.02)
    return m, [h[k] for h in learn.history for k in ("train_loss", "valid_loss")]


def test_compiled_implicit_step_follows_the_pytorch_step(half_stars: Interactions) -> None:
    """The kernels of the implicit term (forward terms, the y rows' summed gradient and
    lazy AdamW update) give the PyTorch path's trajectory up to float rounding."""
    ref, ref_losses = _fit_row_wise(half_stars, kernel=False)
    got, losses = _fit_row_wise(half_stars, kernel=True)
    assert got._fit_state.list_scratch is not None and ref._fit_state.list_scratch is None
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for (name, a), b in zip(got.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    batch = _batch(30, 60, HALF, 40, 4)
    ref.eval(), got.eval()
    with torch.no_grad():  # the compiled forward without a gradient (predictions)
        torch.testing.assert_close(got(batch), ref(batch), rtol=1e-5, atol=1e-5)


def test_list_step_updates_only_list_rows_in_both_orders() -> None:
    """Few rows touched (in first-seen order) and most rows touched (in table order):
    the same update as the PyTorch step, and rows outside the lists unchanged."""
    for n_items, lists in ((400, ([0, 0, 1], [5, 6, 7])), (8, ([0, 0, 1, 1], [1, 2, 3, 5]))):
        models = []
        for kernel in (False, True):
            m = OrdRec(3, n_items, n_factors=3, levels=HALF, implicit=True, implicit_every=1)
            m = _randomise(m, 2, 0.1)
            m.set_implicit(torch.tensor(lists[0]), torch.tensor(lists[1]))
            m.fused_kernel = kernel
            opt = RowAdamW(m, lr=0.01, weight_decay=0.1)
            batch = {"user": torch.tensor([0, 1, 0]), "item": torch.tensor([3, 1, 2]),
                     "rating": torch.tensor([1.0, 4.5, 3.0]), "weight": torch.ones(3)}  # fmt: skip
            for _ in range(3):
                out, _, saved = m.fused_forward(batch, True)
                d_out = CrossEntropyLoss().bind(m).grad(out, batch)
                opt.fused_step(batch, saved, d_out, torch.full((3,), 0.01))
            opt.flush()
            models.append(m)
        y_ref, y = (m.implicit_factors.detach() for m in models)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
        idle = sorted(set(range(n_items)) - set(lists[1]))
        start = _randomise(OrdRec(3, n_items, n_factors=3, levels=HALF, implicit=True), 2, 0.1)
        decay = (1 - 0.01 * 0.1) ** 3  # rows no list reads only decay
        torch.testing.assert_close(y[idle], start.implicit_factors.detach()[idle] * decay)


def test_similar_items_and_users_from_the_factors(half_stars: Interactions, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recfit.cli import app
    from recfit.recommender import Recommender
    from recfit.runs import train_run

    cfg = ClassificationConfig(model="ordrec", epochs=2, n_factors=4, split="random:0.2", bs=64)
    res = train_run(cfg, tmp_path / "run", data=half_stars, progress=False)
    model = res.learner.model
    assert isinstance(model, OrdRec)
    rec = Recommender.load(tmp_path / "run" / "bundle")
    assert rec.info()["supports_similarity"] and type(rec.adapter).__name__ == "OrdRecAdapter"
    item = int(rec.items.id(np.array([0]))[0])
    got = rec.similar_items(item, n=5)[0]
    q = torch.nn.functional.normalize(model.item_factors.detach(), dim=1)
    cos = (q @ q[0]).numpy()
    cos[0] = -np.inf
    assert got.ids == list(rec.items.id(np.argsort(-cos, kind="stable")[:5]))
    users = rec.adapter.user_vectors()
    with torch.no_grad():  # the effective user factors: the score is b_u + b_i + them · q_i
        b = {"user": torch.tensor([1, 2]), "item": torch.tensor([3, 3])}
        s = model.user_bias[b["user"]] + model.item_bias[3] + users[[1, 2]] @ model.item_factors[3]
        t0 = model.theta0.detach()
        expected = torch.sigmoid(t0 + model.user_offsets[b["user"], 0] - s)
        torch.testing.assert_close(model.to_proba(model(b))[:, 0], expected, rtol=1e-4, atol=1e-6)
    assert len(rec.similar_users(int(rec.users.id(np.array([1]))[0]), n=3)[0].ids) == 3
    out = CliRunner().invoke(app, ["similar", str(tmp_path / "run"), "--item", str(item),
                                   "-n", "3", "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)["results"][0]["neighbours"]
    assert [r["id"] for r in answer] == got.ids[:3]


def test_y_rows_step_every_implicit_every_steps_from_summed_gradients() -> None:
    """implicit_every=3: the y rows stay as they are for two steps (the users' terms are
    read from a cache), then take one step on the union of the lists of the users seen."""
    m = _randomise(OrdRec(5, 9, n_factors=3, levels=HALF, implicit=True, implicit_every=3), 2, 0.3)
    m.set_implicit(torch.tensor([0, 0, 1, 2, 3]), torch.tensor([1, 2, 3, 4, 5]))
    opt = RowAdamW(m, lr=0.01, weight_decay=0.0)
    y0 = m.implicit_factors.detach().clone()
    terms0 = m._implicit_rows(torch.arange(5), False)[0]
    ce = CrossEntropyLoss().bind(m)
    for step, users in enumerate(([0, 1], [2, 0], [3, 4])):
        batch = {"user": torch.tensor(users), "item": torch.tensor([1, 2]),
                 "rating": torch.tensor([1.0, 4.5]), "weight": torch.ones(2)}  # fmt: skip
        out, _, saved = m.fused_forward(batch, False)
        torch.testing.assert_close(saved[2].terms, terms0[saved[2].users])  # the cache
        opt.fused_step(batch, saved, ce.grad(out, batch), None)
        y = m.implicit_factors.detach()
        changed = {int(r) for r in torch.nonzero((y != y0).any(1)).flatten()}
        assert changed == (set() if step < 2 else {1, 2, 3, 4, 5}), step
    fresh = m._implicit_rows(torch.arange(5), False)[0]
    assert not torch.equal(fresh, terms0)
    out, _, saved = m.fused_forward(batch, False)  # the cache follows the step
    torch.testing.assert_close(saved[2].terms, fresh[saved[2].users])
    with pytest.raises(ConfigError, match="implicit_every"):
        OrdRec(3, 3, implicit=True, implicit_every=0)


def test_default_implicit_every_trains_as_well(half_stars: Interactions) -> None:
    """The default (y steps every 8 steps) against every step and against no implicit
    term, same data and seed: on 80 steps (10 y steps) the term still pays."""
    train, valid = half_stars.take(np.arange(640)), half_stars.take(np.arange(640, 800))
    mse = {}
    for every in (0, 1, 8):
        m = create_model("ordrec", train, n_factors=4, implicit=every > 0,
                         implicit_every=max(every, 1))  # fmt: skip
        assert isinstance(m, OrdRec)
        learn = Learner(m, train, valid, bs=32, wd=0.05, reg=0.01, progress=False,
                        execution=Execution(row_wise=True))  # fmt: skip
        learn.fit_one_cycle(4, 0.02)
        mse[every] = learn.evaluate()["mse"]
    assert OrdRec(2, 2).implicit_every is None  # each fit decides (1 on 80 steps)
    assert mse[1] < mse[8] < mse[0] - 0.1
