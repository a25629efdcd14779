"""Rewrites of ONNX graphs from the opencv_zoo int8 block-quantised ("int8bq") models.

Those graphs quantise weights only (activations stay float): every Conv weight is an int8
initializer behind a DequantizeLinear with a block size, recomputed on every call. Folding each
such DequantizeLinear into a float initializer gives the same numbers once, and a graph that
onnxruntime runs on its fast float kernels (SFace, YuNet).
"""
from __future__ import annotations

import numpy as np


def _dequantize(values: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    values = values.astype(np.float32) - (0 if zero is None else _expand(zero.astype(np.float32), values, axis, block))
    return values * _expand(scale.astype(np.float32), values, axis, block)


def _expand(param: np.ndarray, values: np.ndarray, axis: int, block: int) -> np.ndarray:
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    axis = axis % values.ndim
    if block:  # blocked quantisation: one parameter per `block` elements along axis
        return np.repeat(param, block, axis=axis)[tuple(slice(0, n) for n in values.shape)]
    shape = [1] * values.ndim
    shape[axis] = -1
    return param.reshape(shape)


def fold_weight_dequantization(model):
    """Replace DequantizeLinear nodes whose inputs are all constants by float initializers."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    kept_nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(name in inits for name in node.input if name):
            arrays = [numpy_helper.to_array(inits[name]) if name else None for name in node.input]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            zero = arrays[2] if len(arrays) > 2 else None
            value = _dequantize(arrays[0], arrays[1], zero, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
            graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            continue
        kept_nodes.append(node)
    del graph.node[:]
    graph.node.extend(kept_nodes)
    # Graph inputs that are really weights (initializers, or names nothing consumes) go.
    consumed = {name for node in graph.node for name in node.input}
    init_names = {i.name for i in graph.initializer}
    keep = [i for i in graph.input if i.name in consumed and i.name not in init_names]
    del graph.input[:]
    graph.input.extend(keep)
    return model


def unused_initializers_removed(model):
    """Drop the int8 weights and their scales that folding left without a consumer."""
    consumed = {name for node in model.graph.node for name in node.input}
    keep = [i for i in model.graph.initializer if i.name in consumed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def with_free_image_size(model, height: str = "height", width: str = "width"):
    """The graph's single image input [N, C, H, W] with H and W left symbolic, so one session
    runs any frame size (the exported graph fixes 640x640); outputs' shapes are cleared to match."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = height, width
    for output in model.graph.output:
        for dim in output.type.tensor_type.shape.dim:
            dim.dim_param = "?"
    # The exporter's intermediate shapes are those of 640x640: stale for any other size (each run
    # then logged a mismatch per output); onnxruntime infers them again.
    del model.graph.value_info[:]
    return model
