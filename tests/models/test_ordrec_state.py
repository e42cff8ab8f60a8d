"""OrdRec's per-fit state: one object per model, outside its parameters, buffers and
state_dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recfit.models import OrdRec
from recfit.models.ordrec import _FitState

pytest.importorskip("numba")  # the compiled path fills the per-fit state


def _model() -> OrdRec:
    m = OrdRec(4, 6, n_factors=3, levels=[1, 2, 3], implicit=True, implicit_every=8)
    m.set_implicit(torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 3, 4]))
    return m


def test_the_fit_state_is_no_parameter_buffer_or_state_dict_entry() -> None:
    m, fresh = _model(), _model()
    batch = {"user": torch.tensor([0, 1]), "item": torch.tensor([1, 2])}
    m.fused_forward(batch, False)  # the compiled path caches every user's terms
    assert isinstance(m._fit_state, _FitState) and m._fit_state.terms is not None
    assert fresh._fit_state is not m._fit_state and fresh._fit_state.terms is None
    assert list(m.state_dict()) == list(fresh.state_dict())
    held = {id(a) for a in (*m.parameters(), *m.buffers())}
    terms = m._fit_state.terms[0]
    assert all(not np.shares_memory(terms, t.detach().numpy()) for t in m.state_dict().values())
    assert id(terms) not in held
