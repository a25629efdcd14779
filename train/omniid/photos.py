"""The one reader of a user's photo: read as every viewer shows it.

A phone stores a photo taken upright often sideways, with an EXIF Orientation (tag 0x0112) of 6
or 8 that viewers apply; read without it, the face lies at 90 degrees (the detector may miss it,
a report shows it turned). `open_photo` applies the orientation (PIL's `ImageOps.exif_transpose`)
and says which one it applied, and brings any mode PIL decodes to RGB: CMYK, palette, grey,
alpha (dropped), 16-bit grey (its top 8 bits; PIL's own conversion would clip it to white; a
32-bit integer image is read as 16-bit when its values fit, a floating-point one is refused).

Crops that `mfhq extract` wrote carry no EXIF: `as_stored` (a header read, no decode) lets a
caller keep such a file on its usual path (omniid.face_inputs reads it exactly as training does),
and the training data path (omniid.crop_reader) never comes here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from omniid.errors import NoImage

ORIENTATION = 0x0112  # EXIF's Orientation tag
TURNS = frozenset(range(2, 9))  # 1 is "as stored"; 2-8 the EXIF standard's mirrorings and turns (6, 8: a quarter turn)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_WIDE = (*_SIXTEEN_BIT, "I", "F")  # modes PIL's own RGB conversion clips


def image_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation an image asks viewers to apply, None when it asks none (absent or 1)."""
    try:
        value = image.getexif().get(ORIENTATION)
    except (OSError, ValueError, SyntaxError):  # a damaged EXIF block: viewers show the pixels as stored
        return None
    return int(value) if value in TURNS else None


def as_stored(path: str | Path) -> bool:
    """Whether a photo file reads the same through PIL's plain RGB conversion as through
    `open_photo` (no orientation to apply, not 16-bit or wider), from its header, without decoding."""
    path = _existing(path)
    try:
        with Image.open(path) as opened:
            return image_orientation(opened) is None and opened.mode not in _WIDE
    except OSError as error:
        raise NoImage(f"{path}: not a readable image ({error})") from error


def open_photo(path: str | Path) -> tuple[Image.Image, int | None]:
    """A photo file -> (the RGB image as viewers show it, the EXIF orientation applied or None);
    a missing file, one that is not an image, or a mode with no RGB reading: NoImage naming it."""
    path = _existing(path)
    try:
        with Image.open(path) as opened:
            return as_shown(opened, str(path))
    except NoImage:  # already names the file and the problem
        raise
    except OSError as error:
        raise NoImage(f"{path}: not a readable image ({error})") from error


def as_shown(image: Image.Image, name: str = "image") -> tuple[Image.Image, int | None]:
    """An image in memory -> (RGB as viewers show it, the EXIF orientation applied or None). An
    image already turned (exif_transpose drops the tag) is not turned again."""
    turn = image_orientation(image)
    if turn is not None:
        image = ImageOps.exif_transpose(image)
    return to_rgb(image, name), turn


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Any decoded mode -> RGB (see the module doc); `name` is what an error calls the image."""
    if image.mode in _SIXTEEN_BIT or image.mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise NoImage(f"{name}: a mode {image.mode} image with values outside 0-65535; save it as 8 or 16 "
                          "bits per channel")
        return Image.fromarray((values >> 8).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        raise NoImage(f"{name}: a floating-point image (mode F); save it as 8 or 16 bits per channel")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL asks a palette's transparency to go through RGBA
    return image.convert("RGB")


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise NoImage(f"image not found: {path}")
    return path
