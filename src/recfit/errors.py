"""Every exception and warning that recfit raises.

All errors derive from :class:`RecfitError`. Messages follow one shape: what was
expected, what was received, and where (file, row, column or parameter).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BundleError",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "CheckpointError",
    "ChecksumError",
    "ConfigError",
    "DataError",
    "DataWarning",
    "DownloadError",
    "EvaluationOverlapError",
    "ItemNotFoundError",
    "ModelTooLargeError",
    "RecfitError",
    "RecfitWarning",
    "RunDirectoryError",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "UnknownIdError",
    "UnknownMetricError",
]


class RecfitError(Exception):
    """Base class of every error recfit raises on purpose."""


class DataError(RecfitError, ValueError):
    """Input data is not what was expected.

    Attributes:
        file: the file the data came from, when there was one.
        row: 0-based position of the first offending data row (header excluded), for
            files and in-memory data alike.
        column: the offending column name.
        line: 1-based line number in a text file (a header line counts as line 1), when
            the parser knows it; MovieLens parsers report lines.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        self.line = line
        where = [
            f"{k} {v!r}" if k in ("file", "column") else f"{k} {v}"
            for k, v in (("file", file), ("line", line), ("row", row), ("column", column))
            if v is not None
        ]
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class UnknownIdError(RecfitError, KeyError):
    """A raw user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ItemNotFoundError(UnknownIdError):
    """No item, or more than one, matches an id or title; ``matches`` lists close ones.

    Attributes:
        query: what was asked for.
        matches: the closest items, best first (possibly empty).
        ambiguous: ``True`` when several items match equally well (e.g. two films with
            the same title), ``False`` when none matches.
    """

    def __init__(
        self, message: str, *, query: str, matches: Sequence[Any], ambiguous: bool
    ) -> None:
        super().__init__(message)
        self.query = query
        self.matches = list(matches)
        self.ambiguous = ambiguous


class ConfigError(RecfitError, ValueError):
    """A parameter or configuration value is out of its allowed range or unknown."""


class ModelTooLargeError(ConfigError):
    """A model would need more memory than allowed (e.g. a dense item-item matrix for a
    large catalogue).

    Attributes:
        needed: bytes the model would need.
        limit: bytes allowed.
    """

    def __init__(self, message: str, *, needed: int, limit: int) -> None:
        self.needed = needed
        self.limit = limit
        super().__init__(message)


class UnknownMetricError(ConfigError):
    """A metric name that recfit does not know (so its direction is unknown)."""


class DownloadError(RecfitError, OSError):
    """A dataset archive could not be downloaded or extracted."""


class ChecksumError(DownloadError):
    """A downloaded archive does not match its published checksum.

    Attributes:
        url: where the archive came from.
        expected: the published checksum.
        received: the checksum of what arrived.
    """

    def __init__(self, message: str, *, url: str, expected: str, received: str) -> None:
        super().__init__(message)
        self.url, self.expected, self.received = url, expected, received


class BundleError(RecfitError):
    """A saved model bundle is damaged, incomplete or from an incompatible version."""


class CheckpointError(BundleError):
    """A training checkpoint is corrupted, inconsistent with its run, or unreadable."""


class RunDirectoryError(RecfitError):
    """A run directory cannot be used: it holds a finished run, or another process has it."""


class EvaluationOverlapError(RecfitError, ValueError):
    """Evaluation rows overlap the rows a model was trained on.

    Attributes:
        n_overlap: how many evaluation rows (user, item pairs) were training rows.
        n_rows: how many evaluation rows there were.
    """

    def __init__(self, message: str, *, n_overlap: int, n_rows: int) -> None:
        super().__init__(message)
        self.n_overlap, self.n_rows = int(n_overlap), int(n_rows)


class TrainingDivergedError(RecfitError, FloatingPointError):
    """The loss or a weight became NaN or infinite during training.

    Attributes:
        epoch: the 0-based epoch in which it happened.
        step: the 0-based optimiser step (counted over the whole fit).
        what: what was non-finite (``"loss"`` or a parameter name).
    """

    def __init__(self, message: str, *, epoch: int, step: int, what: str) -> None:
        super().__init__(message)
        self.epoch, self.step, self.what = int(epoch), int(step), what


class TrainingInterrupted(RecfitError):
    """Training stopped on a signal after saving a checkpoint.

    Attributes:
        checkpoint: the checkpoint written (``None`` when there was nowhere to write).
        signum: the signal (``signal.SIGINT`` for Ctrl-C).
        exit_code: ``128 + signum`` (130 for Ctrl-C), the shell convention.
    """

    def __init__(self, message: str, checkpoint: Path | None, signum: int) -> None:
        super().__init__(message)
        self.checkpoint, self.signum = checkpoint, signum
        self.exit_code = 128 + int(signum)


class CancelFitException(RecfitError):
    """Raised by a callback to stop training; ``after_fit`` still runs."""


class CancelEpochException(RecfitError):
    """Raised by a callback to skip the rest of the current epoch."""


class CancelBatchException(RecfitError):
    """Raised by a callback to skip the rest of the current batch."""


class RecfitWarning(UserWarning):
    """Base class of recfit's warnings."""


class DataWarning(RecfitWarning):
    """Data was usable but something about it deserves attention."""
