"""A clip whose video fails to decode part-way: its status row counts what was read, the faces of
the frames read before are recorded as dropped (never sampled), and no crop or mask file is left
without a row; `--retry decode_error` redoes it cleanly."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_PRESET, run_cli
from presets import write_preset
from run_rows import image_files, named_files, query


def _half_garbage(good: Path, out: Path) -> Path:
    """The video with 55-95% of its bytes replaced by (seeded) random ones: its first frames decode."""
    data = bytearray(good.read_bytes())
    start, stop = int(len(data) * 0.55), int(len(data) * 0.95)
    data[start:stop] = np.random.default_rng(0).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return out


def _extract(tmp_path: Path, sample_dir: Path, crops: str = "extract", *more: str) -> tuple[Path, list]:
    """Extract a folder holding only the half-garbage clip, in chunks of 4 frames."""
    videos, run = tmp_path / "videos", tmp_path / "run"
    if not videos.is_dir():
        videos.mkdir()
        _half_garbage(sample_dir / "videos" / "astronaut_motion.mp4", videos / "half_garbage.mp4")
    preset = write_preset(tmp_path / "chunks.yaml", {"decode.chunk_frames": 4, "run.workers": 1, "align.crops": crops},
                          base=SAMPLE_PRESET)
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset), *more)
    return run, query(run, "SELECT status, reason, n_frames_read, n_faces_detected, n_faces_kept FROM clips")


@pytest.mark.parametrize("crops", ["extract", "materialize"])
def test_a_clip_cut_short_keeps_its_counts_and_drops_its_faces_with_a_reason(sample_dir, tmp_path, crops):
    run, clips = _extract(tmp_path, sample_dir, crops)
    [(status, reason, n_read, n_detected, n_kept)] = clips
    assert status == "decode_error" and n_kept == 0
    assert "half_garbage.mp4: reading frames" in reason and "failed" in reason
    assert n_read > 0 and n_detected > 0  # the frames before the damage were read and their faces found
    faces = query(run, "SELECT kept, drop_reason, crop_path, mask_path, crop_digest FROM faces")
    assert len(faces) == n_detected and f"none of the {n_detected} faces of the {n_read} frames" in reason
    assert {f[:2] for f in faces} == {(False, "decode_error")}  # the sample's faces would all have been kept
    assert all(f[2:] == (None, None, None) for f in faces)  # a dropped face has no files to make
    assert image_files(run) == set() and named_files(run) == set()


def test_a_retry_of_a_clip_cut_short_redoes_it_cleanly(sample_dir, tmp_path):
    run, first = _extract(tmp_path, sample_dir)
    assert first[0][0] == "decode_error" and image_files(run) == named_files(run) == set()
    # Retried while still damaged: the same rows, no file without a row.
    run, again = _extract(tmp_path, sample_dir, "extract", "--retry", "decode_error")
    assert [r[:1] + r[2:] for r in again] == [r[:1] + r[2:] for r in first]  # (decord's message has a time in it)
    assert image_files(run) == named_files(run) == set()
    # The download was repaired: the retry replaces the clip's rows, every file named by one.
    shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", tmp_path / "videos" / "half_garbage.mp4")
    run, repaired = _extract(tmp_path, sample_dir, "extract", "--retry", "decode_error")
    [(status, _, n_read, n_detected, n_kept)] = repaired
    assert status == "ok" and n_read > first[0][2] and n_kept > 0
    assert query(run, "SELECT count(*) FILTER (WHERE drop_reason = 'decode_error'), count(*) FROM faces") == \
        [(0, n_detected)]
    assert image_files(run) == named_files(run) and len(image_files(run)) == 2 * n_kept
