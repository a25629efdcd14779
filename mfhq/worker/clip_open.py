"""Opening a clip for extract, in line or ahead: the checks that make a status row, the
source's box and annotations in the video's pixels and frames, the sampled frames.

With decode-ahead a worker's reader thread, done with a clip's chunks, opens the next clip and
reads its first chunk while the models still work on this clip's last one (ReadAcross), so the
models never wait for a whole first chunk. Where a clip is opened changes only time: the
opening, its first chunk, its failure row or its error are those of opening it in line, and
two chunks at most are held (this clip's last, the next one's first).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from mfhq.config import DecodeConfig
from mfhq.decode import ClipDecoder, DecodedChunk, VideoInfo, sample_indices
from mfhq.geometry import resolve as resolve_geometry
from mfhq.records import Clip, ClipRow, Status


@dataclass
class OpenedClip:
    clip: Clip                          # with its geometry resolved in the video's pixels
    failed: dict | None = None          # the clip's status row instead: nothing to decode
    decoder: ClipDecoder | None = None
    info: VideoInfo | None = None
    indices: list[int] | None = None    # the sampled frames
    chunks: Iterator[DecodedChunk] | None = None
    first: DecodedChunk | None = None   # the first chunk, when the opening was read ahead

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()


def open_clip(clip: Clip, cfg: DecodeConfig, provenance: str) -> OpenedClip:
    """Raises what the decoder raises (DecodeError: a decode_error row), its decoder closed."""
    path = Path(clip.video_path)
    if not path.is_file():
        return OpenedClip(clip, ClipRow.failed(clip, Status.MISSING, f"{path}: no such file", provenance))
    if path.stat().st_size == 0:
        return OpenedClip(clip, ClipRow.failed(clip, Status.EMPTY, f"{path}: file is empty (0 bytes)", provenance))
    decoder = ClipDecoder(cfg)
    try:
        info = decoder.open(path)
        try:  # the source's box and annotations, by the rule it named, in the real video's pixels and frames
            clip = resolve_geometry(clip, info.width, info.height, info.fps, info.stored)
        except ValueError as exc:
            decoder.close()
            return OpenedClip(clip, ClipRow.failed(clip, Status.BAD_METADATA, f"{path}: {exc}", provenance))
        frames = None if clip.start_frame is None else (clip.start_frame, clip.end_frame)
        indices = sample_indices(info, cfg, clip.start_sec, clip.end_sec, frames)
        if not indices:
            decoder.close()
            wanted = f"frames {frames[0]}..{frames[1]}" if frames else f"{clip.start_sec}..{clip.end_sec} s"
            reason = (f"{path}: no frames in range ({wanted} of {info.n_frames} at {info.fps:g} fps)"
                      if info.n_frames else f"{path}: the video has no frames")
            return OpenedClip(clip, ClipRow.failed(clip, Status.EMPTY, reason, provenance))
        return OpenedClip(clip, None, decoder, info, indices, decoder.chunks(path, indices))
    except BaseException:
        decoder.close()
        raise


def _open_and_read_first(clip: Clip, cfg: DecodeConfig, provenance: str, on_phase: Callable[[str], None]) -> OpenedClip:
    # Said before any work on the clip, and sent synchronously: a worker that dies from here on
    # may have died of this clip, and its watchdog knows it. The opening (probing a file on a
    # slow disk) is bounded apart from the read of the first chunk (a decode, timed as any).
    on_phase("open-ahead")
    try:
        opened = open_clip(clip, cfg, provenance)
        if opened.chunks is not None:
            on_phase("read")
            try:
                opened.first = next(opened.chunks, None)
            except BaseException:
                opened.close()
                raise
        return opened
    finally:
        on_phase("read-done")


class ReadAcross:
    """The next clip's opening and first chunk, read on the worker's reader thread."""

    def __init__(self, pool: ThreadPoolExecutor, cfg: DecodeConfig):
        self.pool, self.cfg = pool, cfg
        self.key: str | None = None
        self.future: Future | None = None

    def start(self, clip: Clip, provenance: str, on_phase: Callable[[str], None]) -> None:
        """Called on the reader thread once the clip before has no more chunks to read;
        on_phase: "open-ahead", then "read" (the first chunk's), then "read-done"."""
        self.drop()
        self.key, self.future = clip.key, self.pool.submit(_open_and_read_first, clip, self.cfg, provenance, on_phase)

    def take(self, clip: Clip) -> Future | None:
        """The clip's opening read ahead (its result raises what opening it raised), or None."""
        if self.key != clip.key:
            self.drop()
            return None
        future, self.key, self.future = self.future, None, None
        return future

    def drop(self) -> None:
        """Lets go of an opening nobody took (the run stopped): its read ends, its decoder closes."""
        future, self.key, self.future = self.future, None, None
        if future is not None and not future.cancel():
            wait([future])
            if future.exception() is None:
                future.result().close()
