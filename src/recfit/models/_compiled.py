"""``njit`` with numba's cache under the user's cache folder, for the kernel modules of
the ``timesvdpp`` and ``bmf`` families (imported only by them, on first use).

numba picks a function's cache folder when the function is decorated, from
``numba.config.CACHE_DIR``; :func:`cached_njit` sets it to
:func:`recfit._fs.numba_cache_dir` for that moment only and puts the setting back, so the
kernels are cached there and never beside the package (no cache at all when there is no
usable folder).
"""

# mypy: ignore-errors
from __future__ import annotations

import numba

from recfit._fs import numba_cache_dir

__all__ = ["cached_njit"]


def cached_njit(**options):
    """``numba.njit(cache=..., nogil=True, **options)`` cached under the user's cache folder."""
    folder = numba_cache_dir()

    def decorate(func):
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = "" if folder is None else str(folder)
        try:
            return numba.njit(cache=folder is not None, nogil=True, **options)(func)
        finally:
            numba.config.CACHE_DIR = saved

    return decorate
