"""Inputs that are an output, lie inside one, or are given twice under two names: each refused
before any work, in one line naming the paths, and nothing of the input touched."""
from __future__ import annotations

import os

from conftest import SAMPLE_PRESET, run_cli


def test_bench_refuses_a_root_inside_the_scratch_folder_it_empties(tmp_path, sample_dir):
    """bench empties --out before each run: a --root inside it lost its videos, then read nothing."""
    out = tmp_path / "bench"
    (out / "clips").mkdir(parents=True)
    (out / ".mfhq-bench-scratch").write_text("")  # a scratch folder an earlier bench made
    video = out / "clips" / "mine.mp4"
    video.write_bytes((sample_dir / "videos" / "astronaut_motion.mp4").read_bytes())
    os.symlink(out, tmp_path / "link")
    for root, given in ((out / "clips", out), (tmp_path / "link" / "clips", tmp_path / "bench" / ".." / "bench")):
        result = run_cli("bench", "--root", str(root), "--out", str(given), "--pipeline", str(SAMPLE_PRESET),
                         check=False)
        assert result.returncode == 2, result.stderr
        assert f"--root {root} lies inside --out {given}, which bench empties before each run" in result.stderr
        assert video.is_file(), "bench deleted the video it was asked to read"
    result = run_cli("bench", "--root", str(out), "--out", str(out), check=False)
    assert result.returncode == 2 and f"--root {out} is --out {out}" in result.stderr and video.is_file()
