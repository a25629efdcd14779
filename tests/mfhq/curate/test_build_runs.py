"""The manifest's runs[] say which run (its run_id) and which pipeline configs its faces came from,
and its snapshot of each run tells a run deleted and extracted again at the same path apart."""
from __future__ import annotations

import json
import logging
import shutil

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
