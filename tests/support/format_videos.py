"""Small real videos in the formats downloads and phones bring (a display matrix that turns the
picture, non-square pixels, 10-bit, AV1, interlaced), written with PyAV's encoders.

`write_video` encodes the same image every frame: a test compares the decoded frames with it.
`patches` is a picture of four flat colours, for checking colours survive a format; the astronaut
(scikit-image, public domain) is the face.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

# BGR colours of the four quarters of `patches`: saturated enough that a swapped channel, a
# 10-bit value read as 8 or a wrong range shows, away from 0 and 255 (clipping would hide it).
COLOURS = ((40, 40, 200), (60, 180, 30), (190, 60, 50), (128, 128, 128))


def patches(width: int = 160, height: int = 96) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    for n, colour in enumerate(COLOURS):
        rows = slice(0, height // 2) if n < 2 else slice(height // 2, height)
        cols = slice(0, width // 2) if n % 2 == 0 else slice(width // 2, width)
        image[rows, cols] = colour
    return image


def patch_means(frame: np.ndarray) -> list[np.ndarray]:
    """Each quarter's mean colour, inset from the edges where chroma subsampling blends them."""
    height, width = frame.shape[:2]
    h, w = height // 2, width // 2
    corners = ((0, 0), (0, w), (h, 0), (h, w))
    return [frame[y + 8:y + h - 8, x + 8:x + w - 8].reshape(-1, 3).mean(0) for y, x in corners]


def write_video(path, image_bgr: np.ndarray, *, codec: str = "libx264", pix_fmt: str = "yuv420p",
                frames: int = 25, rotation: int | None = None, sar: Fraction | None = None,
                options: dict | None = None, fmt: str | None = None):
    """`frames` frames of `image_bgr` at 25 fps; `rotation`: the display matrix's counterclockwise
    degrees (as a phone writes a portrait recording); `sar`: the pixels' aspect ratio."""
    height, width = image_bgr.shape[:2]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"crf": "12", **(options or {})} if codec == "libx264" else dict(options or {})
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(image_bgr, format="bgr24").reformat(format=pix_fmt)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
