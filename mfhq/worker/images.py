"""The crop and mask files, written one way for both paths that make them: extract's one pass and
`mfhq materialize` (align.crops: materialize). Same pixels and same encoder settings give the same
bytes, so the two paths write identical files; the digest says whether the pixels are the same.

A mask is a 1-bit (bilevel) grayscale PNG, 1 = face (a PNG reader expands it to 255), ours: the
trainer decodes one for every target of every item, and a 448 px 1-bit PNG decodes in about a
quarter of the time of the 8-bit one with the same pixels (docs/performance.md). Readers take
both (runs made before wrote 8-bit masks, 255 = face)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from mfhq.manifest.io import atomic_write_bytes


def crop_digest(crop: np.ndarray) -> str:
    """blake2b-64 of the crop's raw pixels (shape and dtype included): equal digests, equal pixels."""
    crop = np.ascontiguousarray(crop)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{crop.shape}{crop.dtype}".encode())
    digest.update(crop.data)
    return digest.hexdigest()


def write_image(run_dir: Path, relative: str, image: np.ndarray, jpeg_quality: int) -> None:
    """Encode by the file's suffix (.jpg at `jpeg_quality`, .png) and write it atomically."""
    suffix = Path(relative).suffix
    _encode_and_write(run_dir, relative, image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix == ".jpg" else [])


# zlib's default level: a third of the bytes of OpenCV's fastest bilevel setting for about 0.1 ms
# more a mask, and the same decode time
MASK_PNG = [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 6]


def write_mask(run_dir: Path, relative: str, mask: np.ndarray) -> None:
    """A face mask (uint8 [H, W], face > 127) as a lossless 1-bit PNG, written atomically."""
    binary = (np.asarray(mask) > 127).astype(np.uint8)  # bilevel keeps 0 and nonzero; > 127 as readers do
    _encode_and_write(run_dir, relative, binary, MASK_PNG)


def _encode_and_write(run_dir: Path, relative: str, image: np.ndarray, params: list[int]) -> None:
    ok, encoded = cv2.imencode(Path(relative).suffix, image, params)
    if not ok:
        raise RuntimeError(f"could not encode {relative}")
    atomic_write_bytes(Path(run_dir) / relative, encoded.tobytes(), durable=False)
