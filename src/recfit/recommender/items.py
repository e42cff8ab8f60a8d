"""Item information of a Recommender: titles, years and genres, one row per item index,
checked when given, written to and read back from a bundle's ``item_info.json``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from recfit.errors import BundleError, DataError
from recfit.recommender.bundle import BundleFiles
from recfit.recommender.schemas import ItemInfoDoc
from recfit.recommender.untrusted import validate_doc

__all__ = ["INFO_COLUMNS", "cell", "info_frame", "item_info_doc", "read_item_info"]

INFO_COLUMNS = ("title", "year", "genres")
"""The item columns a Recommender keeps (any others are dropped)."""


def info_frame(item_info: pd.DataFrame | None, n_items: int) -> pd.DataFrame | None:
    """The known columns of ``item_info`` (one row per item index), or ``None``.

    Raises:
        DataError: not one row per item.

    Example:
        >>> info_frame(pd.DataFrame({"title": ["A", "B"], "x": [1, 2]}), 2).columns.tolist()
        ['title']
    """
    if item_info is None:
        return None
    cols = [c for c in INFO_COLUMNS if c in item_info.columns]
    if len(item_info) != n_items:
        raise DataError(
            f"expected one item_info row per item ({n_items}), received {len(item_info)}",
            column="item_info",
        )
    return item_info[cols].reset_index(drop=True) if cols else None


def cell(v: Any) -> Any:
    """One value of the item table as JSON: sequences as lists of text, missing as ``None``.

    Example:
        >>> cell(("Drama", "War")), cell(float("nan")), cell(np.int64(3))
        (['Drama', 'War'], None, 3)
    """
    if isinstance(v, tuple | list | np.ndarray):
        return [str(x) for x in v]
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def item_info_doc(frame: pd.DataFrame | None) -> dict[str, Any]:
    """The ``item_info.json`` document of a table (titles as text: the loader accepts
    nothing else)."""
    info: dict[str, Any] = {}
    if frame is not None:
        info = {c: [cell(v) for v in frame[c].tolist()] for c in frame.columns}
        if "title" in info:
            info["title"] = [None if t is None else str(t) for t in info["title"]]
    return {"columns": info}


def read_item_info(files: BundleFiles, n_items: int) -> pd.DataFrame | None:
    """The item titles, years and genres of ``item_info.json`` (one row per item index),
    or ``None`` when the bundle has none.

    Raises:
        BundleError: a column of the wrong type or length.
    """
    where = files.where("item_info.json")
    cols = validate_doc(ItemInfoDoc, files.json("item_info.json"), where).columns
    data: dict[str, Any] = {}
    for key in INFO_COLUMNS:
        values = getattr(cols, key)
        if values is None:
            continue
        if len(values) != n_items:
            raise BundleError(
                f"expected field 'columns.{key}' of {where} with one value per item "
                f"({n_items}), received {len(values)}"
            )
        if key == "year":
            data[key] = pd.array([None if y is None else int(y) for y in values], dtype="Int64")
        elif key == "genres":
            data[key] = [() if g is None else tuple(g) for g in values]
        else:
            data[key] = list(values)
    return pd.DataFrame(data) if data else None
