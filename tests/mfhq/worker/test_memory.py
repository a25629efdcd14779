"""A worker out of memory while loading its models says which model, how much memory, and what
to do; run.json records it."""
from __future__ import annotations

import errno
import json
import os

import pytest

from conftest import REPO, SAMPLE_PRESET, run_cli
from mfhq.errors import is_out_of_memory
from presets import write_preset

SUPPORT = REPO / "tests" / "support"  # fault_backends: the workers import it by name


@pytest.mark.parametrize("exc, oom", [
    (MemoryError(), True),
    (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: std::bad_alloc"), True),
    (RuntimeError("Failed to allocate memory for requested buffer of size 1073741824"), True),
    (OSError(errno.ENOMEM, os.strerror(errno.ENOMEM)), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (FileNotFoundError("model.onnx"), False),
    (RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed"), False),
])
def test_memory_failures_are_told_apart(exc, oom):
    assert is_out_of_memory(exc) is oom
    try:  # also when wrapped by a library's own error
        raise ValueError("could not make the session") from exc
    except ValueError as wrapped:
        assert is_out_of_memory(wrapped) is oom


def test_a_worker_out_of_memory_names_the_model_and_the_memory(sample_dir, tmp_path):
    preset = write_preset(tmp_path / "oom.yaml", {"embed.backend": "fault_backends:OutOfMemoryEmbedder"},
                          base=SAMPLE_PRESET)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "run"
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(preset),
                     "--limit", "1", check=False, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    message = errors[0].removeprefix("ERROR mfhq: ")
    assert message.startswith("out of memory: a worker could not load the embedder model sface "
                              "(face_recognition_sface_2021dec_int8bq.onnx): RuntimeException: "
                              "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: "
                              "std::bad_alloc. This worker held ")
    assert " MiB at its peak; the machine had " in message and " MiB available of " in message
    assert message.endswith("Each worker loads its own copy of the models, 2 at once here: run fewer at once "
                            "(--workers 1), or free memory; then re-run the same command to resume")
    state = json.loads((run / "run.json").read_text())
    assert state["state"] == "failed: out of memory" and state["error"] == message
