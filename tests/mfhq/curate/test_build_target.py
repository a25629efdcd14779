"""cluster-sample writes only into an empty folder or a manifest folder of the same runs and config:
someone's files are refused, another manifest is replaced only with --force, a re-run rebuilds."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.curate.target import ForeignFolder, OtherManifest
from mfhq.manifest import ManifestFolder
from mfhq.manifest.folder import ManifestLock, mark_materialized
from synthetic_runs import ClipSpec, write_run

CFG = CurateConfig(test_videos=1)


def _specs(n: int, prefix: str = "c") -> list[ClipSpec]:
    return [ClipSpec("s", f"{prefix}{i}", f"{prefix}v{i}", i) for i in range(n)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("target")
    return write_run(root / "a", _specs(6)), write_run(root / "b", _specs(6, "d"))


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_someone_elses_files_is_refused_and_left_as_it_was(runs, tmp_path):
    mydata = tmp_path / "mydata"
    mydata.mkdir()
    (mydata / "README.md").write_text("my notes")
    (mydata / "train.parquet").write_bytes(b"my own table")
    with pytest.raises(ForeignFolder, match=rf"^--manifest {mydata}: holds README.md, train.parquet but no "
                                            r"manifest.json, .* Give an empty or new folder"):
        cluster_sample([runs[0]], mydata, CFG)
    assert _contents(mydata) == {"README.md": b"my notes", "train.parquet": b"my own table"}
    for n in range(5):
        (mydata / f"photo{n}.jpg").write_bytes(b"jpg")
    with pytest.raises(ForeignFolder, match=r"not a manifest folder's \(photo0.jpg, photo1.jpg, photo2.jpg and "
                                            r"2 more\); .*Give an empty or new folder \(nothing was written\)"):
        cluster_sample([runs[0]], mydata, CFG, force=True)  # --force replaces manifests, never other files
    assert len(_contents(mydata)) == 7 and (mydata / "README.md").read_text() == "my notes"


def test_a_manifest_folder_with_a_foreign_file_added_is_refused(runs, tmp_path):
    out = tmp_path / "m"
    cluster_sample([runs[0]], out, CFG)
    (out / "notes.txt").write_text("mine")
    before = _contents(out)
    with pytest.raises(ForeignFolder, match=r"\(notes.txt\)"):
        cluster_sample([runs[0]], out, CFG)
    assert _contents(out) == before


def test_a_manifest_of_other_runs_or_config_is_refused_until_forced(runs, tmp_path):
    a, b = runs
    out = tmp_path / "manifests-A"
    cluster_sample([a], out, CFG)
    before = _contents(out)
    with pytest.raises(OtherManifest, match=rf"^--manifest {out}: holds a manifest built from other runs .*built from "
                                            rf"run {a.resolve()}, not given now; run {b.resolve()} is not in it\).* "
                                            r"or --force to replace it$"):
        cluster_sample([b], out, CFG)
    with pytest.raises(OtherManifest, match=r"\(run .* is not in it\)"):
        cluster_sample([a, b], out, CFG)
    with pytest.raises(OtherManifest, match=r"\(curate.test_videos: 1 in the manifest, 3 now\)"):
        cluster_sample([a], out, CurateConfig(test_videos=3))
    assert _contents(out) == before
    cluster_sample([b], out, CFG, force=True)
    sidecar = json.loads((out / "manifest.json").read_text())
    assert [r["run_dir"] for r in sidecar["runs"]] == [str(b.resolve())]
    assert set(ManifestFolder.open(out).split("train").column("clip_id").to_pylist()) <= {f"d{i}" for i in range(6)}


def test_the_same_runs_and_config_rebuild_also_when_a_run_grew(tmp_path):
    run = write_run(tmp_path / "run", _specs(6))
    out = tmp_path / "m"
    first = cluster_sample([run], out, CFG)
    again = cluster_sample([run], out, CurateConfig(test_videos=1, workers=2, chunk_faces=50))  # speed only
    assert again["train"] == first["train"]
    write_run(run, _specs(9))  # the run grew (a larger --limit)
    grown = cluster_sample([run], out, CFG)
    assert grown["train"]["identities"] + grown["test"]["identities"] == 9
    assert not (out / "manifest.writing.json").exists()
    # runs and manifests moved together: the run is where the sidecar says, relative to the folder
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(run, moved / "run")
    shutil.move(out, moved / "m")
    cluster_sample([moved / "run"], moved / "m", CFG)


def test_a_forced_replacement_drops_the_old_manifests_materialize_state(runs, tmp_path):
    a, b = runs
    out = tmp_path / "m"
    cluster_sample([a], out, CFG)
    with ManifestLock(out):  # as `mfhq materialize` leaves a folder: its plan, markers, the sidecar's record
        (out / "materialize" / "done").mkdir(parents=True)
        (out / "materialize" / "plan.json").write_text('{"digest": "x", "shards": {}}')
        mark_materialized(out, {"faces": 12})
    cluster_sample([a], out, CFG)  # the same runs: the markers vouch for files in them, so they stay
    assert (out / "materialize" / "plan.json").is_file()
    mark_materialized(out, {"faces": 12})
    cluster_sample([b], out, CFG, force=True)
    sidecar = json.loads((out / "manifest.json").read_text())
    assert sidecar["crops"] == "written" and "materialize" not in sidecar
    assert not (out / "materialize").exists()  # markers of files in run a's folder, not run b's


def test_the_command_refuses_and_force_replaces(runs, tmp_path):
    a, b = runs
    out = tmp_path / "m"
    cluster_sample([a], out, CFG)
    refused = run_cli("cluster-sample", "--run", str(b), "--manifest", str(out), check=False)
    assert refused.returncode == 2 and "holds a manifest built from other runs" in refused.stderr
    assert "--force to replace it" in refused.stderr and "Traceback" not in refused.stderr
    run_cli("cluster-sample", "--run", str(b), "--manifest", str(out), "--force")
    assert json.loads((out / "manifest.json").read_text())["runs"][0]["run_dir"] == str(b.resolve())
    assert "--force" in run_cli("cluster-sample", "--help").stdout
