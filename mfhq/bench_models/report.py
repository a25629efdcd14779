"""`mfhq bench-models` results as a console table."""
from __future__ import annotations

from mfhq.bench_models.run import RANDOM

_COLUMNS = (("task", 9), ("backend", 18), ("weights", 14), ("input", 22), ("batch", 5))


def _threads(result: dict) -> str:
    ort = result["onnxruntime_threads"]
    ort_text = f"onnxruntime {ort} intra-op thread(s)" if ort else "onnxruntime on the GPU"
    return f"torch {result['torch_threads']} thread(s), {ort_text}"


def format_table(result: dict) -> list[str]:
    on_gpu = result["gpu"] is not None
    device = f"{result['device']} ({result['gpu']})" if on_gpu else result["device"]
    lines = [f"pipeline {result['pipeline']} on {device}; {_threads(result)}; {result['warmup']} warm-up and "
             f"{result['repeats']} timed calls per batch, median",
             f"inputs: {result['inputs']['frames']}; {result['inputs']['faces']}"]
    header = "  ".join(f"{name:{width}s}" for name, width in _COLUMNS)
    header += f"  {'ms/item':>9s}  {'items/s':>9s}"
    if on_gpu:
        # torch's allocator only: an onnxruntime model's memory shows in the second column alone
        header += f"  {'torch peak MiB':>14s}  {'GPU in use MiB':>14s}"
    lines.append(header)
    for row in result["rows"]:
        cells = [row["task"], row["backend"], row["weights"], row["input"], "" if row["batch"] is None else str(row["batch"])]
        line = "  ".join(f"{cell:{width}s}" for cell, (_, width) in zip(cells, _COLUMNS))
        if row["batch"] is None:
            lines.append(f"{line}  {row['note']}")
            continue
        line += f"  {row['ms_per_item']:9.2f}  {row['items_per_s']:9.1f}"
        if on_gpu:
            line += f"  {row['gpu_peak_torch_mib']:14.0f}  {row['gpu_in_use_mib']:14.0f}"
        lines.append(line)
    if any(row["weights"] == RANDOM for row in result["rows"]):
        lines.append(f"{RANDOM}: the real architecture, randomly initialised, because its weight file is not "
                     "here: the times hold, the outputs mean nothing")
    lines.append("ms/item: per frame for the detector, per face for the others")
    if on_gpu:
        lines.append("torch peak MiB: torch's allocator alone (an onnxruntime backend's memory is not in it); GPU in "
                     "use MiB: the device memory in use above that before the first model loaded, every allocator")
    return lines
