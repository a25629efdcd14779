"""A generic 3D face for dlib's 68 landmarks, written from adult anthropometric averages.

Our own table (no upstream mean shape is copied): millimetres, camera-style axes (x to the
image's right, y down, z away from the camera), the nose tip (point 30) at the origin, the
face looking down -z. Widths follow common adult means: pupils 63 mm apart, eye corners at 16
and 46 mm from the midline, mouth 50 mm wide, nose tip 36 mm below the eye line and 72 mm above
the chin's lowest point; depths are behind the nose tip (eye corners 30-40 mm, mouth corners
32 mm, chin 28 mm, the jaw line running back to 95 mm near the ears). Only the image-left half
is listed; the right half mirrors it, in dlib's point order.
"""
from __future__ import annotations

import numpy as np

# (index, x, y, z) for the points on the image-left half and on the midline.
_LEFT = [
    # jaw, ear to chin
    (0, -70, -25, 95), (1, -69, -9, 88), (2, -67, 7, 80), (3, -64, 22, 72), (4, -59, 37, 62),
    (5, -51, 50, 52), (6, -36, 62, 42), (7, -19, 69, 33), (8, 0, 72, 28),
    # brow, outer to inner
    (17, -56, -52, 40), (18, -46, -58, 31), (19, -35, -61, 26), (20, -23, -60, 23), (21, -11, -56, 22),
    # nose bridge down to the tip, then the nostrils' lower edge
    (27, 0, -40, 24), (28, 0, -27, 18), (29, 0, -13, 11), (30, 0, 0, 0),
    (31, -14, 5, 18), (32, -7, 8, 15), (33, 0, 9, 15),
    # eye: outer corner, upper lid, inner corner, lower lid
    (36, -46, -35, 40), (37, -38, -40, 32), (38, -24, -40, 29), (39, -16, -36, 30), (40, -24, -32, 29),
    (41, -38, -32, 32),
    # lips, outer contour from the left corner, then the inner contour
    (48, -25, 27, 32), (49, -16, 23, 24), (50, -7, 20, 19), (51, 0, 21, 17),
    (57, 0, 37, 19), (58, -7, 36, 20), (59, -16, 33, 25),
    (60, -21, 27, 31), (61, -8, 25.5, 21), (62, 0, 26, 20), (66, 0, 29, 21), (67, -8, 28.5, 22),
]
# dlib's mirror pairs: (left index, right index).
_MIRROR = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
           + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
           + [(48, 54), (49, 53), (50, 52), (58, 56), (59, 55), (60, 64), (61, 63), (67, 65)])


def _build() -> np.ndarray:
    model = np.full((68, 3), np.nan)
    for index, x, y, z in _LEFT:
        model[index] = (x, y, z)
    for left, right in _MIRROR:
        model[right] = model[left] * (-1, 1, 1)
    assert not np.isnan(model).any()
    return model


FACE_MODEL_68 = _build()
