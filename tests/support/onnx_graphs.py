"""SCRFD- and ArcFace-shaped ONNX graphs, built with the `onnx` package for the tests.

They have the published graphs' interfaces (input name and layout, output count, order and
shapes), so insightface's own SCRFD / ArcFaceONNX classes take them as they take buffalo_l's.

The SCRFD graph is laid out like det_10g: batch fixed to 1, three strides, two anchors per
cell, each head transposed to NHWC and flattened to [N, C] by a Reshape with -1. Its score head
fires where the image is bright (sigmoid of the mean pixel, scaled), its box head predicts a
fixed distance of BOX_CELLS strides on every side, and its landmark head fixed offsets
(KPS_CELLS, in strides): so a bright square must come back as boxes over it, with landmarks at
known places, after our letterbox, decoding and NMS. With `noise` > 0 every head gets random
weights on top, for a shape-and-range check.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2
BOX_CELLS = 2.0
KPS_CELLS = np.array([[-0.5, -0.5], [0.5, -0.5], [0.0, 0.0], [-0.4, 0.5], [0.4, 0.5]], np.float32)


def _head(nodes, inits, rng, src, name, channels, per_anchor, weight_scale, bias, noise):
    weight = np.full((channels, 3, 1, 1), weight_scale, np.float32)
    if noise:
        weight += rng.normal(0, noise, weight.shape).astype(np.float32)
    inits += [numpy_helper.from_array(weight, f"{name}_w"), numpy_helper.from_array(bias.astype(np.float32), f"{name}_b")]
    nodes.append(helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [f"{name}_conv"], name=f"Conv_{name}"))
    last = f"{name}_conv"
    if name.startswith("score"):
        nodes.append(helper.make_node("Sigmoid", [last], [f"{name}_sig"], name=f"Sigmoid_{name}"))
        last = f"{name}_sig"
    nodes.append(helper.make_node("Transpose", [last], [f"{name}_t"], perm=[0, 2, 3, 1], name=f"Transpose_{name}"))
    inits.append(numpy_helper.from_array(np.array([-1, per_anchor], np.int64), f"{name}_shape"))
    nodes.append(helper.make_node("Reshape", [f"{name}_t", f"{name}_shape"], [name], name=f"Reshape_{name}"))


def scrfd_graph(path, noise: float = 0.0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    nodes, inits, outputs = [], [], {"score": [], "bbox": [], "kps": []}
    for stride in STRIDES:
        pooled = f"pool{stride}"
        nodes.append(helper.make_node("AveragePool", ["input.1"], [pooled], kernel_shape=[stride, stride],
                                      strides=[stride, stride], name=f"AveragePool_{stride}"))
        # Normalised pixels are in [-1, 1]: a white area gives sigmoid(~10), a black one sigmoid(~-10).
        _head(nodes, inits, rng, pooled, f"score_{stride}", ANCHORS, 1, 10.0 / 3, np.zeros(ANCHORS), noise)
        _head(nodes, inits, rng, pooled, f"bbox_{stride}", 4 * ANCHORS, 4, 0.0, np.full(4 * ANCHORS, BOX_CELLS), noise)
        _head(nodes, inits, rng, pooled, f"kps_{stride}", 10 * ANCHORS, 10, 0.0, np.tile(KPS_CELLS.ravel(), ANCHORS), noise)
        for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            outputs[kind].append(helper.make_tensor_value_info(f"{kind}_{stride}", TensorProto.FLOAT, ["n", width]))
    graph = helper.make_graph(
        nodes, "scrfd_like", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"], inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))


def arcface_graph(path, seed: int = 0, dim: int = 512) -> None:
    """[N, 3, 112, 112] -> [N, dim]: a strided conv, ReLU, flatten and a dense layer, random weights."""
    rng = np.random.default_rng(seed)
    conv = rng.normal(0, 0.2, (16, 3, 8, 8)).astype(np.float32)
    dense = rng.normal(0, 0.05, (16 * 14 * 14, dim)).astype(np.float32)
    inits = [numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(dense, "fc_w"),
             numpy_helper.from_array(np.zeros(dim, np.float32), "fc_b")]
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w"], ["c"], strides=[8, 8], name="Conv_0"),
        helper.make_node("Relu", ["c"], ["r"], name="Relu_1"),
        helper.make_node("Flatten", ["r"], ["f"], axis=1, name="Flatten_2"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["fc1"], name="Gemm_3"),
    ]
    graph = helper.make_graph(
        nodes, "arcface_like", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", dim])], inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
