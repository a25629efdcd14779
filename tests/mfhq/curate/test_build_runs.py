"""The manifest's runs[] say which run (its run_id) and which pipeline configs its faces came from,
and its snapshot of each run tells a run deleted and extracted again at the same path apart."""
from __future__ import annotations

import json
import logging
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.manifest.run_state import changed_since, snapshot
from mfhq.stats.state import STALE_MANIFEST, state_lines
from synthetic_runs import ClipSpec, read_json, write_run


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A run as an mfhq before run ids wrote it: no run_id or config history, markers without a config."""
    specs = [ClipSpec("s", f"c{i}", f"v{i}", i) for i in range(6)]
    return write_run(tmp_path_factory.mktemp("runs") / "run", specs)


def _with_history(run, run_id: str, fingerprints: list[str]) -> None:
    """run.json and markers as extract leaves them: shard n made with fingerprints[n] (the last one
    for the rest), as after `extract --force` with another config."""
    meta = read_json(run / "run.json")
    meta.update(run_id=run_id, config_fingerprint=fingerprints[-1],
                configs=[{"fingerprint": fp, "since": "2026-01-01T00:00:00+00:00"} for fp in fingerprints])
    (run / "run.json").write_text(json.dumps(meta))
    for n, marker in enumerate(sorted((run / "done").glob("*.json"))):
        made_with = fingerprints[min(n, len(fingerprints) - 1)]
        marker.write_text(json.dumps({**read_json(marker), "config_fingerprint": made_with}))


def _copy(old_run, tmp_path, run_id=None, fingerprints=None):
    run = tmp_path / "run"
    shutil.copytree(old_run, run)
    if run_id:
        _with_history(run, run_id, fingerprints)
    return run


def test_runs_record_the_run_id_and_the_configs_of_the_shards_read(old_run, tmp_path, caplog):
    run = _copy(old_run, tmp_path, "id-1", ["aaaa", "bbbb"])
    with caplog.at_level(logging.WARNING, logger="mfhq"):
        cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1))
    entry = read_json(tmp_path / "m" / "manifest.json")["runs"][0]
    assert entry["run_id"] == "id-1" and entry["configs"] == ["aaaa", "bbbb"]
    assert entry["snapshot"]["run_id"] == "id-1"
    assert "the runs read mix 2 pipeline configs" in caplog.text and "aaaa, bbbb" in caplog.text


def test_a_run_of_one_config_mixes_nothing(old_run, tmp_path, caplog):
    run = _copy(old_run, tmp_path, "id-1", ["aaaa"])
    with caplog.at_level(logging.WARNING, logger="mfhq"):
        cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1))
    assert read_json(tmp_path / "m" / "manifest.json")["runs"][0]["configs"] == ["aaaa"]
    assert "mix" not in caplog.text


def test_an_older_run_records_its_one_config_and_no_run_id(old_run, tmp_path):
    """Its snapshot is what it was before run ids: no new field, the same markers digest."""
    cluster_sample([old_run], tmp_path / "m", CurateConfig(test_videos=1))
    entry = read_json(tmp_path / "m" / "manifest.json")["runs"][0]
    assert entry["run_id"] is None and entry["configs"] == ["test"]
    assert set(entry["snapshot"]) == {"state", "shards_done", "clips", "markers_sha256"}
    assert changed_since(entry["snapshot"], old_run) is None


def test_a_run_extracted_again_at_the_same_path_is_a_changed_run(old_run, tmp_path):
    """Same inputs give the same markers: only the run id says the run is another one."""
    run = _copy(old_run, tmp_path, "id-1", ["aaaa"])
    out = tmp_path / "m"
    cluster_sample([run], out, CurateConfig(test_videos=1))
    recorded = read_json(out / "manifest.json")["runs"][0]["snapshot"]
    assert changed_since(recorded, run) is None
    shutil.rmtree(run)
    _copy(old_run, tmp_path, "id-2", ["aaaa"])
    assert snapshot(run)["markers_sha256"] == recorded["markers_sha256"]
    change = changed_since(recorded, run)
    assert change and "deleted and extracted again" in change and "id-2" in change and "id-1" in change
    lines, section = state_lines([run], out)
    assert section == STALE_MANIFEST and any("older than its run" in line and "id-2" in line for line in lines)
    # a manifest from before snapshots named run ids compares the markers only, as it did
    assert changed_since({k: v for k, v in recorded.items() if k != "run_id"}, run) is None


def test_a_run_given_twice_is_refused_not_read_twice(old_run, tmp_path):
    """Given twice (here spelled two ways), every face was read twice and sampled twice."""
    from mfhq.manifest.views import RunError

    spelled_otherwise = old_run.parent / "." / old_run.name
    cfg = CurateConfig(test_videos=1, merge_by_embedding=False)
    with pytest.raises(RunError, match=rf"{spelled_otherwise}: the run {old_run} given again .*give each run once"):
        cluster_sample([old_run, spelled_otherwise], tmp_path / "m", cfg)
    assert not (tmp_path / "m").exists()
    # onto a manifest of that run, the same words (not "a manifest built from other runs")
    cluster_sample([old_run], tmp_path / "m", cfg)
    with pytest.raises(RunError, match=rf"{spelled_otherwise}: the run {old_run} given again"):
        cluster_sample([old_run, spelled_otherwise], tmp_path / "m", cfg)


def _video_paths_moved(run, to: str) -> None:
    for path in (run / "clips").glob("*.parquet"):
        table = pq.read_table(path)
        moved = pa.array([p.replace("/videos/", to) for p in table.column("video_path").to_pylist()])
        pq.write_table(table.set_column(table.schema.get_field_index("video_path"), "video_path", moved), path)


def test_a_clip_in_two_runs_is_named_with_what_it_is(old_run, tmp_path):
    """The same video in two runs (runs that overlap), or two videos under one clip id (two
    folders holding files of one name): both refused, each named for what it is."""
    from mfhq.manifest.views import RunError, connect_runs

    again = write_run(tmp_path / "again", [ClipSpec("s", "c0", "v0", 0)])
    with pytest.raises(RunError, match=r"clip s/c0 is in 2 of the runs given .*1 clip\(s\) are in more than one\), "
                                       r"read from the same video /videos/c0.mp4: runs that overlap"):
        connect_runs([old_run, again])
    _video_paths_moved(again, "/elsewhere/")
    with pytest.raises(RunError, match=r"each from another video \(/elsewhere/c0.mp4, /videos/c0.mp4\): .*two folders "
                                       r"holding files of one name meet\. Extract those folders as one run"):
        connect_runs([old_run, again])
