"""The size gate (align.min_face_px, mfhq/stages/crop.py): a face whose aligned crop covers fewer
source pixels than the minimum is dropped as `too_small`, and a clip whose every face is too small
ends with status `too_small`. A real extract (the sample preset, a larger min_face_px) over real
videos of the astronaut photo at two scales."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import duckdb
import numpy as np
import pytest

from conftest import SAMPLE_PRESET, run_cli
from presets import write_preset

MIN_FACE_PX = 100  # the photo's face covers about 130 source px at full size, about 64 at half


def _frame(astronaut: np.ndarray, scale: float) -> np.ndarray:
    """The photo scaled, centred on a grey frame of the photo's size."""
    small = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full_like(astronaut, 128)
    y, x = ((np.array(frame.shape[:2]) - small.shape[:2]) // 2).tolist()
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


def _video(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=5)  # the preset's decode.fps: every frame is read
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode())


@pytest.fixture(scope="module")
def gated_run(astronaut, tmp_path_factory) -> Path:
    """Two clips: `mixed` (4 frames at full size, then 4 at half) and `small` (4 at half)."""
    root = tmp_path_factory.mktemp("size-gate")
    videos = root / "videos"
    videos.mkdir()
    full, half = _frame(astronaut, 1.0), _frame(astronaut, 0.5)
    _video(videos / "mixed.mp4", [full] * 4 + [half] * 4)
    _video(videos / "small.mp4", [half] * 4)
    preset = write_preset(root / "gate.yaml", {"align.min_face_px": MIN_FACE_PX, "run.workers": 1}, base=SAMPLE_PRESET)
    run = root / "run"
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset))
    return run


def _faces(run: Path, clip: str) -> list[dict]:
    return duckdb.sql(f"SELECT frame_index, kept, drop_reason, face_size, crop_path FROM read_parquet('{run}/faces/*.parquet') "
                      f"WHERE clip_id = '{clip}' ORDER BY frame_index").to_arrow_table().to_pylist()


def _clip(run: Path, clip: str) -> tuple:
    return duckdb.sql(f"SELECT status, n_faces_detected, n_faces_kept FROM read_parquet('{run}/clips/*.parquet') "
                      f"WHERE clip_id = '{clip}'").fetchall()[0]


def test_faces_under_min_face_px_are_dropped_as_too_small_and_the_rest_kept(gated_run):
    faces = _faces(gated_run, "mixed")
    assert [f["frame_index"] for f in faces] == list(range(8))  # one face a frame, each found
    large, small = faces[:4], faces[4:]
    assert min(f["face_size"] for f in large) >= MIN_FACE_PX > max(f["face_size"] for f in small)
    assert [(f["kept"], f["drop_reason"]) for f in faces] == [(True, None)] * 4 + [(False, "too_small")] * 4
    assert all((gated_run / f["crop_path"]).is_file() for f in large) and {f["crop_path"] for f in small} == {None}
    assert _clip(gated_run, "mixed") == ("ok", 8, 4)


def test_a_clip_whose_every_face_is_too_small_ends_too_small(gated_run):
    faces = _faces(gated_run, "small")
    assert max(f["face_size"] for f in faces) < MIN_FACE_PX
    assert [(f["kept"], f["drop_reason"]) for f in faces] == [(False, "too_small")] * 4
    assert _clip(gated_run, "small") == ("too_small", 4, 0)
    assert not (gated_run / "crops" / "folder" / "small").exists()
