"""Model specifics: fastai-compatible init and sizes, fused step, persistence errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.errors import BundleError, ConfigError
from recfit.models import (
    BiasedMF,
    DotBias,
    EmbeddingNN,
    RatingClassifier,
    SVDpp,
    build_model,
    create_model,
    emb_sz_rule,
    get_loss,
    read_model_file,
    write_model_file,
)
from recfit.models.losses import HuberLoss, L1Loss, MSELoss


def _batch(n_users: int, n_items: int, n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "user": torch.randint(0, n_users, (n,), generator=g),
        "item": torch.randint(0, n_items, (n,), generator=g),
        "rating": torch.randint(1, 6, (n,), generator=g).float(),
        "weight": torch.rand(n, generator=g),
    }


def _svdpp(**kw: object) -> SVDpp:
    """An SVD++ model on 7 users and 9 items; user 6 rated nothing (empty list)."""
    m = SVDpp(7, 9, 5, seed=1, implicit_init_std=0.05, **kw)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(4)
    users = torch.randint(0, 6, (30,), generator=g)
    m.set_implicit(users, torch.randint(0, 9, (30,), generator=g))
    return m


@torch.no_grad()
def test_svdpp_implicit_term_formula() -> None:
    m = _svdpp(y_range=(0.0, 5.5), alpha=0.5)
    ptr, items = m.implicit_indptr, m.implicit_items
    assert int(ptr[-1]) == len(items) and int(ptr[7] - ptr[6]) == 0
    b = {"user": torch.tensor([0, 6, 0]), "item": torch.tensor([2, 3, 5])}
    for row, (u, i) in enumerate(zip([0, 6, 0], [2, 3, 5], strict=True)):
        n = items[ptr[u] : ptr[u + 1]]
        assert len(torch.unique(n)) == len(n)  # duplicates stored once
        y = m.implicit_factors[n].sum(0) / max(len(n), 1) ** 0.5
        x = (m.user_factors[u] + y) @ m.item_factors[i] + m.user_bias[u] + m.item_bias[i]
        assert float(m(b)[row]) == pytest.approx(float(5.5 * torch.sigmoid(x)), rel=1e-5)
    eff = m.effective_user_factors()
    assert torch.equal(eff[6], m.user_factors[6])  # no ratings: no implicit term
    # a fresh SVDpp (no lists) is DotBias with the same seed
    fresh, dot = SVDpp(7, 9, 5, seed=1), DotBias(7, 9, 5, seed=1)
    assert torch.equal(fresh(b), dot(b))


def test_svdpp_lists_come_from_positive_weight_rows_and_persist(tmp_path: Path) -> None:
    d = Interactions.from_arrays([1, 1, 2, 2, 3], [7, 8, 7, 9, 9], [4.0, 2.0, 5.0, 3.0, 1.0])
    d = d.with_weights(np.array([1.0, 0.0, 2.0, 1.0, 1.0]))
    m = create_model("svdpp", d, n_factors=3, seed=0)
    assert isinstance(m, SVDpp) and m.config()["n_implicit"] == 4  # the weight-0 row left out
    lists = [m.implicit_items[m.implicit_indptr[u] : m.implicit_indptr[u + 1]].tolist()
             for u in range(3)]  # fmt: skip
    assert lists == [[int(d.items.index([7])[0])], sorted(d.items.index([7, 9]).tolist()),
                     [int(d.items.index([9])[0])]]  # fmt: skip
    path = write_model_file(m, tmp_path / "m.safetensors")
    back = read_model_file(path)
    assert isinstance(back, SVDpp)
    assert torch.equal(back.implicit_items, m.implicit_items)
    b = {"user": torch.tensor([0, 1, 2]), "item": torch.tensor([0, 1, 2])}
    assert torch.equal(back(b), m(b))
    with pytest.raises(ConfigError, match=r"item indices in \[0, 3\)"):
        m.set_implicit(torch.tensor([0]), torch.tensor([3]))
    with pytest.raises(ConfigError, match="one length"):
        m.set_implicit(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ConfigError, match="n_implicit >= 0"):
        SVDpp(3, 3, n_implicit=-1)


def test_dotbias_init_matches_fastai() -> None:
    m = DotBias(2000, 3000, 50, seed=0)
    w = m.user_factors.detach()
    assert float(w.abs().max()) <= 0.02 + 1e-7  # truncated at 2 std
    assert float(w.std()) == pytest.approx(0.01 * 0.88, rel=0.05)  # std of N(0,1) cut at ±2
    assert float(m.item_bias.detach().abs().max()) <= 0.02 + 1e-7


def test_dotbias_forward_formula() -> None:
    m = DotBias(3, 4, 2, y_range=(0.0, 5.5), global_mean=0.25)
    b = {"user": torch.tensor([1]), "item": torch.tensor([2])}
    x = (m.user_factors[1] @ m.item_factors[2] + m.user_bias[1] + m.item_bias[2] + 0.25).detach()
    assert float(m(b).detach()) == pytest.approx(float(5.5 * torch.sigmoid(x)), rel=1e-6)
    raw = DotBias(3, 4, 2, global_mean=3.0)
    assert float(raw(b).detach()) == pytest.approx(3.0, abs=0.05)


def test_biased_mf_is_surprise_like() -> None:
    m = BiasedMF(500, 400, 20, global_mean=3.5, seed=2)
    assert float(m.user_bias.detach().abs().sum()) == 0.0
    assert float(m.user_factors.detach().std()) == pytest.approx(0.1, rel=0.05)
    assert m.y_range is None
    b = {"user": torch.tensor([0]), "item": torch.tensor([0])}
    expected = 3.5 + float((m.user_factors[0] @ m.item_factors[0]).detach())
    assert float(m(b).detach()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        DotBias(7, 9, 5, y_range=(0.0, 5.5), seed=1),
        DotBias(7, 9, 5, global_mean=3.0, seed=1),
        BiasedMF(7, 9, 5, global_mean=3.0, seed=1),
        _svdpp(y_range=(0.0, 5.5)),
        _svdpp(global_mean=3.0, alpha=0.5),
    ],
)
@pytest.mark.parametrize("loss", [MSELoss(), L1Loss(), HuberLoss(0.5)])
def test_fused_gradient_equals_autograd(model: DotBias, loss: object) -> None:
    batch = _batch(7, 9, n=40)  # many repeated indices
    lf = get_loss(loss)  # type: ignore[arg-type]
    w = batch["weight"]
    scale = w / w.sum()
    reg = 0.3
    out = model(batch)
    obj = (lf(out, batch) * scale).sum() + reg * (model.penalty(batch) * scale).sum()
    model.zero_grad()
    obj.backward()
    auto = {n: p.grad.clone() for n, p in model.named_parameters()}  # type: ignore[union-attr]
    out2, pen, saved = model.fused_forward(batch, True)
    assert pen is not None
    torch.testing.assert_close(out2, out.detach())
    grad = lf.grad(out2, batch)
    assert grad is not None
    model.fused_backward(batch, saved, grad * scale, reg * scale)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, auto[n], rtol=1e-5, atol=1e-7)


def test_emb_sz_rule_and_mlp_layout() -> None:
    assert emb_sz_rule(944) == 74
    assert emb_sz_rule(10**6) == 600
    m = EmbeddingNN(944, 1683, layers=(100,), dropout=0.1)
    assert m.emb_sizes == [(944, 74), (1683, emb_sz_rule(1683))]
    kinds = [type(x).__name__ for x in m.mlp]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert m.mlp[0].bias is None  # fastai: no bias before batch norm
    assert EmbeddingNN(5, 5, emb_sizes=(3, 4)).emb_sizes == [(5, 3), (5, 4)]
    with pytest.raises(ConfigError, match="dropout"):
        EmbeddingNN(5, 5, layers=(3, 3), dropout=(0.1,))


def test_bad_configs() -> None:
    with pytest.raises(ConfigError, match="n_factors"):
        DotBias(3, 3, n_factors=-1)
    with pytest.raises(ConfigError, match="y_range"):
        DotBias(3, 3, y_range=(5.0, 1.0))
    with pytest.raises(ConfigError, match="model name"):
        build_model({"name": "nope"})
    with pytest.raises(ConfigError, match="valid arguments"):
        build_model({"name": "dot", "n_users": 2, "n_items": 2, "bogus": 1})
    with pytest.raises(ConfigError, match="expected a loss"):
        get_loss("cross_entropy_nope")


def test_create_model_uses_vocabularies_and_mean() -> None:
    d = Interactions.from_arrays([1, 2, 3], [5, 6, 6], [1.0, 2.0, 6.0], weight=[1.0, 1.0, 0.0])
    m = create_model("mf", d, n_factors=3)
    assert (m.n_users, m.n_items) == (3, 2)
    assert m.global_mean == pytest.approx(1.5)
    with pytest.raises(ConfigError):
        create_model("nope", d)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="missing"):
        read_model_file(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(BundleError):
        read_model_file(bad)
    m = DotBias(3, 4, 2)
    p = write_model_file(m, tmp_path / "m.safetensors", metadata={"note": "x"})
    from safetensors.torch import load_file, save_file

    save_file(
        load_file(str(p)),
        str(tmp_path / "old.safetensors"),
        metadata={"recfit.format_version": "0"},
    )
    with pytest.raises(BundleError, match="format version"):
        read_model_file(tmp_path / "old.safetensors")
    np.testing.assert_array_equal(
        read_model_file(p).user_factors.detach().numpy(), m.user_factors.detach().numpy()
    )


def test_model_files_without_a_training_record_still_load(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from recfit.models import read_model_metadata
    from recfit.models.base import RECORD_BUFFERS, RatingModel

    m = DotBias(4, 3, n_factors=2)
    m.record_training([0, 1, 1], [0, 0, 2], [4.0, 2.0, 5.0])
    assert m.has_record and m.train_item_count.tolist() == [2, 0, 1]
    path = write_model_file(m, tmp_path / "m.safetensors")
    assert read_model_file(path).train_item_count.tolist() == [2, 0, 1]
    # a file written before the record existed: it loads, and nothing falls back
    tensors = {k: v for k, v in load_file(str(path)).items() if k not in RECORD_BUFFERS}
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=read_model_metadata(path))
    back = read_model_file(old)
    assert isinstance(back, RatingModel) and not back.has_record
    batch = {"user": torch.tensor([0, 3]), "item": torch.tensor([1, 1])}
    out, mask = back.apply_fallback(batch, back(batch))
    assert not mask.any() and torch.equal(out, back(batch))


def test_classifier_fallback_output_decodes_to_the_baseline() -> None:
    m = RatingClassifier(2, 2, levels=[1, 2, 3, 4, 5], layers=(4,)).eval()
    r = torch.tensor([1.0, 3.25, 5.0, 0.2, 4.6])
    out = m.fallback_output(r)
    expected = m.to_proba(out) @ m.level_values
    torch.testing.assert_close(expected, r.clamp(1, 5), rtol=0, atol=1e-6)
    m.decode = "argmax"
    assert m.to_rating(out).tolist() == [1.0, 3.0, 5.0, 1.0, 5.0]
