"""A default (unfitted) feature space inferred from a feature table's column dtypes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from recfit.data.features import specs as sp
from recfit.data.features.space import FeatureSpace
from recfit.errors import ConfigError, DataError


def _is_listlike(v: object) -> bool:
    return isinstance(v, (list, tuple, set, frozenset, np.ndarray))


def space_for_table(
    df: pd.DataFrame,
    *,
    exclude: Sequence[str] = (),
    num_bins: int = 10,
    numeric: Literal["discretized", "rescaled"] = "discretized",
    max_int_categories: int = 20,
    text_min_tokens: float = 3.0,
) -> FeatureSpace:
    """Infer a default (unfitted) space for a feature table, one feature per column.

    Rules, in order, for each column not in ``exclude``:

    1. boolean → :class:`IntCategorical`;
    2. integer with at most ``max_int_categories`` distinct values → :class:`IntCategorical`
       (codes such as ml-1m's age or occupation);
    3. other integer or float → :class:`FloatDiscretized` (``num_bins``), or
       :class:`FloatRescaled` with ``numeric="rescaled"``;
    4. pandas ``category`` → :class:`StringCategorical`;
    5. string/object whose every non-missing cell is a list, tuple, set or array →
       :class:`MultiCategorical`;
    6. other string/object: :class:`Text` when the cells hold on average at least
       ``text_min_tokens`` whitespace-separated words, else :class:`StringCategorical`.

    An id column is not special: leave it out with ``exclude``. No crosses are inferred.

    Raises:
        DataError: a column mixes list-like and scalar cells, or has an unsupported dtype
            (dates: convert them to numbers first).
        ConfigError: a bad parameter or an ``exclude`` name that is not a column.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"age": [21, 35, 52], "city": ["Oslo", "Rome", "Oslo"],
        ...                   "tags": [("a",), ("a", "b"), ()], "score": [0.1, 0.7, 0.4]})
        >>> {k: v.kind for k, v in space_for_table(t).features.items()}
        {'age': 'int_categorical', 'city': 'string_categorical', 'tags': 'multi_categorical', 'score': 'float_discretized'}
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, received {type(df).__name__}")
    if numeric not in ("discretized", "rescaled"):
        raise ConfigError(f"expected numeric 'discretized' or 'rescaled', received {numeric!r}")
    sp._check_int("space_for_table", "num_bins", num_bins, 1)
    sp._check_int("space_for_table", "max_int_categories", max_int_categories, 0)
    missing = [c for c in exclude if c not in df.columns]
    if missing:
        raise ConfigError(
            f"expected exclude to name columns of {list(df.columns)}, received {missing}"
        )
    specs: dict[str, sp.FeatureSpec] = {}
    for col in df.columns:
        if col in exclude:
            continue
        if not isinstance(col, str):
            raise DataError(f"expected str column names, received {col!r}", column=str(col))
        s = df[col]
        dtype = s.dtype
        num: sp.FeatureSpec = (
            sp.FloatDiscretized(num_bins=num_bins)
            if numeric == "discretized"
            else sp.FloatRescaled()
        )
        if pd.api.types.is_bool_dtype(dtype):
            specs[col] = sp.IntCategorical()
        elif pd.api.types.is_integer_dtype(dtype):
            few = s.nunique(dropna=True) <= max_int_categories
            specs[col] = sp.IntCategorical() if few else num
        elif pd.api.types.is_float_dtype(dtype):
            specs[col] = num
        elif isinstance(dtype, pd.CategoricalDtype):
            specs[col] = sp.StringCategorical()
        elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            present = s.dropna()
            listlike = np.fromiter(
                (_is_listlike(v) for v in present), dtype=bool, count=len(present)
            )
            if listlike.size and listlike.all():
                specs[col] = sp.MultiCategorical()
            elif listlike.any():
                positions = np.flatnonzero(s.notna().to_numpy())
                raise DataError(
                    "expected all list-like or all scalar cells, received both",
                    row=int(positions[np.flatnonzero(~listlike)[0]]),
                    column=col,
                )
            else:
                words = present.astype(str).str.count(r"\S+")
                mean_words = float(words.mean()) if len(words) else 0.0
                specs[col] = sp.Text() if mean_words >= text_min_tokens else sp.StringCategorical()
        else:
            raise DataError(
                f"expected a numeric, boolean, string, category or list-valued column, "
                f"received dtype {dtype}",
                column=col,
            )
    if not specs:
        raise ConfigError(f"expected at least one usable column, received {list(df.columns)}")
    return FeatureSpace(specs)
