"""An MP4 cut by stream copy at a non-keyframe (`ffmpeg -ss T -i in.mp4 -c copy`) keeps the frames
from the keyframe before T, which the later ones are predicted from, and hides them with an edit
list: they are decoded and never output. Its header counts them; the frames are numbered, counted
and timed by what decoding outputs, and decord, which numbered them after a seek, is refused."""
from __future__ import annotations

import av
import pytest

import mfhq.decode
from mfhq.config import DecodeConfig
from mfhq.decode import DecodeError, DecordReader, PyAVReader, sample_indices
import grey_videos
from grey_videos import chain_samples, ordinals, write_grey

N_SOURCE, KEYFRAME, CUT = 120, 24, 30  # a keyframe every 12: the cut at frame 30 keeps 24..29 hidden
SHOWN = N_SOURCE - CUT
WANTED = [60, 70, 80, SHOWN - 1]  # past PyAVReader.SEEK_GAP: read after a seek


def cut_by_stream_copy(source, path, keyframe: int = KEYFRAME, cut: int = CUT):
    return grey_videos.cut_by_stream_copy(source, path, keyframe, cut)


def shown(indices):  # the cut's frame k is the source's frame CUT + k, a grey of level 4 ((CUT + k) mod 64)
    return [(CUT + i) % 64 for i in indices]


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("editlist")
    path = cut_by_stream_copy(write_grey(folder / "source.mp4", [i * 40 for i in range(N_SOURCE)]), folder / "cut.mp4")
    with av.open(str(path)) as container:  # the file as these tests take it
        assert container.streams.video[0].frames == N_SOURCE - KEYFRAME  # the hidden pre-roll counted
        assert ordinals(f.to_ndarray(format="rgb24") for f in container.decode(video=0)) == shown(range(SHOWN))
    return path


def test_pyav_counts_and_numbers_the_frames_decoding_outputs(cut_video):
    reader = PyAVReader()
    info = reader.open(cut_video)
    assert info.n_frames == SHOWN and info.times is None  # not the header's 96: frames 90..95 never come
    assert sample_indices(info, DecodeConfig(fps=25), None, None) == list(range(SHOWN))
    assert ordinals(reader.read([0, 5])) == shown([0, 5])
    assert ordinals(reader.read(WANTED)) == shown(WANTED)
    assert reader.n_output < WANTED[0]  # it seeked (from the keyframe before 60), and landed exact
    reader.close()


def test_decord_is_refused_on_an_edit_list_that_hides_frames(cut_video):
    """It counted the hidden frames and, after a seek, returned frame 54 for 60."""
    with pytest.raises(DecodeError, match=rf"{cut_video.name}: decord is not used on an MP4/MOV whose edit list "
                                          rf"hides {CUT - KEYFRAME} of its {N_SOURCE - KEYFRAME} frames"):
        DecordReader().open(cut_video)


def test_the_decoder_chain_samples_the_whole_cut(cut_video):
    """What extract does: every sampled frame exists, by its ordinal, to the clip's last."""
    indices, read, errors = chain_samples(cut_video)
    assert indices == list(range(50, SHOWN, 5)) and read == shown(indices)
    assert not errors


def test_a_cut_vfr_video_is_timed_from_its_shown_frames(tmp_path):
    """A VFR stream is timed from its packets: the hidden ones are not frames, nor before frame 0."""
    vfr = [i * 40 for i in range(40)] + [1600 + i * 120 for i in range(N_SOURCE - 40)]
    path = cut_by_stream_copy(write_grey(tmp_path / "source.mp4", vfr), tmp_path / "cut.mp4")
    reader = PyAVReader()
    info = reader.open(path)
    assert info.n_frames == SHOWN and info.times is not None
    assert list(info.times[[0, 9, 10, 89]]) == pytest.approx([(vfr[CUT + i] - vfr[CUT]) / 1000 for i in (0, 9, 10, 89)])
    assert ordinals(reader.read(WANTED)) == shown(WANTED)
    reader.close()


def _read_sampled(path, chunks, monkeypatch, skipping: bool = True) -> tuple[list[int], int]:
    """The ordinals of the frames read, chunk by chunk, and how many frames the decoder output."""
    with monkeypatch.context() as patch:
        if not skipping:  # every frame decoded: what reading the cut cost before skipping saw past its pre-roll
            patch.setattr(mfhq.decode, "can_skip", lambda stream: False)
        reader = PyAVReader()
        reader.open(path)
        read = [o for chunk in chunks for o in ordinals(reader.read(chunk))]
        reader.close()
    return read, reader.n_output


SAMPLED = list(range(0, SHOWN, 5))  # 5 fps of 25
CHUNKS = [SAMPLED[i:i + 4] for i in range(0, len(SAMPLED), 4)]


def test_the_hidden_pre_roll_does_not_end_skipping(cut_video, monkeypatch):
    """Its packets are numbered before frame 0 and never output: the timestamp check passes them by,
    so the frames no read asks for are not decoded, and each frame read is the one asked for."""
    read, n_skipping = _read_sampled(cut_video, CHUNKS, monkeypatch)
    _, n_full = _read_sampled(cut_video, CHUNKS, monkeypatch, skipping=False)
    assert read == shown(SAMPLED)
    assert n_full == SAMPLED[-1] + 1 and n_skipping < n_full * 0.8


def test_a_seek_into_the_hidden_pre_roll_still_skips(tmp_path, monkeypatch):
    """One GOP from source frame 0 to the level's wrap at 64 (a scene cut), cut at 10: the clip at
    frame 50 seeks to the hidden keyframe 10 frames before frame 0, and is checked as read from frame 0."""
    source = write_grey(tmp_path / "source.mp4", [i * 40 for i in range(N_SOURCE)], gop=250)
    path = cut_by_stream_copy(source, tmp_path / "cut.mp4", keyframe=0, cut=10)
    late = [[50, 55, 60, 65], [70, 75, 80, 85]]
    read, n_skipping = _read_sampled(path, late, monkeypatch)
    _, n_full = _read_sampled(path, late, monkeypatch, skipping=False)
    assert read == [(10 + i) % 64 for chunk in late for i in chunk]
    assert n_skipping < n_full
