"""numba's njit with an on-disk cache where one can be written: the one place that decides.

numba caches compiled kernels in NUMBA_CACHE_DIR when it is set, else beside their source, else
in the user's cache directory (~/.cache/numba). Where none is writable (a read-only install with a read-only home)
it refuses `cache=True` when the function is decorated, which would make the module fail to
import. Then the kernels compile in each process instead (seconds, in the backends' load() or
at a command's first call): set NUMBA_CACHE_DIR to a writable directory to keep them.
"""
from __future__ import annotations

import logging

from numba import njit

log = logging.getLogger(__name__)

uncached: list[str] = []  # qualified names of the kernels compiled without a cache


def compiled(**flags):
    """`@compiled(...)`: `@njit(cache=True, ...)`, or `@njit(...)` with one warning per process."""

    def wrap(func):
        try:
            return njit(cache=True, **flags)(func)
        except RuntimeError as error:  # "cannot cache function ...: no locator available ..."
            if not uncached:
                log.warning("numba cannot cache its compiled kernels (%s); compiling them in each process "
                            "(set NUMBA_CACHE_DIR to a writable directory to keep them)", error)
            uncached.append(f"{func.__module__}.{func.__qualname__}")
            return njit(**flags)(func)

    return wrap
