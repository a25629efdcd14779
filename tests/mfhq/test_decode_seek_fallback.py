"""A seek that raises in a container whose seeks are trusted (an MP4 whose sync-sample table is
damaged) costs the clip a read from frame 0, not its row: the frames come back under their own
ordinals, and the row's reason says that the reader fell back."""
from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

import av
import pytest

from conftest import SAMPLE_PRESET
from mfhq.config import DecodeConfig, load_pipeline
from mfhq.decode import ClipDecoder, PyAVReader
from mfhq.records import Clip
from mfhq.worker.clip import ClipProcessor
from grey_videos import ordinals, write_grey

N = 60
FELL_BACK = r"pyav: seek to frame {} failed \(.*Operation not permitted.*\); read on from frame 0"


def damage_sync_samples(path: Path, last: int) -> Path:
    """Every entry of the MP4's sync-sample table (stss) made to name its last sample, as a
    damaged index might: FFmpeg's seek then finds no keyframe at or before its target and raises."""
    data = bytearray(path.read_bytes())
    at = data.index(b"stss")  # size, 'stss', version and flags, entry count, entries
    count = struct.unpack(">I", data[at + 8:at + 12])[0]
    data[at + 12:at + 12 + 4 * count] = struct.pack(">I", last) * count
    path.write_bytes(bytes(data))
    with av.open(str(path)) as container:  # the file really makes PyAV's seek raise
        stream = container.streams.video[0]
        with pytest.raises(av.error.PermissionError):
            container.seek(int(2.0 / stream.time_base), stream=stream, backward=True, any_frame=False)
    return path


def test_a_seek_that_raises_reads_on_from_frame_0(tmp_path):
    path = damage_sync_samples(write_grey(tmp_path / "damaged.mp4", [i * 40 for i in range(N)]), N)
    reader = PyAVReader()
    reader.open(path)
    assert ordinals(reader.read([52, 55, 58])) == [52, 55, 58]
    (note,) = reader.notes  # read on from frame 0, where the seek raised
    assert re.fullmatch(FELL_BACK.format(52), note), note
    assert ordinals(reader.read([59])) == [59] and len(reader.notes) == 1  # read on, no second seek
    reader.close()
    decoder = ClipDecoder(DecodeConfig())
    decoder.open(path)
    frames = [f for chunk in decoder.chunks(path, [52, 55, 58]) for f in chunk.frames]
    decoder.close()
    assert ordinals(frames) == [52, 55, 58] and decoder.reader.name == "pyav"
    (note,) = decoder.errors  # what the clip row's reason gives as recovered from
    assert re.fullmatch(FELL_BACK.format(52), note), note


def test_the_row_of_a_clip_whose_seek_raised_says_the_reader_fell_back(sample_dir, tmp_path):
    """The whole clip path, real models: the damaged copy gives the intact file's faces, and a row
    says the reader fell back whatever its status."""
    videos = tmp_path / "videos"
    videos.mkdir()
    intact = shutil.copy(sample_dir / "videos" / "astronaut_light_blur.mp4", videos / "intact.mp4")
    damaged = damage_sync_samples(Path(shutil.copy(intact, videos / "damaged.mp4")), 100)
    grey = damage_sync_samples(write_grey(videos / "faceless.mp4", [i * 40 for i in range(N)]), N)
    # From 2.4 s on (frame 60, past PyAVReader.SEEK_GAP): the reader seeks to reach it.
    clips = [Clip("folder", name, path, name, start_sec=2.4) for name, path in
             (("intact", Path(intact)), ("damaged", damaged))] + [Clip("folder", "faceless", grey, "faceless", start_sec=2.0)]
    processor = ClipProcessor(load_pipeline(SAMPLE_PRESET), tmp_path / "run")
    processor.setup()
    out = {}
    processor.process_many(clips, lambda key, phase: None, lambda clip, faces, row: out.__setitem__(clip.clip_id, (faces, row)))
    (intact_faces, intact_row), (damaged_faces, damaged_row) = out["intact"], out["damaged"]
    assert intact_row["status"] == damaged_row["status"] == "ok" and intact_row["reason"] is None
    assert re.fullmatch("recovered from: " + FELL_BACK.format(60), damaged_row["reason"]), damaged_row["reason"]
    assert damaged_row["n_faces_kept"] == intact_row["n_faces_kept"] > 0
    assert [(f["frame_index"], f["bbox"]) for f in damaged_faces] == [(f["frame_index"], f["bbox"]) for f in intact_faces]
    # A row of another status says it too (its own reason first).
    faceless = out["faceless"][1]
    assert faceless["status"] == "no_face" and faceless["n_frames_read"] == 2
    assert re.fullmatch("no face in 2 sampled frames; recovered from: " + FELL_BACK.format(50), faceless["reason"]), faceless["reason"]
