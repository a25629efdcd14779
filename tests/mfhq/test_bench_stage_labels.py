"""`mfhq bench`'s per-stage line: with decode-ahead a worker decodes on another core while its
models run, and the `decode` seconds are the time the models waited for frames; the line names
them so, instead of reading as the decoder's cost per frame (the labels audit)."""
from __future__ import annotations

import re
import shutil

from conftest import SAMPLE_PRESET, run_cli


def _per_stage(sample_dir, tmp_path, flag: str) -> dict[str, float]:
    root = tmp_path / "videos"
    root.mkdir(exist_ok=True)
    shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", root)
    out = run_cli("bench", "--root", str(root), "--out", str(tmp_path / f"run{flag}"), "--pipeline",
                  str(SAMPLE_PRESET), flag).stdout
    line = next(line for line in out.splitlines() if line.startswith("per stage: "))
    return {name: float(seconds) for name, seconds in re.findall(r"(?:^per stage: |, )([a-z][^=]*)=([\d.]+)s", line)}


def test_the_decode_stage_is_named_the_wait_for_frames_when_decoded_ahead(sample_dir, tmp_path):
    ahead = _per_stage(sample_dir, tmp_path, "--decode-ahead")
    assert "decode" not in ahead and "decode (waiting for frames, decoded ahead)" in ahead, ahead
    assert {"detect", "embed"} <= set(ahead)
    inline = _per_stage(sample_dir, tmp_path, "--no-decode-ahead")
    assert "decode" in inline and not any(name.startswith("decode (") for name in inline), inline
