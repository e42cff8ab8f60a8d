"""Every exception and warning that recfit raises.

All errors derive from :class:`RecfitError`. Messages follow one shape: what was
expected, what was received, and where (file, row, column or parameter).
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "CancelBatchException",
    "CancelEpochException",
    "CancelFitException",
    "ChecksumError",
    "ConfigError",
    "DataError",
    "DataWarning",
    "DownloadError",
    "RecfitError",
    "RecfitWarning",
    "UnknownIdError",
]


class RecfitError(Exception):
    """Base class of every error recfit raises on purpose."""


class DataError(RecfitError, ValueError):
    """Input data is not what was expected.

    Attributes:
        file: the file the data came from, when there was one.
        row: where the first offending value is. For files, the 1-based line number in
            the file (a header line counts as line 1); for in-memory data (arrays and
            DataFrames), the 0-based row position.
        column: the offending column name.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        where = [
            f"{k} {v!r}" if k != "row" else f"row {v}"
            for k, v in (("file", file), ("row", row), ("column", column))
            if v is not None
        ]
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class UnknownIdError(RecfitError, KeyError):
    """A raw user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(RecfitError, ValueError):
    """A parameter or configuration value is out of its allowed range or unknown."""


class DownloadError(RecfitError, OSError):
    """A dataset archive could not be downloaded or extracted."""


class ChecksumError(DownloadError):
    """A downloaded archive does not match its published checksum.

    Attributes:
        url: where the archive came from.
        expected: the published checksum.
        received: the checksum of what arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        expected: str | None = None,
        received: str | None = None,
    ) -> None:
        self.url = url
        self.expected = expected
        self.received = received
        super().__init__(message)


class BundleError(RecfitError):
    """A saved model bundle is damaged, incomplete or from an incompatible version."""


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
