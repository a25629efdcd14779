"""Face mask from dlib's 68 landmarks: the jaw-and-brow hull, cut just above the brows.

Not a parsing network (no face-parsing weights ship in any registry package): a geometric
mask from a real landmark model (dlib's 68-point shape predictor, CC0 weights in
`face-recognition-models`). It marks skin, brows, eyes, nose and mouth as face and leaves hair,
neck and background out, which is what the MTD loss needs. Landmarks say nothing about where
the hairline is: a hull raised far over the forehead took in any fringe (on the astronaut photo,
a hull lifted by 45% of the face's height was a third hair above the brows), so the hull stops
a small fixed fraction above the brows' top line and gives up the upper forehead instead. The paper's backend
(facexlib parsing) replaces it in pipelines/paper.yaml.
"""
from __future__ import annotations

import numpy as np

from mfhq.models.base import Backend
from mfhq.models.weights import WeightFile

SHAPE_68 = WeightFile(
    name="shape_predictor_68_face_landmarks.dat",
    package="face_recognition_models",
    package_path="models/shape_predictor_68_face_landmarks.dat",
    sha256=None,  # checked by provenance hash; upstream publishes no digest for this copy
    origin="dlib-models shape_predictor_68_face_landmarks, shipped in the face-recognition-models sdist",
    fetch="pip install face-recognition-models==0.3.0",
    licence="CC0 (as distributed by face-recognition-models); iBUG 300-W annotations are research-only",
)

# The hull's top: the brows' points raised by this fraction of the brows'-top-to-chin height
# (5%: about 14 px on a 448 crop), enough to keep the brows whole, not enough to reach a fringe.
FOREHEAD_LIFT = 0.05


class DlibHullParsing(Backend):
    name = "dlib68-hull"
    task = "parsing"
    licence = SHAPE_68.licence
    weight_files = (SHAPE_68,)

    def load(self) -> None:
        # The predictor (~100 MB in memory, ~1 s to read) is read on first use only: with the
        # yunet-dlib68 detector every face arrives with its 68 points and it is never needed.
        self._predictor = None

    # The detector's 68 points (mapped into each crop) are taken where it found them: the same
    # predictor at source resolution, so running it again on the crop (~6 ms) adds nothing.
    wants_landmarks68 = True

    def masks(self, crops: np.ndarray, landmarks: np.ndarray, landmarks68: np.ndarray | None = None) -> np.ndarray:
        """crops [N, S, S, 3]; landmarks [N, 5, 2] in the crops; landmarks68 [N, 68, 2] in the
        crops, NaN (or None) where the detector gave none: then dlib runs on the crop."""
        import cv2

        out = np.zeros(crops.shape[:3], np.uint8)
        for i, (crop, points) in enumerate(zip(crops, landmarks)):
            known = None if landmarks68 is None else np.asarray(landmarks68[i], np.float64)
            if known is not None and np.isfinite(known).all():
                shape = known
            else:
                shape = self._shape(crop, np.asarray(points, np.float64))
            jaw, brows = shape[0:17], shape[17:27]
            chin_y = jaw[:, 1].max()
            lift = FOREHEAD_LIFT * (chin_y - brows[:, 1].min())
            # Raised along the face's own vertical (jaw top ends to chin), so a rolled face's
            # hull is cut parallel to its brows, not to the crop's rows.
            up = (jaw[0] + jaw[16]) / 2 - jaw[8]
            up /= max(np.linalg.norm(up), 1e-6)
            hull = cv2.convexHull(np.concatenate([jaw, brows + lift * up]).astype(np.int32))
            cv2.fillConvexPoly(out[i], hull, 255)
        return out

    def _shape(self, crop: np.ndarray, points: np.ndarray) -> np.ndarray:
        # A box around the 5 landmarks, sized like dlib's detector boxes (the predictor was
        # trained on those), so it works on any crop template.
        eye_mid = points[:2].mean(0)
        mouth_mid = points[3:5].mean(0)
        span = max(np.linalg.norm(points[1] - points[0]) * 2.1, np.linalg.norm(mouth_mid - eye_mid) * 2.6)
        centre = (eye_mid + mouth_mid) / 2
        x1, y1 = centre - span / 2
        import dlib

        if self._predictor is None:
            self._predictor = dlib.shape_predictor(str(self.paths[SHAPE_68.name]))
        rect = dlib.rectangle(int(x1), int(y1), int(x1 + span), int(y1 + span))
        rgb = np.ascontiguousarray(crop[..., ::-1])
        shape = self._predictor(rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
