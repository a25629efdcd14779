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


def _as_version_2(manifests: Path, folder: Path) -> Path:
    """A copy of `manifests` as mfhq wrote it before manifests carried face_size (version 2)."""
    import pyarrow.parquet as pq

    from mfhq.manifest.io import file_digest

    shutil.copytree(manifests, folder)
    sidecar = json.loads((folder / "manifest.json").read_text())
    for name in ("train.parquet", "test.parquet", "identities.parquet"):
        table = pq.read_table(folder / name)
        if "face_size" in table.column_names:
            table = table.drop_columns(["face_size"])
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"mfhq.schema_version": b"2"}),
                       folder / name)
        sidecar["files"][name] = file_digest(folder / name)
    (folder / "manifest.json").write_text(json.dumps({**sidecar, "schema_version": "2"}))
    return folder


def test_a_version_2_manifest_still_loads_with_face_size_null(manifests, sample_run, tmp_path):
    """Manifests written before face_size existed train, re-split and report as before: the
    column reads as null (MANIFEST_READABLE), never as a refusal."""
    from conftest import run_cli
    from mfhq.manifest import MANIFEST_SCHEMA, read_manifest
    from omniid.data import load_faces

    old = _as_version_2(manifests, tmp_path / "v2")
    table = read_manifest(old / "train.parquet")
    assert table.column("face_size").null_count == table.num_rows > 0
    table.cast(MANIFEST_SCHEMA)  # what `mfhq split` writes back: the contract's columns, in order
    assert len(load_faces(old)) == table.num_rows
    unknown = "sampled faces of unknown face_size (manifest version 2)"
    result = run_cli("stats", "--run", str(sample_run), "--manifest", str(old),
                     "--sql", f"SELECT value FROM headline WHERE metric = '{unknown}'")
    total = table.num_rows + read_manifest(old / "test.parquet").num_rows
    assert result.stdout.split() == ["value", str(total)]


def test_a_manifest_with_yaw_rewritten_as_text_is_refused_on_the_omniid_side(manifests, tmp_path, caplog):
    """A train.parquet rewritten with yaw as text (and listed again in the sidecar) was read by
    omniid as if nothing were wrong (float('12.5') takes it); the reader both sides share names the
    file and the column, for the library and the command."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    from mfhq.manifest import ManifestError
    from mfhq.manifest.io import file_digest
    from omniid.cli import main
    from omniid.data import load_faces

    folder = shutil.copytree(manifests, tmp_path / "m")
    train = folder / "train.parquet"
    table = pq.read_table(train)
    pq.write_table(table.set_column(table.schema.get_field_index("yaw"), "yaw", table["yaw"].cast(pa.string())), train)
    sidecar = json.loads((folder / "manifest.json").read_text())
    sidecar["files"]["train.parquet"] = file_digest(train)
    (folder / "manifest.json").write_text(json.dumps(sidecar))
    wrong = f"{train}: column(s) of another type than the manifest schema's: 'yaw' is string, expected float. "
    with pytest.raises(ManifestError) as refused:
        load_faces(folder)
    assert str(refused.value).startswith(wrong)
    assert main(["--manifest", str(train), "--preset", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert wrong in caplog.text
