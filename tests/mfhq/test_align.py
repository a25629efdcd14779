"""Alignment lands landmarks on the template; roll follows an in-plane rotation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mfhq.align import ARCFACE_112, alignment_transform, apply_transform, arcface_template, similarity_transform, warp
from mfhq.models import create_backend


def _landmarks(detector, image):
    found = detector.detect([image])[0]
    assert len(found.scores) >= 1, "no face found"
    return found.landmarks[int(np.argmax(found.scores))].astype(np.float64)


def test_aligned_landmarks_land_on_the_arcface_template(detector, astronaut):
    matrix = alignment_transform(_landmarks(detector, astronaut), "arcface", 448)
    crop = warp(astronaut, matrix, 448)
    # Detect again on the crop, padded so the face does not fill the whole input.
    padded = cv2.copyMakeBorder(crop, 224, 224, 224, 224, cv2.BORDER_REFLECT_101)
    again = _landmarks(detector, padded) - 224
    # In pixels of ArcFace's own 112 px template. Five points cannot all fit a 4-parameter
    # similarity exactly: a smiling mouth is wider than the template's, so the corners sit
    # further out than the eyes and nose, which the fit holds within a few pixels.
    error = np.linalg.norm(again - arcface_template(448), axis=1) / 4
    assert error[:2].max() < 4.0, error   # eyes
    assert error[2] < 5.0, error          # nose tip
    assert error[3:].max() < 10.0, error  # mouth corners


@pytest.mark.parametrize("size", [448, 224])
def test_crop_scales_insightfaces_112_px_reference_by_size_over_112(detector, astronaut, size):
    # The test above checks the crop against arcface_template(), so a wrong scale inside it
    # (a 128 px base, say) moves both sides alike. Here the anchor is the 112 px reference
    # itself: ArcFace and the baselines' 112 px read assume the face fills the crop this way.
    matrix = alignment_transform(_landmarks(detector, astronaut), "arcface", size)
    pad = size // 2
    padded = cv2.copyMakeBorder(warp(astronaut, matrix, size), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    again = _landmarks(detector, padded) - pad
    error = np.linalg.norm(again - ARCFACE_112 * (size / 112), axis=1) / (size / 112)
    # eyes and nose tip, in 112 px template pixels: 3.2-4.4 here, 9.1 with a 128 px base
    assert error[:3].max() < 5.5, error
    eyes = np.hypot(*(again[1] - again[0])) / (size / 112)
    assert eyes == pytest.approx(73.5318 - 38.2946, rel=0.1)


def test_the_arcface_crop_centres_the_face_left_to_right(detector, astronaut):
    # The tests above measure the crop against ARCFACE_112 itself, so a wrong constant passes them:
    # insightface's 96 px wide template (every x 8 px less), copied for the 112 px one, puts the
    # face 8 px left of centre, off where ArcFace and the baselines' 112 px read expect it. ArcFace's
    # 112 x 112 template is symmetric about x = 56: eyes, nose tip and mouth corners average 56.
    matrix = alignment_transform(_landmarks(detector, astronaut), "arcface", 448)
    padded = cv2.copyMakeBorder(warp(astronaut, matrix, 448), 224, 224, 224, 224, cv2.BORDER_REFLECT_101)
    again = (_landmarks(detector, padded) - 224) / 4  # in 112 px template pixels
    # eye midpoint 55.9, nose 57.0, mouth midpoint 55.5 here; about 48 with the 96 px template
    for x in (again[:2, 0].mean(), again[2, 0], again[3:, 0].mean()):
        assert abs(x - 56) < 3, again


@pytest.mark.parametrize("angle,scale", [(20, 1.0), (-20, 1.3), (10, 0.8)])
def test_alignment_undoes_rotation_and_scale(detector, astronaut, angle, scale):
    landmarks = _landmarks(detector, astronaut)
    reference = apply_transform(alignment_transform(landmarks, "arcface", 448), landmarks)
    moved = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), angle, scale), (512, 512))
    moved_landmarks = _landmarks(detector, moved)
    aligned = apply_transform(alignment_transform(moved_landmarks, "arcface", 448), moved_landmarks)
    assert np.linalg.norm(aligned - reference, axis=1).max() < 4.0


def test_ffhq_crop_is_level_and_centred(detector, astronaut):
    landmarks = _landmarks(detector, astronaut)
    matrix = alignment_transform(landmarks, "ffhq", 512)
    eyes = apply_transform(matrix, landmarks[:2])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 3            # the eye line is level
    assert abs(eyes.mean(0)[0] - 256) < 12             # the face is centred horizontally
    # FFHQ: the square is 4x the eye distance wide, unless the eye-mouth span asks for more.
    assert 0.2 * 512 < eyes[1, 0] - eyes[0, 0] <= 0.25 * 512 + 1


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = np.radians(17), 2.5, np.array([12.0, -7.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_transform(points, points @ rotation.T + shift)
    assert np.allclose(matrix[:, :2], rotation, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("angle", [20, -20])
def test_rotating_a_copy_by_20_degrees_changes_roll_by_20(detector, astronaut, angle):
    pose = create_backend("pose", "pnp5")
    pose.setup()
    size = np.array([[512, 512]])
    base = pose.estimate(_landmarks(detector, astronaut)[None], size)[0]
    rotated = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), angle, 1.0), (512, 512))
    turned = pose.estimate(_landmarks(detector, rotated)[None], size)[0]
    # cv2's positive angle turns the image counter-clockwise: roll's positive direction.
    assert turned[2] - base[2] == pytest.approx(angle, abs=3)
