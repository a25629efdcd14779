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
