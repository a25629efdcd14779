"""Where a backend runs: onnxruntime providers and torch devices from the run's `device` option.

`device` is "cpu", "cuda" or "cuda:N" (RunConfig.device, `mfhq extract --device`). Half precision
is used for torch models on CUDA only, through autocast: convolutions and matmuls run in fp16
while the ops that need fp32 (softmax, norms, resizes in the attention heads) keep it, which is
safer than casting whole networks written for fp32. CPU stays fp32.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

from mfhq.errors import MfhqError

log = logging.getLogger(__name__)


class DeviceError(MfhqError, RuntimeError):
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
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=ort_providers(device))


def torch_device(device: str):
    import torch

    if is_cuda(device) and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU; run with --device cpu")
    return torch.device(device)


def prepare_torch_module(module, device: str):
    """Eval mode, on device, no gradients."""
    module = module.eval().to(torch_device(device))
    for param in module.parameters():
        param.requires_grad_(False)
    return module


@contextmanager
def inference(device: str):
    """No autograd; fp16 autocast on CUDA."""
    import torch

    with torch.inference_mode():
        if is_cuda(device):
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield


def limit_threads(threads: int = 1) -> None:
    """One intra-op thread for OpenCV, torch and the BLAS/OpenMP pools in this process.

    Worker processes call this once before loading models: parallelism comes from processes,
    and every library's own pool sized to the machine's cores makes N workers fight over the
    same cores (onnxruntime sessions get the same through `ort_session`). torch's inter-op pool
    can be sized only before its first parallel work, so a refusal there is ignored.
    """
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import cv2

    cv2.setNumThreads(threads)
    # The variables above only reach a BLAS that loads after them; numpy's is usually loaded by
    # now (unpickling the worker's arguments imports it), so cap the pools already in memory too.
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    import sys

    # torch sizes its pool from OMP_NUM_THREADS when first imported; importing it here only to
    # set the pool would cost the offline profile (which never uses torch) ~300 MB per worker.
    torch = sys.modules.get("torch")
    if torch is None:
        return
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass
