"""Head pose from the 5 landmarks: a generic 3D face model fitted with solvePnP.

No weights: a geometric estimator, good for roll and coarse yaw/pitch, enough to spread the
sampled faces over pose. The paper's backend (6DRepNet) replaces it in pipelines/paper.yaml.

Angles, in degrees: yaw > 0 when the face turns towards the image's right, pitch > 0 when it
looks up, roll > 0 when the face is rotated counter-clockwise in the image.
"""
from __future__ import annotations

import numpy as np

from mfhq.models.registry import Backend, register_backend

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


@register_backend
class PnPPose(Backend):
    name = "pnp5"
    task = "pose"
    licence = "n/a (geometric, no weights)"

    def load(self) -> None:
        import cv2

        self._cv2 = cv2

    def estimate(self, landmarks: np.ndarray, frame_sizes: np.ndarray, crops=None) -> np.ndarray:
        out = np.full((len(landmarks), 3), np.nan, np.float32)
        for i, (points, (width, height)) in enumerate(zip(landmarks, frame_sizes)):
            out[i] = self._one(np.asarray(points, np.float64), float(width), float(height))
        return out

    def _one(self, points: np.ndarray, width: float, height: float) -> tuple[float, float, float]:
        cv2 = self._cv2
        focal = max(width, height)
        # The principal point sits on the face: pose is measured against the line of sight to
        # the face, as crop-based estimators (6DRepNet) see it, so a frontal face near the
        # frame's edge is still frontal.
        centre = points.mean(0)
        camera = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]], np.float64)
        ok, rvec, tvec = cv2.solvePnP(FACE_MODEL_5, points, camera, None, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            return (np.nan, np.nan, np.nan)
        if tvec[2, 0] < 0:  # EPnP can land behind the camera on near-planar fits: flip through.
            rvec, tvec = -rvec, -tvec
        ok, rvec, tvec = cv2.solvePnP(FACE_MODEL_5, points, camera, None, rvec, tvec, True, flags=cv2.SOLVEPNP_ITERATIVE)
        rotation, _ = cv2.Rodrigues(rvec)
        return rotation_to_angles(rotation)
