"""Feature specs: the frozen, JSON-serialisable dataclasses a :class:`FeatureSpace` maps names to."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from recfit.errors import ConfigError

_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")


def _check_int(
    kind: str, param: str, value: object, minimum: int, *, optional: bool = False
) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        want = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise ConfigError(f"expected {param} {want} in {kind}, received {value!r}")


def _check_column(kind: str, column: object) -> None:
    if column is not None and (not isinstance(column, str) or not column):
        raise ConfigError(f"expected column a non-empty str or None in {kind}, received {column!r}")


@dataclass(frozen=True)
class FloatDiscretized:
    """A number cut into ``num_bins`` bins at quantiles of the training data.

    Output: ``int64`` bin index, ``0`` for a missing value, ``1 .. n_bins`` otherwise
    (``n_bins <= num_bins``: repeated quantiles are merged). A value equal to an
    edge goes to the bin above it; values beyond the training range go to the first
    or last bin.

    Args:
        num_bins: how many bins to aim for (>= 1).
        column: the source column; ``None`` means the feature's own name.
    """

    num_bins: int = 10
    column: str | None = None
    kind: ClassVar[str] = "float_discretized"

    def __post_init__(self) -> None:
        _check_int("FloatDiscretized", "num_bins", self.num_bins, 1)
        _check_column("FloatDiscretized", self.column)


@dataclass(frozen=True)
class FloatRescaled:
    """A number mapped to ``value * scale + offset`` as ``float32``.

    Parameters left ``None`` are learned by ``adapt``: ``scale = 1 / std`` (1 when the
    standard deviation is 0) and ``offset = -mean * scale``, so that learned values
    come out standardised. Missing values become ``0.0``.

    Args:
        scale: the multiplier, or ``None`` to learn it.
        offset: the added constant, or ``None`` to learn it.
        column: the source column; ``None`` means the feature's own name.
    """

    scale: float | None = None
    offset: float | None = None
    column: str | None = None
    kind: ClassVar[str] = "float_rescaled"

    def __post_init__(self) -> None:
        for param in ("scale", "offset"):
            v = getattr(self, param)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                raise ConfigError(f"expected {param} a number or None, received {v!r}")
            if not np.isfinite(float(v)):
                raise ConfigError(f"expected a finite {param}, received {v!r}")
            object.__setattr__(self, param, float(v))
        _check_column("FloatRescaled", self.column)


@dataclass(frozen=True)
class IntCategorical:
    """Integer codes looked up in a vocabulary learned by frequency.

    Output: ``int64``: ``0`` missing, ``1 .. num_oov_indices`` unknown values, then the
    vocabulary (most frequent first, ties by value). With ``num_oov_indices=0`` an
    unknown value raises :class:`~recfit.errors.DataError`.

    Args:
        max_tokens: keep at most this many learned values (``None``: all).
        num_oov_indices: indices shared by values not in the vocabulary (>= 0).
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    num_oov_indices: int = 1
    column: str | None = None
    kind: ClassVar[str] = "int_categorical"

    def __post_init__(self) -> None:
        _check_int("IntCategorical", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("IntCategorical", "num_oov_indices", self.num_oov_indices, 0)
        _check_column("IntCategorical", self.column)


@dataclass(frozen=True)
class StringCategorical:
    """Strings looked up in a vocabulary learned by frequency.

    Same index layout as :class:`IntCategorical`. Non-string values are converted with
    ``str``. With ``prefix`` only the first ``prefix`` characters count (a zip code's
    region, for example).

    Args:
        max_tokens: keep at most this many learned values (``None``: all).
        num_oov_indices: indices shared by values not in the vocabulary (>= 0).
        prefix: use only the first ``prefix`` characters of each value.
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    num_oov_indices: int = 1
    prefix: int | None = None
    column: str | None = None
    kind: ClassVar[str] = "string_categorical"

    def __post_init__(self) -> None:
        _check_int("StringCategorical", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("StringCategorical", "num_oov_indices", self.num_oov_indices, 0)
        _check_int("StringCategorical", "prefix", self.prefix, 1, optional=True)
        _check_column("StringCategorical", self.column)


@dataclass(frozen=True)
class Crossed:
    """The cross of other single-valued features of the space, hashed into buckets.

    The components' *output indices* (after discretisation or lookup) are combined with
    a fixed 64-bit mixing function (splitmix64; the same on every machine and run, unlike
    Python's salted ``hash``) and reduced modulo ``crossing_dim``. Output: ``int64`` in
    ``0 .. crossing_dim - 1``.

    Args:
        features: names of at least two features of the same space, each a
            :class:`FloatDiscretized`, :class:`IntCategorical` or :class:`StringCategorical`.
        crossing_dim: number of hash buckets (>= 1).
    """

    features: tuple[str, ...]
    crossing_dim: int
    kind: ClassVar[str] = "crossed"

    def __post_init__(self) -> None:
        feats = self.features
        if isinstance(feats, str) or not isinstance(feats, (tuple, list)):
            raise ConfigError(f"expected features a tuple of feature names, received {feats!r}")
        feats = tuple(feats)
        if len(feats) < 2 or len(set(feats)) != len(feats):
            raise ConfigError(
                f"expected at least two distinct feature names in Crossed, received {feats!r}"
            )
        if not all(isinstance(f, str) and f for f in feats):
            raise ConfigError(f"expected feature names as str in Crossed, received {feats!r}")
        object.__setattr__(self, "features", feats)
        _check_int("Crossed", "crossing_dim", self.crossing_dim, 1)


@dataclass(frozen=True)
class Text:
    """Free text: standardised, split on whitespace, looked up in a token vocabulary.

    Output: ``int64`` ``(n, width)`` token ids, ``0`` padding, ``1`` unknown token,
    ``2 ..`` the vocabulary (most frequent first, ties by token), plus a boolean mask.

    Args:
        max_tokens: keep at most this many learned tokens (``None``: all).
        max_length: padded width; ``None`` learns the longest training row.
        standardize: ``"lower_and_strip_punctuation"`` (lowercase, then delete the
            characters of ``string.punctuation``), ``"lower"``, ``"strip_punctuation"``,
            or ``None`` (as is).
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    max_length: int | None = None
    standardize: str | None = "lower_and_strip_punctuation"
    column: str | None = None
    kind: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        _check_int("Text", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("Text", "max_length", self.max_length, 1, optional=True)
        if self.standardize is not None and self.standardize not in _STANDARDIZE:
            raise ConfigError(
                f"expected standardize one of {[*_STANDARDIZE, None]}, "
                f"received {self.standardize!r}"
            )
        _check_column("Text", self.column)


@dataclass(frozen=True)
class MultiCategorical:
    """A column whose cells hold several values (a tuple or list of strings, e.g. genres).

    Output like :class:`Text`: padded ``int64`` ids (``0`` padding, ``1`` unknown,
    ``2 ..`` vocabulary) plus a boolean mask. Values are converted with ``str``; a
    missing cell or missing element counts as no value. A plain string cell is one
    value, or is split on ``separator`` when that is given; empty strings count as no value.

    Args:
        max_tokens: keep at most this many learned values (``None``: all).
        max_length: padded width; ``None`` learns the longest training row.
        separator: split string cells on it (``"|"`` for raw MovieLens genres).
        column: the source column; ``None`` means the feature's own name.
    """

    max_tokens: int | None = None
    max_length: int | None = None
    separator: str | None = None
    column: str | None = None
    kind: ClassVar[str] = "multi_categorical"

    def __post_init__(self) -> None:
        _check_int("MultiCategorical", "max_tokens", self.max_tokens, 1, optional=True)
        _check_int("MultiCategorical", "max_length", self.max_length, 1, optional=True)
        if self.separator is not None and (
            not isinstance(self.separator, str) or not self.separator
        ):
            raise ConfigError(
                f"expected separator a non-empty str or None, received {self.separator!r}"
            )
        _check_column("MultiCategorical", self.column)


FeatureSpec = (
    FloatDiscretized
    | FloatRescaled
    | IntCategorical
    | StringCategorical
    | Crossed
    | Text
    | MultiCategorical
)
_SPECS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        FloatDiscretized,
        FloatRescaled,
        IntCategorical,
        StringCategorical,
        Crossed,
        Text,
        MultiCategorical,
    )
}
_CROSSABLE = (FloatDiscretized, IntCategorical, StringCategorical)


def _spec_to_dict(spec: FeatureSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": spec.kind}
    for f in dataclasses.fields(spec):
        v = getattr(spec, f.name)
        d[f.name] = list(v) if isinstance(v, tuple) else v
    return d


def _spec_from_dict(name: str, d: object) -> FeatureSpec:
    if not isinstance(d, Mapping):
        raise ConfigError(f"expected a spec object for feature {name!r}, received {d!r}")
    kind = d.get("kind")
    if kind not in _SPECS:
        raise ConfigError(
            f"expected kind one of {sorted(_SPECS)} for feature {name!r}, received {kind!r}"
        )
    cls = _SPECS[kind]
    allowed = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k != "kind"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"expected keys among {sorted(allowed)} for a {kind} spec, received unknown "
            f"keys {unknown} (feature {name!r})"
        )
    try:
        spec: FeatureSpec = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"expected a complete {kind} spec for feature {name!r}: {exc}") from exc
    return spec
