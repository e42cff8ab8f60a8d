"""The :class:`FeatureSpace`: named feature specs, adapted on training data, transforming frames."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd

from recfit.data.features import specs as sp
from recfit.data.features.encoding import (
    _encode_sequences,
    _float_values,
    _hash_cross,
    _int_values,
    _learn_token_vocab,
    _learn_vocab,
    _lookup,
    _lookup_tokens,
    _sequence_tokens,
    _State,
    _str_values,
)
from recfit.errors import ConfigError, DataError

_F32_MAX = float(np.finfo(np.float32).max)

_FORMAT = "recfit.FeatureSpace"
_VERSION = 1


# ----------------------------------------------------------------------------- info


@dataclass(frozen=True)
class FeatureInfo:
    """What a model needs to know to embed one transformed feature.

    Attributes:
        name: the feature's name (its key in ``transform``'s output).
        kind: the spec's kind (``"text"``, ``"string_categorical"``, ...).
        dtype: ``"int64"`` for indices, ``"float32"`` for rescaled numbers.
        cardinality: number of distinct indices including padding and OOV (the size
            of an embedding table); ``None`` for a float feature.
        width: 1 for a scalar feature (shape ``(n,)``), the padded length for text
            and multi-valued features (shape ``(n, width)``).
        masked: whether ``name + "_mask"`` comes with it.
        padding_index: the index meaning "padding or missing" (0), or ``None``.
        num_oov_indices: how many indices out-of-vocabulary values share.
    """

    name: str
    kind: str
    dtype: Literal["int64", "float32"]
    cardinality: int | None
    width: int = 1
    masked: bool = False
    padding_index: int | None = 0
    num_oov_indices: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- space


class FeatureSpace:
    """Named feature specs, adapted on training data, transforming frames to arrays.

    Each feature reads the column of its own name (or the spec's ``column``), except
    :class:`Crossed`, which reads other features' outputs. Output keys follow the
    order of ``features``; text and multi-valued features add ``name + "_mask"``.

    Args:
        features: feature name → spec.

    Raises:
        ConfigError: a spec is not one of the kinds, a cross names a missing or
            unsuitable feature, or two output keys would collide.

    Example:
        >>> import pandas as pd
        >>> items = pd.DataFrame({"genres": [("Drama",), ("Comedy", "Drama"), ()]})
        >>> space = FeatureSpace({"genres": sp.MultiCategorical()}).adapt(items)
        >>> out = space.transform(items)
        >>> out["genres"].tolist(), out["genres_mask"].tolist()
        ([[2, 0], [3, 2], [0, 0]], [[True, False], [True, True], [False, False]])
        >>> FeatureSpace.from_json(space.to_json()).transform(items)["genres"].tolist()
        [[2, 0], [3, 2], [0, 0]]
    """

    def __init__(self, features: Mapping[str, sp.FeatureSpec]) -> None:
        if not isinstance(features, Mapping) or not features:
            raise ConfigError(
                f"expected a non-empty mapping of feature name to spec, received {features!r}"
            )
        specs: dict[str, sp.FeatureSpec] = {}
        for name, spec in features.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"expected feature names as non-empty str, received {name!r}")
            if not isinstance(spec, tuple(sp._SPECS.values())):
                raise ConfigError(
                    f"expected a feature spec ({', '.join(c.__name__ for c in sp._SPECS.values())}) "
                    f"for feature {name!r}, received {spec!r}"
                )
            specs[name] = spec
        keys: set[str] = set()
        for name, spec in specs.items():
            out = (
                [name, f"{name}_mask"]
                if isinstance(spec, (sp.Text, sp.MultiCategorical))
                else [name]
            )
            for key in out:
                if key in keys or (key != name and key in specs):
                    raise ConfigError(
                        f"expected distinct output keys, received {key!r} twice (feature {name!r})"
                    )
                keys.add(key)
            if isinstance(spec, sp.Crossed):
                for comp in spec.features:
                    if comp not in specs or not isinstance(specs[comp], sp._CROSSABLE):
                        got = type(specs[comp]).__name__ if comp in specs else "no such feature"
                        raise ConfigError(
                            f"expected crossed feature {name!r} to name FloatDiscretized, "
                            f"IntCategorical or StringCategorical features of this space, "
                            f"received {comp!r} ({got})"
                        )
        self._specs = specs
        self._state: dict[str, _State] | None = None

    # -- introspection
    @property
    def features(self) -> Mapping[str, sp.FeatureSpec]:
        """The specs by name (read-only)."""
        return MappingProxyType(self._specs)

    @property
    def fitted(self) -> bool:
        """Whether :meth:`adapt` (or loading a fitted space) has run."""
        return self._state is not None

    @property
    def columns(self) -> list[str]:
        """The input columns that :meth:`adapt` and :meth:`transform` read."""
        cols: list[str] = []
        for name, spec in self._specs.items():
            if not isinstance(spec, sp.Crossed):
                col = spec.column or name
                if col not in cols:
                    cols.append(col)
        return cols

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __repr__(self) -> str:
        kinds = ", ".join(f"{n}={s.kind}" for n, s in self._specs.items())
        return f"FeatureSpace({kinds}; fitted={self.fitted})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpace) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # -- checks
    def _frame(self, frame: object, where: str) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(
                f"expected a pandas DataFrame in {where}, received {type(frame).__name__}"
            )
        arrived = list(frame.columns)
        for name, spec in self._specs.items():
            if isinstance(spec, sp.Crossed):
                continue
            col = spec.column or name
            if col not in frame.columns:
                raise DataError(
                    f"expected column {col!r} for feature {name!r} in {where}, "
                    f"received columns {arrived}",
                    column=col,
                )
        return frame

    def _require_fitted(self, what: str) -> dict[str, _State]:
        if self._state is None:
            raise ConfigError(
                f"expected a fitted FeatureSpace before {what} (call adapt() on the training "
                f"split first), received an unfitted one"
            )
        return self._state

    # -- learning
    def adapt(self, frame: pd.DataFrame) -> FeatureSpace:
        """Learn vocabularies, bin edges, scales and widths from ``frame``.

        Pass the training split only: values first seen later map to OOV indices.
        Calling it again replaces what was learned.

        Returns:
            ``self``, fitted.

        Raises:
            DataError: ``frame`` is not a DataFrame, lacks a column, or holds values of
                the wrong type for a spec.

        Example:
            >>> import pandas as pd
            >>> s = FeatureSpace({"x": sp.FloatRescaled()}).adapt(pd.DataFrame({"x": [1.0, 3.0]}))
            >>> s.transform(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))["x"].tolist()
            [-1.0, 0.0, 1.0]
        """
        frame = self._frame(frame, "adapt()")
        state: dict[str, _State] = {}
        for name, spec in self._specs.items():
            if isinstance(spec, sp.Crossed):
                state[name] = _State()
                continue
            col = spec.column or name
            series = frame[col]
            if isinstance(spec, sp.FloatDiscretized):
                x = _float_values(series, col)
                x = x[~np.isnan(x)]
                if x.size:
                    qs = np.quantile(x, np.linspace(0.0, 1.0, spec.num_bins + 1)[1:-1])
                    edges = np.unique(qs[np.isfinite(qs)])
                else:
                    edges = np.empty(0, dtype=np.float64)
                state[name] = _State(edges=edges.astype(np.float64))
            elif isinstance(spec, sp.FloatRescaled):
                x = _float_values(series, col)
                x = x[np.isfinite(x)]
                with np.errstate(over="ignore", invalid="ignore"):
                    mean = float(x.mean()) if x.size else 0.0
                    std = float(x.std()) if x.size else 0.0
                ok = 0.0 < std < np.inf
                scale = spec.scale if spec.scale is not None else (1.0 / std if ok else 1.0)
                if not np.isfinite(mean):
                    mean = 0.0
                offset = spec.offset if spec.offset is not None else -mean * scale
                state[name] = _State(scale=float(scale), offset=float(offset))
            elif isinstance(spec, sp.IntCategorical):
                vals, _ = _int_values(series, col)
                state[name] = _State(vocabulary=_learn_vocab(vals, spec.max_tokens))
            elif isinstance(spec, sp.StringCategorical):
                svals, _ = _str_values(series, spec.prefix)
                state[name] = _State(vocabulary=_learn_vocab(svals, spec.max_tokens))
            else:
                rows, tokens = _sequence_tokens(spec, series)
                longest = int(np.bincount(rows).max()) if rows.size else 0
                width = spec.max_length if spec.max_length is not None else max(1, longest)
                state[name] = _State(
                    vocabulary=_learn_token_vocab(tokens, spec.max_tokens), width=width
                )
        self._state = state
        return self

    # -- applying
    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Arrays for every feature of ``frame``, row-aligned with it.

        Returns:
            name → ``int64`` indices of shape ``(n,)`` or ``(n, width)``, or ``float32``
            values of shape ``(n,)``; ``name + "_mask"`` (bool, ``(n, width)``) for text
            and multi-valued features.

        Raises:
            ConfigError: the space is not fitted.
            DataError: ``frame`` lacks a column or holds values of the wrong type, or an
                unknown value meets ``num_oov_indices=0``.
        """
        state = self._require_fitted("transform()")
        frame = self._frame(frame, "transform()")
        n = len(frame)
        out: dict[str, np.ndarray] = {}
        for name, spec in self._specs.items():
            st = state[name]
            if isinstance(spec, sp.Crossed):
                continue
            col = spec.column or name
            series = frame[col]
            if isinstance(spec, sp.FloatDiscretized):
                x = _float_values(series, col)
                ok = ~np.isnan(x)
                idx = np.zeros(n, dtype=np.int64)
                assert st.edges is not None
                idx[ok] = np.searchsorted(st.edges, x[ok], side="right") + 1
                out[name] = idx
            elif isinstance(spec, sp.FloatRescaled):
                x = _float_values(series, col)
                with np.errstate(over="ignore", invalid="ignore"):
                    y = np.where(np.isnan(x), 0.0, x * st.scale + st.offset)
                # a near-constant training column has a huge learned scale: keep the
                # values finite in float32 rather than overflow to inf
                out[name] = np.clip(y, -_F32_MAX, _F32_MAX).astype(np.float32)
            elif isinstance(spec, (sp.IntCategorical, sp.StringCategorical)):
                if isinstance(spec, sp.IntCategorical):
                    vals, missing = _int_values(series, col)
                else:
                    vals, missing = _str_values(series, spec.prefix)
                idx = np.zeros(n, dtype=np.int64)
                idx[~missing] = _lookup(
                    vals, st, spec.num_oov_indices, col, spec.num_oov_indices + 1
                )
                out[name] = idx
            else:
                rows, tokens = _sequence_tokens(spec, series)
                codes = _lookup_tokens(tokens, st)
                ids, mask = _encode_sequences(rows, codes, n, st.width)
                out[name] = ids
                out[f"{name}_mask"] = mask
        for name, spec in self._specs.items():
            if isinstance(spec, sp.Crossed):
                out[name] = _hash_cross([out[c] for c in spec.features], spec.crossing_dim)
        order: list[str] = []
        for name, spec in self._specs.items():
            order.append(name)
            if isinstance(spec, (sp.Text, sp.MultiCategorical)):
                order.append(f"{name}_mask")
        return {k: out[k] for k in order}

    def adapt_transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """:meth:`adapt` on ``frame``, then :meth:`transform` it."""
        return self.adapt(frame).transform(frame)

    # -- sizes
    def output_info(self) -> dict[str, FeatureInfo]:
        """Per feature: kind, dtype, cardinality (incl. padding and OOV), width, mask.

        Raises:
            ConfigError: the space is not fitted.
        """
        state = self._require_fitted("output_info()")
        info: dict[str, FeatureInfo] = {}
        for name, spec in self._specs.items():
            st = state[name]
            if isinstance(spec, sp.FloatDiscretized):
                assert st.edges is not None
                info[name] = FeatureInfo(name, spec.kind, "int64", len(st.edges) + 2)
            elif isinstance(spec, sp.FloatRescaled):
                info[name] = FeatureInfo(name, spec.kind, "float32", None, padding_index=None)
            elif isinstance(spec, sp.Crossed):
                info[name] = FeatureInfo(
                    name, spec.kind, "int64", spec.crossing_dim, padding_index=None
                )
            else:
                assert st.vocabulary is not None
                if isinstance(spec, (sp.IntCategorical, sp.StringCategorical)):
                    oov = spec.num_oov_indices
                    info[name] = FeatureInfo(
                        name, spec.kind, "int64", 1 + oov + len(st.vocabulary), num_oov_indices=oov
                    )
                else:
                    info[name] = FeatureInfo(
                        name,
                        spec.kind,
                        "int64",
                        2 + len(st.vocabulary),
                        width=st.width,
                        masked=True,
                        num_oov_indices=1,
                    )
        return info

    def cardinalities(self) -> dict[str, int]:
        """Embedding-table sizes of the index-valued features (rescaled floats left out).

        Raises:
            ConfigError: the space is not fitted.
        """
        return {
            k: v.cardinality for k, v in self.output_info().items() if v.cardinality is not None
        }

    def vocabulary(self, name: str) -> list[Any]:
        """The learned vocabulary of a categorical, text or multi-valued feature.

        Element ``j`` has index ``j + num_oov_indices + 1`` (``j + 2`` for sequences).

        Raises:
            ConfigError: unknown name, a kind without vocabulary, or not fitted.
        """
        state = self._require_fitted("vocabulary()")
        if name not in self._specs:
            raise ConfigError(f"expected a feature of {list(self._specs)}, received {name!r}")
        voc = state[name].vocabulary
        if voc is None:
            raise ConfigError(
                f"expected a feature with a vocabulary, received {name!r} "
                f"({self._specs[name].kind})"
            )
        return list(voc.tolist())

    # -- persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: format, version, specs, and the fitted state (or None)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "features": {n: sp._spec_to_dict(s) for n, s in self._specs.items()},
            "state": None
            if self._state is None
            else {n: self._state[n].to_dict(s) for n, s in self._specs.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpace:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: wrong format or version, an unknown kind or key, or a damaged state.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a FeatureSpace dict, received {type(d).__name__}")
        unknown = sorted(set(d) - {"format", "version", "features", "state"})
        if unknown:
            raise ConfigError(
                f"expected keys format, version, features, state, received unknown keys {unknown}"
            )
        if d.get("format") != _FORMAT:
            raise ConfigError(f"expected format {_FORMAT!r}, received {d.get('format')!r}")
        if d.get("version") != _VERSION:
            raise ConfigError(
                f"expected FeatureSpace format version {_VERSION}, received {d.get('version')!r}"
            )
        feats = d.get("features")
        if not isinstance(feats, Mapping):
            raise ConfigError(f"expected 'features' to be an object, received {feats!r}")
        space = cls({name: sp._spec_from_dict(name, spec) for name, spec in feats.items()})
        raw_state = d.get("state")
        if raw_state is not None:
            if not isinstance(raw_state, Mapping) or set(raw_state) != set(space._specs):
                raise ConfigError(
                    f"expected a state for each of {sorted(space._specs)}, received "
                    f"{sorted(raw_state) if isinstance(raw_state, Mapping) else raw_state!r}"
                )
            space._state = {
                n: _State.from_dict(n, s, raw_state[n]) for n, s in space._specs.items()
            }
        return space

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialise to strict JSON (floats written exactly, no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpace:
        """Inverse of :meth:`to_json`.

        Raises:
            ConfigError: invalid JSON or an invalid description.
        """
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"expected FeatureSpace JSON, received invalid JSON: {exc}") from exc
        return cls.from_dict(d)
