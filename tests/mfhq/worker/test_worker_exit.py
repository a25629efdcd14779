"""A worker that has handed back every clip ends without the interpreter's teardown (with torch,
cv2 and onnxruntime loaded it cost a small run about 0.3 s per process after its last clip), and
nothing the driver needs is lost: every status row, every marker, the worker's log records."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
from conftest import REPO, SAMPLE_PRESET, run_cli
from fault_backends import WORKER_WARNING
from presets import write_preset

SUPPORT = REPO / "tests" / "support"  # fault_backends: the workers import it by name


def test_a_finished_worker_skips_teardown_and_loses_nothing(sample_dir, tmp_path):
    preset = write_preset(tmp_path / "exit.yaml", {"quality.backend": "fault_backends:ExitWatchQuality",
                                                   "run.workers": 2, "run.shard_size": 2}, base=SAMPLE_PRESET)
    hooks = tmp_path / "atexit"
    hooks.mkdir()
    env = {**os.environ, "MFHQ_TEST_ATEXIT": str(hooks),
           "PYTHONPATH": f"{SUPPORT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = tmp_path / "run"
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(preset),
                     env=env)
    # Both workers loaded the backend (one warning each) and neither ran an atexit hook.
    assert result.stderr.count(WORKER_WARNING[0] % WORKER_WARNING[1:]) == 2, result.stderr
    assert sorted(p.name for p in hooks.iterdir()) == []
    markers = sorted(p.name for p in (run / "done").glob("*.json"))
    assert len(markers) == 3
    rows = [r for p in sorted((run / "clips").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(r["status"] for r in rows) == ["decode_error", "empty", "ok", "ok", "ok", "ok"]
    assert all(json.loads((run / "done" / m).read_text())["clips"] == 2 for m in markers)
