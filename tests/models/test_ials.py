"""iALS (models/ials.py): the kernel's mathematics against a direct solve, the objective
it minimises, determinism (seeds and threads), fold-in, settings and its registry entry."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfit.errors import ConfigError, DataError
from recfit.models import family
from recfit.models.ials import IALS, ials_objective, load_kernels
from recfit.train.execution import threads


def clustered(
    n_users: int = 120, n_items: int = 60, groups: int = 4, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Users of a group like that group's items: ``(train, held-out)`` positives, one
    held-out item per user (from their group)."""
    rng = np.random.default_rng(seed)
    ug = np.arange(n_users) % groups
    ig = np.arange(n_items) % groups
    rows, cols, held = [], [], []
    for u in range(n_users):
        mine = np.flatnonzero(ig == ug[u])
        liked = rng.choice(mine, size=len(mine) // 2 + 1, replace=False)
        held.append(liked[0])
        rows += [u] * (len(liked) - 1)
        cols += liked[1:].tolist()
        noise = rng.choice(n_items, size=2, replace=False)
        rows += [u, u]
        cols += noise.tolist()
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    x.data[:] = 1.0
    h = sp.csr_matrix(
        (np.ones(n_users, np.float32), (np.arange(n_users), held)), shape=(n_users, n_items)
    )
    return x, h


def hit_rate(scores: np.ndarray, train: sp.csr_matrix, held: sp.csr_matrix, k: int = 10) -> float:
    s = scores.copy()
    s[train.nonzero()] = -np.inf
    top = np.argsort(-s, axis=1)[:, :k]
    target = held.indices[held.indptr[:-1]]
    return float(np.mean([t in row for t, row in zip(target, top, strict=True)]))


def test_a_half_sweep_with_enough_steps_is_the_exact_ridge_solve() -> None:
    """k conjugate-gradient steps solve the k-dimensional normal equations (up to
    rounding): the same vectors as the direct solve with the unobserved weight on every
    item and the frequency-scaled ridge."""
    kern = load_kernels()[0]
    rng = np.random.default_rng(1)
    k, n_items = 5, 30
    x = sp.random(8, n_items, density=0.3, format="csr", random_state=2, dtype=np.float32)
    x.data = (1.0 + 2.0 * x.data).astype(np.float32)
    y = rng.standard_normal((n_items, k)).astype(np.float32)
    gram = np.empty((k, k))
    kern.gramian(y, gram)
    np.testing.assert_allclose(gram, y.T.astype(np.float64) @ y, rtol=1e-5)
    reg, a0, nu = 0.05, 0.3, 0.7
    u = rng.standard_normal((8, k)).astype(np.float32)
    ptr, idx = x.indptr.astype(np.int64), x.indices.astype(np.int64)
    kern.ials_half(ptr, idx, x.data, y, gram, u, reg, a0, nu, n_items, 3 * k)
    yd = y.astype(np.float64)
    for r in range(8):
        lo, hi = x.indptr[r], x.indptr[r + 1]
        c, yi = x.data[lo:hi].astype(np.float64), yd[x.indices[lo:hi]]
        lam = reg * (hi - lo + a0 * n_items) ** nu
        a = a0 * yd.T @ yd + (yi.T * c) @ yi + lam * np.eye(k)
        np.testing.assert_allclose(u[r], np.linalg.solve(a, yi.T @ c), rtol=2e-3, atol=2e-4)


def test_the_objective_never_increases_over_sweeps() -> None:
    x, _ = clustered()
    values = []
    for epochs in range(5):
        m = IALS(*x.shape, n_factors=8, epochs=epochs, unobserved_weight=0.2, reg=0.01)
        m.fit_positives(x, seed=3)
        values.append(ials_objective(m, x))
    assert all(b <= a * (1 + 1e-5) for a, b in itertools.pairwise(values))
    assert values[-1] < 0.5 * values[0]


def test_it_ranks_held_out_items_of_the_users_group() -> None:
    x, held = clustered()
    m = IALS(*x.shape, n_factors=8, epochs=10, unobserved_weight=0.1, reg=0.01)
    m.fit_positives(x)
    users = np.arange(x.shape[0])
    assert hit_rate(m.score_users(users, x), x, held) > 0.6
    pop = np.broadcast_to(np.asarray(x.sum(0)), x.shape)
    assert hit_rate(m.score_users(users, x), x, held) > hit_rate(pop, x, held) + 0.2


def test_same_seed_same_weights_for_any_thread_count() -> None:
    x, _ = clustered(seed=4)
    weights = []
    for n in (1, 2, 1):
        m = IALS(*x.shape, n_factors=8, epochs=3)
        with threads(n):
            m.fit_positives(x, seed=7)
            assert 1 <= m.fit_info["threads"] <= n
        weights.append((m.user_factors.clone(), m.item_factors.clone()))
    for w in weights[1:]:
        assert torch.equal(w[0], weights[0][0]) and torch.equal(w[1], weights[0][1])
    other = IALS(*x.shape, n_factors=8, epochs=3)
    other.fit_positives(x, seed=8)
    assert not torch.equal(other.user_factors, weights[0][0])


def test_fit_reports_compile_time_apart_from_fit_time() -> None:
    x, _ = clustered()
    m = IALS(*x.shape, n_factors=4, epochs=2)
    m.fit_positives(x)
    info = m.fit_info
    assert info["compile_seconds"] >= 0 and info["fit_seconds"] > 0
    assert info["threads"] >= 1 and info["epochs"] == 2
    # the ridge's inner walk gave the final fit its first sweep
    assert info["inner_epochs"] == 1 and len(info["sweep_seconds"]) == 1


def test_fold_in_solves_the_users_row_with_the_items_fixed() -> None:
    """A training user's row folded in ranks like the trained user (the trained vector
    is a few CG steps from the same solve), and a new user's positives shape their list."""
    x, held = clustered()
    m = IALS(*x.shape, n_factors=8, epochs=10, cg_steps=8, unobserved_weight=0.1, reg=0.01)
    m.fit_positives(x)
    known = m.score_users(np.arange(10), x[:10])
    folded = m.score_history(x[:10])
    for a, b in zip(known, folded, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 0.99
    assert hit_rate(m.score_history(x), x, held) > 0.6
    empty = m.score_history(sp.csr_matrix((1, x.shape[1]), dtype=np.float32))
    np.testing.assert_allclose(empty, 0.0, atol=1e-6)  # no positives: the zero vector


def test_value_confidence_weighs_positives() -> None:
    """With confidence 'value', a larger value (a play count) raises that item's weight:
    the fitted score of a pair grows with its value."""
    x = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]], np.float32))
    scores = []
    for v in (1.0, 20.0):
        y = x.copy()
        y[0, 1] = v
        m = IALS(2, 3, n_factors=2, epochs=20, confidence="value", alpha=1.0)
        m.fit_positives(y)
        scores.append(float(m.score_users(np.array([0]), y[:1])[0, 1]))
    assert scores[1] > scores[0]


def test_settings_are_checked() -> None:
    for kw in ({"reg": -1.0}, {"epochs": 1.5}, {"cg_steps": 0}, {"n_factors": 0},
               {"unobserved_weight": float("nan")}, {"alpha": "a"}):  # fmt: skip
        with pytest.raises(ConfigError, match=next(iter(kw))):
            IALS(3, 3, **kw)  # type: ignore[arg-type]
    m = IALS(3, 3, n_factors=2)
    with pytest.raises(DataError, match="shape"):
        m.fit_positives(sp.csr_matrix((2, 3), dtype=np.float32))


def test_registry_entry() -> None:
    fam = family("ials")
    assert (fam.task, fam.output, fam.adapter, fam.trainers) == (
        "topn", "score", "topn", ("closed_form",),
    )  # fmt: skip
    assert {"n_factors", "reg", "alpha", "unobserved_weight", "epochs"} <= fam.reads
    m = IALS(3, 4, n_factors=2, reg=0.5)
    assert m.config()["reg"] == 0.5 and m.config()["name"] == "ials"


def test_reg_is_chosen_on_an_inner_cut_and_saved_with_the_weights() -> None:
    """With no ``reg`` the ridge comes from the factor-2 walk on an inner cut of the
    training positives; the value used is a buffer, so a reloaded model folds in alike."""
    from recfit.models.registry import build_model

    x, _ = clustered(n_users=200, n_items=80, seed=5)
    m = IALS(*x.shape, n_factors=8, epochs=4)
    m.fit_positives(x, seed=2)
    inner = m.fit_info["inner"]
    assert len(inner) >= 2 and m.fit_info["inner_metric"] == "recall@20"
    assert f"{m.fit_info['reg']:g}" in inner
    assert float(m.fitted_reg) == m.fit_info["reg"] and m.config()["reg"] is None
    again = build_model(m.config())
    again.load_state_dict(m.state_dict())
    assert isinstance(again, IALS) and float(again.fitted_reg) == m.fit_info["reg"]
    np.testing.assert_array_equal(again.score_history(x[:5]), m.score_history(x[:5]))


@pytest.mark.parametrize("name", ["ials", "bpr"])
def test_a_run_reports_compile_seconds_apart_from_fit_seconds(name: str) -> None:
    """Through the task and the closed-form trainer: the kernels' compile (or cache load)
    seconds are the run's compile_seconds, not part of its fit_seconds."""
    from recfit.config import validate_config
    from recfit.data import Interactions
    from recfit.runs import train_run

    x, _ = clustered()
    coo = x.tocoo()
    data = Interactions.from_arrays(coo.row, coo.col, np.ones(coo.nnz))
    cfg = validate_config({"task": "topn", "model": name, "device": "cpu", "n_bootstrap": 0,
                           "epochs": 2, "n_factors": 4})  # fmt: skip
    res = train_run(cfg, data=data, progress=False)
    info = res.learner.model.fit_info  # type: ignore[union-attr]
    assert res.details["compile_seconds"] == pytest.approx(info["compile_seconds"])
    assert res.metrics["fit_seconds"] < res.details["compile_seconds"] + info["fit_seconds"] + 1.0


def test_the_default_ridge_walk_is_short_and_the_chosen_fit_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no ``reg`` each candidate ridge costs INNER_EPOCHS sweeps on the inner cut and
    the final fit continues from the chosen candidate's vectors with the remaining sweeps
    on all the positives: the same weights as replaying that path by hand."""
    from recfit.models.ials import INNER_EPOCHS, INNER_FRACTION
    from recfit.models.topn import inner_split

    x, _ = clustered(n_users=200, n_items=80, seed=5)
    calls: list[tuple[int, float, int]] = []
    sweeps = IALS._sweeps

    def counting(
        self: IALS, kern: object, halves: list, reg: float, epochs: int, *uv: np.ndarray
    ) -> list[float]:
        calls.append((int(halves[0][2].size), reg, epochs))
        return sweeps(self, kern, halves, reg, epochs, *uv)

    monkeypatch.setattr(IALS, "_sweeps", counting)
    m = IALS(*x.shape, n_factors=8, epochs=10)
    m.fit_positives(x, seed=3)
    reg = m.fit_info["reg"]
    *inner, final = calls
    assert len(inner) == len(m.fit_info["inner"]) <= 5
    assert all(n < x.nnz and e == INNER_EPOCHS for n, _, e in inner)
    assert final == (x.nnz, reg, 10 - INNER_EPOCHS) and m.fit_info["inner_epochs"] == INNER_EPOCHS
    assert len(m.fit_info["sweep_seconds"]) == 10 - INNER_EPOCHS

    monkeypatch.setattr(IALS, "_sweeps", sweeps)
    kern = load_kernels()[0]
    by_hand = IALS(*x.shape, n_factors=8, epochs=10, reg=reg)
    u, v = by_hand._init_factors(3, by_hand.init_std)
    x_fit, _ = inner_split(x, INNER_FRACTION, seed=3)
    by_hand._sweeps(kern, by_hand._halves(x_fit), reg, INNER_EPOCHS, u, v)
    by_hand._sweeps(kern, by_hand._halves(x), reg, 10 - INNER_EPOCHS, u, v)
    np.testing.assert_array_equal(m.user_factors.numpy(), u)
    np.testing.assert_array_equal(m.item_factors.numpy(), v)
