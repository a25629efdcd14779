"""How a video is shown, beyond its stored pixels: the display matrix's rotation and the pixels'
aspect ratio (SAR). Ours.

Phones store a portrait recording as landscape pixels with a display matrix that turns it (90,
180 or 270 degrees). ffmpeg, players and the tools that cut and annotated the datasets show it
turned, and decord's frames come turned too; PyAV hands over the stored pixels. Frames read
sideways give the detector a sideways face (found worse or not at all) and put a source's boxes,
drawn on the shown picture, elsewhere. So PyAV's frames are turned here as ffmpeg shows them, and
the clip row's reason says so.

Non-square pixels (an anamorphic DVD rip, DV or broadcast captures: SAR other than 1) are shown
stretched to their display aspect ratio, and so are the frames here: resampled to square pixels
before the turn, so that detection, alignment, crops and materialize's re-read see the shape
a player shows. The rule (`Shown.square`): the axis whose pixels are the longer keeps its
samples and the other is stretched to match, rounded to the nearest even length: SAR > 1
stretches the width to width * SAR (720x480 at 32:27: 853.3 -> 854x480, the size players show),
SAR < 1 the height to height / SAR (720x480 at 8:9 -> 720x540, where a player shows 640x480: the
same shape, no sample thrown away).
Bicubic, as ffmpeg's default scaler. A SAR beyond 1:4..4:1 is taken as a damaged header (no
capture format uses one; resampling by it would make frames many times the size): read as
stored, and said. A source's boxes are taken in the turned, not resampled picture (ffmpeg's crop
filter, which the datasets' cutting scripts use, works on stored pixels after its autorotation):
mfhq.geometry maps them onto the shown frames. The clip row's reason says what was done.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from mfhq.decode_containers import MATROSKA, MP4, _child, _children, _handler

log = logging.getLogger(__name__)


SAR_BOUND = 4  # a SAR beyond 1:4..4:1 is taken as a damaged header, not resampled by
# What an mfhq before 2026-12-06 said in the reason of a file with non-square pixels, which it read
# as stored: its rows' boxes, landmarks and crops are of the squeezed or stretched picture.
READ_AS_STORED = "faces are detected and cropped in stored pixels"


@dataclass(frozen=True)
class Shown:
    turns: int = 0                     # quarter turns counterclockwise, as np.rot90's k (0: stored as shown)
    sar: Fraction | None = None        # a pixel's width over its height, where not 1: frames resampled
    damaged_sar: Fraction | None = None  # a SAR beyond SAR_BOUND in the header: read as stored

    def square(self, width: int, height: int) -> tuple[int, int]:
        """The stored frame's width and height once resampled to square pixels (module doc)."""
        if self.sar is None:
            return width, height
        if self.sar > 1:
            return _even(width * self.sar), height
        return width, _even(height / self.sar)

    def resampled(self, width: int, height: int) -> tuple[int, int] | None:
        """`square`'s size where the frames are resampled, None where their pixels are square."""
        return self.square(width, height) if self.sar is not None else None

    def stored_size(self, width: int, height: int) -> tuple[int, int]:
        """The picture turned but not resampled: where a source's boxes are taken (mfhq.geometry)."""
        return (height, width) if self.turns % 2 else (width, height)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The frames' width and height as read (resampled, turned)."""
        return self.stored_size(*self.square(width, height))

    def facts(self, path: Path, width: int, height: int) -> list[str]:
        """What the clip row's reason says of the file's display (nothing for the common video)."""
        said = []
        shown = "x".join(map(str, self.size(width, height)))
        if self.turns:
            said.append(f"{path}: turned {90 * self.turns} degrees counterclockwise by its display matrix "
                        f"(frames read as shown, {shown})")
        if self.sar is not None:
            said.append(f"{path}: non-square pixels (SAR {self.sar.numerator}:{self.sar.denominator}, stored "
                        f"{width}x{height}): frames resampled to {'x'.join(map(str, self.square(width, height)))}, "
                        "square pixels, as shown")
        if self.damaged_sar is not None:
            sar = self.damaged_sar
            log.warning("%s: SAR %s in its header, beyond 1:%d..%d:1: read as stored", path, sar, SAR_BOUND, SAR_BOUND)
            said.append(f"{path}: SAR {sar.numerator}:{sar.denominator} in its header, beyond 1:{SAR_BOUND}..{SAR_BOUND}:1 "
                        "(taken as damaged): frames read as stored, not resampled")
        return said


def _even(length) -> int:
    """`length` rounded to the nearest even integer (at least 2)."""
    return max(2, 2 * round(length / 2))


def squared(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """`image` resampled to `size` (width, height), bicubic; itself where it has that size or
    `size` is None (square pixels: the decoder's frame untouched)."""
    if size is None or (image.shape[1] == size[0] and image.shape[0] == size[1]):
        return image
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


def shown_of(path: Path, container, stream) -> Shown:
    """`stream`'s display facts. PyAV exposes the display matrix on frames only, so where the
    header's bytes hold one that may turn the picture (`may_turn`) the first frame is decoded
    and FFmpeg's reading of it taken; the common file decodes nothing more. A file whose first
    frame does not decode is taken as stored: reading it fails later, with the decoder's error."""
    turns = 0
    try:
        if may_turn(path, container.format.name):
            for frame in container.decode(stream):
                turns = round((frame.rotation or 0) / 90) % 4
                break
    except Exception as exc:  # noqa: BLE001
        log.debug("no display matrix read: %s", exc)
    ratio = stream.codec_context.sample_aspect_ratio
    sar = Fraction(ratio) if ratio and Fraction(ratio) > 0 and Fraction(ratio) != 1 else None
    if sar is not None and not 1 / SAR_BOUND <= sar <= SAR_BOUND:
        return Shown(turns, None, sar)
    return Shown(turns, sar)


def turned(image: np.ndarray, turns: int) -> np.ndarray:
    """`image` as shown: a view (the copy into the chunk's buffer is the only one, as unturned)."""
    return np.rot90(image, turns) if turns else image


def may_turn(path: Path, format_name: str) -> bool:
    """Might FFmpeg find a display matrix that turns this file's video? Read from the header's
    bytes: an MP4/MOV's movie and video track matrices (mvhd, tkhd: FFmpeg multiplies them), a
    Matroska/WebM video track's Projection (FFmpeg makes its pose roll a matrix). Other
    containers, and an H.264 display-orientation SEI (rare), are not checked. True where the
    bytes cannot be walked: the first frame then tells."""
    try:
        with open(path, "rb") as f:
            if format_name == MP4:
                return _mp4_turns(f)
            if format_name == MATROSKA:
                return _matroska_projection(f)
    except (OSError, struct.error, ValueError, IndexError):
        return True
    return False


def _mp4_turns(f) -> bool:
    moov = _child(f, 0, f.seek(0, 2), b"moov")
    if moov is None:
        return True
    boxes = [(b"mvhd", *box) for box in [_child(f, *moov, b"mvhd")] if box]
    boxes += [(b"tkhd", *_child(f, b, e, b"tkhd")) for kind, b, e in _children(f, *moov)
              if kind == b"trak" and _handler(f, b, e) == b"vide" and _child(f, b, e, b"tkhd")]
    for kind, begin, _ in boxes:
        f.seek(begin)
        version = f.read(1)[0]
        # the matrix's offset in the box: past the times, ids and durations (64-bit in version 1)
        f.seek(begin + {b"mvhd": (36, 48), b"tkhd": (40, 52)}[kind][version == 1])
        matrix = struct.unpack(">9i", f.read(36))
        if (matrix[0], matrix[1], matrix[3], matrix[4]) != (1 << 16, 0, 0, 1 << 16):
            return True
    return False


# Matroska element ids (their marker bits kept, as the spec writes them)
_SEGMENT, _TRACKS, _CLUSTER, _ENTRY, _VIDEO, _PROJECTION = 0x18538067, 0x1654AE6B, 0x1F43B675, 0xAE, 0xE0, 0x7670


def _matroska_projection(f) -> bool:
    end = f.seek(0, 2)
    segment = next(((b, e) for i, b, e in _elements(f, 0, end) if i == _SEGMENT), None)
    for element, begin, stop in _elements(f, *segment):
        if element == _CLUSTER:
            return True  # no track list before the frames: the first frame tells
        if element == _TRACKS:
            videos = [(b, e) for track, tb, te in _elements(f, begin, stop) if track == _ENTRY
                      for kind, b, e in _elements(f, tb, te) if kind == _VIDEO]
            return any(kind == _PROJECTION for b, e in videos for kind, _, _ in _elements(f, b, e))
    return True


def _elements(f, begin: int, end: int):
    """(id, payload begin, payload end) of each EBML element in [begin, end); an unknown size
    (all ones: a live stream's Segment or Cluster) runs to `end`."""
    while begin < end:
        f.seek(begin)
        element, _ = _vint(f)
        size, ones = _vint(f, strip=True)
        payload = f.tell()
        stop = end if size == ones else min(payload + size, end)
        yield element, payload, stop
        begin = stop


def _vint(f, strip: bool = False) -> tuple[int, int]:
    """An EBML variable-length integer at f's position: (value, the all-ones value of its length)."""
    first = f.read(1)[0]
    if not first:
        raise ValueError("not an EBML integer")
    length = 9 - first.bit_length()
    value = first & ((1 << (8 - length)) - 1) if strip else first
    for byte in f.read(length - 1):
        value = value << 8 | byte
    return value, (1 << (7 * length)) - 1
