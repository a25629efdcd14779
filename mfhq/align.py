"""Face alignment geometry: the ArcFace 5-point template and the FFHQ quad.

Landmark order everywhere: left eye, right eye, nose tip, left mouth corner, right mouth corner
(image left/right, as detectors report them).
"""
from __future__ import annotations

import cv2
import numpy as np

# ArcFace's 112x112 template (insightface's reference points). x4 gives the 448 px crop.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATES = ("arcface", "ffhq")


def arcface_template(size: int) -> np.ndarray:
    return ARCFACE_112 * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst; 2x3.

    Umeyama's closed form: no RANSAC, because with 5 points every point matters.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / src_c.var(0).sum()
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def ffhq_transform(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The FFHQ crop: an oriented square built from the eyes and mouth, mapped to size x size.

    Follows the FFHQ recipe's geometry: the square's side is the larger of 2x the eye distance
    and 1.8x the eye-to-mouth distance, centred a little below the eyes.
    """
    lm = np.asarray(landmarks, np.float64)
    eye_left, eye_right = lm[0], lm[1]
    mouth = (lm[3] + lm[4]) / 2
    eye_mid = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth - eye_mid
    # Horizontal axis: the eye line, corrected by the perpendicular of the eye-mouth line.
    x_axis = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x_axis /= np.hypot(*x_axis)
    half = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    x_axis *= half
    y_axis = np.array([-x_axis[1], x_axis[0]])
    centre = eye_mid + eye_to_mouth * 0.1
    quad = np.array([centre - x_axis - y_axis, centre - x_axis + y_axis, centre + x_axis + y_axis])
    target = np.array([[0, 0], [0, size], [size, size]], dtype=np.float64)
    return cv2.getAffineTransform(quad.astype(np.float32), target.astype(np.float32)).astype(np.float64)


def alignment_transform(landmarks: np.ndarray, template: str, size: int) -> np.ndarray:
    if template == "arcface":
        return similarity_transform(landmarks, arcface_template(size))
    if template == "ffhq":
        return ffhq_transform(landmarks, size)
    raise ValueError(f"unknown alignment template {template!r}; use one of {TEMPLATES}")


def transform_scale(matrix: np.ndarray) -> float:
    """Output pixels per source pixel of a similarity/affine transform."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def source_extent(matrix: np.ndarray, size: int) -> float:
    """The source side length (px) that the size x size crop covers: < size means upsampling."""
    return size / transform_scale(matrix)


def out_of_frame(matrix: np.ndarray, size: int, width: int, height: int) -> float:
    """The fraction of the size x size crop that lies outside the width x height source frame.

    The crop's corners, mapped back to the source, bound a parallelogram; its overlap with the
    frame rectangle is exact (convex polygon intersection), so no mask is drawn."""
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    quad = apply_transform(inverse, corners).astype(np.float32)
    frame = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    total = abs(cv2.contourArea(quad))
    if total <= 0:
        return 1.0
    inside, _ = cv2.intersectConvexConvex(quad, frame)
    return float(min(max(1.0 - inside / total, 0.0), 1.0))


BORDER_VALUE = (0, 0, 0)  # what fills the crop outside the frame (insightface's norm_crop does the same)


def warp(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    # A constant border, never a mirror: a reflected half-face looks like a real, symmetric
    # face to quality and identity models. Faces with much of it are dropped (out_of_frame).
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BORDER_VALUE)


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]
