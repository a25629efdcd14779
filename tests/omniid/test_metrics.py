"""The evaluation's face metrics on known cases, with real face photos that ship in packages and
the offline preset's real models (YuNet + dlib 68, SFace, solvePnP); the pose error in degrees."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from mfhq.sample import _photo_file, PHOTOS
from omniid.metrics import FaceMetrics, NoImage, id_similarity, pose_error, ref_similarity

SAMPLE = Path(__file__).resolve().parents[2] / "pipelines" / "sample.yaml"


@pytest.fixture(scope="module")
def metrics() -> FaceMetrics:
    return FaceMetrics(SAMPLE)


def t1_person(index: int) -> np.ndarray:
    """One person of insightface's group photo, cut out with room around the face (RGB)."""
    x, y, w, h = PHOTOS[f"t1_face{index}"].box
    photo = cv2.imread(str(_photo_file(f"t1_face{index}")))[..., ::-1]
    return np.ascontiguousarray(photo[max(0, y - h): y + 2 * h, max(0, x - w): x + 2 * w])


def test_models_come_from_the_preset(metrics):
    assert metrics.models["identity_model"] == "sface"
    assert metrics.models["pose_model"] == "pnp68"
    assert metrics.models["detector"] == "yunet-dlib68"


def test_an_image_against_itself_scores_one_and_another_person_less(metrics):
    astronaut = skimage.data.astronaut()
    a, again, other = metrics.analyse([astronaut, astronaut.copy(), t1_person(0)])
    assert id_similarity(a, again) == pytest.approx(1.0, abs=1e-5)
    assert pose_error(a, again) == pytest.approx(0.0, abs=1e-3)
    assert id_similarity(a, other) < 0.5
    # Sim(Ref) is the similarity to the nearest input
    assert ref_similarity(a, [other, again]) == pytest.approx(1.0, abs=1e-5)


def test_a_flipped_face_has_yaw_and_roll_of_opposite_sign(metrics):
    person = t1_person(0)  # turned about 20 degrees: a clear yaw
    face, flipped = metrics.analyse([person, np.ascontiguousarray(person[:, ::-1])])
    assert abs(face.pose[0]) > 5
    assert np.sign(face.pose[0]) == -np.sign(flipped.pose[0])
    assert np.sign(face.pose[2]) == -np.sign(flipped.pose[2])
    assert flipped.pose[1] == pytest.approx(face.pose[1], abs=5)  # pitch does not change sides
    assert id_similarity(face, flipped) > 0.6


@pytest.mark.parametrize("degrees", [20, -20])
def test_the_pose_error_is_in_degrees(metrics, degrees):
    """The face turned in the image plane by 20 degrees (about its centre, cv2's counter-clockwise
    positive): its roll moves by about 20 and the pose error, |dyaw| + |dpitch| + |droll|, is about
    20 degrees too (yaw and pitch move a few degrees as the 68 points are refit)."""
    astronaut = skimage.data.astronaut()
    [face] = metrics.analyse([astronaut])
    centre = (float(face.box[0] + face.box[2]) / 2, float(face.box[1] + face.box[3]) / 2)
    turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    turned = cv2.warpAffine(astronaut, turn, astronaut.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    [moved] = metrics.analyse([turned])
    assert moved.pose[2] - face.pose[2] == pytest.approx(degrees, abs=4)
    assert abs(degrees) - 2 < pose_error(moved, face) < abs(degrees) + 10


def test_no_face_scores_zero_id_sim_and_leaves_pose_and_sim_ref_undefined(metrics):
    blank = np.full((160, 160, 3), 127, np.uint8)
    face, none = metrics.analyse([skimage.data.astronaut(), blank])
    assert none is None
    assert id_similarity(none, face) == 0.0
    assert np.isnan(pose_error(none, face))
    assert np.isnan(ref_similarity(none, [face]))  # undefined, not 0: a failure must not read as "copies less"


def test_a_missing_image_is_an_error_naming_it(metrics, tmp_path):
    with pytest.raises(NoImage, match="nowhere.jpg"):
        metrics.analyse([tmp_path / "nowhere.jpg"])


@pytest.mark.slow  # builds RepVGG-B1g2 (~15 s on 2 shared cores)
def test_a_crop_based_pose_model_from_the_preset(tmp_path):
    """The paper profile's 6DRepNet (random weights here) takes aligned crops: the same wiring."""
    import torch

    from mfhq.models.sixdrep_pose import SIXDREPNET, import_sixdrepnet

    network, _ = import_sixdrepnet()
    torch.manual_seed(0)
    torch.save(network(backbone_name="RepVGG-B1g2", backbone_file="", deploy=True, pretrained=False).state_dict(),
               tmp_path / SIXDREPNET.name)
    preset = tmp_path / "sixdrep.yaml"
    preset.write_text("name: sixdrep\ndetect: {backend: yunet-dlib68}\nembed: {backend: sface}\n"
                      "pose: {backend: 6drepnet}\n")
    metrics = FaceMetrics(preset, models_dir=tmp_path)
    assert metrics.models["pose_model"] == "6drepnet" and "6drepnet@" in metrics.models["provenance"]
    face, again = metrics.analyse([skimage.data.astronaut()] * 2)
    assert np.isfinite(face.pose).all() and pose_error(face, again) == pytest.approx(0.0, abs=1e-3)


def test_the_facade_steps_give_what_analyse_gives(metrics):
    """mfhq.faces: the largest face, its ArcFace-template crop and its embedding, one step at a time."""
    astronaut = skimage.data.astronaut()
    faces = metrics.faces
    face = faces.analyse([astronaut])[0]
    box, points, score = faces.largest_face(astronaut)
    assert np.array_equal(box, face.box) and score == face.score
    crop = faces.align(astronaut, points)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(faces.embed(crop[None])[0], face.embedding, atol=1e-6)
    assert faces.largest_face(np.full((160, 160, 3), 127, np.uint8)) is None
