"""Ready-made (unfitted) feature spaces for the user and item tables of MovieLens releases."""

from __future__ import annotations

from recfit.data.features.space import FeatureSpace
from recfit.data.features.specs import (
    Crossed,
    FeatureSpec,
    FloatDiscretized,
    IntCategorical,
    MultiCategorical,
    StringCategorical,
    Text,
)
from recfit.errors import ConfigError

_ML_USER = ("ml-100k", "ml-1m")


def movielens_user_space(
    name: str, *, zip_prefix: int = 1, age_bins: int = 10, crossing_dim: int = 64
) -> FeatureSpace:
    """An (unfitted) space for the user table of a MovieLens release.

    Columns read: ``age``, ``gender``, ``occupation``, ``zip``. Features: ``age``
    (ml-100k: years discretised into ``age_bins`` quantile bins; ml-1m: its age code as
    a category), ``gender``, ``occupation``, ``zip_prefix`` (the first ``zip_prefix``
    characters of the zip code: 1 for the region digit, 3 for the sectional centre)
    and ``gender_x_age`` (gender × age hashed into ``crossing_dim`` buckets).

    Raises:
        ConfigError: a release without user features.

    Example:
        >>> sorted(movielens_user_space("ml-1m").features)
        ['age', 'gender', 'gender_x_age', 'occupation', 'zip_prefix']
    """
    if name not in _ML_USER:
        raise ConfigError(
            f"expected a MovieLens release with user features {_ML_USER}, received {name!r}"
        )
    age: FeatureSpec = (
        FloatDiscretized(num_bins=age_bins) if name == "ml-100k" else IntCategorical()
    )
    return FeatureSpace(
        {
            "age": age,
            "gender": StringCategorical(),
            "occupation": StringCategorical(),
            "zip_prefix": StringCategorical(prefix=zip_prefix, column="zip"),
            "gender_x_age": Crossed(("gender", "age"), crossing_dim=crossing_dim),
        }
    )


def movielens_item_space(
    name: str, *, title_tokens: int = 10_000, title_length: int = 16, year_bins: int = 10
) -> FeatureSpace:
    """An (unfitted) space for the item table of a MovieLens release.

    Columns read: ``title`` (text, at most ``title_tokens`` tokens, padded to
    ``title_length``), ``year`` (release year in ``year_bins`` quantile bins; missing
    years get index 0) and ``genres`` (tuples of genre names, multi-valued).

    Raises:
        ConfigError: ``name`` is not a MovieLens release name (``"ml-..."``).

    Example:
        >>> movielens_item_space("ml-100k").features["genres"]
        MultiCategorical(max_tokens=None, max_length=None, separator=None, column=None)
    """
    if not isinstance(name, str) or not name.startswith("ml-"):
        raise ConfigError(f"expected a MovieLens release name such as 'ml-100k', received {name!r}")
    return FeatureSpace(
        {
            "title": Text(max_tokens=title_tokens, max_length=title_length),
            "year": FloatDiscretized(num_bins=year_bins),
            "genres": MultiCategorical(),
        }
    )
