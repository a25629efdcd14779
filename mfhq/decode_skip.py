"""Not decoding the frames nobody reads. Ours.

Extract samples a few frames a second (5 of 25 in the presets), yet a decoder must decode every
frame another frame is predicted from. In H.264 and HEVC a non-reference frame is predicted from
others but nothing is predicted from it, so the decoder can drop it unseen
(AVCodecContext.skip_frame = NONREF) without changing a pixel of any other frame: measured on
12 s 1080p x264 clips (B-frames) read at 5 fps, 183 of 296 frames decoded, every sampled frame
bit-identical. A sampled frame that is non-reference is decoded as usual: the choice is made
per packet, before the decoder sees it.

A dropped frame is never output, so frames can no longer be numbered by counting the decoder's
output, as PyAVReader does from frame 0; they are numbered by timestamp instead, which is only
the same where the stream's timestamps are those of consecutive frames. TimestampCheck proves
that ahead of the decoder, on a second demuxer (packets only, nothing decoded): the packets'
frame numbers (timestamp x fps) must be exactly 0, 1, 2, ... up to past the frames to read,
each once. A missing or repeated number, a packet without a timestamp, or a number that is
not a whole frame ends skipping for the clip, and the frames are counted as before; so no
frame is numbered differently from a full decode (on a damaged stream where a packet decodes to
no frame, counting shifts every later frame by one and timestamps do not: the one place the two
could part, and there the timestamp is the true number). After a seek (a clip deep inside a long
video) a full decode numbers its first frame by timestamp and counts on from there, so the check
starts at the same keyframe and also asks that no packet comes before it (an open GOP's leading
frames would be output first). A packet an MP4 edit list discards (the hidden pre-roll of a cut
made by stream copy, decode_containers.py) is decoded but never output, so it is not numbered
and the check passes it by; a seek that lands on such a keyframe before frame 0 starts the check
at frame 0, as a read from the start does. Never with frame threading, where the setting could
reach a packet late.
"""
from __future__ import annotations

from pathlib import Path

SKIPPABLE_CODECS = ("h264", "hevc")
LOOKAHEAD = 16  # frames past a read that are decoded whatever they are: the decoder's reordering


def can_skip(stream) -> bool:
    context = stream.codec_context
    return context.name in SKIPPABLE_CODECS and "FRAME" not in str(context.thread_type).upper()


class TimestampCheck:
    """Walks the stream's packets ahead of the decoder; `through(n)`: are frames 0..n (or all
    of them, if the stream ends first) numbered by their timestamps exactly as by counting?"""

    def __init__(self, path: Path, fps: float, position: int | None = None):
        """position: where PyAVReader seeked to (stream time base), None: from frame 0."""
        import av

        self._container = av.open(str(path))
        stream = self._container.streams.video[0]
        self._time_base, self._fps = stream.time_base, fps
        self._origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        if position is not None:  # the same seek, so the same keyframe comes first
            self._container.seek(position, stream=stream, backward=True, any_frame=False)
        self._packets = self._container.demux(stream)
        self._seen: set[int] = set()
        self.contiguous = 0 if position is None else None  # frames from the first one to contiguous - 1 are seen
        self._ended = False
        self.failed = self._time_base is None

    def number(self, pts) -> float:
        return (float(pts * self._time_base) - self._origin) * self._fps

    def through(self, last: int) -> bool:
        while not self.failed and not self._ended and (self.contiguous is None or self.contiguous <= last):
            packet = next(self._packets, None)
            if packet is None:
                self._ended = True
            elif packet.size:  # (an empty packet flushes the decoder)
                self._add(packet)
        if self._ended and (self._seen or self.contiguous is None):
            self.failed = True  # a frame number never came (a gap in the timestamps), or no frame at all
        if self.failed:
            self.close()
        return not self.failed and (self.contiguous > last or self._ended)

    def _add(self, packet) -> None:
        exact = None if packet.pts is None else self.number(packet.pts)
        index = None if exact is None else round(exact)
        if packet.is_discard:  # an edit list hides its frame: decoded, never output, so never numbered
            if self.contiguous is None and packet.is_keyframe:  # a seek landed on it
                # Before frame 0 (a cut's pre-roll), every shown frame comes after it: checked as from frame 0.
                # Elsewhere (an edit list with several edits) where the shown frames resume is not known.
                if index is not None and index < 0:
                    self.contiguous = 0
                else:
                    self.failed = True
            return
        if self.contiguous is None and index is not None and packet.is_keyframe:  # the first after a seek
            self.contiguous = index
        whole = index is not None and abs(exact - index) <= 0.01
        if not whole or self.contiguous is None or index < self.contiguous or index in self._seen:
            self.failed = True
            return
        self._seen.add(index)
        while self.contiguous in self._seen:
            self._seen.discard(self.contiguous)
            self.contiguous += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
