"""An anamorphic video (non-square pixels, resampled to square ones as shown) through extract's
one pass and through align.crops: materialize + the materialize worker: the same crop and mask
files, byte for byte; a run an earlier mfhq made in stored pixels is extracted again on resume,
and materialize refuses to cut its crops from frames of another size."""
from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE_PRESET, run_cli
from format_videos import write_video
from presets import write_preset
from run_rows import query
from mfhq.config import load_pipeline
from mfhq.manifest.io import atomic_write_arrow
from mfhq.records import Clip
from mfhq.worker.materialize_clip import MaterializeProcessor

SHOWN, STORED, SAR = (384, 256), (324, 256), Fraction(32, 27)  # 324 * 32 / 27 = 384


@pytest.fixture(scope="module")
def videos(astronaut, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("anamorphic") / "videos"
    folder.mkdir()
    shown = np.ascontiguousarray(astronaut[:256, 64:448])  # the face left of centre
    write_video(folder / "dvd.mp4", cv2.resize(shown, STORED, interpolation=cv2.INTER_AREA), sar=SAR, frames=50)
    return folder


def _extract(videos: Path, run: Path, crops: str) -> Path:
    preset = write_preset(run.parent / f"{crops}.yaml", {"align.crops": crops}, base=SAMPLE_PRESET)
    run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(preset))
    return preset


@pytest.fixture(scope="module")
def one_pass(videos, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("one") / "run"
    _extract(videos, run, "extract")
    return run


@pytest.fixture(scope="module")
def later(videos, tmp_path_factory) -> tuple[Path, Path]:
    run = tmp_path_factory.mktemp("later") / "run"
    return run, _extract(videos, run, "materialize")


def _clip(run: Path, size=None) -> Clip:
    """The clip as materialize's plan hands it to the worker: its kept faces' rows."""
    [(path, decoder, width, height)] = query(run, "SELECT video_path, decoder, width, height FROM clips")
    faces = [dict(zip(("frame_index", "face_index", "landmarks", "landmarks68", "crop_digest", "crop_path",
                       "mask_path"), row)) for row in query(
        run, "SELECT frame_index, face_index, landmarks, landmarks68, crop_digest, crop_path, mask_path FROM faces "
             "WHERE kept ORDER BY frame_index, face_index")]
    return Clip("folder", "dvd", Path(path), "dvd",
                extra={"decoder": decoder, "size": size or (width, height), "faces": faces})


def _processor(preset: Path, run: Path) -> MaterializeProcessor:
    processor = MaterializeProcessor(load_pipeline(preset), run)
    processor.setup()
    return processor


def test_materialize_cuts_the_one_pass_crops_of_an_anamorphic_video(one_pass, later):
    run, preset = later
    for folder in (one_pass, run):
        [(width, height, reason)] = query(folder, "SELECT width, height, reason FROM clips")
        assert (width, height) == SHOWN and "frames resampled to 384x256" in reason
    clip = _clip(run)
    assert clip.extra["faces"], "no face kept in the anamorphic video"
    made, row = _processor(preset, run).process(clip)
    assert row["status"] == "ok" and len(made) == len(clip.extra["faces"])
    assert all(face["identical"] for face in made)  # the pixels extract measured
    for face in made:
        for column in ("crop_path", "mask_path"):
            assert (run / face[column]).read_bytes() == (one_pass / face[column]).read_bytes(), face[column]


def test_materialize_refuses_frames_of_another_size_than_extracts(later, tmp_path):
    """A run an earlier mfhq made read the file as stored (324x256): its landmarks are not in the
    384x256 frames read now, so no crop is cut from them."""
    run, preset = later
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("crops", "masks"))  # those the test above made
    made, row = _processor(preset, copy).process(_clip(copy, size=STORED))
    assert made == [] and row["status"] == "decode_error"
    assert "dvd.mp4: read at 384x256 now, 324x256 when extracted" in row["reason"]
    assert not (copy / "crops").exists()


def test_a_clip_an_earlier_mfhq_read_as_stored_is_extracted_again_on_resume(one_pass, videos, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(one_pass, run)
    [shard] = (run / "clips").glob("*.parquet")
    table = pq.read_table(shard)
    old = (f"{videos / 'dvd.mp4'}: non-square pixels (SAR 32:27, shown 384 px wide): faces are detected and "
           "cropped in stored pixels, stretched as stored")  # what the clip row said before
    table = table.set_column(table.schema.get_field_index("reason"), "reason", [[old]])
    table = table.set_column(table.schema.get_field_index("width"), "width", [np.array([STORED[0]], np.int32)])
    atomic_write_arrow(shard, table)
    _extract(videos, run, "extract")
    [(width, reason)] = query(run, "SELECT width, reason FROM clips")
    assert width == SHOWN[0] and "frames resampled to 384x256" in reason and old not in reason
    assert query(run, "SELECT count(*) FROM faces WHERE kept") == query(one_pass, "SELECT count(*) FROM faces WHERE kept")
