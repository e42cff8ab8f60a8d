"""File-system helpers shared by every place recfit reads or writes its own files.

* :func:`read_plain_file` reads a file only when it is a plain file directly inside its
  folder (no symbolic link, pipe, device or path), which is how bundles, run directories
  and served reports are read: their files are untrusted.
* :func:`atomic_write` and :func:`publish_dir` replace a file or a folder as one unit.
* New files and folders get the modes ``open`` and ``mkdir`` would give them.
* :func:`numba_cache_dir` is where the compiled kernels are cached (below every layer
  that compiles some).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import stat
import sys
import tempfile
import threading
import warnings
from functools import cache
from pathlib import Path

from platformdirs import user_cache_dir

from recfit.errors import BundleError, RecfitError, RecfitWarning

__all__ = [
    "atomic_write",
    "check_name",
    "current_umask",
    "default_dir_mode",
    "default_file_mode",
    "fsync_dir",
    "numba_cache_dir",
    "open_plain",
    "publish_dir",
    "read_plain_file",
]

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


# ------------------------------------------------------------------ plain files
def check_name(name: object, folder: Path, error: type[RecfitError] = BundleError) -> str:
    """``name`` as one path component (no separator, not ``.`` or ``..``)."""
    seps = {os.sep, os.altsep or os.sep, "/", "\0"}
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(c in name for c in seps)
        or Path(name).is_absolute()
    ):
        raise error(
            f"expected a plain file name inside {str(folder)!r}, received {name!r} "
            "(paths, '..' and absolute names are refused)"
        )
    return name


def _kind_of(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def open_plain(
    folder: Path, name: str, error: type[RecfitError] = BundleError
) -> tuple[int, os.stat_result]:
    """An open descriptor of ``folder/name`` and its status, when that is a plain file.

    The file is opened without following a symbolic link and without blocking (a named
    pipe is refused, not waited on); its type is checked on the open descriptor.

    Raises:
        error: ``name`` is not one path component, or the file is missing, unreadable or
            not a plain file.
    """
    check_name(name, folder, error)
    p = folder / name
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if not nofollow and p.is_symlink():  # pragma: no cover - platforms without O_NOFOLLOW
        raise error(
            f"expected {name} as a plain file inside {str(folder)!r}, received a symbolic link"
        )
    flags = (
        os.O_RDONLY
        | nofollow
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise error(f"expected {name} in {str(folder)!r}, received a missing file") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and p.is_symlink():
            raise error(
                f"expected {name} as a plain file inside {str(folder)!r}, received a symbolic link"
            ) from None
        raise error(
            f"expected a readable file {name} in {str(folder)!r}, received: {exc.strerror}"
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(
            f"expected {name} as a plain file inside {str(folder)!r}, received a "
            f"{_kind_of(st.st_mode)}"
        )
    return fd, st


def read_plain_file(
    folder: str | Path,
    name: str,
    *,
    max_bytes: int | None = None,
    expect_bytes: int | None = None,
    error: type[RecfitError] = BundleError,
) -> bytes:
    """The bytes of ``folder/name``, which must be a plain file directly inside ``folder``.

    ``name`` must be one path component; a symbolic link, a folder, a named pipe or a
    device is refused before anything is read, and so is a file larger than
    ``max_bytes`` or of another size than ``expect_bytes``.

    Raises:
        error: (``BundleError`` unless given) any of the above, a missing file, or a
            read error.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "a.txt").write_text("hi")
        ...     os.symlink("/etc/hostname", Path(d) / "b.txt")
        ...     print(read_plain_file(d, "a.txt"))
        ...     try:
        ...         read_plain_file(d, "b.txt")
        ...     except BundleError as e:
        ...         print(str(e).endswith("received a symbolic link"))
        b'hi'
        True
    """
    folder = Path(folder)
    fd, st = open_plain(folder, name, error)
    with os.fdopen(fd, "rb") as f:
        size = st.st_size
        if expect_bytes is not None and size != expect_bytes:
            raise error(
                f"expected {name} of {expect_bytes} bytes, received {size} bytes "
                f"(truncated or altered: {str(folder / name)!r})"
            )
        if max_bytes is not None and size > max_bytes:
            raise error(
                f"expected {name} of at most {max_bytes} bytes, received {size} bytes "
                f"({str(folder / name)!r})"
            )
        try:
            data = f.read(size + 1)  # one byte more shows a file that grew meanwhile
        except OSError as exc:
            raise error(
                f"expected a readable file {str(folder / name)!r}, received: {exc.strerror}"
            ) from None
    if len(data) != size:
        raise error(
            f"expected {name} of {size} bytes, received {len(data)} (changed while read: "
            f"{str(folder / name)!r})"
        )
    return data


# ------------------------------------------------------------------ atomic writes
def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The file gets the mode ``open`` would give a new file (``0o666`` less the umask),
    not the private ``0o600`` of a temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (renames into it) to disk."""
    if sys.platform.startswith("win"):  # pragma: no cover - no directory fds
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when unavailable."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - platform
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - old libc
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return int(rc) == 0


def publish_dir(stage: Path, dest: Path) -> None:
    """Put the finished folder ``stage`` (a sibling of ``dest``) at ``dest`` as one unit.

    ``dest`` is swapped with ``stage`` at once where Linux allows (``renameat2``), so a
    reader sees the old or the new folder, never a mix; the old contents are deleted.
    """
    fsync_dir(stage)
    if not dest.exists():
        os.rename(stage, dest)
    elif _exchange(stage, dest):
        shutil.rmtree(stage, ignore_errors=True)  # stage now holds the old contents
    else:  # pragma: no cover - non-Linux fallback: two renames
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        os.rmdir(old)
        os.rename(dest, old)
        os.rename(stage, dest)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dest.parent)


def _cache_root() -> Path:
    """Where the compiled kernels should be cached (see :func:`numba_cache_dir`)."""
    if os.environ.get("RECFIT_CACHE_DIR"):
        return Path(os.environ["RECFIT_CACHE_DIR"]).expanduser() / "numba"
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]).expanduser()
    return Path(user_cache_dir("recfit")) / "numba"


@cache
def numba_cache_dir() -> Path | None:
    """The folder numba caches the compiled kernels in, or ``None`` (no caching).

    ``$RECFIT_CACHE_DIR/numba`` when set, else numba's own ``NUMBA_CACHE_DIR`` when the
    user set it, else ``platformdirs.user_cache_dir("recfit")/numba``. A folder that cannot
    be created or written gives one :class:`~recfit.errors.RecfitWarning` and ``None``:
    the kernels are then compiled in every process, and nothing is written anywhere.
    """
    path = _cache_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        warnings.warn(
            f"expected a writable cache folder for the compiled kernels, received {str(path)!r} "
            f"({exc.strerror or exc}); compiling without a cache (set RECFIT_CACHE_DIR)",
            RecfitWarning,
            stacklevel=2,
        )
        return None
    return path
