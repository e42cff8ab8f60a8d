"""Tampered bundles: declared sizes, paths outside the bundle, and bad content all give
one typed BundleError naming the file and field, before anything large is allocated."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recfit.errors import BundleError
from recfit.recommender import Recommender

USERS, ITEMS = [1, 2, 3], [1, 2, 5]


def _size_key(name: str) -> Callable[[dict[str, Any], int], None]:
    def set_users(cfg: dict[str, Any], value: int) -> None:
        if name == "two_tower":
            cfg["query_tower"]["n_ids"] = value
        else:
            cfg["n_users"] = value

    return set_users


# ------------------------------------------------------------------ declared sizes
@pytest.mark.parametrize("value", [20_000_000, 10**12])
@pytest.mark.parametrize("name", ["dot", "svdpp", "nn", "classifier", "two_tower"])
def test_declared_model_sizes_are_checked_before_allocating(
    name: str, value: int, fresh: Any, kit: Any, no_huge_alloc: list[int]
) -> None:
    folder = fresh(name)
    kit.edit_model_config(folder, lambda cfg: _size_key(name)(cfg, value))
    with pytest.raises(
        BundleError, match=r"n_users=40 .*model\.safetensors.*received " + str(value)
    ):
        Recommender.load(folder)
    assert no_huge_alloc == []


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [("dot", "n_factors", 10**9), ("mf", "n_factors", 1), ("nn", "layers", [10**6])],
)
def test_declared_sizes_must_match_the_tensor_headers(
    name: str, key: str, value: Any, fresh: Any, kit: Any, no_huge_alloc: list[int]
) -> None:
    folder = fresh(name)
    kit.edit_model_config(folder, lambda cfg: cfg.update({key: value}))
    with pytest.raises(BundleError, match=r"model\.safetensors.*the model config's sizes"):
        Recommender.load(folder)
    assert no_huge_alloc == []


def test_huge_implicit_list_length_is_checked(
    fresh: Any, kit: Any, no_huge_alloc: list[int]
) -> None:
    folder = fresh("svdpp")
    kit.edit_model_config(folder, lambda cfg: cfg.update(n_implicit=10**15))
    with pytest.raises(BundleError, match="implicit_items"):
        Recommender.load(folder)
    assert no_huge_alloc == []


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h["seen_indptr"].update(shape=[20_000_000]), "seen_indptr"),
        (lambda h: h["popularity"].update(shape=[10**12]), "popularity"),
        (lambda h: h["popularity"].update(data_offsets=[0, 2**40]), "popularity"),
        (lambda h: h["popularity"].update(dtype="F128"), "popularity"),
    ],
    ids=["shape", "huge-shape", "offsets", "dtype"],
)
def test_array_headers_are_checked(
    edit: Callable[[dict[str, Any]], None], match: str, fresh: Any, kit: Any,
    no_huge_alloc: list[int],
) -> None:  # fmt: skip
    folder = fresh("mf")
    kit.edit_header(folder, "arrays.safetensors", edit)
    with pytest.raises(BundleError, match=match):
        Recommender.load(folder)
    assert no_huge_alloc == []


def test_unknown_arrays_are_refused(fresh: Any, kit: Any) -> None:
    folder = fresh("mf")
    kit.edit_tensors(folder, "arrays.safetensors", lambda t: t.update(extra=torch.ones(3)))
    with pytest.raises(BundleError, match="extra"):
        Recommender.load(folder)


def test_huge_safetensors_header_length(fresh: Any, kit: Any) -> None:
    folder = fresh("mf")
    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + blob[8:])
    kit.reseal(folder, "model.safetensors")
    with pytest.raises(BundleError, match="header"):
        Recommender.load(folder)


def test_sizes_in_recommender_json_must_match(fresh: Any, kit: Any) -> None:
    folder = fresh("mf")
    kit.edit_json(folder, "recommender.json", lambda m: m.update(n_users=20_000_000))
    with pytest.raises(BundleError, match="n_users"):
        Recommender.load(folder)


# ------------------------------------------------------------------ files outside
@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside every bundle that must never be opened."""
    p = tmp_path / "outside" / "secret.json"
    p.parent.mkdir()
    p.write_text(json.dumps({"kind": "int", "ids": [1, 2, 3]}))
    return p


def _sealed_entry(path: Path) -> dict[str, Any]:
    import hashlib

    blob = path.read_bytes()
    return {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}


def _outside(opened: list[str], secret: Path) -> list[str]:
    return [p for p in opened if p.startswith(str(secret.parent.resolve()))]


@pytest.mark.parametrize("how", ["dotdot", "absolute", "nested"])
def test_manifest_paths_outside_the_bundle_are_never_opened(
    how: str, fresh: Any, kit: Any, secret: Path, opened: list[str]
) -> None:
    folder = fresh("mf")
    name = {
        "dotdot": f"../../outside/{secret.name}",
        "absolute": str(secret),
        "nested": f"sub/../../../outside/{secret.name}",
    }[how]
    entry = _sealed_entry(secret)
    kit.edit_json(folder, "manifest.json", lambda m: m["files"].update({name: entry}))
    opened.clear()
    with pytest.raises(BundleError) as err:
        Recommender.load(folder)
    assert _outside(opened, secret) == []
    assert entry["sha256"] not in str(err.value)


@pytest.mark.parametrize("target", ["users.json", "manifest.json", "model.safetensors"])
def test_symlinked_bundle_files_are_refused(
    target: str, fresh: Any, kit: Any, secret: Path, opened: list[str]
) -> None:
    folder = fresh("mf")
    link_to = secret
    if target != "users.json":  # a link to a valid copy of the file, outside the bundle
        link_to = secret.parent / target
        link_to.write_bytes((folder / target).read_bytes())
    (folder / target).unlink()
    os.symlink(link_to, folder / target)
    if target == "users.json":
        kit.reseal(folder, target)
    opened.clear()
    with pytest.raises(BundleError, match="symbolic link"):
        Recommender.load(folder)
    assert _outside(opened, secret) == []


def test_run_bundle_folder_may_not_be_a_symlink(fresh: Any, tmp_path: Path) -> None:
    folder = fresh("mf")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(folder, run / "bundle")
    with pytest.raises(BundleError, match="symbolic link"):
        Recommender.load(run)
    assert Recommender.load(folder).n_users == 40  # the bundle itself is fine


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_special_files_are_refused_without_blocking(kind: str, fresh: Any, kit: Any) -> None:
    folder = fresh("mf")
    (folder / "items.json").unlink()
    if kind == "fifo":
        os.mkfifo(folder / "items.json")
    else:
        (folder / "items.json").mkdir()
    with pytest.raises(BundleError, match=r"items\.json"):
        Recommender.load(folder)


def test_a_large_file_is_refused_by_size_before_hashing(
    fresh: Any, kit: Any, opened: list[str]
) -> None:
    folder = fresh("mf")
    with (folder / "items.json").open("r+b") as f:  # a sparse 4 GB file
        f.truncate(4 << 30)
    opened.clear()
    t0 = time.process_time()
    with pytest.raises(BundleError, match=r"items\.json of .* bytes"):
        Recommender.load(folder)
    assert time.process_time() - t0 < 5  # nothing near 4 GB was hashed


# ------------------------------------------------------------------ content
def test_deeply_nested_manifest(fresh: Any) -> None:
    folder = fresh("mf")
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="nested"):
        Recommender.load(folder)


@pytest.mark.parametrize("depth", [70, 900])
def test_nesting_below_the_recursion_limit_is_refused_too(depth: int, fresh: Any, kit: Any) -> None:
    folder = fresh("mf")
    deep: Any = 1
    for _ in range(depth):
        deep = [deep]
    kit.edit_json(folder, "recommender.json", lambda m: m["config"].update(deep=deep))
    with pytest.raises(BundleError, match=r"recommender\.json"):
        Recommender.load(folder)


def _svdpp_lists(fn: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Any, Any], None]:
    def edit(folder: Any, kit: Any) -> None:
        kit.edit_tensors(folder, "model.safetensors", fn)

    return edit


def _set(key: str, k: int, value: int) -> Callable[[dict[str, torch.Tensor]], None]:
    def fn(t: dict[str, torch.Tensor]) -> None:
        t[key] = t[key].clone()
        t[key][k] = value

    return fn


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("implicit_items", 0, 10**6), "implicit_items"),
        (_set("implicit_items", 0, -3), "implicit_items"),
        (_set("implicit_indptr", 1, 10**6), "implicit_indptr"),
        (_set("implicit_indptr", 1, -5), "implicit_indptr"),
        (_set("implicit_indptr", -1, 3), "implicit_indptr"),
    ],
    ids=["item-too-large", "item-negative", "offset-too-large", "offset-negative", "short"],
)
def test_svdpp_lists_out_of_range(
    edit: Callable[[dict[str, torch.Tensor]], None], match: str, fresh: Any, kit: Any
) -> None:
    folder = fresh("svdpp")
    kit.edit_tensors(folder, "model.safetensors", edit)
    with pytest.raises(BundleError, match=match):
        Recommender.load(folder)


@pytest.mark.parametrize(
    ("file", "edit", "field"),
    [
        ("recommender.json", lambda m: m.update(rating_scale=[1]), "rating_scale"),
        ("recommender.json", lambda m: m.update(rating_scale=[5, 1]), "rating_scale"),
        ("recommender.json", lambda m: m.update(fold_in_reg=-1), "fold_in_reg"),
        ("recommender.json", lambda m: m.update(n_items="30"), "n_items"),
        ("users.json", lambda v: v.update(ids=[2**64, *v["ids"][1:]]), "int64"),
        ("users.json", lambda v: v.update(ids=[1.5, *v["ids"][1:]]), "ids"),
        ("users.json", lambda v: v.update(sentinel=0), "sentinel"),
        ("items.json", lambda v: v.update(kind="float"), "kind"),
        ("item_info.json", lambda i: i["columns"].update(title=[7] * 30), "title"),
        ("item_info.json", lambda i: i["columns"].update(title=[{"a": 1}] * 30), "title"),
        ("item_info.json", lambda i: i["columns"].update(title=["x"] * 3), "title"),
        ("item_info.json", lambda i: i["columns"].update(year=[1.5] * 30), "year"),
        ("item_info.json", lambda i: i["columns"].update(extra=[1] * 30), "extra"),
        ("manifest.json", lambda m: m.update(files=[]), "files"),
    ],
)
def test_bad_json_content_names_file_and_field(
    file: str, edit: Callable[[Any], None], field: str, fresh: Any, kit: Any
) -> None:
    folder = fresh("mf")
    kit.edit_json(folder, file, edit)
    with pytest.raises(BundleError, match=field) as err:
        Recommender.load(folder)
    assert file in str(err.value)


def test_nan_rating_scale_is_refused(fresh: Any, kit: Any) -> None:
    folder = fresh("mf")
    text = (folder / "recommender.json").read_text()
    meta = json.loads(text)
    meta["rating_scale"] = [float("nan"), float("nan")]
    (folder / "recommender.json").write_text(json.dumps(meta))  # json writes NaN
    kit.reseal(folder, "recommender.json")
    with pytest.raises(BundleError, match=r"finite numbers in .*recommender\.json"):
        Recommender.load(folder)


def test_non_finite_weights_are_refused(fresh: Any, kit: Any) -> None:
    folder = fresh("mf")

    def poison(t: dict[str, torch.Tensor]) -> None:
        t["item_bias"] = t["item_bias"].clone()
        t["item_bias"][0] = float("nan")

    kit.edit_tensors(folder, "model.safetensors", poison)
    with pytest.raises(BundleError, match="item_bias"):
        Recommender.load(folder)


def test_two_tower_feature_indices_out_of_range(fresh: Any, kit: Any) -> None:
    folder = fresh("two_tower")

    def poison(t: dict[str, torch.Tensor]) -> None:
        key = next(k for k, v in t.items() if ".f_" in k and v.dtype == torch.int64)
        t[key] = t[key].clone()
        t[key].view(-1)[0] = 10**9

    kit.edit_tensors(folder, "model.safetensors", poison)
    with pytest.raises(BundleError, match="f_"):
        Recommender.load(folder)


def test_model_family_must_match_the_manifest(
    fresh: Any, pristine: dict[str, Path], kit: Any
) -> None:
    folder = fresh("mf")
    (folder / "model.safetensors").write_bytes((pristine["dot"] / "model.safetensors").read_bytes())
    kit.reseal(folder, "model.safetensors")
    with pytest.raises(BundleError, match="model"):
        Recommender.load(folder)


@pytest.mark.parametrize("name", ["dot", "mf", "svdpp", "nn", "classifier", "two_tower"])
def test_every_family_still_round_trips(name: str, pristine: dict[str, Path]) -> None:
    rec = Recommender.load(pristine[name])
    again = Recommender.load(rec.save(pristine[name].parent / f"{name}-again"))
    a = rec.predict(USERS, ITEMS, clip=False)
    assert np.isfinite(np.asarray(a, dtype=float)).all()
    np.testing.assert_array_equal(
        np.asarray(a), np.asarray(again.predict(USERS, ITEMS, clip=False))
    )
    assert rec.recommend(USERS, n=5).to_dict() == again.recommend(USERS, n=5).to_dict()


def test_model_file_from_before_the_training_record_still_loads(fresh: Any, kit: Any) -> None:
    from recfit.models.base import RECORD_BUFFERS

    folder = fresh("mf")
    kit.edit_tensors(
        folder, "model.safetensors", lambda t: [t.pop(k, None) for k in RECORD_BUFFERS]
    )
    rec = Recommender.load(folder)
    assert np.isfinite(np.asarray(rec.predict(USERS, ITEMS, clip=False), dtype=float)).all()


# ------------------------------------------------------------------ saving
def test_save_refuses_what_load_would_refuse(pristine: dict[str, Path], tmp_path: Path) -> None:
    rec = Recommender.load(pristine["mf"])
    with torch.no_grad():
        rec.model.item_bias[0] = float("nan")
    with pytest.raises(BundleError, match="item_bias"):
        rec.save(tmp_path / "nan-weights")
    rec = Recommender.load(pristine["mf"])
    rec.fold_in_reg = float("inf")
    with pytest.raises(BundleError, match="finite"):
        rec.save(tmp_path / "inf-setting")
    assert not (tmp_path / "nan-weights").exists() and not (tmp_path / "inf-setting").exists()


def test_non_text_titles_are_saved_as_text(pristine: dict[str, Path], tmp_path: Path) -> None:
    rec = Recommender.load(pristine["mf"])
    assert rec.item_info is not None
    rec.item_info["title"] = list(range(len(rec.item_info)))
    back = Recommender.load(rec.save(tmp_path / "b"))
    assert back.title(1) == "0"


@pytest.mark.parametrize("titles", [[7, "b"], [{"a": 1}, None], ["only one"]])
def test_title_index_refuses_non_text_titles(titles: list[Any]) -> None:
    from recfit.data import Vocabulary
    from recfit.errors import DataError
    from recfit.recommender import TitleIndex

    with pytest.raises(DataError, match="title"):
        TitleIndex(Vocabulary([1, 2]), titles)


def test_header_declaring_too_many_tensors(fresh: Any, kit: Any) -> None:
    folder = fresh("mf")

    def many(h: dict[str, Any]) -> None:
        h.update(
            {
                f"t{k}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                for k in range(100_001)
            }
        )

    kit.edit_header(folder, "arrays.safetensors", many)
    with pytest.raises(BundleError, match="at most 100000 tensors"):
        Recommender.load(folder)
