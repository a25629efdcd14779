"""cluster-sample writes its folder as one unit, under a lock, and never into a run folder."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

import mfhq.manifest.folder
from conftest import REPO
from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample, resplit
from mfhq.manifest import ManifestError, ManifestFolder
from mfhq.manifest.folder import ManifestLock
from mfhq.manifest.lock import FolderInUse
from mfhq.manifest.views import RunError
from mfhq.stats import run_query
from synthetic_runs import ClipSpec, write_run

WRITTEN = ["train.parquet", "test.parquet", "identities.parquet", "README.md"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    specs = [ClipSpec("s", f"c{i}", f"v{i}", i) for i in range(6)]
    return write_run(tmp_path_factory.mktemp("curate") / "run", specs)


def _read_all(run, out):
    """What the readers see: the trainer's door (ManifestFolder), and `mfhq stats`."""
    folder = ManifestFolder.open(out)
    rows = {name: folder.split(name).num_rows for name in ("train", "test")}
    run_query([run], out, "SELECT count(*) FROM manifest")
    return rows


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the writer may catch it and clean up."""


@pytest.mark.parametrize("last", WRITTEN)
def test_a_write_stopped_between_the_files_never_reads_as_complete(run, tmp_path, monkeypatch, last):
    out = tmp_path / "man"
    cluster_sample([run], out, CurateConfig(test_videos=1))
    before = _read_all(run, out)
    real_arrow, real_bytes = mfhq.manifest.folder.atomic_write_arrow, mfhq.manifest.folder.atomic_write_bytes

    def stop_after(real):
        def write(dest, content, *args):
            real(dest, content, *args)
            if dest.name == last:
                raise Killed
        return write

    monkeypatch.setattr(mfhq.manifest.folder, "atomic_write_arrow", stop_after(real_arrow))
    monkeypatch.setattr(mfhq.manifest.folder, "atomic_write_bytes", stop_after(real_bytes))
    with pytest.raises(Killed):  # another split: train and test of the new write differ from the old
        cluster_sample([run], out, CurateConfig(test_videos=3), force=True)
    monkeypatch.undo()
    for read in (lambda: ManifestFolder.open(out).split("train"), lambda: run_query([run], out, "SELECT 1")):
        with pytest.raises(ManifestError, match=r"manifest.json: missing, so .* is unfinished: its last "
                                                r"`mfhq cluster-sample` \(or `mfhq split`\) stopped"):
            read()
    cluster_sample([run], out, CurateConfig(test_videos=3))  # run again: complete, the new split
    after = _read_all(run, out)
    assert after != before and sum(after.values()) == sum(before.values())
    assert not list(out.glob(".tmp-*")) and not (out / "lock").exists()


def test_files_of_two_writes_are_refused(run, tmp_path):
    # What a folder looked like after a kill between the files (the old sidecar, a new train),
    # or when a reader is overtaken by a writer: the sidecar vouches for each file by its hash.
    old, new = tmp_path / "old", tmp_path / "new"
    cluster_sample([run], old, CurateConfig(test_videos=1))
    cluster_sample([run], new, CurateConfig(test_videos=3))
    sidecar = json.loads((old / "manifest.json").read_text())
    assert sorted(sidecar["files"]) == sorted(WRITTEN) and all(len(f["sha256"]) == 64 for f in sidecar["files"].values())
    shutil.copy(new / "train.parquet", old / "train.parquet")
    with pytest.raises(ManifestError, match=r"train.parquet: not the file .*manifest.json lists .* the folder mixes "
                                            r"files of two writes .*re-run `mfhq cluster-sample` into"):
        ManifestFolder.open(old).split("train")
    with pytest.raises(ManifestError, match="train.parquet: not the file"):
        run_query([run], old, "SELECT count(*) FROM manifest")
    ManifestFolder.open(old).split("test")  # the files it does vouch for still read


def test_a_killed_writer_leaves_an_unfinished_folder_and_a_lock_taken_over(run, tmp_path):
    # A real SIGKILL right after train.parquet is in place, before manifest.json.
    out = tmp_path / "man"
    cluster_sample([run], out, CurateConfig(test_videos=1))
    script = (
        "import os, signal, sys\n"
        "import mfhq.manifest.folder as f\n"
        "from mfhq.config import CurateConfig\n"
        "from mfhq.curate import cluster_sample\n"
        "real = f.atomic_write_arrow\n"
        "def write(dest, table):\n"
        "    real(dest, table)\n"
        "    if dest.name == 'train.parquet':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "f.atomic_write_arrow = write\n"
        "cluster_sample([sys.argv[1]], sys.argv[2], CurateConfig(test_videos=3), force=True)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(run), str(out)], cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "lock").exists() and not (out / "manifest.json").exists()
    with pytest.raises(ManifestError, match="is unfinished"):
        ManifestFolder.open(out)
    cluster_sample([run], out, CurateConfig(test_videos=3))  # the dead writer's lock is taken over
    assert not (out / "lock").exists() and _read_all(run, out)


def test_two_writers_on_one_folder_are_refused(run, tmp_path):
    out = tmp_path / "man"
    out.mkdir()
    with ManifestLock(out):  # another cluster-sample (or split) at work on the folder
        with pytest.raises(FolderInUse, match=rf"{out}/lock: the manifest folder is in use by pid {os.getpid()}"):
            cluster_sample([run], out, CurateConfig(test_videos=1))
        assert not list(out.glob("*.parquet"))
    cluster_sample([run], out, CurateConfig(test_videos=1))
    with ManifestLock(out):
        with pytest.raises(FolderInUse, match="the manifest folder is in use"):
            resplit(out, CurateConfig(test_videos=3))
    assert not (out / "lock").exists()


def test_out_inside_a_run_folder_is_refused_and_stray_manifests_are_ignored(run, tmp_path):
    for out in (run / "faces", run / "faces" / "m", run):
        with pytest.raises(RunError, match=rf"^--manifest {out} is inside the run folder {run} \(made by `mfhq extract`\); "
                                           rf"write the manifests outside it, e.g. --manifest {run.parent}/manifests$"):
            cluster_sample([run], out, CurateConfig(test_videos=1))
    assert not (run / "faces" / "m").exists() and not list((run / "faces").glob("t*.parquet"))
    # Manifests an older mfhq let into the run's faces/ are no finished shard (no marker): never read.
    elsewhere = tmp_path / "man"
    first = cluster_sample([run], elsewhere, CurateConfig(test_videos=1))
    stray = shutil.copy(elsewhere / "train.parquet", run / "faces" / "train.parquet")
    try:
        again = cluster_sample([run], elsewhere, CurateConfig(test_videos=1))
        assert {k: again[k] for k in ("train", "test")} == {k: first[k] for k in ("train", "test")}
    finally:
        os.unlink(stray)
