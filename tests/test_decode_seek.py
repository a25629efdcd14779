"""Reading a clip deep inside a long raw video: frame ranges, and PyAV seeking instead of
decoding from frame 0."""
from __future__ import annotations

import av
import numpy as np
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import DecordReader, PyAVReader, VideoInfo, sample_indices

N_FRAMES, GOP = 400, 25


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """64x64 H.264 whose frame i is a flat grey of level 30 + 7 i mod 190 (neighbours differ),
    with a keyframe every 25 frames as in typical web video."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"g": str(GOP), "keyint_min": str(GOP), "crf": "10", "bf": "2"}
        for i in range(N_FRAMES):
            frame = np.full((64, 64, 3), 30 + (7 * i) % 190, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    return path


def _levels(frames) -> list[int]:
    return [int(round(float(f.mean()))) for f in frames]


@pytest.fixture(scope="module")
def truth(long_video) -> list[int]:
    """Each frame's level from one decode from the start (the colour conversion shifts the
    levels a little, so the written values are not the reference)."""
    with av.open(str(long_video)) as container:
        levels = _levels(f.to_ndarray(format="bgr24") for f in container.decode(video=0))
    assert len(levels) == N_FRAMES and all(a != b for a, b in zip(levels, levels[1:]))  # neighbours told apart
    return levels


def test_pyav_seeks_to_a_late_range_and_numbers_frames_right(long_video, truth):
    reader = PyAVReader()
    info = reader.open(long_video)
    assert info.n_frames == N_FRAMES
    wanted = [301, 310, 333]
    frames = reader.read(wanted)
    assert _levels(frames) == [truth[i] for i in wanted]
    # Only from the keyframe before frame 301 on, not the 300 frames before it.
    assert reader.n_decoded <= 333 - 300 + GOP
    # A later read within reach decodes on; a read backwards starts again, and is still right.
    assert _levels(reader.read([340])) == [truth[340]]
    assert _levels(reader.read([12, 13])) == [truth[12], truth[13]]
    reader.close()


def test_pyav_and_decord_agree_after_a_seek(long_video):
    decord = DecordReader()
    decord.open(long_video)
    pyav = PyAVReader()
    pyav.open(long_video)
    wanted = [150, 151, 275, 399]
    assert np.abs(decord.read(wanted).astype(int) - pyav.read(wanted).astype(int)).max() <= 1
    decord.close()
    pyav.close()


def test_frame_ranges_are_inclusive_and_never_left():
    info = VideoInfo(n_frames=1500, fps=30.0, width=8, height=8)
    # A TalkingHead-1KH tube S=728, E=1456 at 5 fps: every 6th frame from 728, at most 1456.
    picked = sample_indices(info, DecodeConfig(fps=5), None, None, frames=(728, 1456))
    assert picked[0] == 728 and picked[-1] <= 1456 and np.all(np.diff(picked) == 6)
    # At a sampling rate above the video's, every frame of the range, both ends included.
    assert sample_indices(info, DecodeConfig(fps=60), None, None, frames=(10, 14)) == [10, 11, 12, 13, 14]
    # A range past the end of the video is cut to it, or empty.
    assert sample_indices(info, DecodeConfig(fps=30), None, None, frames=(1495, 1600)) == [1495, 1496, 1497, 1498, 1499]
    assert sample_indices(info, DecodeConfig(fps=5), None, None, frames=(1600, 1700)) == []
