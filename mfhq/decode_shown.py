"""How a video is shown, beyond its stored pixels: the display matrix's rotation and the pixels'
aspect ratio (SAR). Ours.

Phones store a portrait recording as landscape pixels with a display matrix that turns it (90,
180 or 270 degrees). ffmpeg, players and the tools that cut and annotated the datasets show it
turned, and decord's frames come turned too; PyAV hands over the stored pixels. Frames read
sideways give the detector a sideways face (found worse or not at all) and put a source's boxes,
drawn on the shown picture, elsewhere. So PyAV's frames are turned here as ffmpeg shows them, and
the clip row's reason says so.

Non-square pixels (an anamorphic DVD rip, some broadcast captures) are shown stretched to their
display aspect ratio. Frames are not resampled here: a source's boxes are in whatever pixels its
author's tools used, and crops are cut from stored pixels by materialize too, so resampling would
move both. The clip row's reason names the SAR and a warning is logged (docs/extract.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shown:
    turns: int = 0               # quarter turns counterclockwise, as np.rot90's k (0: stored as shown)
    sar: Fraction | None = None  # a pixel's width over its height, where not 1

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The frames' width and height as read (turned)."""
        return (height, width) if self.turns % 2 else (width, height)

    def facts(self, path: Path, width: int, height: int) -> list[str]:
        """What the clip row's reason says of the file's display (nothing for the common video)."""
        said = []
        if self.turns:
            said.append(f"{path}: turned {90 * self.turns} degrees counterclockwise by its display matrix "
                        f"(frames read as shown, {self.size(width, height)[0]}x{self.size(width, height)[1]})")
        if self.sar is not None:
            shown = round(width * self.sar)
            log.warning("%s: non-square pixels (SAR %s): read as stored, not resampled", path, self.sar)
            said.append(f"{path}: non-square pixels (SAR {self.sar.numerator}:{self.sar.denominator}, shown "
                        f"{shown} px wide): faces are detected and cropped in stored pixels, stretched as stored")
        return said


def shown_of(container, stream) -> Shown:
    """`stream`'s display facts; its first frame is decoded (PyAV exposes the display matrix on
    frames only). A file whose first frame does not decode is taken as stored: reading it fails
    later as before, with the decoder's own error."""
    turns = 0
    try:
        for frame in container.decode(stream):
            turns = round((frame.rotation or 0) / 90) % 4
            break
    except Exception as exc:  # noqa: BLE001
        log.debug("no display matrix read: %s", exc)
    ratio = stream.codec_context.sample_aspect_ratio
    sar = Fraction(ratio) if ratio and Fraction(ratio) != 1 else None
    return Shown(turns, sar)


def turned(image: np.ndarray, turns: int) -> np.ndarray:
    """`image` as shown: a view (the copy into the chunk's buffer is the only one, as unturned)."""
    return np.rot90(image, turns) if turns else image
