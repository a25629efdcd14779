"""The demo path end to end through the CLI: sample -> extract -> Parquet that DuckDB reads."""
from __future__ import annotations

import cv2
import duckdb
import pyarrow.parquet as pq

from conftest import run_cli
from mfhq.records import CLIP_SCHEMA, FACE_SCHEMA, SCHEMA_VERSION


def test_every_clip_has_exactly_one_status_row(sample_run, sample_meta):
    con = duckdb.connect()
    rows = dict(con.execute(f"SELECT clip_id, status FROM read_parquet('{sample_run}/clips/*.parquet')").fetchall())
    count = con.execute(f"SELECT count(*) FROM read_parquet('{sample_run}/clips/*.parquet')").fetchall()[0][0]
    expected = {c["clip_id"]: c["expected_status"] for c in sample_meta["clips"]}
    assert count == len(expected)
    assert rows == expected


def test_corrupt_and_empty_clips_name_the_file(sample_run):
    con = duckdb.connect()
    reasons = dict(con.sql(
        f"SELECT clip_id, reason FROM read_parquet('{sample_run}/clips/*.parquet') WHERE status <> 'ok'"
    ).fetchall())
    assert "corrupt.mp4" in reasons["corrupt"] and "decord" in reasons["corrupt"] and "pyav" in reasons["corrupt"]
    assert "empty.mp4" in reasons["empty"]


def test_kept_faces_have_crops_masks_and_all_fields(sample_run):
    con = duckdb.connect()
    kept = con.sql(
        f"SELECT clip_id, crop_path, mask_path, yaw, pitch, roll, quality, embedding, face_size, provenance "
        f"FROM read_parquet('{sample_run}/faces/*.parquet') WHERE kept"
    ).fetchall()
    per_clip = {}
    for clip_id, crop, mask, yaw, pitch, roll, quality, embedding, face_size, provenance in kept:
        per_clip[clip_id] = per_clip.get(clip_id, 0) + 1
        assert None not in (yaw, pitch, roll, quality) and 0.0 <= quality <= 1.0
        assert len(embedding) == 128 and abs(sum(v * v for v in embedding) - 1.0) < 1e-3
        assert face_size >= 128  # the sample preset's minimum
        assert "yunet-dlib68@" in provenance and "sface@" in provenance
    # Every good clip keeps most of its sampled frames (20 frames at 5 fps of 4 s).
    assert per_clip["astronaut_motion"] >= 18
    assert per_clip["t1_face2_motion"] >= 18
    assert per_clip["t1_intruder"] >= 18
    # The no-face segment (0.8 s = 4 sampled frames) yields nothing.
    assert 12 <= per_clip["astronaut_light_blur"] <= 17
    crop = cv2.imread(str(sample_run / kept[0][1]))
    mask = cv2.imread(str(sample_run / kept[0][2]), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (448, 448, 3) and mask.shape == (448, 448)
    assert set(mask.ravel().tolist()) <= {0, 255} and 0.2 < (mask > 0).mean() < 0.8


def test_parquet_schemas_are_explicit_and_versioned(sample_run):
    faces = pq.read_schema(next((sample_run / "faces").glob("*.parquet")))
    clips = pq.read_schema(next((sample_run / "clips").glob("*.parquet")))
    assert faces.metadata[b"mfhq.schema_version"].decode() == SCHEMA_VERSION
    assert faces.remove_metadata().equals(FACE_SCHEMA.remove_metadata())
    assert clips.remove_metadata().equals(CLIP_SCHEMA.remove_metadata())


def test_rerun_skips_finished_shards_and_adds_no_rows(sample_run, sample_dir):
    from conftest import SAMPLE_PRESET

    before = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{sample_run}/faces/*.parquet')").fetchall()[0][0]
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(sample_run), "--pipeline", str(SAMPLE_PRESET))
    after = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{sample_run}/faces/*.parquet')").fetchall()[0][0]
    assert before == after
    assert "already complete: 6 clips (4 ok, 1 decode_error, 1 empty)" in result.stderr and "nothing to do" in result.stderr


def test_summary_command_prints_the_clip_table(sample_run):
    out = run_cli("summary", "--run", str(sample_run)).stdout
    assert "astronaut_motion" in out and "decode_error" in out
    # the count column is the sampled frames read (n_frames_read), not the video's frames
    header = next(line for line in out.splitlines() if line.startswith("source"))
    assert header.split()[:7] == ["source", "clip_id", "status", "frames_read", "faces", "kept", "decoder"]


def test_resume_with_another_config_is_refused(sample_run, sample_dir, tmp_path):
    preset = tmp_path / "other.yaml"
    preset.write_text("name: other\nalign:\n  min_face_px: 200\n")
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(sample_run), "--pipeline", str(preset), check=False)
    assert result.returncode == 2
    assert "another pipeline config" in result.stderr
