"""A fragmented MP4 (movie fragments after the `moov`, as ffmpeg's frag_keyframe writes and DASH /
YouTube downloads are) is counted, timed and read over its whole stream, not its first fragment:
its header's frame count is that fragment's (12 of 120 frames, or 0 with empty_moov), and with a
complete `sidx` FFmpeg's index at open holds that fragment alone."""
from __future__ import annotations

import av
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import DecordReader, PyAVReader, sample_indices
from mfhq.decode_containers import MP4, fragmented
from grey_videos import chain_samples, ordinals, write_grey

N = 120  # ten fragments of 12 frames (a keyframe every 12, a fragment at each)
# movflags: (the header's frame count, the index entries FFmpeg holds at open)
LAYOUTS = {
    "frag_keyframe": (12, N),  # moov describes fragment 1; FFmpeg reads every moof at open
    "frag_keyframe+empty_moov": (0, N),
    # A complete sidx: FFmpeg reads fragments as it reaches them, so its index at open is fragment
    # 1 alone, evenly spaced and as long as the header's count.
    "frag_keyframe+default_base_moof+global_sidx": (12, 12),
    "frag_keyframe+empty_moov+default_base_moof+global_sidx": (0, 24),  # DASH's layout (YouTube's)
}
WANTED = [105, 110, 115]  # the last sampled frames, past PyAVReader.SEEK_GAP: read after a seek


def mod64(indices):  # a grey video's frame i says i mod 64
    return [i % 64 for i in indices]


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def fragmented_video(request, tmp_path_factory):
    path = write_grey(tmp_path_factory.mktemp("fragmented") / "clip.mp4", [i * 40 for i in range(N)],
                      options={"movflags": request.param})
    with av.open(str(path)) as container:  # the header as these tests take it
        stream = container.streams.video[0]
        assert (stream.frames, len(stream.index_entries)) == LAYOUTS[request.param]
    return path


def test_pyav_counts_samples_and_reads_the_whole_fragmented_video(fragmented_video):
    reader = PyAVReader()
    info = reader.open(fragmented_video)
    assert info.n_frames == N and info.times is None  # constant-rate, every fragment counted
    indices = sample_indices(info, DecodeConfig(fps=5), None, None)
    assert indices == list(range(0, N, 5))  # the whole video, not its first tenth
    assert ordinals(reader.read(WANTED)) == mod64(WANTED)
    assert reader.n_output < WANTED[0]  # it seeked (from the keyframe before 105), and landed exact
    assert ordinals(reader.read([20, 30])) == mod64([20, 30])  # back again: a second seek
    reader.close()


def test_decord_counts_and_reads_a_fragmented_video(fragmented_video):
    reader = DecordReader()
    info = reader.open(fragmented_video)
    assert info.n_frames == N
    assert [ordinals(reader.read(i)) for i in ([10], WANTED, [20, 30])] == [[10], mod64(WANTED), mod64([20, 30])]
    reader.close()


def test_the_decoder_chain_samples_the_whole_fragmented_video(fragmented_video):
    """What extract does: the chain opens it, the sampling spans every fragment, frames by ordinal."""
    indices, read, _ = chain_samples(fragmented_video)
    assert indices == list(range(50, N, 5)) and read == mod64(indices)


# 25 fps for the first fragment, then 120 ms a frame (a capture that slowed): the first fragment's
# index is evenly spaced whatever follows.
VFR_PTS = [i * 40 for i in range(12)] + [480 + i * 120 for i in range(N - 12)]


@pytest.mark.parametrize("movflags", ["frag_keyframe", "frag_keyframe+default_base_moof+global_sidx"])
def test_a_fragmented_vfr_video_is_timed_by_its_timestamps(tmp_path, movflags):
    path = write_grey(tmp_path / "vfr.mp4", VFR_PTS, options={"movflags": movflags})
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == N and info.times is not None
    assert [info.time_of(i) for i in (11, 12, 100)] == pytest.approx([VFR_PTS[i] / 1000 for i in (11, 12, 100)])
    assert ordinals(reader.read(WANTED)) == mod64(WANTED)
    reader.close()


def test_fragmented_is_told_from_the_moov(tmp_path):
    """Only a file whose moov announces fragments pays for a demux; an MP4 laid out either way
    (index before or after its data) is still settled by its header."""
    for movflags in LAYOUTS:
        path = write_grey(tmp_path / f"{movflags}.mp4", [i * 40 for i in range(24)], options={"movflags": movflags})
        assert fragmented(path, MP4), movflags
    for name, options in (("plain.mp4", None), ("faststart.mp4", {"movflags": "faststart"})):
        path = write_grey(tmp_path / name, [i * 40 for i in range(24)], options=options)
        assert not fragmented(path, MP4), name
    assert not fragmented(write_grey(tmp_path / "clip.mkv", [0, 40], "matroska"), "matroska,webm")
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x04moov")  # a box shorter than its header
    assert not fragmented(tmp_path / "junk.mp4", MP4)
