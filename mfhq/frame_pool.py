"""Chunk arrays that are reused once nothing refers to them. Ours.

A chunk of decoded frames is a large array (16 frames of 1080p are 100 MB), above glibc's
largest mmap threshold, so each new one is fresh memory from the kernel and every page of it
faults on first write. Under a hypervisor those faults are slow: on the shared 2-core VM these
figures come from, reading three 12 s 1080p clips took 6.7-7.0 s into fresh arrays and 3.2-4.0 s
into a reused one. The pool hands out views of a few flat buffers. A buffer is handed out again
only when no view of it is alive (the chunk, a frame of it, or any slice: each holds the
buffer), so a frame a stage still holds can never be overwritten; with none free, a new buffer
is made (and kept, up to `keep`).
"""
from __future__ import annotations

import sys
import threading
from math import prod

import numpy as np


class FramePool:
    def __init__(self, keep: int = 3):
        self.keep = keep
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()  # the reader thread and the main thread may both read
        self._unused_refs = self._refs_when_unused()

    def _refs_when_unused(self) -> int:
        """The reference count of a pooled buffer that nothing outside the pool holds, read the
        way `_unused` reads it (the interpreter's own references differ between versions)."""
        self._buffers.append(np.empty(1, np.uint8))
        try:
            return sys.getrefcount(self._buffers[-1])
        finally:
            self._buffers.pop()

    def _unused(self, i: int) -> bool:
        return sys.getrefcount(self._buffers[i]) <= self._unused_refs

    def array(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised uint8 array of `shape`, a view of a pooled buffer where one is free."""
        size = prod(shape)
        with self._lock:
            free = [i for i in range(len(self._buffers)) if self._unused(i)]
            fitting = [i for i in free if self._buffers[i].size >= size]
            if fitting:
                i = min(fitting, key=lambda j: self._buffers[j].size)
            else:
                if len(self._buffers) >= self.keep:
                    if not free:
                        return np.empty(shape, np.uint8)  # all in use: not kept
                    self._buffers.pop(min(free, key=lambda j: self._buffers[j].size))
                self._buffers.append(np.empty(size, np.uint8))
                i = len(self._buffers) - 1
            return self._buffers[i][:size].reshape(shape)


FRAMES = FramePool()  # a process's chunk arrays (each worker process has its own)
