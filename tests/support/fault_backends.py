"""Model backends that fail the way native libraries fail while loading, for the worker tests.

Selected by a preset as `module:Class` (`embed.backend: "fault_backends:OutOfMemoryEmbedder"`);
the workers import this module by name, so this folder must be on PYTHONPATH.
"""
from __future__ import annotations

from mfhq.models.sface import SFaceEmbedder


class RuntimeException(RuntimeError):
    """What onnxruntime's Python binding calls its runtime errors."""


class OutOfMemoryEmbedder(SFaceEmbedder):
    """SFace, whose session cannot be made: onnxruntime's words when a C++ allocation fails."""

    def load(self) -> None:
        raise RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: "
                               "std::bad_alloc")
