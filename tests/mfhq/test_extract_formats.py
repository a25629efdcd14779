"""`mfhq extract` (folder source, sample preset) on a phone's portrait video stored sideways with a
display matrix, and on an anamorphic one (non-square pixels, resampled to square ones), with each
reader: the faces are found on the picture as shown and the clip rows say how the file is shown."""
from __future__ import annotations

from fractions import Fraction

import cv2
import duckdb
import numpy as np
import pytest

from conftest import SAMPLE_PRESET, run_cli
from format_videos import write_video
from presets import write_preset


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_extract_reads_phone_and_anamorphic_videos_as_shown(tmp_path, astronaut, detector, backend):
    upright = np.ascontiguousarray(astronaut[:256, 64:448])  # 384x256, the face left of centre
    videos = tmp_path / "videos"
    videos.mkdir()
    # a phone's portrait-style recording: stored turned clockwise, shown turned back by its matrix
    write_video(videos / "turned.mp4", np.ascontiguousarray(np.rot90(upright, -1)), rotation=90)
    # stored at half width, each pixel twice as wide as high: shown 384 wide
    write_video(videos / "wide.mp4", cv2.resize(upright, (192, 256), interpolation=cv2.INTER_AREA), sar=Fraction(2))
    preset = write_preset(tmp_path / "p.yaml", {"decode.backend": backend}, base=SAMPLE_PRESET)
    run = tmp_path / "run"
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset))
    clips = {row[0]: row[1:] for row in duckdb.sql(
        f"SELECT clip_id, width, height, decoder, reason FROM '{run}/clips/*.parquet'").fetchall()}
    width, height, decoder, reason = clips["turned"]
    assert (width, height, decoder) == (384, 256, backend)
    assert f"{videos / 'turned.mp4'}: turned 90 degrees counterclockwise by its display matrix" in reason
    expected = detector.detect([upright])[0].boxes[0][:4]
    boxes = duckdb.sql(f"SELECT bbox, roll FROM '{run}/faces/*.parquet' WHERE clip_id = 'turned'").fetchall()
    assert boxes, "no face found in the turned video"
    for bbox, roll in boxes:
        assert _iou(bbox, expected) > 0.7 and abs(roll) < 15, (bbox, expected, roll)
    width, height, decoder, reason = clips["wide"]
    assert (width, height, decoder) == (384, 256, backend)  # resampled to square pixels, as shown
    assert (f"{videos / 'wide.mp4'}: non-square pixels (SAR 2:1, stored 192x256): frames resampled to 384x256, "
            "square pixels, as shown") in reason
    # the face is where the detector finds it on the picture as shown, its shape as drawn
    boxes = duckdb.sql(f"SELECT bbox FROM '{run}/faces/*.parquet' WHERE clip_id = 'wide'").fetchall()
    assert boxes, "no face found in the anamorphic video"
    for (bbox,) in boxes:
        assert _iou(bbox, expected) > 0.7, (bbox, expected)
