"""The offline face mask (the hull of dlib's 68 points): it covers the face, not the background or
the fringe, from the detector's points as from dlib's own on the crop."""
from __future__ import annotations

import cv2
import numpy as np

from mfhq.models import create_backend


def test_hull_mask_covers_the_face_not_the_background(astronaut_hull):
    in_crop, mask = astronaut_hull["in_crop"], astronaut_hull["mask"]
    for x, y in in_crop:  # eyes, nose and mouth are face
        assert mask[int(y), int(x)] == 255
    assert mask[:20, :20].max() == 0 and mask[-20:, -20:].max() == 0  # corners are not


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
