"""`mfhq bench --make-clips` killed part way is never read as a whole folder of clips: `bench
--root` and `extract --root` refuse it in one line naming the folder and the command to run
again, which completes it (the clips already whole are kept). clips.json never vouches for a
clip rendered with other settings than it records, so a killed render with other settings is
not taken for clips of the earlier ones. Real processes (SIGKILL), real videos."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from conftest import REPO, SAMPLE_PRESET, run_cli
from mfhq.benchclips import make_clips


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _named(folder: Path, seconds: str) -> bool:
    """Whether clips.json names the first clip of this render (a render that marks its folder
    writes it as each clip is whole; one that does not, an older mfhq, only at the end)."""
    if not (folder / ".bench-clips-running").exists():
        return True
    try:
        index = json.loads((folder / "clips.json").read_text())
    except (OSError, ValueError):
        return False
    return index.get("seconds") == float(seconds) and len(index.get("clips", [])) >= 1


def _killed_render(folder: Path, seconds: str, n: int) -> bool:
    """`mfhq bench --make-clips` SIGKILLed once it has made its first clip (renamed into place: a
    new file, named by clips.json) and renders the next; False where it got past that before this process looked
    again (a loaded machine)."""
    first, second = folder / "bench-1080p-000.mp4", folder / "bench-1080p-001.mp4"
    before = _inode(first), _inode(second)
    process = subprocess.Popen([sys.executable, "-m", "mfhq", "bench", "--make-clips", str(n), "--seconds", seconds,
                                "--root", str(folder), "--out", str(folder.parent / "bench-run")],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not (_inode(first) not in (None, before[0]) and _named(folder, seconds)):
        time.sleep(0.005)  # polling only: no bound on how long the render takes
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return _inode(second) == before[1]  # the second not made yet


def _kill_a_render(folder: Path, seconds: str, n: int = 3) -> None:
    for _ in range(5):
        if _killed_render(folder, seconds, n):
            return
    pytest.fail("the render got past its second clip five times before it could be stopped")


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_killed_render_is_refused_by_bench_and_extract_and_completed_by_the_next(tmp_path):
    folder = tmp_path / "clips"
    _kill_a_render(folder, "1")
    first = folder / "bench-1080p-000.mp4"
    assert first.is_file() and not (folder / "bench-1080p-001.mp4").exists()
    again = f"run `mfhq bench --make-clips 3 --resolution 1080p --seconds 1.0 --root {folder}` again"
    for command in (["bench", "--root", str(folder), "--out", str(tmp_path / "run")],
                    ["extract", "--root", str(folder), "--out", str(tmp_path / "run"), "--pipeline", str(SAMPLE_PRESET)]):
        result = run_cli(*command, check=False)
        assert result.returncode == 2, result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"{folder}: benchmark clips that `mfhq bench --make-clips` has not finished" in errors[0], errors[0]
        assert again in errors[0], errors[0]
        assert not (tmp_path / "run").exists()

    whole = first.read_bytes(), first.stat().st_mtime_ns
    paths = make_clips(folder, 3, "1080p", seconds=1.0)  # what the command named does first
    assert (first.read_bytes(), first.stat().st_mtime_ns) == whole  # kept, not rendered again
    assert not (folder / ".bench-clips-running").exists()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "bench-1080p-000.mp4", "bench-1080p-001.mp4", "bench-1080p-002.mp4", "clips.json"]
    index = json.loads((folder / "clips.json").read_text())
    assert [e["file"] for e in index["clips"]] == [p.name for p in paths]
    assert all(_frames(p) == 25 for p in paths)


def test_a_render_killed_with_other_settings_is_not_taken_for_the_earlier_clips(tmp_path):
    folder = tmp_path / "clips"
    make_clips(folder, 2, "1080p", seconds=0.2)  # 5 frames a clip
    _kill_a_render(folder, "1", n=2)  # 25 frames a clip: the first rendered again, then killed
    assert _frames(folder / "bench-1080p-000.mp4") == 25
    paths = make_clips(folder, 2, "1080p", seconds=0.2)
    assert [_frames(p) for p in paths] == [5, 5]  # before: the killed render's 25-frame clip, read as the 5-frame one
    assert not (folder / ".bench-clips-running").exists()
