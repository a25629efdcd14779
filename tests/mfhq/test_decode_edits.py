"""The MP4 edit lists other than a stream-copied cut's (test_decode_editlist.py): a trimmed end, a
delay before the first frame (an empty edit), the composition delay FFmpeg's muxer writes for
B-frames, and several pieces joined. Each file is PyAV's x264 MP4 (B-frames, a keyframe every 12)
with its edit list rewritten (grey_videos.with_edit_list). What a reader must return is what
FFmpeg's own decode shows: every frame, in order, each a grey level that names its source frame."""
from __future__ import annotations

import av
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import DecodeError, DecordReader, PyAVReader, sample_indices
from mfhq.decode_containers import decord_refusal, hidden_frames
from grey_videos import chain_samples, cut_by_stream_copy, edit_list, ordinals, with_edit_list, write_grey

N, TICKS = 120, 640  # frames at 25 fps; a frame's ticks in the track's time scale (16000), 40 in the movie's (1000)


def decoded(path) -> tuple[list[int], list[float]]:
    """What FFmpeg shows: each frame decoding outputs (its source frame mod 64), and its time."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return ordinals(f.to_ndarray(format="rgb24") for f in frames), [f.time for f in frames]


def levels(frames) -> list[int]:
    return [f % 64 for f in frames]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_grey(tmp_path_factory.mktemp("edits") / "source.mp4", [i * 40 for i in range(N)])


@pytest.fixture(scope="module")
def delay(source):
    """The composition delay of the source's own edit list: its media time (x264's B-frames)."""
    (_, media_time), = edit_list(source)
    return media_time


def read_both(path, indices) -> dict[str, list[int]]:
    """The frames each reader returns for `indices`, each on a fresh reader (a read past frame 50 seeks)."""
    out = {}
    for reader in (PyAVReader(), DecordReader()):
        reader.open(path)
        out[reader.name] = ordinals(reader.read(indices))
        reader.close()
    return out


def test_ffmpegs_own_b_frame_edit_list_is_not_a_cut(source, delay):
    """Guard (passed on the old code too): the muxer's non-zero media time skips the B-frames'
    composition delay and hides no frame, so it is counted whole and decord reads it."""
    assert delay == 2 * TICKS
    assert decoded(source)[0] == levels(range(N))
    with av.open(str(source)) as container:
        assert hidden_frames(container.streams.video[0]) == 0 and container.streams.video[0].frames == N
    assert decord_refusal(source) is None
    assert PyAVReader().open(source).n_frames == DecordReader().open(source).n_frames == N
    assert read_both(source, [0, 5, 60, 71, N - 1]) == dict(pyav=levels([0, 5, 60, 71, N - 1]), decord=levels([0, 5, 60, 71, N - 1]))


def test_a_trimmed_end_counts_the_frames_shown_and_samples_none_after(source, delay, tmp_path):
    """An edit of 60 frames' duration: FFmpeg shows frames 0..59. The header counts 120 and the index
    holds the 5 after the edit up to the next keyframes, discarded: the old count, 120 - 5 = 115,
    sampled frames 60..114 that never come (the clip failed at its first)."""
    path = with_edit_list(source, tmp_path / "trimmed.mp4", [(60 * 40, delay)])
    assert decoded(path)[0] == levels(range(60))
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == 60
    assert sample_indices(info, DecodeConfig(fps=25), None, None) == list(range(60))
    assert ordinals(reader.read([50, 55, 59])) == [50, 55, 59]
    reader.close()
    indices, read, errors = chain_samples(path)  # what extract does, from 2 s to the end
    assert indices == list(range(50, 60, 5)) and read == indices and not errors
    with pytest.raises(DecodeError, match=rf"{path.name}: decord is not used on an MP4/MOV whose edit list hides "
                                          rf"60 of its 120 frames"):
        DecordReader().open(path)  # it counted 65, and returned frame 59 for 60 and 58 for 64


def test_a_delay_shifts_ffmpegs_times_not_the_frames(source, delay, tmp_path):
    """Guard (passed on the old code too): an empty edit of 0.5 s before the media. FFmpeg's frame i is
    shown at 0.5 + i / 25; a frame's time in a row counts from the stream's first frame (formats.md),
    so it stays i / 25, and a seek, which adds the stream's start back, lands on the frame asked for."""
    path = with_edit_list(source, tmp_path / "delayed.mp4", [(500, -1), (N * 40, delay)])
    frames, times = decoded(path)
    assert frames == levels(range(N)) and times[:2] == pytest.approx([0.5, 0.54])
    info = PyAVReader().open(path)
    assert info.n_frames == N and info.time_of(60) == pytest.approx(2.4)
    assert DecordReader().open(path).n_frames == N
    assert read_both(path, [60, 70, 80, N - 1]) == dict(pyav=levels([60, 70, 80, N - 1]), decord=levels([60, 70, 80, N - 1]))
    indices, read, errors = chain_samples(path)
    assert indices == list(range(50, N, 5)) and read == levels(indices) and not errors


def test_a_delay_before_a_cut(tmp_path, delay):
    """Guard (passed on the old code too): a stream-copied cut at frame 30 (frames 24..29 of pre-roll
    hidden) whose edit list also starts with a 0.5 s delay: the cut's frames, counted and read as
    without the delay; decord refused as on the cut."""
    keyframe, cut = 24, 30
    source = write_grey(tmp_path / "source.mp4", [i * 40 for i in range(N)])
    cut_file = cut_by_stream_copy(source, tmp_path / "cut.mp4", keyframe, cut)
    path = with_edit_list(cut_file, tmp_path / "delayed_cut.mp4", [(500, -1)] + edit_list(cut_file))
    frames, times = decoded(path)
    assert frames == levels(range(cut, N)) and times[0] == pytest.approx(0.5)
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == N - cut and info.time_of(10) == pytest.approx(0.4)
    assert ordinals(reader.read([60, 70, N - cut - 1])) == levels([cut + 60, cut + 70, N - 1])
    reader.close()
    with pytest.raises(DecodeError, match=f"{path.name}: decord is not used on an MP4/MOV whose edit list hides {cut - keyframe} of its"):
        DecordReader().open(path)
    indices, read, errors = chain_samples(path)
    assert read == levels(cut + i for i in indices) and not errors


JOINED = {  # name: the source's frames each piece shows (first, past the last)
    "at a keyframe": ((0, 30), (60, 90)),  # the second piece starts at keyframe 60
    "past a keyframe": ((0, 30), (66, 96)),  # its frames 60..65 decoded and hidden
    # Joins past PyAVReader.SEEK_GAP: a seek to frame 57 returned source frame 40 for 38 (and
    # missed frames after the first join when the second piece started past a keyframe).
    "three, out of order": ((3, 58), (100, 120), (40, 70)),
}


@pytest.mark.parametrize("name", sorted(JOINED))
def test_two_pieces_joined_are_read_from_the_first_frame_by_pyav_alone(source, delay, tmp_path, name):
    """FFmpeg shows the pieces one after another. The old count, the header's 120 less the index's
    discarded entries (78 for the 60 frames joined at a keyframe), sampled frames that never came;
    decord returned other frames than those shown. The index is out of timestamp order, and a seek
    near a join landed wrong, so PyAV reads on from frame 0, counting, and decord is refused."""
    pieces = JOINED[name]
    path = with_edit_list(source, tmp_path / "joined.mp4", [((end - first) * 40, delay + first * TICKS)
                                                            for first, end in pieces])
    shown = [i for first, end in pieces for i in range(first, end)]
    assert decoded(path)[0] == levels(shown)
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == len(shown)
    indices = sample_indices(info, DecodeConfig(fps=5), None, None)
    assert indices[-1] < len(shown)
    assert [o for k in range(0, len(indices), 4) for o in ordinals(reader.read(indices[k:k + 4]))] == \
        levels(shown[i] for i in indices)
    reader.close()
    for late in (55, 57, 59):  # each a clip's first frame, past PyAVReader.SEEK_GAP: read on from frame 0, not seeked
        reader = PyAVReader()
        reader.open(path)
        assert ordinals(reader.read([late])) == levels([shown[late]]), late
        reader.close()
    with pytest.raises(DecodeError, match=rf"{path.name}: decord is not used on an MP4/MOV whose edit list joins "
                                          rf"several pieces of its video"):
        DecordReader().open(path)
    indices, read, errors = chain_samples(path, 1.0)
    assert read == levels(shown[i] for i in indices) and not errors


def test_the_video_tracks_edit_list_is_the_one_read(tmp_path):
    """New code, so no old behaviour: an audio track first, whose edit list (rewritten: with_edit_list
    takes the first track's) joins two pieces. The video's single edit is the one that counts, so
    PyAV may seek and decord reads it."""
    from fractions import Fraction

    import numpy as np

    from mfhq.decode_containers import MP4, several_edits

    plain = tmp_path / "plain.mp4"
    with av.open(str(plain), "w", format="mp4") as container:
        audio, video = container.add_stream("aac", rate=48000), container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 4 * (i % 64), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        for i in range(N * 48000 // 25 // 1024):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 48000, i * 1024
            container.mux(audio.encode(sound))
        container.mux(audio.encode())
    path = with_edit_list(plain, tmp_path / "two_audio_pieces.mp4", [(1000, 1024), (1000, 96000)])
    assert not several_edits(path, MP4)
    assert decord_refusal(path) is None
    assert read_both(path, [60, 70, N - 1]) == dict(pyav=levels([60, 70, N - 1]), decord=levels([60, 70, N - 1]))
