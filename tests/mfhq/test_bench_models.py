"""`mfhq bench-models`: each stage's model timed on inputs of its real shape, as a user runs it.

The weight folders are pointed at an empty home, so what is missing is known: the paper preset's
ONNX graphs get a row naming the file and the fetch command (never another model), and its torch
models run with their real architectures and random weights, labelled so on the row."""
from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from conftest import SAMPLE_PRESET, run_cli

from mfhq.bench_models import RANDOM
from mfhq.bench_models.report import format_table
from mfhq.bench_models.run import MISSING, NO_WEIGHTS, REAL

TASKS = ["detector", "embedder", "pose", "quality", "parsing"]


def _no_weights_env(tmp_path) -> dict:
    """No --models-dir and an empty home: only the weights that ship inside pip packages resolve."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "MFHQ_MODELS_DIR"}
    return {**env, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "TORCH_HOME": str(home / "torch")}


def _bench(tmp_path, pipeline: str, *args: str) -> tuple[list[str], dict]:
    out = tmp_path / "bench.json"
    result = run_cli("bench-models", "--pipeline", pipeline, "--repeats", "1", "--warmup", "0", "--out", str(out),
                     *args, env=_no_weights_env(tmp_path))
    return result.stdout.splitlines(), json.loads(out.read_text())


def _table_row(lines: list[str], row: dict) -> str:
    batch = "" if row["batch"] is None else f" {row['batch']} "
    hits = [line for line in lines if line.split()[:2] == [row["task"], row["backend"]] and batch in line]
    assert hits, f"no table line for {row['task']} {row['backend']} batch {row['batch']}:\n" + "\n".join(lines)
    return hits[0]


def test_sample_preset_times_every_stage_on_its_shipped_weights(tmp_path):
    lines, result = _bench(tmp_path, "sample", "--batch-sizes", "1,2,1")  # 1 twice: measured and printed once
    rows = result["rows"]
    assert [(r["task"], r["batch"]) for r in rows] == [(task, b) for task in TASKS for b in (1, 2)]
    assert result["batch_sizes"] == [1, 2]
    table = [line for line in lines if line.split()[:1] in ([task] for task in TASKS)]
    assert len(table) == len(rows), "\n".join(lines)
    assert {r["backend"] for r in rows} == {"yunet-dlib68", "sface", "pnp68", "brisque", "dlib68-hull"}
    for row in rows:
        assert row["weights"] in (REAL, NO_WEIGHTS)
        assert row["ms_per_item"] > 0 and row["items_per_s"] > 0
        assert row["unit"] == ("frame" if row["task"] == "detector" else "face")
        _table_row(lines, row)
    inputs = {r["task"]: r["input"] for r in rows}
    assert inputs["detector"] == "1920x1080 frame" and inputs["embedder"] == "112 px aligned face"
    assert inputs["pose"] == inputs["quality"] == inputs["parsing"] == "448 px aligned face"
    assert result["torch_threads"] == 1 and result["device"] == "cpu" and result["gpu"] is None
    assert any("torch 1 thread(s)" in line for line in lines)
    assert not any(RANDOM in line for line in lines)


def test_a_missing_onnx_graph_is_named_and_a_missing_torch_model_runs_on_random_weights(tmp_path):
    """The sample preset with the paper's ArcFace (an ONNX graph) and 6DRepNet (torch), quick on CPU."""
    preset = yaml.safe_load(SAMPLE_PRESET.read_text())
    preset["embed"] = {"backend": "arcface"}
    preset["pose"] = {"backend": "6drepnet"}
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(preset))
    lines, result = _bench(tmp_path, str(path), "--batch-sizes", "2")
    by_task = {r["task"]: r for r in result["rows"]}
    embed, pose = by_task["embedder"], by_task["pose"]
    assert embed["weights"] == MISSING and embed["batch"] is None and "ms_per_item" not in embed
    assert "w600k_r50.onnx" in embed["note"] and "mfhq models fetch arcface" in embed["note"]
    assert "w600k_r50.onnx" in _table_row(lines, embed) and "mfhq models fetch arcface" in _table_row(lines, embed)
    assert pose["weights"] == RANDOM and pose["ms_per_item"] > 0
    assert RANDOM in _table_row(lines, pose)
    assert any(line.startswith(f"{RANDOM}: the real architecture") for line in lines)


@pytest.mark.slow
def test_paper_preset_row_per_stage(tmp_path):
    lines, result = _bench(tmp_path, "paper", "--batch-sizes", "1")
    rows = result["rows"]
    assert [r["task"] for r in rows] == TASKS
    by_task = {r["task"]: r for r in rows}
    for task, file, backend in (("detector", "det_10g.onnx", "scrfd"), ("embedder", "w600k_r50.onnx", "arcface")):
        row = by_task[task]
        assert row["weights"] == MISSING and file in row["note"] and f"mfhq models fetch {backend}" in row["note"]
        assert file in _table_row(lines, row)
    for task in ("pose", "quality"):  # their files live only in library caches, so here they are absent
        assert by_task[task]["weights"] == RANDOM and RANDOM in _table_row(lines, by_task[task])
    parsing = by_task["parsing"]  # its file may ship in facexlib's package folder
    assert parsing["weights"] in (REAL, RANDOM) and parsing["weights"] in _table_row(lines, parsing)
    assert {by_task[t]["backend"] for t in ("pose", "quality", "parsing")} == {"6drepnet", "topiq-nr-face",
                                                                               "facexlib-parsenet"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_a_gpu_is_one_line_before_any_work(tmp_path):
    result = run_cli("bench-models", "--device", "cuda", check=False, env=_no_weights_env(tmp_path))
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_paper_preset_on_cuda_reports_gpu_memory(tmp_path):
    lines, result = _bench(tmp_path, "paper", "--device", "cuda", "--batch-sizes", "1,8")
    assert result["gpu"] and any("torch peak MiB" in line for line in lines)
    torch_rows = [r for r in result["rows"] if r["task"] in ("pose", "quality", "parsing")]
    assert len(torch_rows) == 6
    for row in torch_rows:
        assert row["gpu_peak_torch_mib"] > 0 and row["ms_per_item"] > 0


def test_the_gpu_memory_columns_name_the_allocator_they_count():
    # an onnxruntime backend on the GPU: torch's allocator saw none of its memory, the device did
    row = {"task": "detector", "backend": "yunet", "weights": "real weights", "input": "1080p frame", "batch": 8,
           "ms_per_item": 1.0, "items_per_s": 1000.0, "gpu_peak_torch_mib": 0.0, "gpu_in_use_mib": 312.0}
    result = {"pipeline": "paper", "device": "cuda:0", "gpu": "a GPU", "torch_threads": 1, "onnxruntime_threads": None,
              "warmup": 2, "repeats": 5, "inputs": {"frames": "frames", "faces": "faces"}, "rows": [row]}
    lines = format_table(result)
    header = next(line for line in lines if line.startswith("task"))
    assert "torch peak MiB" in header and "GPU peak" not in header
    cells = next(line for line in lines if line.startswith("detector")).split()
    assert cells[-2:] == ["0", "312"]  # the memory the model holds shows as in use, not as a peak


def test_out_that_holds_another_file_is_refused_before_any_work(tmp_path):
    # a file of another command (a manifest folder's README.md, here a copy) is never replaced by results
    other = tmp_path / "README.md"
    other.write_text("# a manifest folder's card\n")
    result = run_cli("bench-models", "--batch-sizes", "1", "--repeats", "1", "--warmup", "0", "--out", str(other),
                     check=False, env=_no_weights_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert (f"--out {other}: already holds a file that is not an `mfhq bench-models` result" in result.stderr
            and "Traceback" not in result.stderr), result.stderr
    assert other.read_text() == "# a manifest folder's card\n"
