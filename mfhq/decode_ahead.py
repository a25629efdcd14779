"""Reading a clip's next chunk of frames in a thread while the models work on this one."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from mfhq.decode import DecodedChunk


class DecodeAhead:
    """Iterates a clip's chunks with the next one read in a thread while the caller works on the
    current one.

    PyAV and FFmpeg release the GIL while they decode and convert, so the models run on one core
    while the decoder runs on another, instead of after it. At most two chunks are held if the
    caller lets go of a chunk before asking for the next: the one being worked on and the one
    being read. A read's error is raised by the __next__ that would have returned its chunk, so
    a bad clip fails where it would have without the thread. `on_read(True)` is called as a read
    starts and `on_read(False)` as it ends: the watchdog bounds reads in the thread too.
    """

    def __init__(self, chunks: Iterator[DecodedChunk], on_read: Callable[[bool], None] = lambda reading: None):
        self._chunks, self._on_read = chunks, on_read
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mfhq-decode-ahead")
        self._pending = self._pool.submit(self._read)

    def _read(self) -> DecodedChunk | None:
        self._on_read(True)
        try:
            return next(self._chunks, None)
        finally:
            self._on_read(False)

    def __iter__(self) -> "DecodeAhead":
        return self

    def __next__(self) -> DecodedChunk:
        chunk = self._pending.result()
        if chunk is None:
            raise StopIteration
        self._pending = self._pool.submit(self._read)
        return chunk

    def close(self) -> None:
        """Waits for the read in flight: the container must not be closed under the decoder."""
        self._pool.shutdown(wait=True, cancel_futures=True)
