"""``recfit.__all__``: every name imports, is documented, and the README's names are there."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import recfit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(set(recfit.__all__) - {"__version__"}))
def test_every_public_name_imports_and_has_a_docstring(name: str) -> None:
    obj = getattr(importlib.import_module("recfit"), name)
    assert (getattr(obj, "__doc__", None) or "").strip(), f"recfit.{name} has no docstring"


def test_public_names_are_unique() -> None:
    assert len(set(recfit.__all__)) == len(recfit.__all__)
    assert isinstance(recfit.__version__, str) and recfit.__version__


def test_the_tasks_configs_and_the_registry_are_public() -> None:
    assert {
        "RatingConfig",
        "ClassificationConfig",
        "RetrievalConfig",
        "validate_config",
        "load_config",
        "family",
        "families",
        "SVDpp",
        "Callback",
        "save_model",
        "load_model",
    } <= set(recfit.__all__)
    assert recfit.family("mf").name == "mf"
    assert {f.task for f in recfit.families()} >= {"rating", "retrieval"}


def test_the_readme_imports_only_public_names() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    used: set[str] = set()
    for names in re.findall(r"^from recfit import (.+)$", readme, flags=re.M):
        used |= {n.strip() for n in names.split(",")}
    used |= set(re.findall(r"\brecfit\.([A-Z]\w*)\b", readme))
    assert used, "the README shows how to import recfit"
    assert used <= set(recfit.__all__), sorted(used - set(recfit.__all__))


def test_save_model_is_the_bundle_writer() -> None:
    from recfit.recommender.saving import load_model, save_model

    assert recfit.save_model is save_model and recfit.load_model is load_model
