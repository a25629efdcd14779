"""The crop and mask files, written one way for both paths that make them: extract's one pass and
`mfhq materialize` (align.crops: materialize). Same pixels and same encoder settings give the same
bytes, so the two paths write identical files; the digest says whether the pixels are the same."""
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
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix == ".jpg" else []
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise RuntimeError(f"could not encode {relative}")
    atomic_write_bytes(Path(run_dir) / relative, encoded.tobytes(), durable=False)
