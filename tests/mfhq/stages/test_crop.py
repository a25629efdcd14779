"""A face at the frame's edge: the fraction of its aligned crop outside the frame is recorded, faces
above the limit are dropped as `out_of_frame`, and what lies outside is a constant border, never
a mirror image of the face."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import duckdb
import numpy as np
import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.align import BORDER_VALUE, apply_transform, out_of_frame
from mfhq.config import AlignConfig
from mfhq.records import Clip
from mfhq.stages.base import ClipState, FaceBatch
from mfhq.stages.crop import AlignStage
from presets import write_preset

WIDTH = 312          # the video's width: a 312 px window of the 512 px astronaut photo
INSIDE, EDGE = 100, 200   # window offsets: the face well inside, and cut by the left edge


def test_fraction_outside_is_exact_for_known_transforms():
    # Identity scale, crop shifted half a crop to the left of the frame: half of it is outside.
    shift = np.array([[1.0, 0, 50], [0, 1.0, 0]])
    assert out_of_frame(shift, 100, 640, 480) == pytest.approx(0.5)
    assert out_of_frame(np.array([[1.0, 0, -10], [0, 1.0, -10]]), 100, 640, 480) == 0.0
    # A 45-degree crop of side 100 centred at a frame corner: three quarters lie outside.
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    rot = np.array([[c, s, 50], [-s, c, 50]])  # the frame's corner (0, 0) lands on the crop's centre
    assert out_of_frame(rot, 100, 640, 480) == pytest.approx(0.75, abs=1e-4)
    assert out_of_frame(np.array([[0.01, 0, 0], [0, 0.01, 0]]), 100, 64, 64) > 0.99


def _batch(frame: np.ndarray, landmarks: np.ndarray) -> FaceBatch:
    clip = Clip("folder", "edge", Path("edge.mp4"), "edge")
    return FaceBatch(clip, np.array([0]), frame[None], 25.0, ClipState(), frame_pos=np.array([0]),
                     face_index=np.array([0]), boxes=np.zeros((1, 4)), landmarks=landmarks[None].astype(np.float64),
                     scores=np.ones(1), drop_reason=[None], face_size=np.full(1, np.nan), transforms=np.zeros((1, 2, 3)))


def test_edge_faces_are_dropped_above_the_limit_and_padded_with_a_constant_below(astronaut, detector):
    frame = np.ascontiguousarray(astronaut[:, EDGE:EDGE + WIDTH])
    found = detector.detect([frame])[0]
    landmarks = found.landmarks[int(np.argmax(found.scores))]
    cfg = AlignConfig(min_face_px=64)
    dropped = AlignStage(cfg)(_batch(frame, landmarks))
    assert dropped.drop_reason == ["out_of_frame"] and dropped.out_of_frame[0] > cfg.max_out_of_frame
    assert dropped.crops == {}
    kept = AlignStage(AlignConfig(min_face_px=64, max_out_of_frame=0.5))(_batch(frame, landmarks))
    assert kept.drop_reason == [None] and kept.out_of_frame[0] == dropped.out_of_frame[0]
    crop = kept.crops[0]
    # Each crop pixel's source position: those left of the frame (by a pixel's margin for the
    # interpolation) hold the border value exactly; a mirror would hold the face's other half.
    ys, xs = np.mgrid[0:cfg.size, 0:cfg.size]
    source = apply_transform(cv2.invertAffineTransform(kept.transforms[0]), np.stack([xs, ys], -1).reshape(-1, 2))
    outside = (source[:, 0] < -1.5).reshape(cfg.size, cfg.size)
    assert outside.mean() == pytest.approx(kept.out_of_frame[0], abs=0.02)
    assert (crop[outside] == np.array(BORDER_VALUE, np.uint8)).all()
    mirrored = cv2.warpAffine(frame, kept.transforms[0], (cfg.size, cfg.size), borderMode=cv2.BORDER_REFLECT_101)
    assert mirrored[outside].mean() > 50  # what reflected padding kept before: face pixels


@pytest.fixture(scope="module")
def edge_run(astronaut, tmp_path_factory) -> Path:
    """A real video whose first frames show the face well inside, the last ones at the edge."""
    root = tmp_path_factory.mktemp("edge")
    videos = root / "videos"
    videos.mkdir()
    with av.open(str(videos / "edge.mp4"), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = WIDTH, 512, "yuv420p"
        stream.options = {"crf": "12"}
        for x0 in [INSIDE] * 4 + [EDGE] * 4:
            frame = np.ascontiguousarray(astronaut[:, x0:x0 + WIDTH])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode())
    preset = root / "edge.yaml"
    write_preset(preset, {"align.min_face_px": 64, "run.workers": 1}, base=SAMPLE_PRESET)
    run = root / "run"
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset))
    return run


def test_extract_records_the_fraction_and_drops_edge_faces(edge_run):
    faces = duckdb.sql(f"SELECT frame_index, kept, drop_reason, out_of_frame, crop_path FROM "
                       f"read_parquet('{edge_run}/faces/*.parquet') ORDER BY frame_index").to_arrow_table().to_pylist()
    inside = [f for f in faces if f["frame_index"] < 4]
    edge = [f for f in faces if f["frame_index"] >= 4]
    assert len(inside) == 4 and len(edge) == 4
    assert all(f["kept"] and f["out_of_frame"] < 0.01 and (edge_run / f["crop_path"]).is_file() for f in inside)
    assert all(not f["kept"] and f["drop_reason"] == "out_of_frame" and f["out_of_frame"] > 0.2 for f in edge)
    (clip,) = duckdb.sql(f"SELECT status, n_faces_kept FROM read_parquet('{edge_run}/clips/*.parquet')").fetchall()
    assert clip == ("ok", 4)


def test_no_kept_face_of_the_sample_lies_outside_its_frame_past_the_limit(sample_run):
    worst = duckdb.sql(f"SELECT max(out_of_frame), count(out_of_frame) FROM "
                       f"read_parquet('{sample_run}/faces/*.parquet') WHERE kept").fetchall()[0]
    assert worst[1] > 0 and worst[0] <= AlignConfig().max_out_of_frame
