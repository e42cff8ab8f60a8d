"""The schemas of a bundle's JSON files (``manifest.json``, ``recommender.json``,
``users.json`` / ``items.json``, ``item_info.json``): strict, frozen, no unknown keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from recfit.recommender.untrusted import INT64, Count, Int64, StrictDoc

__all__ = [
    "FileEntry",
    "ItemColumns",
    "ItemInfoDoc",
    "ManifestDoc",
    "MetaDoc",
    "VocabularyDoc",
]


class FileEntry(StrictDoc):
    """One file of the manifest."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Count


class ManifestDoc(StrictDoc):
    """``manifest.json``."""

    format: Literal["recfit.bundle"]
    format_version: Literal[1]
    recfit_version: str
    model: str
    created: str
    files: dict[str, FileEntry]


class MetaDoc(StrictDoc):
    """``recommender.json``."""

    model: str
    n_users: Count
    n_items: Count
    rating_scale: Annotated[list[float], Field(min_length=2, max_length=2)] | None
    config: dict[str, Any] | None
    feature_spaces: dict[str, dict[str, Any]]
    fold_in_reg: Annotated[float, Field(gt=0)]
    min_item_count: float

    @field_validator("rating_scale")
    @classmethod
    def _scale_increases(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not v[0] < v[1]:
            raise ValueError("[lo, hi] with lo < hi")
        return v


class VocabularyDoc(StrictDoc):
    """``users.json`` and ``items.json``."""

    name: str = "id"
    kind: Literal["int", "str"]
    unknown: Literal["error", "sentinel"] = "error"
    sentinel: Annotated[int, Field(ge=INT64[0], le=-1)] = -1
    ids: list[Int64] | list[str]

    @field_validator("ids")
    @classmethod
    def _kind_matches(cls, v: list[int] | list[str], info: ValidationInfo) -> list[int] | list[str]:
        kind = info.data.get("kind")
        if v and kind is not None and isinstance(v[0], str) != (kind == "str"):
            raise ValueError(f"ids of the vocabulary's kind {kind!r}")
        return v


Year = Annotated[float, Field(ge=-1e15, le=1e15)]


class ItemColumns(StrictDoc):
    """The columns of ``item_info.json`` (each present only when the bundle has it)."""

    title: list[str | None] | None = None
    year: list[Year | None] | None = None
    genres: list[list[str] | None] | None = None

    @field_validator("year")
    @classmethod
    def _whole_years(cls, v: list[float | None] | None) -> list[float | None] | None:
        for k, y in enumerate(v or ()):
            if y is not None and y != int(y):
                raise ValueError(f"whole years, received {y} at row {k}")
        return v


class ItemInfoDoc(StrictDoc):
    """``item_info.json``."""

    columns: ItemColumns
