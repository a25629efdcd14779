"""Model backends that fail the way native libraries fail while loading, or wait where a test says,
for the worker and stop tests.

Selected by a preset as `module:Class` (`embed.backend: "fault_backends:OutOfMemoryEmbedder"`);
the workers import this module by name, so this folder must be on PYTHONPATH.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import time
from pathlib import Path

from mfhq.models.brisque_iqa import BrisqueQuality
from mfhq.models.sface import SFaceEmbedder
from mfhq.models.yunet import YuNetDlib68Detector

# A clip named with one of these (`b_modelsegv.mp4`) has every frame's top row set to its level by
# fault_readers.FaultyReader, a row no real frame has: FaultyDetector dies or stalls on such a frame.
MODEL_FAULTS = {"modelsegv": 11, "modelstall": 23}


class RuntimeException(RuntimeError):
    """What onnxruntime's Python binding calls its runtime errors."""


class OutOfMemoryEmbedder(SFaceEmbedder):
    """SFace, whose session cannot be made: onnxruntime's words when a C++ allocation fails."""

    def load(self) -> None:
        raise RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: "
                               "std::bad_alloc")


class GatedQuality(BrisqueQuality):
    """BRISQUE that holds while the file named by $MFHQ_TEST_GATE exists, once the folder
    $MFHQ_TEST_GATE_DONE holds more than $MFHQ_TEST_GATE_AFTER shard markers, after creating
    `<gate>.reached`: a test can then signal a run that has finished a shard and is certainly
    mid-shard (no race with a run that finishes first). Rows equal the real backend's (same name,
    same weights)."""

    def score(self, crops):
        gate = os.environ.get("MFHQ_TEST_GATE")
        done = Path(os.environ.get("MFHQ_TEST_GATE_DONE", "."))
        after = int(os.environ.get("MFHQ_TEST_GATE_AFTER", "0"))
        if gate and Path(gate).exists() and len(list(done.glob("*.json"))) > after:
            Path(f"{gate}.reached").touch()
            while Path(gate).exists():
                time.sleep(0.05)
        return super().score(crops)


WORKER_WARNING = ("WarningQuality loaded: %s, %d", "ünïcode ✓", 42)  # logged once per worker, formatted there


class WarningQuality(BrisqueQuality):
    """BRISQUE that logs one warning as its worker loads it (the log relay's test)."""

    def load(self) -> None:
        super().load()
        logging.getLogger("fault_backends").warning(*WORKER_WARNING)


class LaterChunkFailsQuality(BrisqueQuality):
    """BRISQUE that raises on every call of its worker after the first: a clip read in several
    chunks fails after its first chunk's crops and masks were written (a stage bug)."""

    calls = 0

    def score(self, crops):
        LaterChunkFailsQuality.calls += 1
        if LaterChunkFailsQuality.calls > 1:
            raise ValueError("a stage bug after the first chunk")
        return super().score(crops)


class ExitWatchQuality(WarningQuality):
    """BRISQUE whose worker logs one warning as it loads, and registers an atexit hook that
    touches `$MFHQ_TEST_ATEXIT/<pid>`: a file there says the worker went through the
    interpreter's teardown, as a library's own atexit hook would."""

    def load(self) -> None:
        super().load()
        folder = os.environ["MFHQ_TEST_ATEXIT"]
        atexit.register(lambda: (Path(folder) / str(os.getpid())).touch())


class FaultyDetector(YuNetDlib68Detector):
    """YuNet with dlib's 68 points, that dies (SIGSEGV, as a native crash in a model) or stalls
    (a native call that never returns and keeps the GIL, as a hung model call) on a frame that
    fault_readers marked (MODEL_FAULTS), wherever the frame sits in a batch of several clips'.
    Rows equal the real backend's (same name, same weights)."""

    def detect(self, frames):
        for frame in frames:
            if (frame[0] == MODEL_FAULTS["modelsegv"]).all():
                os.kill(os.getpid(), signal.SIGSEGV)
            if (frame[0] == MODEL_FAULTS["modelstall"]).all():
                ctypes.PyDLL(None).sleep(3600)
        return super().detect(frames)
