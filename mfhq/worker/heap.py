"""How a worker's C heap gives memory back (glibc; elsewhere these do nothing). Ours.

glibc serves a large allocation by mmap and returns it to the system when freed, but after the
first such free it raises that threshold to the freed size, so later 6 MB frames and crops come
from the heap, whose freed pages stay resident: a worker's RSS grew by the size of its largest
chunks and stayed there. A fixed threshold keeps every frame-sized buffer on mmap. Loading the
models leaves ~130 MB of freed heap (ONNX graphs rewritten, then handed to onnxruntime as
bytes), given back by one trim after setup.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 1 << 20  # bytes; a 1080p frame is 6 MB, a 448 px crop 0.6 MB


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def fix_mmap_threshold() -> None:
    """Allocations of MMAP_THRESHOLD or more go to mmap for good (call before the big ones)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def give_back_freed_heap() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
