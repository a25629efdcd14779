"""decord, the fallback reader (mfhq.decode's chain): where it is used, its frames were right
(decode_containers.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mfhq.decode_containers import MATROSKA, decord_refusal
from mfhq.decode_end import DecodeError, End
from mfhq.decode_shown import shown_of
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
        turned, self.facts = _shown(path)
        if turned:
            raise DecodeError(f"{path}: decord is not used on a Matroska/WebM whose display matrix turns it "
                              f"(it reads the frames as stored, unturned); only PyAV reads it")
        # One decoder thread per process: parallelism comes from worker processes.
        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        height, width = self._reader[0].shape[:2] if len(self._reader) else (0, 0)
        self.ended: End | None = None
        return with_frame_times(path, VideoInfo(len(self._reader), float(self._reader.get_avg_fps()), width, height))

    def read(self, indices: list[int]) -> np.ndarray:
        import cv2

        # decord counts the frames it finds: those past them (asked for by the reader before it in
        # the chain, after the header's count) are past the stream's end, as PyAV's read ends there.
        count = len(self._reader)
        within = [i for i in indices if i < count]
        if len(within) < len(indices):
            self.ended = End(count - 1 if count else None)
        if not within:
            height, width = self._reader[0].shape[:2] if count else (0, 0)
            return np.empty((0, height, width, 3), np.uint8)
        frames = self._reader.get_batch(within).asnumpy()
        if not frames.flags.writeable:
            frames = frames.copy()
        # RGB -> BGR in place, frame by frame: numpy's reversed-stride copy of a whole 1080p
        # chunk cost ~10x more and doubled the chunk's memory.
        for frame in frames:
            cv2.cvtColor(frame, cv2.COLOR_RGB2BGR, dst=frame)
        return frames

    def close(self) -> None:
        self._reader = None


def _shown(path: Path) -> tuple[bool, list[str]]:
    """Is it a Matroska/WebM that its display matrix turns, and what the clip row says of the
    file's display (decode_shown.py), read with PyAV."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            shown = shown_of(path, container, stream)
            return container.format.name == MATROSKA and shown.turns != 0, shown.facts(path, width, height)
    except Exception:  # noqa: BLE001 (a file only decord opens: nothing known of its display)
        return False, []
