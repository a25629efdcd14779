"""Head pose by solvePnP of landmarks on a generic 3D face: `pnp68` (dlib's 68 points) and `pnp5`.

No weights: geometric estimators, enough to spread the sampled faces over pose. `pnp68` fits
the 68 points the offline detector (yunet-dlib68) already found, on the 3D face of
mfhq/models/face3d68.py. Five points are too few to pin pitch: on the frontal astronaut photo
pnp5 reads pitch -10.5 degrees and pnp68 -4.4; on the sample's astronaut_motion clip their
pitch averages -9.1 and -2.3 (tests/mfhq/models/test_pnp_pose.py). pnp5 is kept for detectors that
give 5 points only. pnp68 fits a face without 68 points (a source's own 5-point
annotation) with the 5-point model. The paper's backend (6DRepNet) replaces both in
pipelines/paper.yaml.

Angles, in degrees: yaw > 0 when the face turns towards the image's right, pitch > 0 when it
looks up, roll > 0 when the face is rotated counter-clockwise in the image.
"""
from __future__ import annotations

import numpy as np

from mfhq.models.face3d68 import FACE_MODEL_68
from mfhq.models.base import Backend

# A mean adult face in millimetres (interpupillary ~63, mouth ~50 wide, eyes to mouth ~55),
# camera-style axes (x right, y down, z away from the camera), the nose tip at the origin.
# Order: left eye, right eye, nose tip, left and right mouth corners.
FACE_MODEL_5 = np.array(
    [[-31.5, -30.0, 30.0], [31.5, -30.0, 30.0], [0.0, 0.0, 0.0], [-25.0, 25.0, 20.0], [25.0, 25.0, 20.0]],
    dtype=np.float64,
)


def rotation_to_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from a model-to-camera rotation, R = Rz(roll) Ry(yaw) Rx(pitch)."""
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    yaw = np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    # Image y points down, so a counter-clockwise turn on screen is a negative angle here; and a
    # face looking up rotates about x the negative way. Flip to the documented convention.
    return float(-yaw), float(-pitch), float(-roll)


class PnPPose(Backend):
    name = "pnp5"
    task = "pose"
    licence = "n/a (geometric, no weights)"
    reads_crops = False  # landmarks only: the pose stage passes crops=None

    def load(self) -> None:
        import cv2

        self._cv2 = cv2

    def estimate(self, landmarks: np.ndarray, frame_sizes: np.ndarray, crops=None) -> np.ndarray:
        out = np.full((len(landmarks), 3), np.nan, np.float32)
        for i, (points, (width, height)) in enumerate(zip(landmarks, frame_sizes)):
            out[i] = self._one(np.asarray(points, np.float64), float(width), float(height))
        return out

    def _one(self, points: np.ndarray, width: float, height: float, model: np.ndarray = FACE_MODEL_5,
             centre: np.ndarray | None = None) -> tuple[float, float, float]:
        cv2 = self._cv2
        focal = max(width, height)
        # The principal point sits on the face: pose is measured against the line of sight to
        # the face, as crop-based estimators (6DRepNet) see it, so a frontal face near the
        # frame's edge is still frontal.
        centre = points.mean(0) if centre is None else centre
        camera = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]], np.float64)
        ok, rvec, tvec = cv2.solvePnP(model, points, camera, None, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            return (np.nan, np.nan, np.nan)
        if tvec[2, 0] < 0:  # EPnP can land behind the camera on near-planar fits: flip through.
            rvec, tvec = -rvec, -tvec
        ok, rvec, tvec = cv2.solvePnP(model, points, camera, None, rvec, tvec, True, flags=cv2.SOLVEPNP_ITERATIVE)
        rotation, _ = cv2.Rodrigues(rvec)
        return rotation_to_angles(rotation)


class PnP68Pose(PnPPose):
    """solvePnP of dlib's 68 landmarks; `estimate` takes them as `landmarks68` [N, 68, 2] (NaN rows:
    none for that face, which is then fitted on its 5 points)."""

    name = "pnp68"
    wants_landmarks68 = True

    @property
    def provenance(self) -> str:
        # No weight file, but the 3D face is this backend's model: its hash marks the rows, so
        # a changed table is a changed model to provenance and to a resume.
        import hashlib

        return f"{self.name}@{hashlib.sha256(FACE_MODEL_68.tobytes()).hexdigest()[:12]}"

    def estimate(self, landmarks: np.ndarray, frame_sizes: np.ndarray, crops=None,
                 landmarks68: np.ndarray | None = None) -> np.ndarray:
        out = np.full((len(landmarks), 3), np.nan, np.float32)
        for i, (points, (width, height)) in enumerate(zip(landmarks, frame_sizes)):
            dense = None if landmarks68 is None else np.asarray(landmarks68[i], np.float64)
            five = np.asarray(points, np.float64)
            if dense is None or not np.isfinite(dense).all():
                out[i] = self._one(five, float(width), float(height))
            else:
                # The same principal point as pnp5 (the 5 points' mean), so the two agree on
                # what "frontal" means for a face off the frame's centre.
                out[i] = self._one(dense, float(width), float(height), FACE_MODEL_68, five.mean(0))
        return out
