"""Every container the sources accept (by its extension, whatever its bytes hold) gives each
sampled frame under its own ordinal, with each reader, or the reader refuses it naming the file
and the container: never a neighbour under the frame's number."""
from __future__ import annotations

from fractions import Fraction

import av
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import ClipDecoder, DecodeError, DecordReader, PyAVReader, sample_indices
from mfhq.sources.folder import VIDEO_SUFFIXES
from grey_videos import ordinals, write_grey

N = 60
PER_FRAME = Fraction(1, 25)  # for containers that count frames rather than time them
# name: (muxer, codec, time base, whether decord reads it). The folder source takes a file by its
# extension, so a .mp4 may hold MPEG-TS (a stream saved as it came) and a .avi may hold ASF.
CONTAINERS = {
    "h264.mp4": ("mp4", "libx264", Fraction(1, 1000), True),
    "h264.mov": ("mov", "libx264", Fraction(1, 1000), True),
    "h264.m4v": ("mp4", "libx264", Fraction(1, 1000), True),
    "h264.mkv": ("matroska", "libx264", Fraction(1, 1000), True),
    "vp9.webm": ("webm", "libvpx-vp9", Fraction(1, 1000), True),
    "h264.avi": ("avi", "libx264", PER_FRAME, False),
    "hevc.mp4": ("mp4", "libx265", Fraction(1, 1000), False),
    "asf-in.avi": ("asf", "libx264", Fraction(1, 1000), False),
    "mpegts-in.mp4": ("mpegts", "libx264", PER_FRAME, False),
    "mpeg-ps-in.mp4": ("mpeg", "mpeg2video", PER_FRAME, False),
    "raw-h264-in.mp4": ("h264", "libx264", PER_FRAME, False),
}
# Frame lists as extract reads them: past PyAVReader.SEEK_GAP (a seek), sampled from frame 0 on,
# and one read near the start then one far on.
READS = {"far": [[52, 55, 58]], "from-0": [list(range(0, N, 5))], "near-then-far": [[10], [52, 55, 58]]}


def test_every_accepted_extension_is_covered():
    assert {"." + name.rsplit(".", 1)[1] for name in CONTAINERS} == VIDEO_SUFFIXES


@pytest.fixture(scope="module", params=sorted(CONTAINERS))
def video(request, tmp_path_factory):
    fmt, codec, time_base, decord_reads = CONTAINERS[request.param]
    path = write_grey(tmp_path_factory.mktemp("containers") / request.param, [i * 40 for i in range(N)],
                      fmt, codec, time_base=time_base)
    return path, fmt, decord_reads


@pytest.mark.parametrize("reads", sorted(READS))
def test_pyav_reads_every_container_by_ordinal(video, reads):
    path = video[0]
    reader = PyAVReader()
    reader.open(path)
    got = [ordinals(reader.read(indices)) for indices in READS[reads]]
    reader.close()
    assert got == READS[reads]


@pytest.mark.parametrize("reads", sorted(READS))
def test_decord_reads_a_container_by_ordinal_or_refuses_it(video, reads):
    path, fmt, decord_reads = video
    reader = DecordReader()
    if not decord_reads:
        with pytest.raises(DecodeError, match=rf"{path.name}: decord is not used on (the {fmt} container|hevc)"):
            reader.open(path)
        return
    reader.open(path)
    got = [ordinals(reader.read(indices)) for indices in READS[reads]]
    reader.close()
    assert got == READS[reads]


def test_the_decoder_chain_gives_far_frames_by_ordinal(video):
    """What extract does: PyAV, then decord where PyAV fails."""
    path = video[0]
    decoder = ClipDecoder(DecodeConfig())
    decoder.open(path)
    frames = [f for chunk in decoder.chunks(path, [52, 55, 58]) for f in chunk.frames]
    decoder.close()
    assert ordinals(frames) == [52, 55, 58]


@pytest.mark.parametrize("name", ["h264.mp4", "h264.mkv"])
def test_mp4_and_matroska_still_seek(tmp_path, name):
    fmt, codec, time_base, _ = CONTAINERS[name]
    path = write_grey(tmp_path / name, [i * 40 for i in range(N)], fmt, codec, time_base=time_base)
    reader = PyAVReader()
    reader.open(path)
    assert ordinals(reader.read([52, 55, 58])) == [52, 55, 58]
    assert reader.n_output < 52  # from the keyframe before frame 52, not from frame 0
    reader.close()


def test_avi_is_read_on_from_its_start(tmp_path):
    """AVI's seek landed an index or two early, and the frame came back under the target's number."""
    path = write_grey(tmp_path / "clip.avi", [i * 40 for i in range(N)], "avi", time_base=PER_FRAME)
    reader = PyAVReader()
    reader.open(path)
    assert ordinals(reader.read([52, 55, 58])) == [52, 55, 58]
    assert reader.n_output >= 52
    reader.close()



# A container whose header gives a duration but no frame count, as these files' muxers wrote it.
# duration x fps missed by whole frames: ASF (millisecond timestamps) ran two long with B-frames
# and one short without, MPEG-TS's 29.97 fps rounded down.
DURATION_ONLY = {"asf-h264-30fps": ("asf", "libx264", 30, 60, Fraction(1, 1000)),
                 "asf-wmv2-30fps": ("asf", "wmv2", 30, 61, Fraction(1, 1000)),
                 "mpegts-h264-29.97fps": ("mpegts", "libx264", Fraction(30000, 1001), 59, Fraction(1, 90000))}


@pytest.mark.parametrize("name", sorted(DURATION_ONLY))
def test_a_container_with_only_a_duration_counts_its_frames_from_its_packets(tmp_path, name):
    fmt, codec, rate, n, time_base = DURATION_ONLY[name]
    path = write_grey(tmp_path / f"{name}.{fmt}", [i * 1000 / rate for i in range(n)], fmt, codec, rate, time_base)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert not stream.frames and stream.duration  # a duration to misjudge, no count
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == n  # not a frame asked for that is not there, nor the last one lost
    indices = sample_indices(info, DecodeConfig(fps=float(rate)), None, None)
    assert indices[-1] == n - 1 and ordinals(reader.read(indices[-3:])) == [n - 3, n - 2, n - 1]
    reader.close()
