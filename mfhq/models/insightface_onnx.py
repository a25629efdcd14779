"""insightface buffalo_l: SCRFD-10G detection with 5 landmarks, and the ArcFace R50 embedding.

Both are loaded through insightface's own classes (`SCRFD`, `ArcFaceONNX`), which read the
graph's strides, anchors and normalisation. We do the batching around them: insightface's
`SCRFD.detect` takes one image at a time, so we letterbox a whole chunk of frames to one size,
run the graph once on the batch, and decode anchors, landmarks and NMS here.

SCRFD graphs exported like det_10g fix their batch to 1 and flatten each head to [N, C]. Where
the flattening Reshape uses -1 for the leading axis, the graph with its batch axis made symbolic
returns [B*N, C] for B images. We check that on load with a two-image probe and fall back to
one call per frame otherwise (the published det_10g itself could not be checked here: no
download).

onnxruntime runs the published fp32 graphs: there is no half-precision variant upstream, and
converting needs a package we do not pin (onnxconverter-common).

Licence: the buffalo_l weights are for non-commercial research only (insightface's terms).
"""
from __future__ import annotations

import logging

import numpy as np

from mfhq.models.base import Backend, Detections
from mfhq.models.runtime import ort_session
from mfhq.models.weights import WeightFile

log = logging.getLogger(__name__)

BUFFALO_LICENCE = "non-commercial research only (insightface buffalo_l terms)"
_BUFFALO = dict(
    package=None, package_path=None,
    origin="insightface model zoo, buffalo_l.zip (github.com/deepinsight/insightface releases)",
    fetch="mfhq models fetch --to DIR", licence=BUFFALO_LICENCE,
    url="https://github.com/deepinsight/insightface/releases/download/model-zoo/buffalo_l.zip",
)
# insightface publishes no digests; these are the sha256 of the two files inside the released
# buffalo_l.zip, as several independent public projects pin them (they agree).
SCRFD_10G = WeightFile(name="det_10g.onnx", archive_member="det_10g.onnx", size=16_923_827,
                       sha256="5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
                       library_cache=("{home}/.insightface/models/buffalo_l/det_10g.onnx",), **_BUFFALO)
ARCFACE_R50 = WeightFile(name="w600k_r50.onnx", archive_member="w600k_r50.onnx", size=174_383_860,
                         sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
                         library_cache=("{home}/.insightface/models/buffalo_l/w600k_r50.onnx",), **_BUFFALO)


def make_batch_symbolic(model):
    """Name the graph's leading input axis instead of fixing it to 1 (see the module docstring)."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = "batch"
    for output in model.graph.output:  # stale fixed output shapes would make onnxruntime warn
        shape = output.type.tensor_type.shape
        if len(shape.dim):
            shape.dim[0].ClearField("dim_value")
            shape.dim[0].dim_param = "rows"
    return model


REWRITE_CODE = (__name__,)  # what batch_symbolic_graph runs (the graph cache's key)


def batch_symbolic_graph(path) -> bytes:
    import onnx

    return make_batch_symbolic(onnx.load(str(path))).SerializeToString()


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= threshold]
    return np.array(keep, np.int64)


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Scale into a size x size canvas at the top-left, as insightface does; returns (canvas, scale)."""
    import cv2

    height, width = frame.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(frame, (new_w, new_h))
    return canvas, scale


class ScrfdDetector(Backend):
    name = "scrfd"
    task = "detector"
    licence = BUFFALO_LICENCE
    weight_files = (SCRFD_10G,)

    def load(self) -> None:
        from insightface.model_zoo.scrfd import SCRFD

        from mfhq.models.graph_cache import rewritten_graph

        path = self.paths[SCRFD_10G.name]
        self.det_size = int(self.options.get("det_size", 640))
        self.threshold = float(self.options.get("score_threshold", 0.5))
        self.nms_threshold = float(self.options.get("nms_threshold", 0.4))
        self.max_faces = int(self.options.get("max_faces", 10))
        symbolic = rewritten_graph(path, "scrfd-batch-axis", REWRITE_CODE, batch_symbolic_graph)
        self._scrfd = SCRFD(model_file=str(path), session=ort_session(symbolic, self.device))
        if not self._scrfd.use_kps:
            raise ValueError(f"{path}: this SCRFD graph has no landmark heads; the pipeline needs 5 landmarks")
        self.batched = self._probe_batching()
        if not self.batched:
            log.warning("%s: the graph does not batch; running one frame per call", path)
            self._scrfd = SCRFD(model_file=str(path), session=ort_session(str(path), self.device))
        self._centres: dict[tuple[int, int], np.ndarray] = {}

    def _probe_batching(self) -> bool:
        blob = np.zeros((2, 3, 64, 64), np.float32)
        try:
            outs = self._scrfd.session.run(self._scrfd.output_names, {self._scrfd.input_name: blob})
            single = self._scrfd.session.run(self._scrfd.output_names, {self._scrfd.input_name: blob[:1]})
        except Exception:  # onnxruntime raises its own exception types for shape errors
            return False
        return all(a.size == 2 * b.size for a, b in zip(outs, single))

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        canvases, scales = zip(*(letterbox(f, self.det_size) for f in frames))
        det = self._scrfd
        blob = np.stack(canvases)[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
        blob = (blob - det.input_mean) / det.input_std
        if self.batched:
            outs = det.session.run(det.output_names, {det.input_name: blob})
            per_image = [[o.reshape(len(frames), -1, o.shape[-1])[i] for o in outs] for i in range(len(frames))]
        else:
            per_image = []
            for one in blob:
                outs = det.session.run(det.output_names, {det.input_name: one[None]})
                per_image.append([o.reshape(-1, o.shape[-1]) for o in outs])
        return [self._decode(outs, scale) for outs, scale in zip(per_image, scales)]

    def _anchor_centres(self, stride: int) -> np.ndarray:
        key = (self.det_size, stride)
        if key not in self._centres:
            cells = self.det_size // stride
            ys, xs = np.mgrid[:cells, :cells]
            centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            # Row order of the heads: y, x, then anchor.
            self._centres[key] = np.repeat(centres, self._scrfd._num_anchors, axis=0)
        return self._centres[key]

    def _decode(self, outs: list[np.ndarray], scale: float) -> Detections:
        det, fmc = self._scrfd, self._scrfd.fmc
        boxes, points, scores = [], [], []
        for level, stride in enumerate(det._feat_stride_fpn):
            score = outs[level].reshape(-1)
            keep = np.where(score >= self.threshold)[0]
            if not len(keep):
                continue
            centres = self._anchor_centres(stride)[keep]
            dist = outs[level + fmc][keep] * stride
            boxes.append(np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], axis=1))
            offsets = outs[level + 2 * fmc][keep].reshape(-1, 5, 2) * stride
            points.append(centres[:, None, :] + offsets)
            scores.append(score[keep])
        if not scores:
            return Detections.empty()
        boxes, points, scores = (np.concatenate(x) / s for x, s in ((boxes, scale), (points, scale), (scores, 1.0)))
        keep = nms(boxes, scores, self.nms_threshold)[: self.max_faces]
        return Detections(boxes[keep].astype(np.float32), points[keep].astype(np.float32),
                          scores[keep].astype(np.float32))


class ArcFaceEmbedder(Backend):
    name = "arcface"
    task = "embedder"
    licence = BUFFALO_LICENCE
    weight_files = (ARCFACE_R50,)
    dim = 512

    def load(self) -> None:
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        from mfhq.models.graph_cache import rewritten_graph

        path = str(self.paths[ARCFACE_R50.name])
        symbolic = rewritten_graph(path, "arcface-batch-axis", REWRITE_CODE, batch_symbolic_graph)
        # ArcFaceONNX reads the graph to pick its input normalisation (mxnet-exported or not).
        self._arcface = ArcFaceONNX(model_file=path, session=ort_session(symbolic, self.device))
        if tuple(self._arcface.input_size) != (112, 112):
            raise ValueError(f"{path}: ArcFace input {self._arcface.input_size}, expected 112x112 crops")

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: [N, 112, 112, 3] BGR uint8, ArcFace-aligned -> [N, 512] unit vectors."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = self._arcface.get_feat(list(crops)).reshape(len(crops), -1).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
