"""Where a backend runs: onnxruntime providers and torch devices from the run's `device` option.

`device` is "cpu", "cuda" or "cuda:N" (RunConfig.device, `mfhq extract --device`). Half precision
is used for torch models on CUDA only: CPU kernels for fp16 convolutions are slow or missing.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    """The requested device cannot be used here (no CUDA build, no GPU)."""


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def ort_providers(device: str) -> list:
    """onnxruntime providers for device; CUDA needs the onnxruntime-gpu build."""
    if not is_cuda(device):
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise DeviceError(
            f"device {device!r}: this onnxruntime ({ort.__version__}) has no CUDAExecutionProvider; "
            "install onnxruntime-gpu (the Dockerfile does) or run with --device cpu"
        )
    if hasattr(ort, "preload_dlls"):  # CUDA and cuDNN from the nvidia-* wheels torch installs
        ort.preload_dlls()
    index = int(device.split(":")[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def ort_session(model, device: str):
    """An InferenceSession over a path or serialized model bytes, one intra-op thread on CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not is_cuda(device):
        options.intra_op_num_threads = 1  # parallelism comes from worker processes
    return ort.InferenceSession(model, options, providers=ort_providers(device))


def torch_device(device: str):
    import torch

    if is_cuda(device) and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU; run with --device cpu")
    return torch.device(device)


def prepare_torch_module(module, device: str):
    """Eval mode, on device, fp16 on CUDA (the models here were checked to run in half)."""
    module = module.eval().to(torch_device(device))
    return module.half() if is_cuda(device) else module
