"""One preprocessing for training and inference (omniid.face_inputs): a photo is detected and
aligned as `mfhq extract` aligns crops, an aligned crop is used as it is, a photo without a face
is refused with its name. The detector is the sample preset's offline one, through mfhq.faces."""
from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from omniid.config import get_preset
from omniid.crop_reader import CropReader
from omniid.encoder import OmniIDEncoder
from omniid.errors import NoFace
from omniid.face_inputs import AS_IS, InputAligner, prepare_image
from omniid_fixtures import group_photo, one_torch_thread  # noqa: F401  (pytest fixture)

TINY = get_preset("tiny").model


@pytest.fixture(scope="module")
def aligner() -> InputAligner:
    return InputAligner("sample")


@pytest.fixture(scope="module")
def crop(aligner) -> np.ndarray:
    """The astronaut's face (scikit-image, public domain) as extract would crop it: RGB 448 px."""
    import skimage.data

    photo = skimage.data.astronaut()
    _, points, _ = aligner.faces.largest_face(photo)
    return aligner.faces.crop(photo, points)


def pasted(crop: np.ndarray, scale: float, x: int, y: int) -> np.ndarray:
    """The crop scaled and shifted into a larger noisy frame: a photo that is no aligned crop."""
    rng = np.random.default_rng(0)
    frame = rng.integers(40, 120, (640, 800, 3), dtype=np.uint8)
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


@pytest.fixture(scope="module")
def encoder() -> OmniIDEncoder:
    torch.manual_seed(0)
    return OmniIDEncoder(TINY).eval()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_encode_of_a_photo_equals_encode_of_its_aligned_crop(encoder, crop, aligner):
    photo = pasted(crop, 1.25, 150, 40)
    assert prepare_image(photo, 448, aligner).how == "face detected and aligned (arcface template, 448 px)"
    assert prepare_image(crop, 448, aligner).how == AS_IS
    reference = encoder.encode([crop])
    assert relative(encoder.encode([photo]), reference) < 0.15  # detector jitter only
    # the photo resized as it is (what encode() did before) is another input altogether
    assert relative(encoder.encode([photo], aligned=True), reference) > 0.5


def test_an_aligned_crop_gives_exactly_its_training_tensor(crop, aligner, tmp_path):
    path = tmp_path / "crop.jpg"
    Image.fromarray(crop).save(path)
    prepared = prepare_image(path, TINY.image_size, aligner)
    assert prepared.how == AS_IS
    reader = CropReader(TINY.image_size)  # what the training data path reads from a manifest's crop
    assert torch.equal(prepared.tensor, reader.tensors([reader.image(path)])[0])


def test_an_aligned_crop_gives_exactly_the_identity_models_training_face(crop, aligner, tmp_path):
    """The `arcface` baselines' 112 px read: the crop file's own, as the loaders read it; the same
    crop in memory gets the same 1/4 reduction (within the JPEG draft decode's rounding)."""
    from omniid.preprocess import IDENTITY_SIDE

    path = tmp_path / "crop.jpg"
    Image.fromarray(crop).save(path)
    prepared = prepare_image(path, TINY.image_size, aligner, identity_side=IDENTITY_SIDE)
    assert prepared.how == AS_IS and prepared.face.shape == (IDENTITY_SIDE, IDENTITY_SIDE, 3)
    assert np.array_equal(prepared.face, CropReader(IDENTITY_SIDE).image(path))
    with Image.open(path) as opened:
        decoded = np.asarray(opened.convert("RGB"))
    in_memory = prepare_image(decoded, TINY.image_size, aligner, identity_side=IDENTITY_SIDE).face
    error = np.abs(in_memory.astype(np.int16) - prepared.face)
    assert error.mean() < 1.0 and error.max() <= 16, (error.mean(), error.max())
    assert prepare_image(path, TINY.image_size).face is None  # not asked for: not read


def test_a_photo_without_a_face_is_refused_naming_the_file(encoder, crop, tmp_path):
    blank = tmp_path / "holiday.png"
    Image.new("RGB", (300, 200), (128, 128, 128)).save(blank)
    with pytest.raises(NoFace, match=r"holiday\.png: no face found by the sample preset's detector"):
        encoder.encode([crop, blank])
    with pytest.raises(NoFace, match="image 2 of identity 1"):  # an array has no name: its place says which
        encoder.encode([crop, np.full((200, 300, 3), 128, np.uint8)])


def test_from_pretrained_takes_the_runs_detector_and_precision(encoder, tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step-00000001"
    encoder.save_pretrained(step)
    (tmp_path / "run" / "preset.json").write_text(json.dumps({"name": "paper", "optim": {"bf16": False}}))
    loaded = OmniIDEncoder.from_pretrained(step)
    assert loaded.aligner.pipeline == "paper" and loaded.bf16 is False
    assert OmniIDEncoder.from_pretrained(step, pipeline="sample").aligner.pipeline == "sample"


def test_a_group_photo_takes_the_largest_face_warns_and_records_it(crop, aligner, tmp_path, caplog):
    photo = tmp_path / "group.png"
    large, small = group_photo(photo)
    with caplog.at_level(logging.WARNING, logger="omniid"):
        one = prepare_image(pasted(crop, 0.7, 300, 100), 448, aligner, "one.png")
        assert not caplog.records  # one face: nothing to say
        group = prepare_image(photo, 448, aligner)
    record = group.record()
    assert record["faces_found"] == 2 and one.record()["faces_found"] == 1
    box = np.asarray(record["face_box"])
    assert np.abs(box - large).max() < np.abs(box - small).max()  # the large face's box, not the small one's
    assert caplog.records[0].getMessage().startswith(f"{photo}: 2 faces found; took the largest")
    # an aligned crop given as such runs no detector: nothing found, nothing taken
    assert prepare_image(crop, 448).record() == {"how": "given as an aligned crop (resize and normalise only)",
                                                 "faces_found": None, "face_box": None,
                                                 "exif_orientation": None}
