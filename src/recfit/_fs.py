"""File-system helpers shared by every place recfit writes user-visible files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["current_umask", "default_dir_mode", "default_file_mode"]

_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it.

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    try:
        for line in Path("/proc/self/status").read_text("ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    with _LOCK:  # pragma: no cover - not Linux: set and restore at once
        old = os.umask(0o022)
        os.umask(old)
    return old


def default_file_mode() -> int:
    """The mode ``open`` gives a new file: ``0o666`` less the umask (a temporary file
    from ``mkstemp`` is ``0o600`` and keeps it through a rename)."""
    return 0o666 & ~current_umask()


def default_dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0o777`` less the umask (``mkdtemp``
    gives ``0o700``)."""
    return 0o777 & ~current_umask()
