"""When a shard is finished, the crop and mask folders of its clips hold exactly the files its face
rows name: a clip that fails after some chunks, or a retry that keeps fewer faces, leaves no file
without a row, and files of clips outside the shard are never touched."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


from conftest import REPO, SAMPLE_PRESET, run_cli
from presets import write_preset
from run_rows import image_files, named_files, query

SUPPORT = REPO / "tests" / "support"  # fault_backends: the workers import it by name


def _extract(videos: Path, run: Path, preset: Path, *more: str, env=None) -> list:
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset), *more, env=env)
    return query(run, "SELECT clip_id, status, n_faces_kept FROM clips ORDER BY clip_id")


def _one_clip(sample_dir: Path, tmp_path: Path) -> Path:
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", videos / "astronaut.mp4")
    return videos


def test_a_clip_whose_stage_fails_after_its_first_chunk_leaves_no_file(sample_dir, tmp_path):
    # Chunks of 4 frames: the first chunk's crops and masks are written before the second raises
    # (and again in the attempt the shard gives a failed clip, which fails at once).
    preset = write_preset(tmp_path / "faulty.yaml", {"decode.chunk_frames": 4, "run.workers": 1,
                                                     "quality.backend": "fault_backends:LaterChunkFailsQuality"},
                          base=SAMPLE_PRESET)
    env = {**os.environ, "PYTHONPATH": f"{SUPPORT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = tmp_path / "run"
    clips = _extract(_one_clip(sample_dir, tmp_path), run, preset, env=env)
    assert clips == [("astronaut", "error", 0)]
    assert image_files(run) == named_files(run) == set()
    assert not (run / "crops" / "folder" / "astronaut").exists()


def test_a_retry_that_keeps_fewer_faces_leaves_no_file_of_the_attempt_before(sample_dir, tmp_path):
    videos, run = _one_clip(sample_dir, tmp_path), tmp_path / "run"
    loose = write_preset(tmp_path / "loose.yaml", {"run.workers": 1}, base=SAMPLE_PRESET)
    [(_, status, kept)] = _extract(videos, run, loose)
    before = image_files(run)
    assert status == "ok" and kept > 0 and before == named_files(run) and len(before) == 2 * kept
    # A file of a clip outside the shard: never the shard's to remove.
    other = run / "crops" / "folder" / "other" / "000000_0.jpg"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"not this shard's")
    strict = write_preset(tmp_path / "strict.yaml", {"run.workers": 1, "align.min_face_px": 230}, base=SAMPLE_PRESET)
    [(_, _, fewer)] = _extract(videos, run, strict, "--force", "--retry", "ok")
    assert 0 < fewer < kept  # (the sample's faces are 170-260 px)
    assert image_files(run) == named_files(run) | {"crops/folder/other/000000_0.jpg"}
    assert len(named_files(run)) == 2 * fewer and other.read_bytes() == b"not this shard's"
