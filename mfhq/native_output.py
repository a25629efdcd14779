"""What native decoders print, captured where it belongs: in the clip's reason, not the terminal.

FFmpeg (`[mov,mp4,m4a,3gp,3g2,mj2 @ 0x...] moov atom not found`) and decord's C++ log
(`[03:50:43] .../video_reader.cc:83: ERROR opening: ...`) write straight to file descriptor 2,
past sys.stderr and logging, so they land over the progress bar once per bad file.
`captured_stderr()` points fd 2 at a temporary file for the length of a native call and keeps
the decoder's lines (cleaned of addresses, clocks and source locations) for the caller; any
other line written meanwhile goes back out to the real stderr, so nothing else is lost.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator

# `[format @ 0xADDR] text` (FFmpeg's av_log) and `[hh:mm:ss] file.cc:NN: text` (dmlc's LOG).
_FFMPEG = re.compile(r"^\[[^\]@]+ @ 0x[0-9a-fA-F]+\]\s*")
_DMLC = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+\.(?:cc|cpp|h):\d+:\s*")
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
_LOCK = threading.RLock()  # fd 2 is one per process: one capture at a time
_depth = 0


class Captured:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def text(self) -> str:
        return "; ".join(self.lines)


def decoder_line(line: str) -> str | None:
    """The message of a native decoder's log line, or None if the line is not one."""
    for pattern in (_FFMPEG, _DMLC):
        match = pattern.match(line)
        if match:
            return line[match.end():].strip()
    return None


def clean_error(exc: BaseException) -> str:
    """`Type: message` without errno numbers (`[Errno 1094995529]` says nothing to a user)."""
    return f"{type(exc).__name__}: {_ERRNO.sub('', str(exc)).strip()}"


@contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Capture fd 2 for the block; a nested capture (same thread) leaves it to the outer one."""
    global _depth
    captured = Captured()
    with _LOCK:
        if _depth:
            _depth += 1
            try:
                yield captured
            finally:
                _depth -= 1
            return
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            _depth = 1
            try:
                yield captured
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                _depth = 0
                sink.seek(0)
                _sort(sink.read().decode("utf-8", "replace"), captured)


def _sort(text: str, captured: Captured) -> None:
    others = []
    for line in text.splitlines():
        message = decoder_line(line.strip())
        if message is None:
            if line.strip():
                others.append(line)
        elif message not in captured.lines:
            captured.lines.append(message)
    if others:
        os.write(2, ("\n".join(others) + "\n").encode())
