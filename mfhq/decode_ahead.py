"""Reading a clip's next chunk of frames in a thread while the models work on this one."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Iterator

from mfhq.decode import DecodedChunk


def reader_thread() -> ThreadPoolExecutor:
    """The one thread a worker reads ahead on: a clip's chunks, then the next clip's first."""
    return ThreadPoolExecutor(1, thread_name_prefix="mfhq-decode-ahead")


class DecodeAhead:
    """Iterates a clip's chunks with the next one read in a thread while the caller works on the
    current one.

    PyAV and FFmpeg release the GIL while they decode and convert, so the models run on one core
    while the decoder runs on another, instead of after it. At most two chunks are held if the
    caller lets go of a chunk before asking for the next: the one being worked on and the one
    being read. A read's error is raised by the __next__ that would have returned its chunk, so
    a bad clip fails where it would have without the thread. `on_read(True)` is called as a read
    starts and `on_read(False)` as it ends: the watchdog bounds reads in the thread too.

    `pool`: a worker's reader thread, shared by its clips (default: a thread of its own). Once
    the clip's chunks are all read, `on_end` is called on that thread: the worker queues the
    next clip's first read behind this clip's reads (mfhq.worker.clip), so the models never
    wait for a clip's first chunk while the thread has nothing to do.
    """

    def __init__(self, chunks: Iterator[DecodedChunk], on_read: Callable[[bool], None] = lambda reading: None,
                 pool: ThreadPoolExecutor | None = None, on_end: Callable[[], None] | None = None):
        self._chunks, self._on_read, self._on_end = chunks, on_read, on_end
        self._own_pool = pool is None
        self._pool = reader_thread() if pool is None else pool
        self._pending = self._pool.submit(self._read)

    def _read(self) -> DecodedChunk | None:
        self._on_read(True)
        try:
            chunk = next(self._chunks, None)
        finally:
            self._on_read(False)
        if chunk is None and self._on_end is not None:
            self._on_end()
        return chunk

    def __iter__(self) -> "DecodeAhead":
        return self

    def __next__(self) -> DecodedChunk:
        chunk = self._pending.result()
        if chunk is None:
            raise StopIteration
        self._pending = self._pool.submit(self._read)
        return chunk

    def close(self) -> None:
        """Waits for this clip's read in flight (the container must not be closed under the
        decoder) and drops one not yet begun; what the shared thread does next is not its own."""
        if self._own_pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
        elif not self._pending.cancel():
            wait([self._pending])
