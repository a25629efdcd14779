"""A video stream that ends before the frames its header promised. Ours.

A truncated download keeps its MP4 index (written first, `faststart`, as streamed files are), so
the header promises every frame while the data stops part-way; a header that over-counts looks
the same to a decoder. Measured on the sample's H.264 MP4 (B-frames) cut at every 23rd byte of
a 937-byte packet, and at packet ends (tests/mfhq/test_decode_truncated.py cuts inside and between
packets): FFmpeg's demuxer hands on the packet the file ends inside,
short and flagged corrupt ("partial file"), and the decoder refuses it (InvalidDataError), which
lost the frames the decoder still held. Cut between two packets, the stream ends cleanly, but the
frames the decoder holds come out at the end with the frames the cut lost missing among them (49
and 51 of 0..52): counted, frame 50 was handed on as 49 and 52 as 50, and decord, which counts
the packets it finds, did the same. So a PyAV read passes by the cut packet, numbers the frames
the decoder gives up at a short stream's end by their timestamps, and stops at the first sampled
frame the cut lost: the frames before the end are the ones a whole file gives, under their
numbers, and the read ends there (`End`), whichever chunk of the clip it falls in.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mfhq.errors import MfhqError


class DecodeError(MfhqError, RuntimeError):
    """No frame could be read; the message names the file and every decoder's error."""


@dataclass(frozen=True)
class End:
    """A reader found the stream's end before the frames asked for: the frames after `last_read`
    (the last frame decoded; None: none since the read began) are not in the file."""
    last_read: int | None


class Tail:
    """Watches a PyAV read's packets for the stream's end: a packet the file ends inside, and
    whether the packets reached the last frame the header promised (`short` once they end)."""

    def __init__(self, path: Path, promised: int, number):
        self.size, self.promised, self._number = Path(path).stat().st_size, promised, number
        self._top = None  # the latest presentation time among the packets so far
        self.short = False

    def admits(self, packet) -> bool:
        """False for a packet cut by the file's end (its partial data is not decoded)."""
        if not packet.size:  # the demuxer's flush: what the decoder holds comes out now
            self.short = self._top is None or self._number(self._top) < self.promised - 1
            return True
        if packet.is_corrupt and packet.pos is not None and 0 <= packet.pos and packet.pos + packet.size >= self.size:
            return False
        if packet.pts is not None and not packet.is_discard and (self._top is None or packet.pts > self._top):
            self._top = packet.pts
        return True

    @staticmethod
    def lost(wanted: set[int], after: int | None, index: int) -> bool:
        """Does a frame asked for lie between the frame before (after - 1) and this one, never output?"""
        return any((after is None or after <= w) and w < index for w in wanted)


def ended_reason(path: Path, end: End, promised: int, not_read: list[int], reader: str) -> str:
    """The row's words for a stream that ended early: where, what the header promised, what was not read."""
    where = f"after frame {end.last_read}" if end.last_read is not None else f"before frame {not_read[0]}"
    return (f"{path}: the video stream ended {where}, short of the {promised} frames its header promised "
            f"({reader}): {len(not_read)} sampled frame(s) past it not read ({not_read[0]}..{not_read[-1]})")

