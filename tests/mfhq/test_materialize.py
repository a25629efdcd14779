"""align.crops: materialize + `mfhq materialize`: the sampled faces' crops and masks, made after
cluster-sample, are the very files the one pass writes; the step resumes by shard and a folder it
has not finished is never read as complete."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE_PRESET, run_cli
from presets import write_preset
from run_rows import query

from mfhq.config import load_pipeline
from mfhq.curate import cluster_sample
from mfhq.manifest import ManifestError, ManifestFolder
from mfhq.manifest.io import atomic_write_table
from mfhq.materialize import MaterializeInterrupted, materialize
from mfhq.plan import RunLock, RunStateError
from mfhq.records import FACE_SCHEMA

FACE_FILES = ("crop_path", "mask_path")


@pytest.fixture(scope="module")
def later_preset(tmp_path_factory) -> Path:
    return write_preset(tmp_path_factory.mktemp("preset") / "later.yaml", {"align.crops": "materialize"},
                        base=SAMPLE_PRESET)


@pytest.fixture(scope="module")
def later_run_made(sample_dir, later_preset, tmp_path_factory) -> Path:
    """The sample extracted with align.crops: materialize (candidate rows only)."""
    run = tmp_path_factory.mktemp("later") / "sample"
    run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(later_preset))
    return run


@pytest.fixture
def later(later_run_made, later_preset, tmp_path) -> tuple[Path, Path]:
    """(a fresh copy of the run, a manifest over it that cluster-sample just wrote)."""
    run = tmp_path / "sample"
    shutil.copytree(later_run_made, run)
    out = tmp_path / "manifests"
    run_cli("cluster-sample", "--run", str(run), "--out", str(out), "--pipeline", str(later_preset))
    return run, out


def _interrupt(shard_id: str) -> None:
    """Ctrl-C as a shard's marker is written (the next shard may be half made)."""
    raise KeyboardInterrupt


def _rows(folder: Path) -> list[dict]:
    return [r for split in ("train", "test") for r in pq.read_table(folder / f"{split}.parquet").to_pylist()]


def _assert_same_files(one_run: Path, one_manifest: Path, run: Path, manifest: Path) -> None:
    """The same faces, and byte for byte the same crop and mask files, as the one pass."""
    ours, theirs = _rows(manifest), _rows(one_manifest)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        assert {k: v for k, v in a.items() if k not in ("run", "provenance")} == \
               {k: v for k, v in b.items() if k not in ("run", "provenance")}
        for column in FACE_FILES:
            assert (run / a[column]).read_bytes() == (one_run / b[column]).read_bytes(), a[column]


def test_extract_records_candidates_without_images(later_run_made, sample_run):
    assert not (later_run_made / "crops").exists() and not (later_run_made / "masks").exists()
    later = pq.read_table(later_run_made / "faces").to_pylist()
    one = pq.read_table(sample_run / "faces").to_pylist()
    assert [r["crop_path"] for r in later] == [r["crop_path"] for r in one]  # where the files will be
    kept = [r for r in later if r["kept"]]
    assert kept and all(r["crop_digest"] and len(r["landmarks68"]) == 136 for r in kept)
    assert all(r["crop_digest"] is None and r["landmarks68"] is None for r in one)
    assert "dlib68-hull" not in kept[0]["provenance"]  # no parsing ran


def test_materialize_writes_the_one_pass_files(later, sample_run, manifests):
    run, out = later
    assert json.loads((out / "manifest.json").read_text())["crops"] == "pending"
    run_cli("materialize", "--manifest", str(out))
    sidecar = json.loads((out / "manifest.json").read_text())
    assert sidecar["crops"] == "materialized"
    assert sidecar["materialize"]["faces"] == len(_rows(out)) and sidecar["materialize"]["differ"] == 0
    assert sidecar["materialize"]["provenance"].startswith("dlib68-hull@")
    _assert_same_files(sample_run, manifests, run, out)
    # only the sampled faces got files: one parsing call each
    assert sum(1 for _ in (run / "crops").rglob("*.jpg")) == len(_rows(out))
    assert ManifestFolder.open(out).crops == "materialized"


def test_a_pending_folder_is_refused_by_its_readers(later):
    _, out = later
    with pytest.raises(ManifestError, match="mfhq materialize --manifest"):
        ManifestFolder.open(out)
    omniid_data = pytest.importorskip("omniid.data")
    with pytest.raises(ManifestError, match="not written yet"):
        omniid_data.load_faces(out)


def test_an_interrupted_materialize_resumes_and_never_reads_as_complete(later, sample_run, manifests):
    run, out = later
    stopped: list[str] = []

    def stop_after_first(shard_id: str) -> None:
        stopped.append(shard_id)
        _interrupt(shard_id)

    with pytest.raises(MaterializeInterrupted, match="1 of 2 shards"):
        materialize(out, on_shard=stop_after_first)
    assert len(list((out / "materialize" / "done").glob("*.json"))) == 1
    with pytest.raises(ManifestError, match="not written yet"):  # half made: still pending
        ManifestFolder.open(out)
    plan = json.loads((out / "materialize" / "plan.json").read_text())["shards"]
    unfinished = next(keys for sid, keys in plan.items() if sid != stopped[0])
    stray = run / "crops" / unfinished[0] / ".tmp-000000_0.jpg-x"  # a killed writer's temporary file
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"half")
    summary = materialize(out)
    assert summary.state == "materialized" and summary.shards_skipped == 1 and summary.failed == []
    assert summary.written == len(_rows(out)) - json.loads(
        (out / "materialize" / "done" / f"{stopped[0]}.json").read_text())["faces"]
    assert not stray.exists()
    _assert_same_files(sample_run, manifests, run, out)


def test_a_rerun_after_completion_changes_nothing(later):
    run, out = later
    materialize(out)
    crop = run / _rows(out)[0]["crop_path"]
    before = crop.stat().st_mtime_ns, (out / "manifest.json").read_bytes()
    again = materialize(out)
    assert again.state == "materialized" and again.written == 0
    assert (crop.stat().st_mtime_ns, (out / "manifest.json").read_bytes()) == before


def test_a_rewritten_manifest_is_planned_anew(later, later_preset):
    run, out = later
    with pytest.raises(MaterializeInterrupted):
        materialize(out, on_shard=_interrupt)
    curate = load_pipeline(later_preset).curate
    cluster_sample([run], out, dataclasses.replace(curate, faces_per_identity=4, pose_clusters=8), "later", force=True)
    summary = materialize(out)
    assert summary.state == "materialized" and summary.shards_skipped == 0
    assert summary.written == summary.faces == len(_rows(out)) == 12
    assert all((run / r[c]).is_file() for r in _rows(out) for c in FACE_FILES)


def test_a_run_in_use_is_refused(later):
    run, out = later
    with RunLock(run):
        with pytest.raises(RunStateError, match="in use"):
            materialize(out)
    assert ManifestFolder.open(out, pending_ok=True).crops == "pending"


def test_crops_that_differ_from_extracts_pixels_are_counted(later):
    run, out = later
    shard = sorted((run / "faces").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    digests = table.column("crop_digest").to_pylist()
    digests = ["0" * 16 if d else d for d in digests]
    rows = table.set_column(table.schema.get_field_index("crop_digest"), "crop_digest", pa.array(digests, pa.string()))
    atomic_write_table(shard, rows.to_pylist(), FACE_SCHEMA)
    summary = materialize(out)
    assert summary.state == "materialized" and 0 < summary.differ <= summary.written


def test_the_command_names_a_folder_that_is_not_a_manifest(tmp_path):
    result = run_cli("materialize", "--manifest", str(tmp_path), check=False)
    assert result.returncode == 2
    assert "manifest.json: missing" in result.stderr and "Traceback" not in result.stderr


def test_markers_of_a_run_made_again_at_the_same_path_vouch_for_nothing(later, later_run_made):
    """A run deleted and extracted again has the same rows but none of the crops the old markers
    vouched for: materialize must make them again, not take them as done."""
    run, out = later
    with pytest.raises(MaterializeInterrupted):
        materialize(out, on_shard=_interrupt)
    shutil.rmtree(run)
    shutil.copytree(later_run_made, run)  # the same rows, no crops: what extracting again gives
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "run_id": "made-again"}))
    summary = materialize(out)
    assert summary.state == "materialized" and summary.shards_skipped == 0
    assert all((run / r[c]).is_file() for r in _rows(out) for c in FACE_FILES)


def test_a_run_extracted_again_after_materialize_is_noticed_and_made_again(later, sample_dir, later_preset):
    """Extracting again at the same path gives the same rows and markers but no crops: readers
    refuse the materialized folder, and materialize makes its crops again."""
    from mfhq.manifest.run_state import changed_since

    run, out = later
    assert materialize(out).state == "materialized"
    ManifestFolder.open(out)
    recorded = json.loads((out / "manifest.json").read_text())["runs"][0]["snapshot"]
    shutil.rmtree(run)
    run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(later_preset))
    assert "deleted and extracted again" in changed_since(recorded, run)
    with pytest.raises(ManifestError, match="extracted again since `mfhq materialize` wrote their crops"):
        ManifestFolder.open(out)
    summary = materialize(out)
    assert summary.state == "materialized" and summary.shards_skipped == 0 and summary.written == summary.faces
    assert all((run / r[c]).is_file() for r in _rows(out) for c in FACE_FILES)
    ManifestFolder.open(out)  # the readers take it again
    assert materialize(out).shards_total == 0  # and a re-run has nothing to do


@pytest.fixture(scope="module")
def other_preset(tmp_path_factory) -> Path:
    """Another config, whose rows differ (embeddings of every 2nd face) while the faces found stay."""
    return write_preset(tmp_path_factory.mktemp("preset") / "other.yaml",
                        {"align.crops": "materialize", "embed.every": 2}, base=SAMPLE_PRESET)


def test_a_run_extracted_in_place_under_another_config_is_refused_before_any_work(later, sample_dir, other_preset):
    """The sampled rows are all still there, but they are another config's: the faces were chosen
    (and clustered) from rows that no longer describe the run, so no crop is made from them."""
    run, out = later
    run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(other_preset),
            "--force", "--retry", "ok")
    refused = run_cli("materialize", "--manifest", str(out), check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"manifest {out} is older than its run 'sample': shards of run" in refused.stderr
    assert "were finished again since it was built" in refused.stderr
    assert f"re-run `mfhq cluster-sample` into {out}" in refused.stderr
    assert not (out / "materialize").exists() and not (run / "crops").exists()  # no plan, no file, no lock taken
    assert ManifestFolder.open(out, pending_ok=True).crops == "pending"


def test_a_run_extracted_again_under_another_config_after_materialize_asks_for_cluster_sample(
        later, sample_dir, other_preset, later_preset):
    """Made again at the same path with other rows, a run's crops cannot just be made again from
    the manifest's rows: materialize refuses until cluster-sample rebuilt the folder, then works."""
    run, out = later
    assert materialize(out).state == "materialized"
    shutil.rmtree(run)
    run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline", str(other_preset))
    with pytest.raises(ManifestError, match="older than its run 'sample': .* re-run `mfhq cluster-sample` into"):
        materialize(out)
    assert not (run / "crops").exists()
    with pytest.raises(ManifestError, match="extracted again since `mfhq materialize`"):
        ManifestFolder.open(out)  # readers still refuse it
    run_cli("cluster-sample", "--run", str(run), "--out", str(out), "--pipeline", str(later_preset))
    assert materialize(out).state == "materialized"
    assert all((run / r[c]).is_file() for r in _rows(out) for c in FACE_FILES)


def test_a_shard_whose_clip_fails_gets_no_marker_and_is_made_on_the_next_run(sample_dir, sample_run, manifests,
                                                                          later_preset, tmp_path):
    """A clip whose video is gone when materialize runs (moved, a disk unmounted) writes no files:
    its shard gets no marker, the folder stays pending, and a re-run once the video is back makes
    that shard alone. The run reads its own copy of the videos: the session's sample is shared
    with tests running beside this one, so it is never moved."""
    videos, run, out = tmp_path / "videos", tmp_path / "sample", tmp_path / "manifests"
    shutil.copytree(sample_dir / "videos", videos)
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(later_preset))
    run_cli("cluster-sample", "--run", str(run), "--out", str(out), "--pipeline", str(later_preset))
    clip_id = _rows(out)[0]["clip_id"]
    [(video,)] = query(run, f"SELECT video_path FROM clips WHERE clip_id = '{clip_id}'")
    video, away = Path(video), tmp_path / "away.mp4"
    assert video.is_relative_to(videos)
    video.replace(away)
    summary = materialize(out)
    away.replace(video)
    assert summary.state == "pending" and len(summary.failed) == 1 and "missing" in summary.failed[0][1]
    assert len(list((out / "materialize" / "done").glob("*.json"))) == summary.shards_total - 1
    with pytest.raises(ManifestError, match="not written yet"):
        ManifestFolder.open(out)
    again = materialize(out)
    assert again.state == "materialized" and again.shards_skipped == summary.shards_total - 1 and again.failed == []
    _assert_same_files(sample_run, manifests, run, out)
