"""One process at a time writes a folder: while `mfhq sample --out DIR` or `mfhq bench --make-clips
N --root DIR` writes it, a second writer (either command: a sample's videos/ and a render's
folder are one kind of folder, locked alike) is refused in one line (exit 2) naming the lock, what
holds it (the kind of folder, the command) and its pid and host, and writes nothing (before, both
ran: the second could remove the first's "being written" marker while the first still wrote, or
mix their files). `mfhq bench` holds its clips' lock from their render until its last read, so no
render rewrites them under the measurement, and empties its scratch --out under the run lock, so
never under another bench's extract. A lock left by a killed writer is taken over and the write
completes. Real processes: a real writer stopped (SIGSTOP) part way through holds its locks
as a running one does, then is killed (SIGKILL); real videos."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SAMPLE_PRESET, run_cli
from mfhq.benchclips import make_clips


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _stopped_writer(args: list[str], folder: Path, written: Path, marker: Path | None) -> subprocess.Popen:
    """`mfhq ARGS` writing `folder`, stopped (alive, holding what it holds) once `written` is there
    and its marker (if any) still up; tried again in a fresh folder where it finished first (a loaded
    machine)."""
    for _ in range(5):
        shutil.rmtree(folder, ignore_errors=True)
        writer = subprocess.Popen([sys.executable, "-m", "mfhq", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        while writer.poll() is None and not written.exists():
            time.sleep(0.01)  # polling only: no bound on how long the render takes
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGSTOP)
            if writer.poll() is None and (marker is None or marker.exists()):
                return writer
        _kill(writer)
    pytest.fail(f"mfhq {' '.join(args)} finished five times before it could be stopped")


def _kill(writer: subprocess.Popen) -> None:
    writer.kill()  # SIGKILL (a stopped process too): its lock stays, stale, as a killed writer leaves it
    writer.wait()


def _refused(result: subprocess.CompletedProcess, lock: Path, what: str, command: str,
             holder: subprocess.Popen) -> None:
    """One line naming the lock, the kind of folder and the command that hold it, its pid and host."""
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert (f"{lock}: the {what} is in use by pid {holder.pid} on host {socket.gethostname()} ({command}, since "
            in errors[0]), errors[0]


def test_a_second_sample_into_a_folder_being_written_is_refused_and_the_next_takes_a_killed_ones_lock(sample_dir,
                                                                                                     tmp_path):
    made = tmp_path / "sample"
    writer = _stopped_writer(["sample", "--out", str(made)], made, made / "videos" / ".astronaut_light_blur.partial.mp4",
                             made / "videos" / ".sample-running")
    try:
        before = _files(made)
        _refused(run_cli("sample", "--out", str(made), check=False), made / "lock", "sample folder", "mfhq sample",
                 writer)
        assert _files(made) == before  # the writer's marker and clips untouched, nothing added
    finally:
        _kill(writer)
    result = run_cli("sample", "--out", str(made))
    assert "taking over a stale lock" in result.stderr, result.stderr
    assert _files(made) == _files(sample_dir)  # whole, no lock, nothing the killed one left


def test_a_second_clip_render_into_a_folder_being_written_is_refused_and_the_next_takes_a_killed_ones_lock(tmp_path,
                                                                                                          caplog):
    folder, run = tmp_path / "clips", tmp_path / "bench-run"
    writer = _stopped_writer(["bench", "--make-clips", "3", "--seconds", "1", "--root", str(folder), "--out",
                              str(tmp_path / "first-run")], folder, folder / "bench-1080p-000.mp4",
                             folder / ".bench-clips-running")  # stopped once its first clip is whole
    try:
        before = _files(folder)
        result = run_cli("bench", "--make-clips", "3", "--seconds", "1", "--root", str(folder), "--out", str(run),
                         check=False)
        _refused(result, folder / "lock", "videos folder", "mfhq bench --make-clips", writer)
        assert _files(folder) == before and not run.exists()  # marker, clips and index untouched; no bench run
    finally:
        _kill(writer)
    with caplog.at_level(logging.WARNING, logger="mfhq.manifest.lock"):
        paths = make_clips(folder, 3, "1080p", seconds=1.0)
    assert "taking over a stale lock" in caplog.text
    assert sorted(n for n in _files(folder) if not n.startswith(".")) == [
        "bench-1080p-000.mp4", "bench-1080p-001.mp4", "bench-1080p-002.mp4", "clips.json"]  # no lock left
    assert [e["file"] for e in json.loads((folder / "clips.json").read_text())["clips"]] == [p.name for p in paths]


def test_a_sample_and_a_render_into_its_videos_exclude_each_other(tmp_path):
    """Both write DIR/videos: a render there while a sample writes DIR is refused, and a sample
    while a render writes DIR/videos (before, the render went on among the sample's clips, and the
    sample was refused only for the files the render had made by then)."""
    made, videos = tmp_path / "sample", tmp_path / "sample" / "videos"
    render = ["bench", "--make-clips", "1", "--seconds", "0.2", "--root", str(videos), "--out", str(tmp_path / "run")]
    writer = _stopped_writer(["sample", "--out", str(made)], made, videos / ".astronaut_light_blur.partial.mp4",
                             videos / ".sample-running")
    try:
        before = _files(made)
        _refused(run_cli(*render, check=False), videos / "lock", "videos folder", "mfhq sample", writer)
        assert _files(made) == before and not (tmp_path / "run").exists()
    finally:
        _kill(writer)
    shutil.rmtree(made)
    writer = _stopped_writer([*render[:-2], "--out", str(tmp_path / "first-run")], made,
                             videos / "bench-1080p-000.mp4", videos / ".bench-clips-running")
    try:
        before = _files(made)
        _refused(run_cli("sample", "--out", str(made), check=False), videos / "lock", "videos folder",
                 "mfhq bench --make-clips", writer)
        assert _files(made) == before
    finally:
        _kill(writer)


def test_a_refusal_names_what_holds_the_folder_not_what_the_refused_command_makes_of_it(tmp_path):
    """A render into a sample's own folder while the sample writes it: the line names the sample
    (before: "the benchmark clips folder is in use", the refused command's kind of folder)."""
    made, videos = tmp_path / "sample", tmp_path / "sample" / "videos"
    writer = _stopped_writer(["sample", "--out", str(made)], made, videos / ".astronaut_light_blur.partial.mp4",
                             videos / ".sample-running")
    try:
        result = run_cli("bench", "--make-clips", "1", "--seconds", "0.2", "--root", str(made), "--out",
                         str(tmp_path / "run"), check=False)
        _refused(result, made / "lock", "sample folder", "mfhq sample", writer)
    finally:
        _kill(writer)


def test_a_render_into_clips_that_bench_is_measuring_is_refused(tmp_path):
    """`mfhq bench --make-clips` renders its clips and measures them under one hold of their lock:
    a render with other settings into the same folder meanwhile is refused and changes nothing
    (before, the lock went with the render, and the second replaced the clips being measured)."""
    clips, measure = tmp_path / "a" / "clips", tmp_path / "a" / "run"
    bench = ["bench", "--make-clips", "1", "--seconds", "0.2", "--root", str(clips), "--pipeline", str(SAMPLE_PRESET)]
    writer = _stopped_writer([*bench, "--out", str(measure)], tmp_path / "a", measure / ".mfhq-bench-scratch", None)
    try:  # stopped once it measures: its scratch run folder is made, the clips are whole
        assert not (clips / ".bench-clips-running").exists()
        before = _files(clips)
        result = run_cli("bench", "--make-clips", "2", "--seconds", "0.4", "--root", str(clips), "--pipeline",
                         str(SAMPLE_PRESET), "--out", str(tmp_path / "second-run"), check=False)
        _refused(result, clips / "lock", "videos folder", "mfhq bench --make-clips", writer)
        assert _files(clips) == before and not (tmp_path / "second-run").exists()
    finally:
        _kill(writer)


def test_a_bench_into_the_run_folder_another_bench_is_extracting_into_is_refused(tmp_path):
    """Two benches, other clips, one --out (the default is every bench's): the second is refused
    in one line naming the first, and the first's run folder is left to it (before, the second
    emptied it while the first's extract wrote there)."""
    run = tmp_path / "run"
    first = ["bench", "--make-clips", "1", "--seconds", "0.2", "--root", str(tmp_path / "a" / "clips"), "--out",
             str(run), "--pipeline", str(SAMPLE_PRESET)]
    writer = _stopped_writer(first, tmp_path / "a", run / "lock", None)  # stopped in its extract, which holds the lock
    try:
        before = _files(run)
        result = run_cli("bench", "--make-clips", "1", "--seconds", "0.2", "--root", str(tmp_path / "b" / "clips"),
                         "--out", str(run), "--pipeline", str(SAMPLE_PRESET), check=False)
        _refused(result, run / "lock", "run folder", "mfhq extract", writer)
        assert _files(run) == before
    finally:
        _kill(writer)
