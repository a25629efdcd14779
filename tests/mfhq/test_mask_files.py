"""Face masks on disk: lossless 1-bit (bilevel) PNGs, 1 = face, which any PNG reader expands to
the 0/255 mask the worker made; extract's one pass writes them (and `mfhq materialize` the same
bytes: tests/mfhq/test_materialize.py)."""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from mfhq.worker.images import write_image, write_mask


def _bit_depth(path) -> int:
    """The PNG header's bit depth (IHDR: 8-byte signature, 8-byte chunk head, width, height, depth)."""
    return path.read_bytes()[24]


def test_a_mask_is_written_as_a_lossless_1_bit_png(astronaut_hull, tmp_path):
    mask = astronaut_hull["mask"]
    assert set(np.unique(mask)) == {0, 255}
    write_mask(tmp_path, "masks/face.png", mask)
    written = tmp_path / "masks" / "face.png"
    assert _bit_depth(written) == 1
    assert np.array_equal(cv2.imread(str(written), cv2.IMREAD_UNCHANGED), mask)  # 1 expands to 255
    with Image.open(written) as opened:
        assert opened.mode == "1" and np.array_equal(np.asarray(opened), mask == 255)
    write_image(tmp_path, "eight_bit.png", mask, 95)  # how runs made before wrote masks
    assert written.stat().st_size < (tmp_path / "eight_bit.png").stat().st_size


def test_the_same_mask_gives_the_same_bytes(astronaut_hull, tmp_path):
    """What lets materialize write the very files of the one pass."""
    write_mask(tmp_path, "a.png", astronaut_hull["mask"])
    write_mask(tmp_path, "b.png", astronaut_hull["mask"].copy())
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_extract_writes_1_bit_masks_of_the_faces(sample_run):
    masks = sorted((sample_run / "masks").rglob("*.png"))
    assert masks
    for path in masks:
        assert _bit_depth(path) == 1, path
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert pixels.shape == (448, 448) and set(np.unique(pixels)) <= {0, 255}
    assert any(0.2 < (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) > 0).mean() < 0.8 for p in masks)
