"""The trainer reads both mask files mfhq has written, to the same bool mask: 1-bit PNGs (1 =
face, today) and 8-bit ones (255 = face, runs made before); its items are identical either way."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mfhq.worker.images import write_image
from omniid.data import FewToManyDataset, load_manifest
from omniid.preprocess import load_mask, mask_to_tensor
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="module")
def both_formats(sample_manifest, tmp_path_factory) -> tuple[dict, dict]:
    """(the manifest's identities, the same with each mask re-encoded as an 8-bit PNG)."""
    identities, folder = load_manifest(sample_manifest), tmp_path_factory.mktemp("eight_bit")
    eight_bit = {}
    for name, faces in identities.items():
        eight_bit[name] = []
        for i, (crop, mask) in enumerate(faces):
            relative = f"{name}/{i}.png"
            write_image(folder, relative, cv2.imread(str(mask), cv2.IMREAD_UNCHANGED), 95)  # the writer before
            eight_bit[name].append((crop, folder / relative))
    return identities, eight_bit


def _masks(identities: dict) -> list[Path]:
    return [mask for faces in identities.values() for _, mask in faces]


def test_the_two_files_are_the_two_formats(both_formats):
    one_bit, eight_bit = (_masks(i) for i in both_formats)
    for new, old in zip(one_bit, eight_bit):
        with Image.open(new) as a, Image.open(old) as b:
            assert (a.mode, b.mode) == ("1", "L")


@pytest.mark.parametrize("side", [448, 224, 112, 100])
def test_both_formats_read_to_the_same_bool_mask(both_formats, side):
    one_bit, eight_bit = (_masks(i) for i in both_formats)
    faces = 0
    for new, old in zip(one_bit, eight_bit):
        mask = load_mask(new, side)
        assert mask.dtype == bool and mask.shape == (side, side)
        assert np.array_equal(mask, load_mask(old, side)), (new, side)
        assert torch.equal(mask_to_tensor(new, side), mask_to_tensor(old, side))
        faces += mask.any()
    assert faces == len(one_bit)  # every mask has a face: equal masks are not equal blanks


def test_a_mask_in_memory_reads_the_same_in_any_dtype(both_formats):
    path = _masks(both_formats[0])[0]
    eight = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    expected = load_mask(path, 224)
    for mask in (eight, eight > 127, Image.fromarray(eight > 127), Image.fromarray(eight)):
        assert np.array_equal(load_mask(mask, 224), expected)


@pytest.mark.parametrize("counts", [(3, 8), (2, 5)])
def test_items_are_identical_with_either_format(both_formats, counts):
    """The MTD stage's items (3 -> 8 at 224 px, the paper's; and another draw) tensor for tensor."""
    one_bit, eight_bit = (FewToManyDataset(i, 224, *counts, seed=3) for i in both_formats)
    for draw in range(6):
        new, old = one_bit[draw % len(one_bit), draw], eight_bit[draw % len(eight_bit), draw]
        assert new["target_paths"] == old["target_paths"]
        for key in ("inputs", "targets", "masks"):
            assert torch.equal(new[key], old[key]), (draw, key)
        assert new["masks"].sum() > 0


@pytest.mark.parametrize("side", [448, 224])
def test_the_mask_lies_on_the_crop_it_belongs_to(tmp_path, side):
    """The trainer's read of a crop and of its mask, as mfhq writes them (a 448 px JPEG, a 1-bit
    PNG), cover the same pixels: a mask read transposed or flipped would mask another part of the
    face. The face here is an off-centre, wide rectangle, so either shows."""
    from mfhq.worker.images import write_mask
    from omniid.crop_reader import CropReader

    face = np.zeros((448, 448), np.uint8)
    face[40:200, 100:420] = 255
    write_image(tmp_path, "crop.jpg", cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), 95)
    write_mask(tmp_path, "mask.png", face)
    image, mask = CropReader(side).read(tmp_path / "crop.jpg", tmp_path / "mask.png")
    assert mask.shape == image.shape[:2] == (side, side)
    assert np.mean((image.mean(axis=-1) > 127) == mask) > 0.99
