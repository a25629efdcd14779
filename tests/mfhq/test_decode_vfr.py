"""Variable-frame-rate video: frames are numbered by their ordinal in the stream and timed by
their timestamps, by PyAV after a seek as by decord; sampling picks the frame shown at each
sample time; and a seconds range is half-open."""
from __future__ import annotations

from fractions import Fraction

import av
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import DecodeError, DecordReader, PyAVReader, VideoInfo, sample_indices
from mfhq.decode import _check_delivered
from grey_videos import ordinals, write_grey

N = 60
# 30 frames 40 ms apart, then 30 frames 120 ms apart (a capture that slowed down).
PTS_MS = [i * 40 for i in range(30)] + [1200 + i * 120 for i in range(30)]


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory):
    return write_grey(tmp_path_factory.mktemp("vfr") / "vfr.mp4", PTS_MS)


@pytest.mark.parametrize("reader_type", [PyAVReader, DecordReader])
def test_vfr_frames_after_a_seek_have_their_ordinals_and_times(vfr_video, reader_type):
    reader = reader_type()
    info = reader.open(vfr_video)
    assert info.n_frames == N
    wanted = [52, 55, 58]  # past PyAVReader.SEEK_GAP: read after a seek
    assert ordinals(reader.read(wanted)) == wanted
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


# Matroska/WebM streams that stray whole frames from i / fps while the header's nominal and
# average rates agree (both come from the track's default frame duration).
HEADER_AGREES = {
    # 25 fps with 10 frames dropped after frame 29 (a capture that stalled).
    "dropped.mkv": ([i * 40 for i in range(30)] + [1600 + i * 40 for i in range(30)], "matroska", "libx264", 25),
    # 30 fps, then 15 fps from frame 30 on.
    "slowed.webm": ([round(i * 1000 / 30) for i in range(30)] + [1000 + round(i * 1000 / 15) for i in range(30)],
                    "webm", "libvpx-vp9", 30),
}


@pytest.fixture(scope="module", params=sorted(HEADER_AGREES))
def header_agrees(request, tmp_path_factory):
    pts, fmt, codec, rate = HEADER_AGREES[request.param]
    return write_grey(tmp_path_factory.mktemp("agrees") / request.param, pts, fmt, codec, rate), pts


@pytest.mark.parametrize("reader_type", [PyAVReader, DecordReader])
def test_vfr_matroska_whose_header_rates_agree_is_timed_by_its_timestamps(header_agrees, reader_type):
    path, pts = header_agrees
    with av.open(str(path)) as container:  # what the header says cannot tell this stream from CFR
        stream = container.streams.video[0]
        assert stream.base_rate == stream.average_rate and len(stream.index_entries) < len(pts)
    reader = reader_type()
    info = reader.open(path)
    assert info.n_frames == len(pts) and info.times is not None
    wanted = [52, 55, 58]  # past PyAVReader.SEEK_GAP: read after a seek
    assert ordinals(reader.read(wanted)) == wanted
    reader.close()
    assert [info.time_of(i) for i in (29, 30, 52)] == pytest.approx([pts[i] / 1000 for i in (29, 30, 52)])
    # A seconds range (CelebV-HQ's) cuts the frames shown within it, not those numbered seconds x fps.
    shown = sorted({max(i for i, ms in enumerate(pts) if ms <= t) for t in range(1000, 2000, 200)})
    assert sample_indices(info, DecodeConfig(fps=5), 1.0, 2.0) == shown


def test_matroska_whose_timestamps_only_jitter_is_numbered_as_before(tmp_path):
    # 29.97 fps in a millisecond time base: each timestamp rounded, none a whole frame off.
    path = write_grey(tmp_path / "ntsc.mkv", [round(i * 1001 / 30) for i in range(N)], "matroska",
                  rate=Fraction(30000, 1001))
    reader = PyAVReader()
    info = reader.open(path)
    assert info.times is None and info.time_of(50) == 50 / info.fps
    assert ordinals(reader.read([52, 55, 58])) == [52, 55, 58]
    reader.close()


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



class _CountingContainer:
    """A real PyAV container that counts the frames decoded through it."""

    def __init__(self, container, decoded: list):
        self._container, self._decoded = container, decoded

    def __getattr__(self, name):
        return getattr(self._container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)

    def decode(self, *args, **kwargs):
        for frame in self._container.decode(*args, **kwargs):
            self._decoded.append(frame.pts)
            yield frame


def test_a_matroska_file_is_counted_from_its_packets_not_by_decoding_every_frame(tmp_path, monkeypatch):
    """Matroska's header gives no frame count or duration: opening a file counted its frames by
    decoding all of them (seconds on a minutes-long raw video, paid again by each of its clips).
    Its packets say as much, demuxed without decoding."""
    path = write_grey(tmp_path / "clip.mkv", [i * 40 for i in range(N)], fmt="matroska")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert not stream.frames and not stream.duration  # nothing in the header to count by
    decoded, real_open = [], av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _CountingContainer(real_open(*a, **k), decoded))
    reader = PyAVReader()
    assert reader.open(path).n_frames == N and decoded == []
    assert ordinals(reader.read([0, 30, 59])) == [0, 30, 59]
    reader.close()
