"""Variable-frame-rate video: frames are numbered by their ordinal in the stream and timed by
their timestamps, by PyAV after a seek as by decord; sampling picks the frame shown at each
sample time; and a seconds range is half-open."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import DecodeError, DecordReader, PyAVReader, VideoInfo, sample_indices
from mfhq.decode import _check_delivered

N = 60
# 30 frames 40 ms apart, then 30 frames 120 ms apart (a capture that slowed down).
PTS_MS = [i * 40 for i in range(30)] + [1200 + i * 120 for i in range(30)]


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory):
    """64x64 H.264 (B-frames, a keyframe every 12) whose frame i is a flat grey of level 4 i."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"g": "12", "crf": "10"}
        for i, pts in enumerate(PTS_MS):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 4 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _ordinals(frames) -> list[int]:
    return [int(round(float(f.mean()) / 4)) for f in frames]


@pytest.mark.parametrize("reader_type", [PyAVReader, DecordReader])
def test_vfr_frames_after_a_seek_have_their_ordinals_and_times(vfr_video, reader_type):
    reader = reader_type()
    info = reader.open(vfr_video)
    assert info.n_frames == N
    wanted = [52, 55, 58]  # past PyAVReader.SEEK_GAP: read after a seek
    assert _ordinals(reader.read(wanted)) == wanted
    reader.close()
    # Each frame's time is its timestamp, not its number over the average frame rate.
    assert info.time_of(30) == pytest.approx(1.2)
    assert info.time_of(52) == pytest.approx(PTS_MS[52] / 1000)


def test_vfr_sampling_picks_the_frame_shown_at_each_time(vfr_video):
    reader = PyAVReader()
    info = reader.open(vfr_video)
    reader.close()
    picked = sample_indices(info, DecodeConfig(fps=5), None, None)
    shown = [max(i for i, pts in enumerate(PTS_MS) if pts <= ms) for ms in range(0, 4800, 200)]
    assert picked == sorted(set(shown))
    # A seconds range in the slow part: the frames shown from 2.0 s to before 3.0 s.
    assert sample_indices(info, DecodeConfig(fps=5), 2.0, 3.0) == [36, 38, 40, 41, 43]


def test_cfr_video_is_numbered_as_before(sample_dir):
    info = PyAVReader().open(sample_dir / "videos" / "astronaut_motion.mp4")
    assert info.times is None and info.time_of(50) == 50 / info.fps


def test_a_seconds_range_ends_before_its_end():
    info = VideoInfo(n_frames=250, fps=25.0, width=8, height=8)
    # Frame 25 starts at 1.00 s: outside [0.19, 1.0), as ffmpeg -ss 0.19 -to 1.0 cuts it.
    assert sample_indices(info, DecodeConfig(fps=5), 0.19, 1.0) == [5, 10, 15, 20]


def test_a_frame_missing_before_a_delivered_one_is_an_error(tmp_path):
    _check_delivered(tmp_path / "v.mp4", [52, 55, 58], [52, 55])  # the stream ended: the tail may be missing
    with pytest.raises(DecodeError, match=r"v\.mp4.*frame 52"):
        _check_delivered(tmp_path / "v.mp4", [52, 55, 58], [55, 58])
