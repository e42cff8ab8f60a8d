"""Tampered model bundles through ``Recommender.load`` and first use.

Six small bundles (``dot`` with a side-feature array, ``mf``, ``svdpp``, ``nn``,
``classifier``, ``two_tower``) are trained in seconds on synthetic ratings
(:func:`recfit.data.synthetic.synthetic`, 40 users, 30 items, with titles and features).
Each case copies one, tampers with it the way an attacker or a broken disk would, and
then loads it and answers ``predict`` (five pairs) and ``recommend`` (five users):

- ``paths``: manifest entries naming ``../``, absolute or nested paths, symbolic links
  to files outside the bundle, a run whose ``bundle`` is a link, pipes, folders, sparse
  4 GB files, ``GET /report`` on a linked ``report.html``;
- ``json``: every JSON file of the bundle with wrong types, sizes, NaN, huge integers,
  deep nesting, missing and extra keys (re-sealed in the manifest, so only the loader's
  own checks stand between the file and the model);
- ``sizes``: declared sizes in the model's config (``n_users`` 20,000,000 and 10**12 in
  every family ...) and in the safetensors headers (shapes, dtypes, offsets);
- ``values``: out-of-range or non-finite tensor values (SVD++ lists, two-tower feature
  indices, seen items, NaN weights);
- ``bytes``: flipped, truncated and appended bytes, with and without a re-seal;
- ``harmless``: changes that must not change any answer (key order, whitespace, titles,
  the run config), which must load and answer exactly like the untampered bundle.

Outcomes: ``typed_error`` (a ``RecfitError`` at load or first use, or a 4xx from
``/report``); ``answer`` (finite answers, equal to the untampered bundle's for a
harmless change and for a tampering that should have been refused but changed no
answer); ``untyped_error`` (any other exception, a tensor of more than 50 million
elements requested, or no answer within 30 s); ``wrong_answer`` (a non-finite answer, a
changed answer after a harmless change or after a tampering that should have been
refused, or a file outside the bundle opened).

Run standalone: ``python -m benchmarks.reliability.bundles [--work DIR] [-v]``.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

try:
    from benchmarks.reliability import Case, Outcome
except ImportError:  # run from benchmarks/ by bench_reliability.py
    from reliability import Case, Outcome  # type: ignore[no-redef]

__all__ = ["run"]

CORPUS = "bundles"
HUGE = 50_000_000
"""More elements than any allocation of these small bundles (200 MB of float32)."""
CASE_TIMEOUT_S = 30
"""A case still loading after this long (a blocked read, a huge hash) is a failure."""
FAMILIES = ("dot", "mf", "svdpp", "nn", "classifier", "two_tower")
USERS, ITEMS = [1, 2, 3, 4, 999_999], [1, 2, 3, 7, 11]
"""Queries of first use (user 999,999 is unknown: ``predict`` answers NaN, ``recommend``
the popular path)."""
Expect = Literal["refuse", "same", "any"]


# ------------------------------------------------------------------ pristine bundles
def _train(name: str, d: Any) -> Any:
    from recfit.models import TwoTower, create_model
    from recfit.models.retrieval_losses import RescaledMSELoss
    from recfit.recommender import Recommender
    from recfit.train.learner import Learner

    loss: Any = None
    if name == "two_tower":
        model: Any = TwoTower.from_data(d, embedding_dim=4, layer_sizes=(4,), seed=1)
        loss = RescaledMSELoss(d.rating_scale or (1, 5))
    else:
        kw: dict[str, Any] = {"seed": 1}
        if name in ("dot", "mf", "svdpp"):
            kw["n_factors"] = 3
        if name in ("nn", "classifier"):
            kw["layers"] = (6,)
        model = create_model(name, d, **kw)
    Learner(model, d, bs=64, seed=0, progress=False, loss=loss).fit(1, 1e-2)
    features = None
    if name == "dot":
        features = {"item": {"x": np.linspace(0, 1, d.n_items, dtype=np.float32)}}
    return Recommender(
        model, d.users, d.items, d, item_info=d.item_features, rating_scale=d.rating_scale,
        config={"model": name, "epochs": 1}, features=features,
    )  # fmt: skip


def _pristine(work: Path) -> dict[str, Path]:
    from recfit.data.synthetic import synthetic

    d = synthetic(600, 40, 30, n_factors=3, seed=3, with_features=True, with_timestamps=False)
    root = work / "pristine"
    return {name: _train(name, d).save(root / name) for name in FAMILIES}


# ------------------------------------------------------------------ tampering tools
def _entry(blob: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}


def _reseal(folder: Path, *names: str) -> None:
    man = json.loads((folder / "manifest.json").read_text())
    for name in names:
        man["files"][name] = _entry((folder / name).read_bytes())
    (folder / "manifest.json").write_text(json.dumps(man))


def _json(
    name: str, fn: Callable[[Any], Any], *, seal: bool = True, replace: bool = False
) -> Callable[[Path, Path], None]:
    """Edit ``name``'s JSON value in place with ``fn`` (or replace it by what ``fn``
    returns, with ``replace``)."""

    def apply(folder: Path, outside: Path) -> None:
        value = json.loads((folder / name).read_text())
        out = fn(value)
        (folder / name).write_text(json.dumps(out if replace else value))
        if seal and name != "manifest.json":
            _reseal(folder, name)

    return apply


def _text(name: str, text: str | bytes, *, seal: bool = True) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        blob = text.encode() if isinstance(text, str) else text
        (folder / name).write_bytes(blob)
        if seal and name != "manifest.json":
            _reseal(folder, name)

    return apply


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def _join(header: Any, rest: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + rest


def _header(name: str, fn: Callable[[dict[str, Any]], None]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        header, rest = _split((folder / name).read_bytes())
        fn(header)
        (folder / name).write_bytes(_join(header, rest))
        _reseal(folder, name)

    return apply


def _config(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path, Path], None]:
    def change(header: dict[str, Any]) -> None:
        cfg = json.loads(header["__metadata__"]["recfit.config"])
        fn(cfg)
        header["__metadata__"]["recfit.config"] = json.dumps(cfg)

    return _header("model.safetensors", change)


def _tensors(
    name: str, fn: Callable[[dict[str, torch.Tensor]], None]
) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        from safetensors.torch import load, save

        blob = (folder / name).read_bytes()
        header, _ = _split(blob)
        tensors = dict(load(blob))
        fn(tensors)
        (folder / name).write_bytes(save(tensors, metadata=header.get("__metadata__")))
        _reseal(folder, name)

    return apply


def _set(key: str, index: int, value: float) -> Callable[[dict[str, torch.Tensor]], None]:
    def fn(t: dict[str, torch.Tensor]) -> None:
        t[key] = t[key].clone()
        t[key].view(-1)[index] = value

    return fn


def _nested(depth: int) -> Any:
    v: Any = 1
    for _ in range(depth):
        v = [v]
    return v


def _bytes(name: str, op: str, *, seal: bool) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        blob = bytearray((folder / name).read_bytes())
        if op == "flip":
            blob[len(blob) // 2] ^= 0x10
        elif op == "truncate":
            del blob[len(blob) // 2 :]
        else:
            blob += b"\x00garbage\xff" * 3
        (folder / name).write_bytes(bytes(blob))
        if seal:
            _reseal(folder, name)

    return apply


def _manifest_entry(name: str, *, real: bool = True) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        target = name.replace("{outside}", str(outside))
        blob = (outside / "secret.json").read_bytes()
        entry = _entry(blob) if real else {"sha256": "0" * 64, "bytes": 10}
        man = json.loads((folder / "manifest.json").read_text())
        man["files"][target] = entry
        (folder / "manifest.json").write_text(json.dumps(man))

    return apply


def _link(name: str, to: Literal["secret", "copy"]) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        target = outside / "secret.json"
        if to == "copy":
            target = outside / f"copy-{folder.name}-{name}"
            target.write_bytes((folder / name).read_bytes())
        (folder / name).unlink()
        os.symlink(target, folder / name)
        if to == "secret" and name != "manifest.json":
            _reseal(folder, name)

    return apply


def _special(name: str, kind: str) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        (folder / name).unlink()
        if kind == "fifo":
            os.mkfifo(folder / name)
        elif kind == "dir":
            (folder / name).mkdir()
        else:  # a sparse 4 GB file; the manifest keeps (or re-declares) its size
            with (folder / name).open("wb") as f:
                f.truncate(4 << 30)
            if kind == "sparse-declared":
                man = json.loads((folder / "manifest.json").read_text())
                man["files"][name] = {"sha256": "0" * 64, "bytes": 4 << 30}
                (folder / "manifest.json").write_text(json.dumps(man))

    return apply


def _extra_file(folder: Path, outside: Path) -> None:
    (folder / "notes.txt").write_text("hello")
    _reseal(folder, "notes.txt")


def _reformat(name: str) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        value = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps(value, indent=3, sort_keys=True) + "\n\n")
        if name != "manifest.json":
            _reseal(folder, name)

    return apply


def _items_reordered(value: dict[str, Any]) -> None:
    value["ids"] = list(reversed(value["ids"]))


# ------------------------------------------------------------------ the corpus
@dataclass
class Tamper:
    """One case: which bundle, what to do to it, and what a correct loader does."""

    name: str
    family: str
    apply: Callable[[Path, Path], None]
    expect: Expect = "refuse"
    run_dir: bool = False


def _size_key(family: str) -> Callable[[dict[str, Any], int], None]:
    def set_users(cfg: dict[str, Any], value: int) -> None:
        if family == "two_tower":
            cfg["query_tower"]["n_ids"] = value
        else:
            cfg["n_users"] = value

    return set_users


def corpus() -> list[Tamper]:
    """The fixed list of tamperings (deterministic)."""
    t: list[Tamper] = []
    add = t.append
    # --- paths outside the bundle, links, special files
    for fam, entry in (  # the bundle is work/cases/NNN/bundle; the secret work/outside
        ("mf", "../../../outside/secret.json"),
        ("mf", "{outside}/secret.json"),
        ("dot", "sub/../../../../outside/secret.json"),
        ("svdpp", "./../../../outside/secret.json"),
    ):
        add(
            Tamper(
                f"paths/manifest-entry {entry.replace('{outside}', '/abs')}",
                fam,
                _manifest_entry(entry),
            )
        )
    add(
        Tamper("paths/manifest-entry /etc/passwd", "mf", _manifest_entry("/etc/passwd", real=False))
    )
    add(Tamper("paths/manifest-entry ..", "mf", _manifest_entry("..", real=False)))
    add(Tamper("paths/manifest-entry empty name", "mf", _manifest_entry("", real=False)))
    add(Tamper("paths/extra plain file listed", "mf", _extra_file))
    for name in ("users.json", "item_info.json"):
        add(Tamper(f"paths/{name} links to a file outside", "mf", _link(name, "secret")))
    for name in ("manifest.json", "model.safetensors", "arrays.safetensors", "recommender.json"):
        add(Tamper(f"paths/{name} links to a copy outside", "mf", _link(name, "copy")))
    add(Tamper("paths/run's bundle folder is a link", "mf", lambda f, o: None, run_dir=True))
    add(Tamper("paths/users.json is a named pipe", "mf", _special("users.json", "fifo")))
    add(Tamper("paths/manifest.json is a named pipe", "mf", _special("manifest.json", "fifo")))
    add(Tamper("paths/items.json is a folder", "mf", _special("items.json", "dir")))
    add(Tamper("paths/items.json is a sparse 4 GB file", "mf", _special("items.json", "sparse")))
    add(Tamper("paths/4 GB items.json declared in manifest", "mf",
               _special("items.json", "sparse-declared")))  # fmt: skip
    add(Tamper("paths/manifest.json of 2 MB", "mf",
               _json("manifest.json", lambda m: m.update(pad="x" * (2 << 20)))))  # fmt: skip

    # --- declared sizes
    for fam in FAMILIES:
        for value in (20_000_000, 10**12):
            add(Tamper(f"sizes/model n_users={value:.0e}", fam,
                       _config(lambda c, f=fam, v=value: _size_key(f)(c, v))))  # fmt: skip
    add(Tamper("sizes/model n_items=2e7", "mf", _config(lambda c: c.update(n_items=20_000_000))))
    add(Tamper("sizes/model n_factors=1e9", "dot", _config(lambda c: c.update(n_factors=10**9))))
    add(Tamper("sizes/model n_factors=-1", "dot", _config(lambda c: c.update(n_factors=-1))))
    add(Tamper("sizes/model n_factors='3'", "dot", _config(lambda c: c.update(n_factors="3"))))
    add(
        Tamper(
            "sizes/svdpp n_implicit=1e15", "svdpp", _config(lambda c: c.update(n_implicit=10**15))
        )
    )
    add(Tamper("sizes/nn layers=[1e6]", "nn", _config(lambda c: c.update(layers=[10**6]))))
    add(Tamper("sizes/nn layers=[0]", "nn", _config(lambda c: c.update(layers=[0]))))
    add(
        Tamper("sizes/classifier levels=[1]", "classifier", _config(lambda c: c.update(levels=[1])))
    )
    add(Tamper("sizes/two_tower embedding_dim=1e6", "two_tower",
               _config(lambda c: c["query_tower"].update(embedding_dim=10**6))))  # fmt: skip
    add(Tamper("sizes/two_tower cardinality=1e9", "two_tower",
               _config(lambda c: [i.update(cardinality=10**9) for i in c["query_tower"]["inputs"]
                                  if i.get("cardinality")])))  # fmt: skip
    add(Tamper("sizes/model name unknown", "mf", _config(lambda c: c.update(name="evil"))))
    add(Tamper("sizes/model name of another family", "mf", _config(lambda c: c.update(name="dot"))))
    add(Tamper("sizes/model config deep nesting", "mf",
               _config(lambda c: c.update(y_range=_nested(500)))))  # fmt: skip
    add(Tamper("sizes/model y_range [5, 1]", "dot", _config(lambda c: c.update(y_range=[5, 1]))))
    add(
        Tamper(
            "sizes/model y_range [0, 1e39]", "dot", _config(lambda c: c.update(y_range=[0, 1e39]))
        )
    )
    add(Tamper("sizes/model global_mean 1e39", "mf", _config(lambda c: c.update(global_mean=1e39))))
    add(Tamper("sizes/model format_version 2", "mf",
               _header("model.safetensors", lambda h: h["__metadata__"].update(
                   {"recfit.format_version": "2"}))))  # fmt: skip
    add(Tamper("sizes/model config missing", "mf",
               _header("model.safetensors", lambda h: h["__metadata__"].pop("recfit.config"))))  # fmt: skip
    add(Tamper("sizes/header shape [2e7, 3]", "mf",
               _header("model.safetensors", lambda h: h["user_factors"].update(shape=[20_000_000, 3]))))  # fmt: skip
    add(Tamper("sizes/header dtype F64 for F32", "mf",
               _header("model.safetensors", lambda h: h["item_bias"].update(dtype="F64"))))  # fmt: skip
    add(Tamper("sizes/header dtype F128", "mf",
               _header("model.safetensors", lambda h: h["item_bias"].update(dtype="F128"))))  # fmt: skip
    add(Tamper("sizes/header offsets beyond the file", "mf",
               _header("model.safetensors", lambda h: h["item_bias"].update(data_offsets=[0, 2**40]))))  # fmt: skip
    add(Tamper("sizes/header negative shape", "mf",
               _header("model.safetensors", lambda h: h["item_bias"].update(shape=[-30]))))  # fmt: skip
    add(Tamper("sizes/header tensor missing", "mf",
               _tensors("model.safetensors", lambda t: t.pop("user_bias"))))  # fmt: skip
    add(Tamper("sizes/header extra tensor", "mf",
               _tensors("model.safetensors", lambda t: t.update(evil=torch.ones(3)))))  # fmt: skip
    add(Tamper("sizes/header length 2**62", "mf", _special_header_len(2**62)))
    add(Tamper("sizes/header length 0", "mf", _special_header_len(0)))
    add(Tamper("sizes/arrays seen_indptr shape 2e7", "mf",
               _header("arrays.safetensors", lambda h: h["seen_indptr"].update(shape=[20_000_000]))))  # fmt: skip
    add(Tamper("sizes/arrays popularity dtype F32", "mf",
               _tensors("arrays.safetensors", lambda t: t.update(popularity=t["popularity"].float()))))  # fmt: skip
    add(Tamper("sizes/arrays extra ../x", "mf",
               _tensors("arrays.safetensors", lambda t: t.update({"../x": torch.ones(2)}))))  # fmt: skip
    add(Tamper("sizes/arrays feature with wrong rows", "dot",
               _tensors("arrays.safetensors", lambda t: t.update({"features/item/x": torch.ones(7)}))))  # fmt: skip
    add(Tamper("sizes/recommender.json n_users=2e7", "mf",
               _json("recommender.json", lambda m: m.update(n_users=20_000_000))))  # fmt: skip

    # --- JSON content
    rj = "recommender.json"
    for label, fn in (
        ("rating_scale [1]", lambda m: m.update(rating_scale=[1])),
        ("rating_scale [5, 1]", lambda m: m.update(rating_scale=[5, 1])),
        ("rating_scale ['1', '5']", lambda m: m.update(rating_scale=["1", "5"])),
        ("fold_in_reg 0", lambda m: m.update(fold_in_reg=0)),
        ("fold_in_reg '0.1'", lambda m: m.update(fold_in_reg="0.1")),
        ("n_items -1", lambda m: m.update(n_items=-1)),
        ("n_items 30.0", lambda m: m.update(n_items=30.0)),
        ("model 'dot'", lambda m: m.update(model="dot")),
        ("missing key", lambda m: m.pop("n_users")),
        ("extra key", lambda m: m.update(evil=1)),
        ("feature_spaces bad", lambda m: m.update(feature_spaces={"user": {"format": "x"}})),
        ("feature_spaces huge int", lambda m: m.update(feature_spaces={"user": {"n": 2**70}})),
        ("config 900 deep", lambda m: m.update(config=_nested(900))),
    ):
        add(Tamper(f"json/{rj} {label}", "mf", _json(rj, fn)))
    add(Tamper(f"json/{rj} whole file 0", "mf", _json(rj, lambda m: 0, replace=True)))
    add(Tamper(f"json/{rj} whole file a list", "mf", _json(rj, lambda m: [m], replace=True)))
    add(Tamper(f"json/{rj} rating_scale [NaN, NaN]", "mf",
               _text(rj, '{"model": "mf", "n_users": 40, "n_items": 30, "rating_scale": [NaN, NaN],'
                         ' "config": null, "feature_spaces": {}, "fold_in_reg": 0.1,'
                         ' "min_item_count": 1.0}')))  # fmt: skip
    add(Tamper(f"json/{rj} min_item_count Infinity", "mf",
               _text(rj, '{"model": "mf", "n_users": 40, "n_items": 30, "rating_scale": [1, 5],'
                         ' "config": null, "feature_spaces": {}, "fold_in_reg": 0.1,'
                         ' "min_item_count": Infinity}')))  # fmt: skip
    add(Tamper(f"json/{rj} 1e309", "mf",
               _text(rj, '{"model": "mf", "n_users": 40, "n_items": 30, "rating_scale": [1, 1e309],'
                         ' "config": null, "feature_spaces": {}, "fold_in_reg": 0.1,'
                         ' "min_item_count": 1.0}')))  # fmt: skip
    add(Tamper(f"json/{rj} 100000 deep", "mf", _text(rj, "[" * 100_000 + "]" * 100_000)))
    add(Tamper(f"json/{rj} invalid UTF-8", "mf", _text(rj, b'{"model": "\xff\xfe"}')))
    for fname in ("users.json", "items.json"):
        for label, fn in (
            ("id 2**64", lambda v: v.update(ids=[2**64, *v["ids"][1:]])),
            ("id -2**63-1", lambda v: v.update(ids=[-(2**63) - 1, *v["ids"][1:]])),
            ("id 1.5", lambda v: v.update(ids=[1.5, *v["ids"][1:]])),
            ("id true", lambda v: v.update(ids=[True, *v["ids"][1:]])),
            ("duplicate ids", lambda v: v.update(ids=[v["ids"][1], *v["ids"][1:]])),
            ("one id fewer", lambda v: v.update(ids=v["ids"][1:])),
            ("kind float", lambda v: v.update(kind="float")),
            ("kind str for int ids", lambda v: v.update(kind="str")),
            ("sentinel 0", lambda v: v.update(sentinel=0)),
            ("ids an object", lambda v: v.update(ids={"a": 1})),
        ):
            add(Tamper(f"json/{fname} {label}", "mf", _json(fname, fn)))
    ij = "item_info.json"
    for label, fn in (
        ("integer titles", lambda i: i["columns"].update(title=list(range(30)))),
        ("dict titles", lambda i: i["columns"].update(title=[{"a": 1}] * 30)),
        ("3 titles for 30 items", lambda i: i["columns"].update(title=["x"] * 3)),
        ("year 1.5", lambda i: i["columns"].update(year=[1.5] * 30)),
        ("year 1e300", lambda i: i["columns"].update(year=[1e300] * 30)),
        ("genres an int", lambda i: i["columns"].update(genres=[1] * 30)),
        ("extra column", lambda i: i["columns"].update(evil=[1] * 30)),
        ("columns null", lambda i: i.update(columns=None)),
    ):
        add(Tamper(f"json/{ij} {label}", "mf", _json(ij, fn)))
    mj = "manifest.json"
    for label, fn in (
        ("format 'x'", lambda m: m.update(format="x")),
        ("format_version 2", lambda m: m.update(format_version=2)),
        ("format_version '1'", lambda m: m.update(format_version="1")),
        ("format_version true", lambda m: m.update(format_version=True)),
        ("files a list", lambda m: m.update(files=[])),
        ("sha256 'zz'", lambda m: m["files"]["users.json"].update(sha256="zz")),
        ("bytes -1", lambda m: m["files"]["users.json"].update(bytes=-1)),
        ("bytes 2**70", lambda m: m["files"]["users.json"].update(bytes=2**70)),
        ("file missing from the list", lambda m: m["files"].pop("items.json")),
    ):
        add(Tamper(f"json/{mj} {label}", "mf", _json(mj, fn)))
    add(Tamper(f"json/{mj} 100000 deep", "mf", _text(mj, "[" * 100_000 + "]" * 100_000)))

    # --- tensor values
    mt, at = "model.safetensors", "arrays.safetensors"
    for label, key, idx, value in (
        ("implicit item 1e6", "implicit_items", 0, 10**6),
        ("implicit item -3", "implicit_items", 0, -3),
        ("implicit offset 1e6", "implicit_indptr", 1, 10**6),
        ("implicit offset -5", "implicit_indptr", 1, -5),
        ("implicit last offset short", "implicit_indptr", -1, 3),
    ):
        add(Tamper(f"values/svdpp {label}", "svdpp", _tensors(mt, _set(key, idx, value))))
    add(Tamper("values/item_bias NaN", "mf", _tensors(mt, _set("item_bias", 0, float("nan")))))
    add(
        Tamper(
            "values/user_factors inf", "dot", _tensors(mt, _set("user_factors", 3, float("inf")))
        )
    )
    add(Tamper("values/nn weight NaN", "nn", _tensors(mt, _set("mlp.0.weight", 0, float("nan")))))
    add(Tamper("values/two_tower feature index 1e9", "two_tower",
               _tensors(mt, lambda t: _set(next(k for k, v in t.items() if ".f_" in k
                                                and v.dtype == torch.int64), 0, 10**9)(t))))  # fmt: skip
    add(Tamper("values/two_tower feature index -1", "two_tower",
               _tensors(mt, lambda t: _set(next(k for k, v in t.items() if ".f_" in k
                                                and v.dtype == torch.int64), 0, -1)(t))))  # fmt: skip
    add(Tamper("values/seen item 1e6", "mf", _tensors(at, _set("seen_indices", 0, 10**6))))
    add(Tamper("values/seen item -1", "mf", _tensors(at, _set("seen_indices", 0, -1))))
    add(Tamper("values/seen offset decreasing", "mf", _tensors(at, _set("seen_indptr", 1, 10**4))))
    add(Tamper("values/popularity NaN", "mf", _tensors(at, _set("popularity", 0, float("nan")))))
    add(Tamper("values/feature NaN", "dot", _tensors(at, _set("features/item/x", 0, float("nan")))))
    add(Tamper("values/popularity negative (still a valid bundle)", "mf",
               _tensors(at, _set("popularity", 0, -5.0)), expect="any"))  # fmt: skip

    # --- bytes
    for name in ("manifest.json", "users.json", "item_info.json", mt, at):
        add(Tamper(f"bytes/{name} flipped byte", "mf", _bytes(name, "flip", seal=False)))
        add(Tamper(f"bytes/{name} truncated", "mf", _bytes(name, "truncate", seal=False)))
    for name in (mt, at, "users.json"):
        add(Tamper(f"bytes/{name} truncated, re-sealed", "mf", _bytes(name, "truncate", seal=True)))
        add(Tamper(f"bytes/{name} appended, re-sealed", "mf", _bytes(name, "append", seal=True)))

    # --- harmless: must answer exactly as before
    for fam in ("mf", "two_tower"):
        for name in (
            "recommender.json",
            "users.json",
            "items.json",
            "item_info.json",
            "manifest.json",
        ):
            add(Tamper(f"harmless/{name} re-indented", fam, _reformat(name), expect="same"))
    add(Tamper("harmless/new titles", "mf",
               _json(ij, lambda i: i["columns"].update(title=[f"T{k}" for k in range(30)])),
               expect="same"))  # fmt: skip
    add(
        Tamper(
            "harmless/no item info", "mf", _json(ij, lambda i: i.update(columns={})), expect="same"
        )
    )
    add(Tamper("harmless/run config changed", "mf",
               _json(rj, lambda m: m.update(config={"note": "x" * 100})), expect="same"))  # fmt: skip
    add(Tamper("harmless/manifest created changed", "mf",
               _json(mj, lambda m: m.update(created="1999-01-01")), expect="same"))  # fmt: skip
    add(Tamper("harmless/item ids listed in reverse", "mf", _json("items.json", _items_reordered),
               expect="same"))  # fmt: skip
    return t


def _special_header_len(n: int) -> Callable[[Path, Path], None]:
    def apply(folder: Path, outside: Path) -> None:
        blob = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(n.to_bytes(8, "little") + blob[8:])
        _reseal(folder, "model.safetensors")

    return apply


# ------------------------------------------------------------------ observing
@contextlib.contextmanager
def _observe(outside: Path) -> Iterator[tuple[list[str], list[int]]]:
    """Record opens of files under ``outside``; refuse (and record) tensor allocations of
    more than :data:`HUGE` elements on a real device."""
    touched: list[str] = []
    refused: list[int] = []
    root = str(outside.resolve())
    os_open, io_open, b_open = os.open, io.open, builtins.open
    names = ("empty", "zeros", "ones", "full", "randn", "rand")
    saved = {n: getattr(torch, n) for n in names}

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
            n = 1
            for s in size:
                n *= s if isinstance(s, int) else 0
            dev = kwargs.get("device") or torch.get_default_device()
            if torch.device(dev).type != "meta" and n > HUGE:
                refused.append(n)
                raise MemoryError(f"refused a tensor of {n} elements")
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


def _answers(path: Path) -> tuple[np.ndarray, list[Any]]:
    from recfit.recommender import Recommender

    rec = Recommender.load(path)
    pred = np.asarray(rec.predict(USERS, ITEMS, clip=False, on_unknown="nan"), dtype=np.float64)
    recs = rec.recommend(USERS, n=5)
    return pred, [(list(r.ids), [float(s) for s in r.scores]) for r in recs]


def _classify(
    case: Tamper, target: Path, outside: Path, want: tuple[np.ndarray, list[Any]]
) -> tuple[Outcome, str, float]:
    from recfit.errors import RecfitError

    t0 = time.perf_counter()
    got: tuple[np.ndarray, list[Any]] | None = None
    err: BaseException | None = None

    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {CASE_TIMEOUT_S} s (blocked or too slow)")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(CASE_TIMEOUT_S)
    with _observe(outside) as (touched, refused):
        try:
            got = _answers(target)
        except RecfitError as exc:
            err = exc
        except Exception as exc:  # the failure being counted
            err = exc
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    secs = time.perf_counter() - t0
    if touched:
        return "wrong_answer", f"opened outside the bundle: {touched[0]}", secs
    if refused:
        return "untyped_error", f"asked for a tensor of {refused[0]} elements", secs
    if err is not None:
        if isinstance(err, RecfitError):
            return "typed_error", f"{type(err).__name__}: {str(err)[:160]}", secs
        return "untyped_error", f"{type(err).__name__}: {str(err)[:160]}", secs
    assert got is not None
    pred, recs = got
    known = ~np.isnan(pred)
    if not np.isfinite(pred[known]).all() or not all(np.isfinite(s).all() for _, s in recs):
        return "wrong_answer", f"non-finite answer {pred.tolist()}", secs
    same = np.array_equal(pred, want[0], equal_nan=True) and recs == want[1]
    if case.expect == "refuse":
        if same:  # accepted, but nothing it answers changed
            return "answer", "accepted; answers equal to the untampered bundle", secs
        return "wrong_answer", "accepted a bundle that should be refused: answers changed", secs
    if case.expect == "same" and not same:
        return "wrong_answer", "a harmless change changed an answer", secs
    return (
        "answer",
        "finite answers" + (" equal to the untampered bundle" if case.expect == "same" else ""),
        secs,
    )


def _report_cases(work: Path, pristine: Path, outside: Path) -> list[Case]:
    """``GET /report`` on a run whose report.html is a link, a pipe, a folder, or plain."""
    from fastapi.testclient import TestClient

    from recfit.recommender import Recommender
    from recfit.server.app import create_app

    rec = Recommender.load(pristine)
    out: list[Case] = []
    for kind in ("plain", "link to /etc/passwd", "link to a file outside", "named pipe", "folder"):
        run = work / "report-runs" / kind.replace(" ", "-").replace("/", "_")
        run.mkdir(parents=True)
        report = run / "report.html"
        if kind == "plain":
            report.write_text("<html>report</html>")
        elif kind == "link to /etc/passwd":
            os.symlink("/etc/passwd", report)
        elif kind == "link to a file outside":
            os.symlink(outside / "secret.json", report)
        elif kind == "named pipe":
            os.mkfifo(report)
        else:
            report.mkdir()
        with (
            _observe(outside) as (touched, _),
            TestClient(create_app(rec, report_path=report, warm_up=False)) as client,
        ):
            resp = client.get("/report")
        name = f"paths/GET /report: {kind}"
        if touched or (kind != "plain" and resp.status_code == 200):
            out.append(Case(CORPUS, name, "wrong_answer", f"served {len(resp.content)} bytes"))
        elif resp.status_code >= 500:
            out.append(Case(CORPUS, name, "5xx", resp.text[:160]))
        elif 400 <= resp.status_code < 500:
            out.append(Case(CORPUS, name, "4xx", resp.json().get("error", "")[:160]))
        else:
            out.append(Case(CORPUS, name, "answer", "the plain report"))
    return out


def run(work: Path, data_dir: Path | None) -> list[Case]:
    """Build the pristine bundles and run every case in ``work`` (``data_dir`` unused)."""
    del data_dir
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pristine = _pristine(work)
    train_s = time.perf_counter() - t0
    want = {fam: _answers(p) for fam, p in pristine.items()}
    outside = work / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.json").write_text(json.dumps({"kind": "int", "ids": [1, 2, 3]}))
    cases: list[Case] = []
    slowest = 0.0
    for k, case in enumerate(corpus()):
        folder = work / "cases" / f"{k:03d}" / "bundle"
        shutil.copytree(pristine[case.family], folder)
        target = folder
        if case.run_dir:  # the run's bundle/ is a link to a bundle elsewhere
            run_dir = work / "cases" / f"{k:03d}" / "run"
            run_dir.mkdir()
            os.symlink(folder, run_dir / "bundle")
            target = run_dir
        try:
            case.apply(folder, outside)
            outcome, detail, secs = _classify(case, target, outside, want[case.family])
        except Exception as exc:  # a broken case is reported, never hidden
            outcome, detail, secs = "untyped_error", f"case setup: {type(exc).__name__}: {exc}", 0.0
        slowest = max(slowest, secs)
        cases.append(Case(CORPUS, f"{case.name} [{case.family}]", outcome, detail))
        shutil.rmtree(work / "cases" / f"{k:03d}", ignore_errors=True)
    cases.extend(_report_cases(work, pristine["mf"], outside))
    if cases:
        cases[0].figures.update(
            {"bundles_train_s": train_s, "bundles_slowest_case_s": slowest,
             "bundles_total_s": time.perf_counter() - t0}
        )  # fmt: skip
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="Folder for the cases (a temp dir).")
    ap.add_argument("-v", "--verbose", action="store_true", help="One line per case.")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="recfit-bundles-"))
    t0 = time.perf_counter()
    try:
        cases = run(work, None)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    for c in cases:
        if args.verbose or c.outcome not in ("typed_error", "answer", "4xx"):
            print(f"{c.outcome:14s} {c.name:60s} {c.detail[:120]}")
    counts = Counter(c.outcome for c in cases)
    print(f"\n{len(cases)} cases in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))  # fmt: skip
    figures = {k: v for c in cases for k, v in c.figures.items()}
    for k, v in sorted(figures.items()):
        print(f"{k}: {v:.3g}")


if __name__ == "__main__":
    main()
