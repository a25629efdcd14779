"""A constant-rate stream with B-frames is read as constant-rate in every container, and each of
its frames can be sampled. ASF keeps one timestamp a packet, and FFmpeg's demuxer gave the last
two packets of an H.264 stream with B-frames the same presentation time: classed VFR, the
second-to-last frame was never sampled. Its decode times are evenly spaced, and prove CFR."""
from __future__ import annotations

from fractions import Fraction

import av
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import PyAVReader, sample_indices
from grey_videos import ordinals, write_grey

N = 60
MS, PER_FRAME = Fraction(1, 1000), Fraction(1, 25)
# name: (muxer, time base). Only ASF failed on the old code; the rest guard the others.
CONTAINERS = {"clip.asf": ("asf", MS), "clip.mp4": ("mp4", MS), "clip.mkv": ("matroska", MS),
              "clip.ts": ("mpegts", PER_FRAME), "clip.flv": ("flv", MS), "clip.nut": ("nut", MS),
              "clip.avi": ("avi", PER_FRAME)}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_a_cfr_stream_with_b_frames_is_cfr_and_every_frame_is_sampled(tmp_path, name):
    fmt, time_base = CONTAINERS[name]
    path = write_grey(tmp_path / name, [i * 40 for i in range(N)], fmt, time_base=time_base)  # x264, B-frames
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == N and info.times is None
    indices = sample_indices(info, DecodeConfig(fps=25), None, None)
    assert indices == list(range(N))  # the second-to-last too
    assert ordinals(reader.read(indices[-3:])) == [N - 3, N - 2, N - 1]
    reader.close()


def test_the_asf_file_is_the_one_described(tmp_path):
    """Guard (passed on the old code too): its last two packets share a presentation time."""
    path = write_grey(tmp_path / "clip.asf", [i * 40 for i in range(N)], "asf")
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    assert len(pts) == N and pts[-1] == pts[-2]


def test_a_vfr_asf_stream_is_still_vfr(tmp_path):
    """Guard (passed on the old code too): decode times prove CFR only where they are even."""
    pts = [i * 40 for i in range(30)] + [1200 + i * 120 for i in range(30)]
    path = write_grey(tmp_path / "vfr.asf", pts, "asf")
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == N and info.times is not None
    assert info.time_of(45) == pytest.approx(info.time_of(30) + 15 * 0.12, abs=0.1)  # ASF's times are off by up to two frames
    indices = sample_indices(info, DecodeConfig(fps=5), None, None)
    assert ordinals(reader.read(indices[-3:])) == indices[-3:]
    reader.close()
