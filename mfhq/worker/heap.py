"""Giving a worker's freed C heap back to the system (glibc's malloc_trim; elsewhere nothing). Ours.

Loading the models leaves ~130 MB of freed heap (ONNX graphs rewritten, then handed to
onnxruntime as bytes) that glibc keeps resident, and each clip's frames and crops leave more:
without a trim a worker's RSS carried them into every later clip's peak. A trim after setup and
after each batch of clips costs a few milliseconds. (A fixed mmap threshold, which would return
every frame-sized buffer at once, was measured: ten times the page faults, 20-40% more CPU.)
"""
from __future__ import annotations

import ctypes
import ctypes.util


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def give_back_freed_heap() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
