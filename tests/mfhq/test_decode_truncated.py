"""A video stream that ends before the frames its MP4 header promised: a truncated download (the
file ends inside a packet, its `mdat` cut) and a header that over-counts (the index lists frames
whose bytes are not in the file: cut between two packets). Every sampled frame before the end is
delivered under its own number, none after it, and the decoder says where the stream ended, the
same wherever a chunk boundary falls and with decode-ahead on or off; decord, which numbers the
frames after a lost one wrong there, refuses such a file."""
from __future__ import annotations

import dataclasses

import av
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import ClipDecoder, DecodeError, DecordReader, sample_indices
from mfhq.decode_ahead import DecodeAhead
from grey_videos import ordinals, write_grey

N = 100


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """100 frames of H.264 with B-frames, its index first (`faststart`, as streamed downloads are)."""
    path = tmp_path_factory.mktemp("truncated") / "whole.mp4"
    return write_grey(path, [i * 40 for i in range(N)], options={"movflags": "faststart"})


def _packets(path) -> list[tuple[int, int, int]]:
    """(frame number, byte offset, size) of each packet, in file (decode) order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(round(float(p.pts * stream.time_base) * 25), p.pos, p.size) for p in container.demux(stream) if p.size]


def _cut(whole, path, end: int):
    path.write_bytes(whole.read_bytes()[:end])
    return path


@pytest.fixture(scope="module", params=[(place, lost) for place in ("inside-a-packet", "between-packets")
                                        for lost in ("a-sampled-frame-lost", "a-sampled-frame-kept-past-a-gap")],
                ids="-".join)
def cut(request, whole):
    """The file cut where the packets before the end leave frames missing among the last ones (a
    B-frame's reference kept, B-frames before it lost): sampled frame 50 lost with them, or kept
    past them (49 and 51 lost); halfway into the next packet, or just before it. (path, the frames
    whose packets are whole)."""
    place, lost = request.param
    packets = _packets(whole)
    whole_frames = lambda k: sorted(n for n, _, _ in packets[:k])  # noqa: E731
    k = next(k for k in range(50, N) if whole_frames(k) != list(range(k))
             and (50 in whole_frames(k)) == (lost == "a-sampled-frame-kept-past-a-gap"))
    offset, size = packets[k][1:]
    end = offset + size // 2 if place == "inside-a-packet" else offset
    path = _cut(whole, whole.parent / f"{place}-{lost}.mp4", end)
    assert (50 in whole_frames(k)) and 49 not in whole_frames(k) if "kept" in lost else 50 not in whole_frames(k)
    return path, whole_frames(k)


def _read(path, chunk_frames: int, ahead: bool, backend: str = "auto", start_sec=None):
    cfg = dataclasses.replace(DecodeConfig(), backend=backend, chunk_frames=chunk_frames, fps=5)
    decoder = ClipDecoder(cfg)
    info = decoder.open(path)
    indices = sample_indices(info, cfg, start_sec, None)
    chunks = decoder.chunks(path, indices)
    if ahead:
        chunks = DecodeAhead(chunks)
    labels, seen = [], []
    for chunk in chunks:
        labels += chunk.indices[:len(chunk.frames)]
        seen += ordinals(chunk.frames)
    decoder.close()
    return info, labels, seen, decoder.ended


@pytest.mark.parametrize("ahead", [False, True], ids=["in-line", "decode-ahead"])
@pytest.mark.parametrize("chunk_frames", [1, 3, 4, 7, 16, 32])
def test_the_frames_before_the_end_are_read_and_the_end_is_named(cut, chunk_frames, ahead):
    path, frames = cut
    info, labels, seen, ended = _read(path, chunk_frames, ahead)
    assert info.n_frames == N  # the header promises them all
    # Every sampled frame up to the first sampled one the cut lost (a B-frame's reference outlives
    # the frames before it), each its own frame: never a later frame under a lost one's number.
    first_lost = min(set(range(0, N, 5)) - set(frames))
    assert labels == list(range(0, first_lost, 5)) and seen == [i % 64 for i in labels]
    not_read = list(range(labels[-1] + 5, N, 5))
    assert ended is not None and f"{path}: the video stream ended after frame " in ended
    assert f"short of the {N} frames its header promised (pyav): {len(not_read)} sampled frame(s) past it " \
           f"not read ({not_read[0]}..{not_read[-1]})" in ended


def test_a_clip_wholly_past_the_end_reads_nothing_and_says_so(cut):
    path, frames = cut
    info, labels, seen, ended = _read(path, 4, False, start_sec=3.0)  # frames 75..95, past the cut
    assert labels == [] and seen == []
    assert ended is not None and f"sampled frame(s) past it not read (75..95)" in ended


def test_decord_refuses_a_file_whose_index_runs_past_its_end(cut):
    path, _ = cut
    with pytest.raises(DecodeError, match=r"decord is not used on an MP4/MOV whose index places frames past the file's end"):
        DecordReader().open(path)
    with pytest.raises(DecodeError, match=rf"{path}: no decoder could open it"):
        _read(path, 4, False, backend="decord")


def test_decord_asked_past_the_frames_it_finds_ends_the_read(whole):
    """As the chain's fallback it reads indices another reader planned: those past its own count
    end the read, as PyAV's does, instead of failing the chunk."""
    reader = DecordReader()
    reader.open(whole)
    frames = reader.read([90, 95, 100, 105])
    assert ordinals(frames) == [90 % 64, 95 % 64] and reader.ended is not None and reader.ended.last_read == N - 1
    reader.close()


def test_a_whole_file_ends_where_its_header_says(whole):
    info, labels, seen, ended = _read(whole, 4, False)
    assert labels == list(range(0, N, 5)) and seen == [i % 64 for i in labels] and ended is None
