"""The offline profile's pose (pnp68) on known rotations, and its face mask against a fringe."""
from __future__ import annotations

import av
import cv2
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


def test_hull_mask_leaves_the_astronauts_fringe_out(astronaut_hull):
    found, matrix, crop, mask = (astronaut_hull[k] for k in ("found", "matrix", "crop", "mask"))
    shape = found.landmarks68[0] @ matrix[:, :2].T + matrix[:, 2]
    # The fringe: dark (hair) pixels in the 80 rows above the brows, between the eyes' outer
    # corners. Her skin there is bright (gray > 170), her hair darker (< 140).
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    top = int(shape[17:27, 1].min())
    region = np.zeros(mask.shape, bool)
    region[top - 80:top, int(shape[36, 0]):int(shape[45, 0])] = True
    hair = region & (gray < 120)
    assert hair.sum() > 3000  # the photo does have a fringe there
    assert (mask[hair] > 0).mean() < 0.02
    # ... while brows, eyes, nose and mouth stay face.
    for x, y in shape[17:68]:
        assert mask[int(round(y)), int(round(x))] == 255


def test_hull_from_the_detectors_68_points_matches_the_hull_dlib_finds_on_the_crop(astronaut_hull):
    """The extract gives the hull the detector's 68 points (mapped into the crop) instead of
    running dlib again on the crop: the same mask, to a sliver along its edge."""
    from mfhq.align import apply_transform
    from mfhq.models import create_backend

    parsing = create_backend("parsing", "dlib68-hull")
    parsing.setup()
    dense = apply_transform(astronaut_hull["matrix"], astronaut_hull["found"].landmarks68[0])
    mask = parsing.masks(astronaut_hull["crop"][None], astronaut_hull["in_crop"][None], landmarks68=dense[None])[0]
    on_crop = astronaut_hull["mask"] > 0
    ours = mask > 0
    iou = (ours & on_crop).sum() / (ours | on_crop).sum()
    assert iou > 0.95, iou  # measured 0.976
    # NaN points (a detector without 68) fall back to dlib on the crop: the crop's own mask.
    fallback = parsing.masks(astronaut_hull["crop"][None], astronaut_hull["in_crop"][None],
                             landmarks68=np.full((1, 68, 2), np.nan))[0]
    assert np.array_equal(fallback, astronaut_hull["mask"])
