"""The one base class of the mistakes a user can make with mfhq.

A CLI catches `MfhqError` (and nothing wider): a user's mistake (a bad flag, a damaged file, a
missing model) is one line naming the problem, while a bug stays a traceback. Every user-facing
error of the package derives from it; some also derive from a builtin (ValueError, OSError) so
that library callers that caught those keep working.
"""
from __future__ import annotations

import errno

# How native libraries say memory ran out: onnxruntime "Failed to allocate memory" or a C++
# `std::bad_alloc` inside a RuntimeException, numpy and Python a MemoryError, the OS ENOMEM.
_OUT_OF_MEMORY_MARKS = ("std::bad_alloc", "bad_alloc", "failed to allocate", "out of memory",
                        "cannot allocate memory", "memoryerror")


class MfhqError(Exception):
    """A problem with the user's input, flags, files or environment; the message says what to do."""


def is_out_of_memory(exc: BaseException) -> bool:
    """The exception, or one it was raised from, says memory ran out (the worker's message for it,
    and the model loaders that must not take it for a damaged file, ask here)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
            return True
        if any(mark in str(exc).lower() for mark in _OUT_OF_MEMORY_MARKS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
