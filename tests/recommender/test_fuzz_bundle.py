"""Hypothesis over tampered bundles: JSON fields (types, sizes, NaN, nesting, huge ints,
paths), safetensors headers and model configs, raw bytes, and the file system (links,
paths, special files).

For every mutation, loading either succeeds and the first answers are finite (and equal
to the untampered bundle's when nothing they depend on changed), or raises a
``RecfitError``; never another exception, never an open of a file outside the bundle,
never a tensor of more than ``HUGE`` elements.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recfit.errors import RecfitError
from recfit.recommender import Recommender

HUGE = 50_000_000
DEEP = "__deep__"
"""Written as 50,000 nested arrays (deeper than ``json.dumps`` can write)."""
USERS, ITEMS = [1, 2, 3, 4, 5], [1, 2, 3, 7, 11]
JSON_FILES = ("manifest.json", "recommender.json", "users.json", "items.json", "item_info.json")
TENSOR_FILES = ("model.safetensors", "arrays.safetensors")
ALL_FILES = JSON_FILES + TENSOR_FILES
# what predictions and recommendations depend on (besides the fields below)
ANSWER_FILES = ("users.json", "items.json", "model.safetensors", "arrays.safetensors")
ANSWER_FIELDS = ("model", "n_users", "n_items", "rating_scale", "min_item_count")


# ------------------------------------------------------------------ observers
@contextlib.contextmanager
def observe(outside: Path) -> Iterator[tuple[list[str], list[int]]]:
    """Record opens of files under ``outside`` and refuse huge tensor allocations."""
    touched: list[str] = []
    refused: list[int] = []
    root = str(outside.resolve())
    os_open, io_open, b_open = os.open, io.open, builtins.open
    saved = {n: getattr(torch, n) for n in ("empty", "zeros", "ones", "full", "randn", "rand")}

    def spy(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, str | bytes | os.PathLike):
                p = os.fsdecode(path)
                flags = args[0] if fn is os_open and args else kwargs.get("flags", 0)
                nofollow = fn is os_open and bool(flags & getattr(os, "O_NOFOLLOW", 0))
                real = os.path.abspath(p) if nofollow else os.path.realpath(p)
                if real.startswith(root):
                    touched.append(real)
            return fn(path, *args, **kwargs)

        return wrapped

    def guard(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
            size: Any = kwargs.get("size", args[:1] if fn is saved["full"] else args)
            if len(size) == 1 and isinstance(size[0], tuple | list | torch.Size):
                size = size[0]
            n = int(np.prod([s if isinstance(s, int) else 0 for s in size], dtype=object))
            dev = kwargs.get("device") or torch.get_default_device()
            if torch.device(dev).type != "meta" and n > HUGE:
                refused.append(n)
                raise MemoryError(f"refused {n} elements")
            return fn(*args, **kwargs)

        return wrapped

    with torch.device("meta"):  # torch caches its factory set on first use: the originals
        torch.empty(1)
    os.open, io.open, builtins.open = spy(os_open), spy(io_open), spy(b_open)  # type: ignore[assignment]
    for n, fn in saved.items():
        setattr(torch, n, guard(fn))
    try:
        yield touched, refused
    finally:
        os.open, io.open, builtins.open = os_open, io_open, b_open  # type: ignore[assignment]
        for n, fn in saved.items():
            setattr(torch, n, fn)


# ------------------------------------------------------------------ answers
def answers(rec: Recommender) -> tuple[np.ndarray, list[Any]]:
    pred = np.asarray(rec.predict(USERS, ITEMS, clip=False, on_unknown="nan"), dtype=np.float64)
    recs = rec.recommend(USERS, n=5)
    return pred, [(r.ids, list(r.scores)) for r in recs]


@pytest.fixture(scope="module")
def baseline(pristine: dict[str, Path]) -> dict[str, Any]:
    out = {}
    for name, folder in pristine.items():
        pred, recs = answers(Recommender.load(folder))
        out[name] = (pred, recs)
    return out


# ------------------------------------------------------------------ mutations
def _sha(blob: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}


def reseal(folder: Path, name: str) -> None:
    man = json.loads((folder / "manifest.json").read_text())
    man["files"][name] = _sha((folder / name).read_bytes())
    (folder / "manifest.json").write_text(json.dumps(man))


def nested(depth: int) -> Any:
    v: Any = 1
    for _ in range(depth):
        v = [v]
    return v


def hostile(outside: Path) -> st.SearchStrategy[Any]:
    secret = str(outside / "secret.json")
    fixed = [
        None, True, False, 0, -1, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1,
        10**30, 20_000_000, 10**12, 1.5, -0.0, 1e308, float("nan"), float("inf"),
        float("-inf"), "", "x", "../x", "/etc/passwd", secret, "../outside/secret.json",
        "a" * 5000, [], {}, [1], [1, 2], [5, 1], [float("nan"), float("nan")], [None], [[1]],
        {"a": 1}, ["../x"], [2**63], [-1] * 3,
    ]  # fmt: skip
    return st.one_of(
        st.sampled_from(fixed),
        st.integers(),
        st.floats(),
        st.text(max_size=12),
        st.integers(2, 800).map(nested),
        st.just(DEEP),
        st.lists(st.integers(-5, 5), max_size=6),
    )


def mutate_json(data: st.DataObject, value: Any, outside: Path) -> Any:
    """Walk into ``value`` and replace, delete or add one element."""
    holder: list[Any] = [value]
    parent: Any = holder
    key: Any = 0
    while True:
        node = parent[key]
        if not isinstance(node, dict | list) or not node or data.draw(st.integers(0, 3)) == 0:
            break
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, data.draw(st.sampled_from(keys[:50] + keys[-5:]))
    action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "delete" and parent is not holder:
        del parent[key]
    elif action == "add" and isinstance(parent[key], dict):
        parent[key][data.draw(st.sampled_from(["extra", "../x", "n_users", "files"]))] = data.draw(
            hostile(outside)
        )
    elif action == "add" and isinstance(parent[key], list):
        parent[key].append(data.draw(hostile(outside)))
    else:
        parent[key] = data.draw(hostile(outside))
    return holder[0]


def dumps(value: Any) -> str:
    return json.dumps(value).replace(json.dumps(DEEP), "[" * 50_000 + "]" * 50_000)


def split_st(blob: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join_st(header: Any, rest: bytes) -> bytes:
    raw = dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + rest


def apply_mutation(data: st.DataObject, folder: Path, outside: Path) -> str:
    """Tamper with ``folder``; returns a short description."""
    kind = data.draw(st.sampled_from(["json", "json", "header", "config", "bytes", "fs"]))
    seal = data.draw(st.booleans()) or data.draw(st.booleans())  # mostly re-sealed
    if kind == "json":
        name = data.draw(st.sampled_from(JSON_FILES))
        value = mutate_json(data, json.loads((folder / name).read_text()), outside)
        (folder / name).write_text(dumps(value))
    elif kind in ("header", "config"):
        name = "model.safetensors" if kind == "config" else data.draw(st.sampled_from(TENSOR_FILES))
        header, rest = split_st((folder / name).read_bytes())
        if kind == "config":
            cfg = json.loads(header["__metadata__"]["recfit.config"])
            header["__metadata__"]["recfit.config"] = dumps(mutate_json(data, cfg, outside))
        else:
            header = mutate_json(data, header, outside)
        (folder / name).write_bytes(join_st(header, rest))
    elif kind == "bytes":
        name = data.draw(st.sampled_from(ALL_FILES))
        blob = bytearray((folder / name).read_bytes())
        pos = data.draw(st.integers(0, max(0, len(blob) - 1)))
        op = data.draw(st.sampled_from(["flip", "set", "truncate", "insert"]))
        if op == "flip" and blob:
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and blob:
            blob[pos] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del blob[pos:]
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        (folder / name).write_bytes(bytes(blob))
    else:
        name = data.draw(st.sampled_from(ALL_FILES))
        op = data.draw(st.sampled_from(["link-out", "link-copy", "dir", "fifo", "entry"]))
        secret = outside / "secret.json"
        if op == "entry":
            entry = data.draw(st.sampled_from(["../outside/secret.json", str(secret), "extra"]))
            man = json.loads((folder / "manifest.json").read_text())
            man["files"][entry] = _sha(secret.read_bytes())
            (folder / "manifest.json").write_text(json.dumps(man))
            return f"fs entry {entry}"
        blob = (folder / name).read_bytes()
        (folder / name).unlink()
        if op == "link-out":
            os.symlink(secret, folder / name)
        elif op == "link-copy":
            copy = outside / f"copy-{name}"
            copy.write_bytes(blob)
            os.symlink(copy, folder / name)
        elif op == "dir":
            (folder / name).mkdir()
        else:
            os.mkfifo(folder / name)
        return f"fs {op} {name}"
    if seal and name != "manifest.json":
        reseal(folder, name)
    return f"{kind} {name} seal={seal}"


def answer_relevant_change(folder: Path, pristine: Path) -> bool:
    for name in ANSWER_FILES:
        if (folder / name).read_bytes() != (pristine / name).read_bytes():
            return True
    a = json.loads((folder / "recommender.json").read_text())
    b = json.loads((pristine / "recommender.json").read_text())
    return any(a.get(k) != b.get(k) for k in ANSWER_FIELDS)


# ------------------------------------------------------------------ the property
@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("outside")
    (d / "secret.json").write_text(json.dumps({"kind": "int", "ids": [1, 2, 3]}))
    return d


@settings(
    max_examples=int(os.environ.get("RECFIT_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_tampered_bundles_load_or_raise_typed_errors(
    data: st.DataObject, pristine: dict[str, Path], baseline: dict[str, Any], outside: Path
) -> None:
    family = data.draw(st.sampled_from(sorted(pristine)))
    work = Path(tempfile.mkdtemp(prefix="fuzz-", dir=outside.parent))
    folder = work / "b"
    shutil.copytree(pristine[family], folder)
    try:
        what = apply_mutation(data, folder, outside)
        with observe(outside) as (touched, refused):
            try:
                rec = Recommender.load(folder)
                got = answers(rec)
            except RecfitError as exc:
                event(f"typed error: {type(exc).__name__}")
                got = None
        assert touched == [], f"{what}: opened {touched}"
        assert refused == [], f"{what}: asked for {refused} elements"
        if got is None:
            return
        event(f"answered after {what.split(' seal')[0].split(' ')[0]}")
        pred, recs = got
        known = ~np.isnan(pred)
        assert np.isfinite(pred[known]).all(), f"{what}: {pred}"
        assert all(np.isfinite(s).all() for _, s in recs), f"{what}: {recs}"
        if folder.exists() and not answer_relevant_change(folder, pristine[family]):
            want_pred, want_recs = baseline[family]
            np.testing.assert_array_equal(pred, want_pred, err_msg=what)
            assert recs == want_recs, what
    finally:
        shutil.rmtree(work, ignore_errors=True)
