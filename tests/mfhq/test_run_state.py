"""A run's state is checked where it is read: summary, stats and the report say a run is partial
at the top, cluster-sample refuses it unless told, a manifest older than its run is named, and a
split with no train faces is an error (issue 25, items 1, 3 and 11)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.manifest.run_state import PartialRun, read_run_state
from mfhq.manifest.views import connect
from synthetic_runs import ClipSpec, write_run


def stop_part_way(run: Path, clip: str) -> list[Path]:
    """The run as Ctrl-C leaves it: the shard holding `clip` never finished (no marker, no rows),
    run.json says interrupted. Returns the removed shard's files (to put back later)."""
    plan = json.loads((run / "plan.json").read_text())
    shard = next(sid for sid, keys in plan.items() if f"folder/{clip}" in keys)
    files = [run / "done" / f"{shard}.json", run / "faces" / f"{shard}.parquet", run / "clips" / f"{shard}.parquet"]
    aside = run.parent / "aside"
    aside.mkdir(exist_ok=True)
    for f in files:
        shutil.move(f, aside / f"{f.parent.name}-{f.name}")
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "state": "interrupted"}))
    return files


def finish(run: Path, files: list[Path]) -> None:
    """What the resumed `mfhq extract` adds: the missing shard, and state complete."""
    for f in files:
        shutil.move(run.parent / "aside" / f"{f.parent.name}-{f.name}", f)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "state": "complete"}))


@pytest.fixture
def partial_run(sample_run, tmp_path) -> tuple[Path, list[Path]]:
    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    return run, stop_part_way(run, "corrupt")  # the shard of the two clips without faces


def test_a_partial_run_is_said_at_the_top_and_refused_by_cluster_sample(partial_run, tmp_path):
    run, removed = partial_run
    summary = run_cli("summary", "--run", str(run), env={**os.environ, "COLUMNS": "400"})
    first, last = summary.stdout.splitlines()[0], summary.stdout.splitlines()[-1]
    assert first.startswith(f"WARNING: run {run}: interrupted: 2 of 3 shards done, 2 of 6 clips never processed")
    assert last == "4 clips, 4 ok, 2 never processed (not in this table)"

    refused = run_cli("cluster-sample", "--run", str(run), "--manifest", str(tmp_path / "m"),
                      "--pipeline", str(SAMPLE_PRESET), check=False)
    assert refused.returncode == 2 and "--allow-partial" in refused.stderr and "interrupted" in refused.stderr
    assert not (tmp_path / "m").exists()  # refused before any folder was made

    allowed = run_cli("cluster-sample", "--run", str(run), "--manifest", str(tmp_path / "m"),
                      "--pipeline", str(SAMPLE_PRESET), "--allow-partial")
    assert "{" not in allowed.stdout and allowed.stdout.startswith("train: ")  # lines, not Python dicts
    sidecar = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert sidecar["allow_partial"] is True and sidecar["runs"][0]["snapshot"]["state"] == "interrupted"

    stats = run_cli("stats", "--run", str(run), "--manifest", str(tmp_path / "m"), "--out", str(tmp_path / "r"))
    assert stats.stdout.startswith(f"== state\nWARNING: run {run}: interrupted")
    assert "built with --allow-partial" in stats.stdout
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.index("class='state warn'") < page.index("id='headline'")  # the warning comes first

    # The run is finished afterwards: the manifest is older than it, and stats says so instead of
    # mixing the run's new totals with the manifest's.
    finish(run, removed)
    stale = run_cli("stats", "--run", str(run), "--manifest", str(tmp_path / "m"), "--out", str(tmp_path / "r"))
    assert f"WARNING: manifest {tmp_path / 'm'} is older than its run" in stale.stdout
    assert "had 4 clips in 2 finished shards; the run has 6 in 3 now" in stale.stdout
    headline = stale.stdout.split("== headline\n")[1].split("==")[0]
    assert "manifest (built from an older state of the run)" in headline
    assert not [line for line in headline.splitlines() if line.split()[:1] == ["totals"] and "identities" in line]


def test_a_train_split_with_no_faces_is_an_error(sample_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    stop_part_way(run, "t1_intruder")  # left: the astronaut's clips, one identity, so one group to split
    result = run_cli("cluster-sample", "--run", str(run), "--manifest", str(tmp_path / "m"),
                     "--pipeline", str(SAMPLE_PRESET), "--allow-partial", check=False)
    assert result.returncode == 2
    assert "no faces in the train split (1 identities" in result.stderr and "curate.test_videos" in result.stderr
    assert not (tmp_path / "m").exists()


def test_stats_names_the_manifest_path_given(sample_run, tmp_path):
    result = run_cli("stats", "--run", str(sample_run), "--manifest", "manifest_nope", "--out", str(tmp_path),
                     check=False, cwd=tmp_path)
    assert result.returncode == 2
    assert "manifest_nope: no such manifest folder" in result.stderr and "./manifest.json" not in result.stderr


def test_a_shard_whose_files_are_in_place_but_not_its_marker_counts_nowhere(sample_run, tmp_path):
    # A stop between a shard's renames and its marker leaves its files: readers must count only
    # the finished shards, as the run's state does, and cluster-sample --allow-partial samples them.
    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    plan = json.loads((run / "plan.json").read_text())
    shard = next(sid for sid, keys in plan.items() if "folder/astronaut_motion" in keys)
    (run / "done" / f"{shard}.json").unlink()
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "state": "interrupted"}))
    assert (run / "faces" / f"{shard}.parquet").is_file() and (run / "clips" / f"{shard}.parquet").is_file()

    summary = run_cli("summary", "--run", str(run), env={**os.environ, "COLUMNS": "400"}).stdout
    lines = summary.splitlines()
    assert lines[0].startswith(f"WARNING: run {run}: interrupted: 2 of 3 shards done, 2 of 6 clips never processed")
    assert "astronaut" not in summary
    assert lines[-1] == "4 clips, 2 ok, 2 never processed (not in this table)"

    markers = [json.loads(p.read_text()) for p in (run / "done").glob("*.json")]
    assert connect(run).execute("SELECT count(*) FROM faces").fetchone()[0] == sum(m["faces"] for m in markers)

    run_cli("cluster-sample", "--run", str(run), "--manifest", str(tmp_path / "m"), "--pipeline", str(SAMPLE_PRESET),
            "--allow-partial")
    sampled = duckdb.connect().execute(
        f"SELECT DISTINCT clip_id FROM read_parquet(['{tmp_path}/m/train.parquet', '{tmp_path}/m/test.parquet'])").fetchall()
    assert sampled and not [c for (c,) in sampled if c.startswith("astronaut")]
    sidecar = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert sidecar["runs"][0]["snapshot"]["clips"] == 4


def test_summary_of_a_run_stopped_before_its_first_shard_says_its_state(sample_run, tmp_path):
    """Ctrl-C in the first minute: no shard finished yet. summary refused it as if it were no
    run at all ("is it an `mfhq extract` run?"); it says what the run is and that nothing is done."""
    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    for marker in (run / "done").glob("*.json"):
        marker.unlink()
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "state": "interrupted"}))
    lines = run_cli("summary", "--run", str(run), env={**os.environ, "COLUMNS": "400"}).stdout.splitlines()
    assert lines[0].startswith(f"WARNING: run {run}: interrupted: 0 of 3 shards done, 6 of 6 clips never processed")
    assert lines[-1] == "0 clips, 0 ok, 6 never processed"


def test_a_run_whose_extract_exited_unreaped_reads_as_killed_not_running(sample_run, tmp_path):
    """The lock's holder exited and nobody reaped it yet (a container whose first process never
    reaps): summary said "running now (another `mfhq extract` is at work)" for a dead run."""
    import socket

    from mfhq.manifest.run_state import read_run_state
    from unreaped import unreaped_pid

    run = tmp_path / "run"
    shutil.copytree(sample_run, run)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "state": "running"}))
    with unreaped_pid() as pid:
        (run / "lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "then",
                                              "token": "gone"}))
        assert read_run_state(run).state == "stopped without a word (the process was killed)"
    (run / "lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now",
                                          "token": "alive"}))
    assert read_run_state(run).state == "running"  # a live holder is still at work


def test_a_complete_run_whose_shard_was_deleted_for_a_redo_is_not_complete(tmp_path):
    """docs/curate.md's repair of a damaged shard: delete the shard and its done/ marker, re-run
    extract. Until then run.json still says complete, but the run lacks the shard: it reads as
    partial and cluster-sample refuses it, never sampling the run without those clips."""
    run = write_run(tmp_path / "run", [ClipSpec("src", f"c{i}", f"v{i}", i) for i in range(6)])
    for part in ("done/s-00001.json", "faces/s-00001.parquet", "clips/s-00001.parquet"):
        (run / part).unlink()
    state = read_run_state(run)
    assert json.loads((run / "run.json").read_text())["state"] == "complete" and not state.complete
    assert "1 of 2 shards done, 3 of 6 clips never processed; re-run the same `mfhq extract`" in state.line()
    assert ": not complete (run.json says complete; shards without a done/ marker: 1)" in state.line()
    assert ": complete" not in state.line()  # the line never calls a partial run complete
    with pytest.raises(PartialRun, match="1 of 2 shards done"):
        cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1))
    assert not (tmp_path / "m").exists()
