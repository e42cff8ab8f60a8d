"""Small trained bundles of every model family, and tools to tamper with them."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recfit.data import Interactions
from recfit.data.synthetic import synthetic
from recfit.models import TwoTower, create_model
from recfit.models.retrieval_losses import RescaledMSELoss
from recfit.recommender import Recommender
from recfit.train.learner import Learner

FAMILIES = ("dot", "mf", "svdpp", "nn", "classifier", "two_tower")
HUGE = 50_000_000
"""More elements than any allocation a small bundle needs (200 MB of float32)."""


def small_data(with_features: bool = False) -> Interactions:
    return synthetic(
        600, 40, 30, n_factors=3, seed=3, with_features=with_features, with_timestamps=False
    )


def train_family(name: str, d: Interactions) -> Recommender:
    """A Recommender of family ``name`` trained for one epoch on ``d``."""
    if name == "two_tower":
        model: Any = TwoTower.from_data(d, embedding_dim=4, layer_sizes=(4,), seed=1)
        loss: Any = RescaledMSELoss(d.rating_scale or (1, 5))
    else:
        kw: dict[str, Any] = {"seed": 1}
        if name in ("dot", "mf", "svdpp"):
            kw["n_factors"] = 3
        if name in ("nn", "classifier"):
            kw["layers"] = (6,)
        model, loss = create_model(name, d, **kw), None
    Learner(model, d, bs=64, seed=0, progress=False, loss=loss).fit(1, 1e-2)
    n_items = d.n_items
    features = None
    if name == "dot":  # one bundle with side-feature arrays
        features = {"item": {"x": np.linspace(0, 1, n_items, dtype=np.float32)}}
    return Recommender(
        model,
        d.users,
        d.items,
        d,
        item_info=d.item_features,
        rating_scale=d.rating_scale,
        config={"model": name, "epochs": 1},
        features=features,
    )


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Family name → a saved bundle (never modify it: copy it with ``fresh``)."""
    root = tmp_path_factory.mktemp("pristine")
    d = small_data(with_features=True)
    return {name: train_family(name, d).save(root / name) for name in FAMILIES}


@pytest.fixture
def fresh(pristine: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """A writable copy of a family's bundle inside ``tmp_path / 'work'``."""
    count = iter(range(1000))

    def make(name: str) -> Path:
        dest = tmp_path / "work" / f"{name}-{next(count)}"
        shutil.copytree(pristine[name], dest)
        return dest

    return make


# ------------------------------------------------------------------ tampering tools
def reseal(folder: Path, *names: str) -> None:
    """Write the current size and sha256 of ``names`` into the manifest (an attacker's
    re-seal)."""
    man = json.loads((folder / "manifest.json").read_text())
    for name in names:
        blob = (folder / name).read_bytes()
        man["files"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    (folder / "manifest.json").write_text(json.dumps(man))


def edit_json(folder: Path, name: str, fn: Callable[[Any], Any], *, seal: bool = True) -> None:
    """Replace ``name``'s JSON value by ``fn(value)`` (``fn`` may edit in place and return
    None) and re-seal it."""
    value = json.loads((folder / name).read_text())
    out = fn(value)
    (folder / name).write_text(json.dumps(value if out is None else out))
    if seal and name != "manifest.json":
        reseal(folder, name)


def split_safetensors(blob: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join_safetensors(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data


def edit_header(folder: Path, name: str, fn: Callable[[dict[str, Any]], None]) -> None:
    """Edit a safetensors header in place (the data bytes stay) and re-seal."""
    header, data = split_safetensors((folder / name).read_bytes())
    fn(header)
    (folder / name).write_bytes(join_safetensors(header, data))
    reseal(folder, name)


def edit_model_config(folder: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    """Edit the model config stored in model.safetensors' metadata and re-seal."""

    def change(header: dict[str, Any]) -> None:
        cfg = json.loads(header["__metadata__"]["recfit.config"])
        fn(cfg)
        header["__metadata__"]["recfit.config"] = json.dumps(cfg)

    edit_header(folder, "model.safetensors", change)


def edit_tensors(folder: Path, name: str, fn: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Replace tensors of a safetensors file (metadata kept) and re-seal."""
    from safetensors.torch import load, save

    blob = (folder / name).read_bytes()
    header, _ = split_safetensors(blob)
    tensors = dict(load(blob))
    fn(tensors)
    (folder / name).write_bytes(save(tensors, metadata=header.get("__metadata__")))
    reseal(folder, name)


# ------------------------------------------------------------------ observers
def _numel(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    size: Any = kwargs.get("size", args)
    if len(size) == 1 and isinstance(size[0], tuple | list | torch.Size):
        size = size[0]
    n = 1
    for s in size:
        if not isinstance(s, int):
            return 0
        n *= s
    return n


@pytest.fixture
def no_huge_alloc(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Fail any tensor factory asked for more than :data:`HUGE` elements on a real
    device (the ``meta`` device allocates nothing and is allowed). Yields the list of
    refused sizes."""
    refused: list[int] = []
    with torch.device("meta"):  # torch caches its factory set on first use: the originals
        torch.empty(1)

    def guard(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
            dev = kwargs.get("device") or torch.get_default_device()
            n = _numel(args if fn is not torch.full else args[:1], kwargs)
            if torch.device(dev).type != "meta" and n > HUGE:
                refused.append(n)
                raise AssertionError(f"refused allocation of {n} elements")
            return fn(*args, **kwargs)

        return wrapped

    for name in ("empty", "zeros", "ones", "full", "randn", "rand"):
        monkeypatch.setattr(torch, name, guard(getattr(torch, name)))
    yield refused


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file opened through ``os.open``, ``io.open`` / ``open``: its resolved path
    (symbolic links followed), or only its own absolute path for an ``os.open`` with
    ``O_NOFOLLOW`` (which refuses a link instead of following it)."""
    import builtins
    import io
    import os

    seen: list[str] = []

    def spy(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, str | bytes | os.PathLike):
                p = os.fsdecode(path)
                flags = args[0] if fn is os_open and args else kwargs.get("flags", 0)
                nofollow = fn is os_open and bool(flags & getattr(os, "O_NOFOLLOW", 0))
                seen.append(os.path.abspath(p) if nofollow else os.path.realpath(p))
            return fn(path, *args, **kwargs)

        return wrapped

    os_open = os.open

    monkeypatch.setattr(os, "open", spy(os.open))
    monkeypatch.setattr(io, "open", spy(io.open))
    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    return seen


@pytest.fixture(scope="session")
def kit() -> Any:
    """The tampering tools above, for the test modules."""
    from types import SimpleNamespace

    return SimpleNamespace(
        reseal=reseal,
        edit_json=edit_json,
        edit_header=edit_header,
        edit_model_config=edit_model_config,
        edit_tensors=edit_tensors,
        split_safetensors=split_safetensors,
        join_safetensors=join_safetensors,
        small_data=small_data,
        train_family=train_family,
        FAMILIES=FAMILIES,
    )
