"""decord, the fallback reader (mfhq.decode's chain): where it is used, its frames were right
(decode_containers.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mfhq.decode_containers import MATROSKA, decord_refusal
from mfhq.decode_end import DecodeError, End
from mfhq.decode_shown import Shown, shown_of, squared
from mfhq.frame_times import VideoInfo, with_frame_times


class DecordReader:
    name = "decord"

    def open(self, path: Path) -> VideoInfo:
        # cv2 must be loaded before decord: decord's wheel bundles an old zlib that, loaded
        # first, breaks cv2's PNG decoding for the rest of the process.
        import cv2  # noqa: F401
        import decord

        refusal = decord_refusal(path)  # a container or codec where its frames are not the ones asked for
        if refusal:
            raise DecodeError(refusal)
        # decord turns an MP4/MOV's frames by its display matrix (as PyAVReader does), not a
        # Matroska/WebM's (its Projection's roll, which PyAV's FFmpeg reads)
        turned, shown, stored = _shown(path)
        if turned:
            raise DecodeError(f"{path}: decord is not used on a Matroska/WebM whose display matrix turns it "
                              f"(it reads the frames as stored, unturned); only PyAV reads it")
        self.facts = shown.facts(path, *stored) if stored else []
        # One decoder thread per process: parallelism comes from worker processes.
        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        height, width = self._reader[0].shape[:2] if len(self._reader) else (0, 0)
        # decord's frames come turned, not resampled: the resampling to square pixels is done
        # on the turned frame, to the size PyAV's frames have (decode_shown.py)
        self._size = shown.size(*stored) if stored and shown.sar else (width, height)
        self.ended: End | None = None
        info = VideoInfo(len(self._reader), float(self._reader.get_avg_fps()), *self._size,
                         stored=(width, height) if self._size != (width, height) else None)
        return with_frame_times(path, info)

    def read(self, indices: list[int]) -> np.ndarray:
        import cv2

        # decord counts the frames it finds: those past them (asked for by the reader before it in
        # the chain, after the header's count) are past the stream's end, as PyAV's read ends there.
        count = len(self._reader)
        within = [i for i in indices if i < count]
        if len(within) < len(indices):
            self.ended = End(count - 1 if count else None)
        if not within:
            return np.empty((0, self._size[1], self._size[0], 3), np.uint8)
        frames = self._reader.get_batch(within).asnumpy()
        if not frames.flags.writeable:
            frames = frames.copy()
        # RGB -> BGR in place, frame by frame: numpy's reversed-stride copy of a whole 1080p
        # chunk cost ~10x more and doubled the chunk's memory.
        for frame in frames:
            cv2.cvtColor(frame, cv2.COLOR_RGB2BGR, dst=frame)
        if frames.shape[1:3] != (self._size[1], self._size[0]):  # non-square pixels (decode_shown.py)
            shown = np.empty((len(frames), self._size[1], self._size[0], 3), np.uint8)
            for n, frame in enumerate(frames):
                shown[n] = squared(frame, self._size)
            frames = shown
        return frames

    def close(self) -> None:
        self._reader = None


def _shown(path: Path) -> tuple[bool, Shown, tuple[int, int] | None]:
    """Is it a Matroska/WebM that its display matrix turns, its display facts (decode_shown.py)
    and its stored width and height, read with PyAV."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            shown = shown_of(path, container, stream)
            return container.format.name == MATROSKA and shown.turns != 0, shown, (width, height)
    except Exception:  # noqa: BLE001 (a file only decord opens: nothing known of its display)
        return False, Shown(), None
