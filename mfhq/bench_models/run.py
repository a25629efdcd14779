"""Time each stage's backend on inputs of its real shape: ms per frame or face, items/s, GPU memory.

Every backend is called through the method the pipeline's stage calls (`detect`, `embed`,
`estimate`, `score`, `masks`) with the same arguments, so a row counts what a worker pays for
that model: the resizes and normalisation around the network as well as its forward. A batch of
N is one call with N frames (detector) or N faces (the rest), as the stages batch across clips;
the backends' own chunking (parsing 8, TOPIQ 16 at a time) applies as in a run.

Weights: the real files where they resolve (`--models-dir`, the libraries' caches); else, for the
torch backends, the real architecture with random weights (stand_in.py), labelled on the row;
else the row names the missing file and the command that fetches it.
"""
from __future__ import annotations

import contextlib
import gc
import io
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mfhq.bench_models.inputs import INPUT_DETECTOR, StageInputs, stage_inputs
from mfhq.bench_models.stand_in import has_stand_in, setup_with_random_weights
from mfhq.errors import MfhqError
from mfhq.models import create_backend
from mfhq.models.preflight import pipeline_backends
from mfhq.models.runtime import is_cuda, limit_threads
from mfhq.models.weights import WeightsMissing

log = logging.getLogger(__name__)

REAL, RANDOM, MISSING, FAILED = "real weights", "random weights", "missing", "not run"
NO_WEIGHTS = "no weights"  # backends with no weight file: geometry only (pnp5, pnp68)


@dataclass
class Loaded:
    backend: object | None
    weights: str  # REAL, NO_WEIGHTS, RANDOM, MISSING or FAILED
    note: str = ""
    load_s: float = 0.0


def missing_note(exc: WeightsMissing) -> str:
    """The missing files and the fetch line of the WeightsMissing message, on one line."""
    names = ", ".join(wf.name for wf in [*exc.missing, *(wf for wf, _ in exc.damaged)])
    fetch = [line for line in str(exc).splitlines() if "mfhq models fetch" in line]
    return f"weight file {names} is not here; " + (fetch[0] if fetch else "see `mfhq models verify`")


def _options(task: str, cfg) -> dict:
    if task != "detector":
        return {}  # the other stages create their backends without options
    d = cfg.detect
    return dict(score_threshold=d.score_threshold, nms_threshold=d.nms_threshold, max_faces=d.max_faces,
                working_size=d.working_size)


def _quietly(step: Callable[[], float | None]) -> float | None:
    """What `step` returns; what libraries print meanwhile (pyiqa names the file it loads) goes to
    the debug log, not into the table."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = step()
    if printed.getvalue().strip():
        log.debug("%s", printed.getvalue().strip())
    return result


def _timed_setup(backend) -> float:
    start = time.perf_counter()
    backend.setup()
    return time.perf_counter() - start


def load_backend(task: str, name: str, cfg, models_dir, device: str, scratch) -> Loaded:
    """The backend set up on its real weights, else on random ones (torch), else why not. load_s:
    its setup() alone (for random weights, the loading of the stand-in file, not its making)."""
    backend = create_backend(task, name, models_dir=models_dir, device=device, **_options(task, cfg))
    try:
        seconds = _quietly(lambda: _timed_setup(backend))
        return Loaded(backend, REAL if backend.weight_files else NO_WEIGHTS, load_s=seconds)
    except WeightsMissing as exc:
        if not has_stand_in(name):
            return Loaded(None, MISSING, missing_note(exc))
    except MfhqError as exc:  # e.g. no CUDA provider in this onnxruntime: the other rows still run
        return Loaded(None, FAILED, str(exc).splitlines()[0])
    try:
        seconds = _quietly(lambda: setup_with_random_weights(backend, scratch, _timed_setup))
    except MfhqError as exc:
        return Loaded(None, FAILED, str(exc).splitlines()[0])
    return Loaded(backend, RANDOM, "the real architecture, randomly initialised: times only", seconds)


def stage_call(task: str, backend, x: StageInputs, index: np.ndarray) -> Callable[[], object]:
    """One call of the backend as its stage makes it, on the inputs at `index` (mfhq/stages/)."""
    dense = getattr(backend, "wants_landmarks68", False)
    if task == "detector":
        frames = [x.frames[i] for i in index]
        return lambda: backend.detect(frames)
    if task == "embedder":
        crops = x.embed_crops[index]
        return lambda: backend.embed(crops)
    crops = x.crops[index]
    if task == "pose":
        extra = {"landmarks68": x.landmarks68[index]} if dense else {}
        return lambda: backend.estimate(x.landmarks[index], x.frame_sizes[index], crops, **extra)
    if task == "quality":
        return lambda: backend.score(crops)
    extra = {"landmarks68": x.landmarks68_in_crop[index]} if dense else {}
    return lambda: backend.masks(crops, x.landmarks_in_crop[index], **extra)


def stage_input_text(task: str, x: StageInputs) -> str:
    if task == "detector":
        return f"{x.frame_text} frame"
    size = x.embed_crops.shape[1] if task == "embedder" else x.crop_size
    return f"{size} px aligned face"


class GpuMemory:
    """torch's allocator peak per measurement, and the device memory in use (every allocator,
    onnxruntime's arena included) above what was in use before the first model loaded."""

    def __init__(self, device: str):
        self.device = device if is_cuda(device) else None
        if self.device:
            import torch

            self._torch = torch
            torch.cuda.init()
            self.base = self._in_use()

    def _in_use(self) -> float:
        free, total = self._torch.cuda.mem_get_info(self.device)
        return (total - free) / 2**20

    def reset(self) -> None:
        if self.device:
            self._torch.cuda.synchronize(self.device)
            self._torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict:
        if not self.device:
            return {}
        self._torch.cuda.synchronize(self.device)
        return {"gpu_peak_torch_mib": round(self._torch.cuda.max_memory_allocated(self.device) / 2**20, 1),
                "gpu_in_use_mib": round(self._in_use() - self.base, 1)}

    def release(self) -> None:
        gc.collect()
        if self.device:
            self._torch.cuda.empty_cache()


def time_call(call: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()  # every backend returns numpy arrays, so a GPU call has finished when it returns
        times.append(time.perf_counter() - start)
    return times


def bench_stage(task: str, name: str, cfg, x: StageInputs, opts: dict, memory: GpuMemory, scratch) -> list[dict]:
    """One row per batch size for this stage's backend (one row saying why, if it cannot run)."""
    loaded = load_backend(task, name, cfg, opts["models_dir"], opts["device"], scratch)
    head = {"task": task, "backend": name, "weights": loaded.weights, "input": stage_input_text(task, x),
            "unit": "frame" if task == "detector" else "face", "note": loaded.note}
    if loaded.backend is None:
        return [{**head, "batch": None}]
    rows = []
    for batch in opts["batch_sizes"]:
        call = stage_call(task, loaded.backend, x, np.arange(batch) % len(x.frames))
        memory.reset()
        times = time_call(call, opts["warmup"], opts["repeats"])
        median = statistics.median(times)
        rows.append({**head, "batch": batch, "load_s": round(loaded.load_s, 2),
                     "ms_per_item": round(1000 * median / batch, 3), "items_per_s": round(batch / median, 2),
                     "ms_per_call_min": round(1000 * min(times), 3), **memory.read()})
        log.info("%s %s batch %d: %.2f ms per %s", task, name, batch, rows[-1]["ms_per_item"], head["unit"])
    loaded.backend = None
    memory.release()
    return rows


def bench_models(cfg, device: str = "cpu", batch_sizes=(1, 8, 32), repeats: int = 5, warmup: int = 2,
                 threads: int = 1, models_dir=None) -> dict:
    """Rows for every stage of `cfg`'s pipeline (see the module docstring), and the run's settings."""
    import torch

    limit_threads(threads)  # as each extract worker runs: one thread unless told otherwise
    x = stage_inputs(cfg.align.template, cfg.align.size)
    memory = GpuMemory(device)
    opts = dict(models_dir=models_dir, device=device, batch_sizes=list(batch_sizes), repeats=repeats,
                warmup=warmup)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mfhq-random-weights-") as scratch:
        for task, name in pipeline_backends(cfg).items():
            rows.extend(bench_stage(task, name, cfg, x, opts, memory, scratch))
    return {
        "pipeline": cfg.name, "device": device,
        "gpu": torch.cuda.get_device_name(device) if is_cuda(device) else None,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_threads": 1 if not is_cuda(device) else None,  # ort_session: one intra-op thread on CPU
        "batch_sizes": list(batch_sizes), "warmup": warmup, "repeats": repeats,
        "inputs": {"frames": f"{len(x.frames)} frames of {x.frame_text} from generated benchmark clips",
                   "faces": f"one per frame, found by {INPUT_DETECTOR}, aligned at {x.crop_size} px "
                            f"({cfg.align.template}) and at 112 px for the embedder"},
        "rows": rows,
    }
