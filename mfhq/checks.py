"""Checks on what a command is asked to do, run before any work starts.

A device that is not here (`--device cuda` on a CPU machine) used to run on the CPU and record
`cuda` in run.json; an `--out` that is a file ended in a traceback after the scan. Both are
refused here, in one line naming the option, the value and what to do.
"""
from __future__ import annotations

import re
from pathlib import Path

from mfhq.manifest.io import OutputError, first_names
from mfhq.models.runtime import DeviceError, is_cuda


def cuda_devices() -> int | None:
    """How many CUDA devices this process can use; None when no library here can drive one."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.device_count()
    try:
        import onnxruntime as ort
    except ImportError:
        return 0 if torch is not None else None
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return 1  # onnxruntime-gpu without a CUDA torch: it cannot say how many; device 0 exists
    return 0


def check_device(device: str, origin: str = "--device") -> None:
    """Refuse a device that is not available here; origin says where the name came from."""
    if not is_cuda(device) or not re.fullmatch(r"cuda(:\d+)?", device):
        if device != "cpu":
            raise DeviceError(f"{origin} {device!r}: not a device; use cpu, cuda or cuda:N")
        return
    count = cuda_devices()
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if not count:
        raise DeviceError(f"{origin} {device!r}: no CUDA GPU is available on this machine "
                          f"(torch and onnxruntime see none); run with --device cpu")
    if index >= count:
        raise DeviceError(f"{origin} {device!r}: this machine has {count} CUDA device(s), "
                          f"numbered 0..{count - 1}")


# What `mfhq extract` itself puts in a run folder (before run.json exists, a lock and done/ may).
RUN_ENTRIES = {"run.json", "plan.json", "ids.json", "lock", "faces", "clips", "crops", "masks", "done"}


def check_run_folder(out: Path, option: str = "--out") -> None:
    """Refuse an existing folder of other files: a run written among them could not be told
    apart from them, and a mistyped --out would fill someone's folder. A run folder resumes."""
    out = Path(out)
    if not out.is_dir():
        return
    names = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    if "run.json" in names or "plan.json" in names:
        return
    foreign = sorted(n for n in names if n not in RUN_ENTRIES)
    if foreign:
        raise OutputError(f"{option} {out}: already holds files that are not an mfhq run's ({first_names(foreign)}); "
                          "give a new or empty folder (an existing run folder resumes)")
