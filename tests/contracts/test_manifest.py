"""The manifest contract across the boundary: the folder mfhq writes is the folder omniid reads."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _omniid_train(*args: str) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo / "train"), str(repo), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "omniid", *args], capture_output=True, text=True, env=env)


def test_cluster_sample_output_trains_in_omniid(manifests, tmp_path, caplog):
    """The mfhq -> omniid boundary: what `mfhq cluster-sample` writes is what `omniid-train` reads."""
    moved = tmp_path / "moved"
    shutil.copytree(manifests, moved)  # a moved manifest folder: crops still found through the sidecar
    out = tmp_path / "train"
    result = _omniid_train("--manifest", str(moved / "train.parquet"), "--preset", "tiny", "--out", str(out),
                           "--steps", "2", "--batch-size", "1", "--eval-every", "2", "--save-every", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2] and any("eval_loss" in r for r in log)
    assert (out / "checkpoints" / "step-00000002").is_dir()
    # a file that is not Parquet: an error naming it, exit 2
    from omniid.cli import main

    (tmp_path / "notes.parquet").write_text("not parquet")
    shutil.copy(manifests / "manifest.json", tmp_path / "manifest.json")
    assert main(["--manifest", str(tmp_path / "notes.parquet"), "--preset", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "notes.parquet: not a readable Parquet file" in caplog.text
