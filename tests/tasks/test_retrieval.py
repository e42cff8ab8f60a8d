"""Retrieval objectives, full-catalogue evaluation and training of the two-tower model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recfit.config import RetrievalConfig
from recfit.data import Interactions
from recfit.data.sources import make_split
from recfit.errors import ConfigError
from recfit.models.retrieval_losses import (
    InBatchSoftmaxLoss,
    RescaledMSELoss,
    item_counts,
)
from recfit.models.two_tower import CandidateTower, QueryTower, TwoTower
from recfit.tasks.retrieval import (
    PRESET_BASE,
    RankingMetrics,
    compare_depths,
    evaluate_popularity,
    evaluate_vectors,
    t1_config,
    t2_config,
    train_retrieval,
)
from recfit.train import Learner

# ----------------------------------------------------------------------------- helpers
Q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
C = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])


def _loss(n_items: int = 5, **kw: object) -> tuple[InBatchSoftmaxLoss, TwoTower]:
    m = TwoTower(QueryTower(3, layer_sizes=(2,)), CandidateTower(n_items, layer_sizes=(2,)))
    return InBatchSoftmaxLoss(m, **kw), m  # type: ignore[arg-type]


def _call(
    loss: InBatchSoftmaxLoss,
    m: TwoTower,
    items: list[int],
    q: np.ndarray = Q,
    c: np.ndarray = C,
    weight: list[float] | None = None,
) -> torch.Tensor:
    b = {
        "user": torch.arange(len(items)),
        "item": torch.tensor(items),
        "rating": torch.ones(len(items)),
    }
    if weight is not None:
        b["weight"] = torch.tensor(weight)
    qt, ct = torch.tensor(q, dtype=torch.float32), torch.tensor(c, dtype=torch.float32)
    m.last_ = (b["user"], b["item"], qt, ct)  # as if forward had just run on this batch
    return loss(torch.zeros(len(items)), b).detach()


def _softmax_ce(logits: np.ndarray) -> np.ndarray:
    out = []
    for i, row in enumerate(logits):
        finite = row[np.isfinite(row)]
        out.append(np.log(np.exp(finite).sum()) - row[i])
    return np.array(out)


# ----------------------------------------------------------------------------- losses
def test_rescaled_mse_by_hand() -> None:
    loss = RescaledMSELoss((1, 5))
    out = torch.tensor([0.0, 0.5, 2.0])
    got = loss(out, {"rating": torch.tensor([1.0, 4.0, 5.0])})
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0625, 1.0]))
    torch.testing.assert_close(
        loss.grad(out, {"rating": torch.tensor([1.0, 4.0, 5.0])}), torch.tensor([0.0, -0.5, 2.0])
    )
    with pytest.raises(ConfigError):
        RescaledMSELoss((5, 1))


def test_softmax_plain_by_hand() -> None:
    loss, m = _loss(temperature=0.5, logq=False)
    got = _call(loss, m, [0, 1, 2]).numpy()
    expect = _softmax_ce(Q @ C.T / 0.5)
    np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_softmax_log_q_by_hand() -> None:
    counts = np.array([6, 3, 1, 0, 0])
    loss, m = _loss(temperature=1.0, item_counts=counts)
    got = _call(loss, m, [0, 1, 2]).numpy()
    p = counts[:3] / counts.sum()
    expect = _softmax_ce(Q @ C.T - np.log(p)[None, :])
    np.testing.assert_allclose(got, expect, rtol=1e-5)
    # the correction changes the answer
    plain = _call(InBatchSoftmaxLoss(m, temperature=1.0, logq=False), m, [0, 1, 2]).numpy()
    assert not np.allclose(got, plain)


def test_softmax_removes_accidental_hits() -> None:
    loss, m = _loss(temperature=1.0, logq=False)
    c = C[[0, 1, 0]]  # rows 0 and 2 share item 0 (and so its vector)
    got = _call(loss, m, [0, 1, 0], c=c).numpy()
    logits = Q @ c.T
    logits[0, 2] = logits[2, 0] = -np.inf
    np.testing.assert_allclose(got, _softmax_ce(logits), rtol=1e-5)
    kept, m2 = _loss(temperature=1.0, logq=False, remove_accidental_hits=False)
    got = _call(kept, m2, [0, 1, 0], c=c).numpy()
    np.testing.assert_allclose(got, _softmax_ce(Q @ c.T), rtol=1e-5)


def test_softmax_hard_negatives_by_hand() -> None:
    loss, m = _loss(temperature=1.0, logq=False, num_hard_negatives=1)
    got = _call(loss, m, [0, 1, 2]).numpy()
    logits = Q @ C.T
    expect = []
    for i in range(3):
        neg = max(logits[i, j] for j in range(3) if j != i)
        expect.append(np.logaddexp(logits[i, i], neg) - logits[i, i])
    np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_softmax_extra_negatives_with_mixed_log_q() -> None:
    counts = np.array([6, 3, 1, 2, 0])
    loss, m = _loss(temperature=1.0, item_counts=counts, num_negatives=2)
    loss.sample_negatives = lambda device: torch.tensor([3, 1])  # type: ignore[method-assign]
    c_all = m.candidate_tower(torch.tensor([0, 1, 2, 3, 1])).detach().numpy()
    got = _call(loss, m, [0, 1, 2], c=c_all[:3]).numpy()  # the model's own vectors
    cols = [0, 1, 2, 3, 1]
    p = counts / counts.sum()
    expected_count = 3 * p[cols] + 2 * (1 / 5)
    logits = Q @ c_all.T - np.log(expected_count)[None, :]
    logits[1, 4] = -np.inf  # sampled item 1 is row 1's own positive: an accidental hit
    np.testing.assert_allclose(got, _softmax_ce(logits), rtol=1e-5)


def test_popularity_negatives_follow_counts() -> None:
    counts = np.array([0, 0, 10, 0, 0])
    loss, _ = _loss(item_counts=counts, num_negatives=50, negative_sampling="popularity")
    torch.manual_seed(0)
    assert set(loss.sample_negatives(torch.device("cpu")).tolist()) == {2}
    with pytest.raises(ConfigError, match="item_counts"):
        _loss(num_negatives=3, negative_sampling="popularity")


def test_weight_zero_row_is_absent_from_the_softmax() -> None:
    loss, m = _loss(temperature=1.0, logq=False)
    full = _call(loss, m, [0, 1, 2], weight=[1.0, 0.0, 1.0]).numpy()
    keep = [0, 2]
    alone = _call(loss, m, [0, 2], q=Q[keep], c=C[keep]).numpy()
    np.testing.assert_allclose(full[keep], alone, rtol=1e-6)


def test_weights_count_in_the_learner_objective() -> None:
    """Learner objective = Σ w·ℓ / Σ w with the softmax's per-row ℓ."""
    d = Interactions.from_arrays([0, 1, 2, 3], [0, 1, 2, 3], [5.0, 4.0, 3.0, 5.0]).with_weights(
        np.array([1.0, 2.0, 0.5, 3.0])
    )
    m = TwoTower(QueryTower(4, layer_sizes=(3,)), CandidateTower(4, layer_sizes=(3,)))
    loss = InBatchSoftmaxLoss(m, temperature=0.5, logq=False)
    learn = Learner(m, d, loss=loss, metrics=(), bs=4, opt="sgd", wd=0.0, progress=False)
    b = next(learn._train_td.epoch(4, None))
    per_row = loss(m(b), b).detach()
    expect = float((per_row * b["weight"]).sum() / b["weight"].sum())
    seen: list[float] = []

    from recfit.train.callbacks import Callback

    class Grab(Callback):
        def after_loss(self) -> None:
            assert self.learn.loss is not None
            seen.append(float(self.learn.loss.detach()))

    learn2 = Learner(m, d, loss=loss, metrics=(), bs=4, opt="sgd", wd=0.0, progress=False)
    learn2.add_cb(Grab())
    learn2.fit(1, 0.0)
    assert seen[0] == pytest.approx(expect, rel=1e-6)


def test_fused_path_matches_autograd_reference() -> None:
    counts = np.array([6, 3, 1, 2, 4])
    loss, m = _loss(temperature=0.3, item_counts=counts)
    rng = np.random.default_rng(0)
    q = torch.tensor(rng.normal(size=(6, 2)), dtype=torch.float32, requires_grad=True)
    table = torch.tensor(rng.normal(size=(5, 2)), dtype=torch.float32, requires_grad=True)
    items = torch.tensor([0, 1, 0, 4, 2, 1])
    weight = torch.tensor([1.0, 1.0, 0.0, 2.0, 1.0, 1.0])
    b = {"user": torch.arange(6), "item": items, "weight": weight}
    for remove in (True, False):
        loss.remove_accidental_hits = remove
        m.last_ = (b["user"], items, q, table[items])  # one vector per item, as the tower gives
        g = torch.tensor([0.5, 1.0, 0.0, 2.0, 1.0, 0.3])
        fused = loss(torch.zeros(6), b)
        (fused * g).sum().backward()
        gq, gt = q.grad.clone(), table.grad.clone()  # type: ignore[union-attr]
        q.grad = table.grad = None
        ref = torch.nn.functional.cross_entropy(
            loss.logits(q, table[items], items, weight, None), torch.arange(6), reduction="none"
        )
        (ref * g).sum().backward()
        torch.testing.assert_close(fused, ref)
        torch.testing.assert_close(gq, q.grad)
        torch.testing.assert_close(gt, table.grad)
        q.grad = table.grad = None


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    negatives=st.lists(st.integers(0, 6), max_size=5),
    zero=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_dropped_logits_are_the_dense_mask(
    items: list[int], negatives: list[int], zero: list[bool]
) -> None:
    """The (row, column) pairs dropped from the softmax, found by a sort, are exactly the
    dense mask: accidental hits and absent (weight 0) columns, never the diagonal."""
    loss, _ = _loss(n_items=7, temperature=1.0, logq=False)
    b = len(items)
    it, neg = torch.tensor(items), torch.tensor(negatives, dtype=torch.int64)
    weight = torch.tensor([0.0 if z else 1.0 for z in zero[:b]])
    cols = torch.cat([it, neg])
    expect = it.unsqueeze(1) == cols.unsqueeze(0)
    expect[:, :b] |= (weight == 0).unsqueeze(0)
    expect[torch.arange(b), torch.arange(b)] = False
    _, _, dropped = loss._operands(torch.zeros(b, 2), torch.zeros(b, 2), it, weight, neg)
    got = torch.zeros_like(expect)
    if dropped is not None:
        got[dropped] = True
    assert torch.equal(got, expect)


def test_softmax_gradients_with_extra_negatives_match_autograd() -> None:
    """The fused backward (no elementwise pass over the matrix) equals autograd through
    the masked logits, with extra negatives and log-Q."""
    counts = np.array([6, 3, 1, 2, 4])
    loss, m = _loss(temperature=0.2, item_counts=counts)
    rng = np.random.default_rng(1)
    q = torch.tensor(rng.normal(size=(6, 2)), dtype=torch.float32, requires_grad=True)
    items, neg = torch.tensor([0, 1, 0, 4, 2, 1]), torch.tensor([1, 3, 0])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    g = torch.tensor([0.5, 1.0, 2.0, 0.0, 1.0, 0.3])
    fused = loss.fused(q, m.candidate_tower(items), items, weight, neg)
    (fused * g).sum().backward()
    w = m.candidate_tower.dense[0].weight
    gq, gw = q.grad.clone(), w.grad.clone()  # type: ignore[union-attr]
    q.grad = w.grad = None
    ref = torch.nn.functional.cross_entropy(
        loss.logits(q, m.candidate_tower(items), items, weight, neg),
        torch.arange(6),
        reduction="none",
    )
    (ref * g).sum().backward()
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(gq, q.grad)
    torch.testing.assert_close(gw, w.grad)


def test_loss_recomputes_when_the_cache_is_stale() -> None:
    loss, m = _loss(temperature=1.0, logq=False)
    b = {"user": torch.tensor([0, 1]), "item": torch.tensor([0, 1])}
    m.last_ = None
    out = loss(torch.zeros(2), b)
    assert out.shape == (2,) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- evaluation
def test_evaluate_vectors_by_hand_with_and_without_exclusion() -> None:
    train = Interactions.from_arrays([0, 0, 1], [0, 1, 2], [5.0, 5.0, 5.0])
    test = Interactions.from_arrays(
        [0, 1, 1], [2, 0, 1], [5.0, 5.0, 2.0], users=train.users, items=train.items
    )
    users = np.ones((2, 1), dtype=np.float32)
    items = np.array([[3.0], [2.0], [1.0]], dtype=np.float32)  # ranking: 0, 1, 2
    rep = evaluate_vectors(users, items, test, exclude_seen=False, ks=(1,), n_bootstrap=0)
    # user 0 wants {2}: top-1 is 0 → miss; user 1 wants {0, 1}: top-1 is 0 → 1 of 2
    assert rep["recall@1"] == pytest.approx(0.25) and rep["exclude_seen"] is False
    assert rep["top_1_accuracy"] == pytest.approx(1 / 3)
    rep = evaluate_vectors(
        users, items, test, train=train, exclude_seen=True, ks=(1,), n_bootstrap=0
    )
    # user 0 saw 0 and 1 → top-1 is 2 (hit); user 1 saw 2 → top-1 is 0 (1 of 2)
    assert rep["recall@1"] == pytest.approx(0.75) and rep["exclude_seen"] is True
    rep = evaluate_vectors(
        users, items, test, exclude_seen=False, ks=(1,), relevant_min_rating=5, n_bootstrap=0
    )
    assert rep["n_queries"] == 2 and rep["top_1_accuracy"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="exclude_seen"):
        evaluate_vectors(users, items, test, exclude_seen=True)


def test_popularity_baseline_ranks_by_training_counts() -> None:
    train = Interactions.from_arrays([0, 1, 2, 2], [0, 1, 1, 2], [5.0] * 4)
    test = Interactions.from_arrays([0], [2], [5.0], users=train.users, items=train.items)
    rep = evaluate_popularity(train, test, exclude_seen=False, ks=(1, 2), n_bootstrap=0)
    assert rep["hit_rate@1"] == 0.0 and rep["hit_rate@2"] == 0.0  # item 1 then 0
    rep = evaluate_popularity(train, test, exclude_seen=True, ks=(1,), n_bootstrap=0)
    assert rep["hit_rate@1"] == 0.0  # 0 excluded → 1
    assert item_counts(train).tolist() == [1, 2, 1]


# ----------------------------------------------------------------------------- training
def clustered(
    n_users: int = 120, n_items: int = 60, n_clusters: int = 6, seed: int = 0
) -> Interactions:
    """Users like the items of their own cluster; item popularity is flat."""
    rng = np.random.default_rng(seed)
    per = n_items // n_clusters
    u, i = [], []
    for user in range(n_users):
        cluster = user % n_clusters
        picks = rng.choice(per, size=6, replace=False) + cluster * per
        u += [user] * len(picks)
        i += picks.tolist()
    r = rng.integers(4, 6, len(u)).astype(float)
    return Interactions.from_arrays(u, i, r, rating_scale=(1, 5))


SMALL_FIELDS = dict(
    **PRESET_BASE, n_factors=8, layers=(8,), epochs=25, bs=64, opt="adam", lr=0.02,
    eval_ks=(5, 10), exclude_seen=True, n_bootstrap=200,
)  # fmt: skip
SMALL = RetrievalConfig(**SMALL_FIELDS, temperature=0.2)


def test_trained_model_clearly_beats_popularity() -> None:
    d = clustered()
    res = train_retrieval(SMALL, d, "user:0.3")
    pop = evaluate_popularity(
        res.split.train, res.split.test, exclude_seen=True, ks=(5, 10), n_bootstrap=200
    )
    assert res.report["exclude_seen"] is True
    assert res.metrics["recall@10"] > pop["recall@10"] + 0.3
    assert res.report["recall@10_ci"][0] > pop["recall@10_ci"][1]
    assert {"ndcg@10", "hit_rate@10", "top_10_accuracy", "fit_seconds"} <= set(res.metrics)


def test_mse_objective_trains_too() -> None:
    d = clustered()
    mse = RetrievalConfig(**{**SMALL_FIELDS, "epochs": 40}, objective="mse")  # no temperature
    res = train_retrieval(mse, d, "user:0.3")
    pop = evaluate_popularity(
        res.split.train, res.split.test, exclude_seen=True, ks=(10,), n_bootstrap=0
    )
    assert res.metrics["recall@10"] > pop["recall@10"]


def test_same_seed_same_numbers_and_other_seed_differs() -> None:
    d = clustered()
    cfg = SMALL.replace(epochs=3, num_negatives=5, num_hard_negatives=8)
    a = train_retrieval(cfg, d, "user:0.3")
    b = train_retrieval(cfg, d, "user:0.3")
    c = train_retrieval(cfg.replace(seed=1), d, "user:0.3")
    torch.testing.assert_close(a.model.item_vectors(), b.model.item_vectors(), rtol=0, atol=0)
    assert a.metrics["recall@10"] == b.metrics["recall@10"]
    assert not torch.equal(a.model.item_vectors(), c.model.item_vectors())


def test_positive_filter_before_split() -> None:
    d = clustered()
    res = train_retrieval(SMALL.replace(epochs=1, positive_min_rating=5.0), d, "random:0.2")
    assert (res.split.data.rating >= 5).all()
    assert (res.split.train.rating >= 5).all() and (res.split.test.rating >= 5).all()


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        train_retrieval({"epochs": 2, "bogus": 1}, clustered())
    for bad, name in (({"objective": "bpr"}, "objective"), ({"layers": ()}, "layers"),
                      ({"temperature": 0.0}, "temperature")):  # fmt: skip
        with pytest.raises(ConfigError, match=name):
            RetrievalConfig.validated(bad)
    cfg = RetrievalConfig(layers=(64, 32))
    assert RetrievalConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert t1_config().user_features == ("age", "gender", "occupation", "gender_x_age")


def test_presets_keep_their_values() -> None:
    """T1 and T2 as benchmarks/bench_t1.py and bench_t2.py measured them (seed 0, CPU)."""
    t1 = t1_config("mse", layers=(64, 32))
    assert (t1.objective, t1.n_factors, t1.layers, t1.opt, t1.lr, t1.epochs, t1.bs) == (
        "mse", 32, (64, 32), "adagrad", 0.05, 30, 1000,
    )  # fmt: skip
    assert (t1.item_features, t1.eval_ks, t1.relevant_min_rating, t1.exclude_seen) == (
        ("title", "genres"), (10, 20, 100), 5.0, False,
    )  # fmt: skip
    assert (t1.seed, t1.device, t1.n_bootstrap, t1.schedule, t1.wd, t1.reg) == (
        0, "cpu", 1000, "constant", 0.0, 0.0,
    )  # fmt: skip
    t2 = t2_config()
    assert (t2.objective, t2.opt, t2.lr, t2.bs, t2.epochs, t2.positive_min_rating) == (
        "softmax", "adam", 0.005, 1024, 4, 4.0,
    )  # fmt: skip
    assert (t2.exclude_seen, t2.relevant_min_rating, t2.seed, t2.device) == (True, None, 0, "cpu")
    assert (t2.temperature, t2.logq, t2.n_factors, t2.layers, t2.user_features) == (
        0.1, True, 32, (32,), None,
    )  # fmt: skip


def test_ranking_metrics_callback_and_compare_depths() -> None:
    d = clustered()
    cfg = SMALL.replace(epochs=4, n_bootstrap=0)
    results, fig = compare_depths(d, "user:0.3", depths=((8,), (16, 8)), config=cfg,
                                  metric="recall@10", every=2)  # fmt: skip
    assert list(results) == ["1 layer", "2 layers"]
    for res in results.values():
        assert [r["epoch"] for r in res.epoch_metrics] == [2.0, 4.0]
        hist = res.learner.history
        assert math.isnan(hist[0]["recall@10"]) and not math.isnan(hist[1]["recall@10"])
        # the last evaluated epoch is the final model's (bootstrap-free) figure
        assert res.epoch_metrics[-1]["recall@10"] == pytest.approx(res.metrics["recall@10"])
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and fig.axes[0].get_ylabel() == "recall@10"
    with pytest.raises(ConfigError):
        RankingMetrics(d, exclude_seen=True)


def test_split_object_is_used_as_given() -> None:
    d = clustered()
    sp = make_split(d, "random:0.25", seed=5)
    res = train_retrieval(SMALL.replace(epochs=1, n_bootstrap=0), d, sp)
    assert res.split is sp


@pytest.mark.slow
def test_t1_softmax_reduced_budget(data_dir: Path) -> None:
    """Protocol T1 on ml-100k with 5 epochs instead of 30 (full runs: benchmarks/bench_t1.py)."""
    from recfit.data import movielens

    d = movielens("ml-100k", data_dir=data_dir, download=False)
    res = train_retrieval(t1_config("softmax", epochs=5, n_bootstrap=0), d, "random:0.2")
    assert res.report["exclude_seen"] is False
    assert res.report["relevant_min_rating"] == 5.0
    assert res.metrics["top_100_accuracy"] >= 0.38  # 0.425 measured; keras-rs MSE: 0.31


# ----------------------------------------------------------------------------- speed paths
@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.integers(0, 5), min_size=1, max_size=10),
    negatives=st.lists(st.integers(0, 5), max_size=4),
    zero=st.lists(st.booleans(), min_size=10, max_size=10),
    remove=st.booleans(),
    logq=st.booleans(),
)
def test_distinct_candidates_give_the_dense_softmax(
    items: list[int], negatives: list[int], zero: list[bool], remove: bool, logq: bool
) -> None:
    """The softmax over distinct candidates (one column per item, its multiplicity as a
    bias) gives the losses and gradients of the dense masked ``B x (B + M)`` softmax."""
    counts = np.array([6, 3, 1, 2, 4, 1])
    loss, m = _loss(
        n_items=6, temperature=0.3, item_counts=counts, logq=logq, remove_accidental_hits=remove
    )
    b = len(items)
    rng = np.random.default_rng(b)
    q = torch.tensor(rng.normal(size=(b, 2)), dtype=torch.float32, requires_grad=True)
    it, neg = torch.tensor(items), torch.tensor(negatives, dtype=torch.int64)
    weight = torch.tensor([0.0 if z else 1.0 for z in zero[:b]])
    if not bool((weight > 0).any()):
        weight[0] = 1.0
    g = weight * torch.tensor(rng.uniform(0.5, 2.0, size=b), dtype=torch.float32)
    fused = loss.fused(q, m.candidate_tower(it), it, weight, neg)
    (fused * g).sum().backward()
    params = [q, *m.candidate_tower.parameters()]
    got = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    s = loss.logits(q, m.candidate_tower(it), it, weight, neg)
    ref = torch.nn.functional.cross_entropy(s, torch.arange(b), reduction="none")
    (ref * g).sum().backward()
    live = weight > 0
    torch.testing.assert_close(fused[live], ref[live], rtol=1e-5, atol=1e-5)
    for p, want in zip(params, got, strict=True):
        expect = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(want, expect, rtol=1e-4, atol=1e-5)


def test_a_positive_far_below_the_rest_keeps_an_exact_finite_loss() -> None:
    """A positive whose softmax probability underflows float32 still gets its loss
    (``logsumexp - logit``), not inf."""
    loss, m = _loss(temperature=1.0, logq=False)
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    c = np.array([[-100.0, 0.0], [0.0, 1.0]])  # row 0: its own item at -100, the other at 0
    got = _call(loss, m, [0, 1], q=q, c=c).numpy()
    expect = _softmax_ce(q @ c.T)
    assert np.isfinite(got).all() and got[0] > 99
    np.testing.assert_allclose(got, expect, rtol=1e-6)


def _big_batch_config(**changes: object) -> RetrievalConfig:
    # batches of 512 rows or more follow the thread policy (not one thread); tensors of
    # 1024 x 64 are above PyTorch's grain size, so two threads really split the work
    return SMALL.replace(epochs=2, bs=1024, layers=(64,), n_bootstrap=0, **changes)


def test_retrieval_fit_follows_the_thread_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from recfit._cpu import cpu_cores
    from recfit.train import execution
    from recfit.train.callbacks import Callback

    seen: set[int] = set()

    class Spy(Callback):
        def after_batch(self) -> None:
            seen.add(torch.get_num_threads())

    before = torch.get_num_threads()
    d = clustered(n_users=400)
    for free in (1, min(2, cpu_cores())):
        monkeypatch.setattr(execution, "free_cores", lambda free=free: free)
        seen.clear()
        train_retrieval(_big_batch_config(), d, "user:0.3", callbacks=[Spy()])
        assert seen == {free}
    assert torch.get_num_threads() == before


def test_retrieval_weights_do_not_depend_on_the_thread_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same seed gives the same weights however many cores are free at the fit's
    start (the thread count follows them)."""
    from recfit.train import execution

    d = clustered(n_users=400)
    cfg = _big_batch_config(num_negatives=20)
    states = []
    for free in (1, 2):
        monkeypatch.setattr(execution, "cpu_cores", lambda: 2)
        monkeypatch.setattr(execution, "free_cores", lambda free=free: free)
        res = train_retrieval(cfg, d, "user:0.3")
        states.append(res.model.state_dict())
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name
