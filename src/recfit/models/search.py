"""Search spaces: the hyper-parameters of a family that tuning may vary, and their ranges.

A family declares, in its registry entry (:attr:`recfit.models.registry.Family.search`),
which config fields are worth tuning and over what range; ``recfit tune`` and
``model="auto"`` sample from these ranges only (never from test rows).

Example:
    >>> p = Param(1e-4, 1e-1, log=True)
    >>> p.contains(1e-3), p.contains(1.0)
    (True, False)
    >>> Param(choices=("mse", "huber")).contains("mse")
    True
    >>> Param(8, 256, integer=True, log=True).kind
    'int'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from recfit.errors import ConfigError

__all__ = ["SGD_SEARCH", "Param", "SearchSpace"]


@dataclass(frozen=True)
class Param:
    """One tunable setting: a numeric range ``[low, high]`` (``log``: sampled on a log
    scale; ``integer``: whole numbers) or a list of ``choices``.

    Args:
        low: the smallest value (numeric ranges).
        high: the largest value (numeric ranges).
        log: sample ``log(value)`` uniformly (``low`` must be > 0).
        integer: whole numbers only.
        choices: the values to choose among (instead of a range).

    Raises:
        ConfigError: a range that is empty, a log range that is not positive, or both
            a range and choices (or neither).
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: Sequence[Any] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not len(self.choices):
                raise ConfigError(
                    f"expected either non-empty choices or a range, received choices "
                    f"{self.choices!r} with low {self.low!r} and high {self.high!r}"
                )
            object.__setattr__(self, "choices", tuple(self.choices))
            return
        if self.low is None or self.high is None or not float(self.low) <= float(self.high):
            raise ConfigError(
                f"expected a range with low <= high, received low {self.low!r} and "
                f"high {self.high!r}"
            )
        if self.log and float(self.low) <= 0:
            raise ConfigError(f"expected low > 0 for a log range, received {self.low!r}")

    @property
    def kind(self) -> Literal["float", "int", "choice"]:
        """``"choice"``, ``"int"`` or ``"float"``."""
        if self.choices is not None:
            return "choice"
        return "int" if self.integer else "float"

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take."""
        if self.choices is not None:
            return value in self.choices
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        if self.integer and v != int(v):
            return False
        return float(self.low or 0.0) <= v <= float(self.high or 0.0)


SearchSpace = dict[str, Param]
"""Config field name → its :class:`Param`."""

SGD_SEARCH: SearchSpace = {
    "epochs": Param(2, 40, integer=True, log=True),
    "lr": Param(1e-3, 0.3, log=True),
    "reg": Param(1e-3, 1.0, log=True),
}
"""The trainer fields worth tuning for a family trained by the Learner (or ALS, which
reads ``epochs`` and ``reg``); a family adds its own fields to these. The ranges hold
every default of the rating task (AdamW's and row-wise Adagrad's, ALS's ridges). ``wd``
is left at the config's value: ``reg`` does its work, and searching both cost a 600 s
search on ml-1m most of its trials (decay hurts row-wise Adagrad)."""
