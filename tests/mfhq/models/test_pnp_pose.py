"""The offline profile's pose (pnp68) on known rotations, and its fall-back to five points."""
from __future__ import annotations

import av
import numpy as np
import pytest
import skimage.data

from mfhq.models import create_backend


@pytest.fixture(scope="module")
def poses():
    out = {}
    for name in ("pnp5", "pnp68"):
        out[name] = create_backend("pose", name)
        out[name].setup()
    return out


def _pose(detector, poses, frame):
    found = detector.detect([frame])[0]
    i = int(np.argmax(found.boxes[:, 2] - found.boxes[:, 0]))
    size = np.array([[frame.shape[1], frame.shape[0]]])
    five = poses["pnp5"].estimate(found.landmarks[i:i + 1], size)[0]
    dense = poses["pnp68"].estimate(found.landmarks[i:i + 1], size, landmarks68=found.landmarks68[i:i + 1])[0]
    return five, dense


def test_pnp68_reads_a_frontal_photo_as_frontal(detector, poses):
    astronaut = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
    five, dense = _pose(detector, poses, astronaut)
    # The photo faces the camera: pnp68 is within a few degrees; pnp5's 3D face reads it as
    # looking down by about 10 degrees (measured: pnp5 pitch -10.5, pnp68 -4.4).
    assert abs(dense[0]) < 4 and abs(dense[1]) < 6
    assert abs(dense[1]) < abs(five[1]) - 3


def test_pnp68_follows_the_samples_known_rotations(detector, poses, sample_dir):
    from mfhq.sample import _plan_clips

    frames = _plan_clips(np.random.default_rng(0))["astronaut_motion"][0]  # the sample's seed 0
    known, rolls, pitches = [], [], []
    with av.open(str(sample_dir / "videos" / "astronaut_motion.mp4")) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k % 4:
                continue
            _, dense = _pose(detector, poses, frame.to_ndarray(format="bgr24"))
            known.append(frames[k].layers[0][1].angle)
            rolls.append(dense[2])
            pitches.append(dense[1])
    known, rolls = np.array(known), np.array(rolls)
    assert np.ptp(known) > 20  # the clip does turn
    # The sample turns the photo by `angle` in its own (clockwise-positive) sense; roll is
    # counter-clockwise-positive, so roll = the photo's own roll - angle.
    offset = np.median(rolls + known)
    assert np.abs(rolls + known - offset).max() < 2.5
    # An in-plane turn and a slide do not tilt the head: pitch stays near frontal throughout.
    assert abs(np.mean(pitches)) < 6 and np.std(pitches) < 2.5


def test_pnp68_falls_back_to_five_points_where_a_face_has_no_68(detector, poses):
    astronaut = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
    found = detector.detect([astronaut])[0]
    size = np.array([[512, 512]])
    none = np.full((1, 68, 2), np.nan, np.float32)
    fallback = poses["pnp68"].estimate(found.landmarks[:1], size, landmarks68=none)[0]
    np.testing.assert_allclose(fallback, poses["pnp5"].estimate(found.landmarks[:1], size)[0])


def _projected_face(axis: int, degrees: float):
    """The 3D face's 68 points turned about one camera axis and seen by a pinhole camera, with
    the 5 points a detector would give (eye centres, nose tip, mouth corners)."""
    import cv2

    from mfhq.models.face3d68 import FACE_MODEL_68

    rvec = np.zeros(3)
    rvec[axis] = np.radians(degrees)
    camera = np.array([[512, 0, 256], [0, 512, 256], [0, 0, 1]], np.float64)
    dense = cv2.projectPoints(FACE_MODEL_68, rvec, np.array([0, 0, 600.0]), camera, None)[0][:, 0]
    five = np.array([dense[36:42].mean(0), dense[42:48].mean(0), dense[30], dense[48], dense[54]])
    return five, dense


@pytest.mark.parametrize("degrees", [25.0, -25.0])
def test_yaw_and_pitch_signs_follow_where_the_nose_moves_in_the_image(poses, degrees):
    # Every other pose test here is frontal, an in-plane turn or a mirror pair, which all pass
    # with yaw's or pitch's sign flipped. Which way the face turned is read off the picture
    # (the nose tip against the eyes), not off the rotation's own sign convention.
    size = np.array([[512, 512]])
    frontal, _ = _projected_face(0, 0.0)
    turned, dense = _projected_face(1, degrees)  # about the vertical axis
    towards_right = np.sign(turned[2, 0] - turned[:2, 0].mean())
    yaw68 = poses["pnp68"].estimate(turned[None], size, landmarks68=dense[None])[0][0]
    yaw5 = poses["pnp5"].estimate(turned[None], size)[0][0]
    assert np.sign(yaw68) == np.sign(yaw5) == towards_right  # yaw > 0: turned to the image's right
    assert abs(yaw68) == pytest.approx(25, abs=3)
    tilted, dense = _projected_face(0, degrees)  # about the horizontal axis
    # Looking up brings the nose tip, in front of the eyes, up towards them in the picture.
    looks_up = np.sign((frontal[2, 1] - frontal[:2, 1].mean()) - (tilted[2, 1] - tilted[:2, 1].mean()))
    pitch68 = poses["pnp68"].estimate(tilted[None], size, landmarks68=dense[None])[0][1]
    assert np.sign(pitch68) == looks_up  # pitch > 0: looking up
    assert abs(pitch68) == pytest.approx(25, abs=3)
