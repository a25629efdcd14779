"""Reading frames: the sampled indices, decord and PyAV agreeing, errors that name every decoder,
and a clip deep inside a long raw video read by PyAV seeking instead of decoding from frame 0."""
from __future__ import annotations

import av
import numpy as np
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import ClipDecoder, DecordReader, PyAVReader, VideoInfo, sample_indices

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
    assert reader.n_output <= 333 - 300 + GOP
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


def test_sample_indices_follow_fps_range_and_cap():
    info = VideoInfo(n_frames=250, fps=25.0, width=8, height=8)
    assert sample_indices(info, DecodeConfig(fps=5), None, None) == list(range(0, 250, 5))
    assert sample_indices(info, DecodeConfig(fps=5), 2.0, 4.0) == list(range(50, 100, 5))
    capped = sample_indices(info, DecodeConfig(fps=5, max_frames=7), None, None)
    assert len(capped) == 7 and capped[0] == 0 and capped[-1] == 245
    assert sample_indices(info, DecodeConfig(fps=5), 4.0, 2.0) == []


def test_a_start_on_half_a_frame_samples_evenly():
    """CelebV-HQ's starts in hundredths of a second often fall on half a frame (3.5 s at 25 fps is
    frame 87.5): rounding half to even, with the float noise of the sample times, skipped every
    other frame at the video's own rate and spaced a 5 fps sampling unevenly."""
    info = VideoInfo(n_frames=500, fps=25.0, width=8, height=8)
    every = sample_indices(info, DecodeConfig(fps=25), 3.5, 6.0)
    assert every == list(range(88, 150))  # the first frame starting at 3.5 s or after, then each one
    for start in (3.5, 3.54, 10.3, 17.74):
        picked = sample_indices(info, DecodeConfig(fps=5), start, start + 2.0)
        assert np.all(np.diff(picked) == 5), (start, picked)
        assert picked[0] == int(np.floor(start * 25 + 0.5 + 1e-9)), (start, picked)


def test_decord_and_pyav_read_the_same_frames(sample_dir):
    path = sample_dir / "videos" / "astronaut_motion.mp4"
    indices = [0, 7, 33, 99]
    frames = []
    for reader in (DecordReader(), PyAVReader()):
        info = reader.open(path)
        assert (info.n_frames, info.width, info.height) == (100, 512, 512)
        frames.append(reader.read(indices).astype(np.int16))
        reader.close()
    assert frames[0].shape == (4, 512, 512, 3)
    assert np.abs(frames[0] - frames[1]).mean() < 2.0


def test_clip_decoder_reports_every_decoder_on_a_corrupt_file(sample_dir):
    decoder = ClipDecoder(DecodeConfig())
    with pytest.raises(Exception) as caught:
        decoder.open(sample_dir / "videos" / "corrupt.mp4")
    assert "decord" in str(caught.value) and "pyav" in str(caught.value) and "corrupt.mp4" in str(caught.value)


def test_png_still_decodes_after_decord_is_loaded(sample_dir):
    # decord's bundled zlib breaks cv2's PNG reading if it loads first; a fresh process shows it.
    import subprocess
    import sys

    code = (
        "from pathlib import Path; from mfhq.decode import DecordReader;"
        f"DecordReader().open(Path({str(sample_dir / 'videos' / 'astronaut_motion.mp4')!r}));"
        "import cv2, numpy as np; ok, buf = cv2.imencode('.png', np.full((8, 8), 255, np.uint8));"
        "assert cv2.imdecode(buf, 0) is not None, 'PNG decoding broken'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
