"""Frames nobody reads are not decoded where that cannot change a frame or its number: the
sampled frames are those of a full decode, pixel for pixel, and a stream whose timestamps are
not those of consecutive frames is counted as before."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import mfhq.decode
from mfhq.decode import PyAVReader

N_FRAMES = 120


def _video(path, late: dict[int, int] | None = None, bframes: int = 2, encoder: str = "libx264", **options) -> None:
    """64x64 H.264 (or HEVC) at 25 fps, frame i a flat grey of its own level; `late`: frame ->
    how many hundredths of a second after its time it is stamped."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(encoder, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 100)
        stream.options = {"g": "25", "crf": "10", "bf": str(bframes),
                          **({"x265-params": "log-level=error"} if encoder == "libx265" else {"keyint_min": "25"}),
                          **options}
        for i in range(N_FRAMES):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 30 + (7 * i) % 190, np.uint8), format="bgr24")
            frame.pts, frame.time_base = 4 * i + (late or {}).get(i, 0), Fraction(1, 100)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _read(path, chunks: list[list[int]], skipping: bool, monkeypatch) -> tuple[list[np.ndarray], int]:
    with monkeypatch.context() as patch:
        if not skipping:
            patch.setattr(mfhq.decode, "can_skip", lambda stream: False)
        reader = PyAVReader()
        reader.open(path)
        frames = [reader.read(chunk) for chunk in chunks]
        reader.close()
    return frames, reader.n_output


CHUNKS = [list(range(start, min(start + 20, N_FRAMES), 5)) for start in range(0, N_FRAMES, 20)]  # 5 fps of 25, 4 a chunk


@pytest.mark.parametrize("encoder, bframes", [("libx264", 2), ("libx264", 0), ("libx265", 3)])
def test_the_sampled_frames_are_a_full_decodes_pixel_for_pixel(tmp_path, monkeypatch, encoder, bframes):
    path = tmp_path / "clip.mp4"
    _video(path, bframes=bframes, encoder=encoder)
    skipped, n_skipping = _read(path, CHUNKS, True, monkeypatch)
    full, n_full = _read(path, CHUNKS, False, monkeypatch)
    assert all(np.array_equal(a, b) for a, b in zip(skipped, full)) and len(skipped) == len(CHUNKS)
    if bframes:  # B-frames that nothing refers to and no read asks for were not decoded
        assert n_skipping < n_full * 0.8
    else:  # every frame is a reference: all are decoded, nothing changes
        assert n_skipping == n_full


def test_a_late_timestamp_ends_skipping_and_frames_are_counted_as_before(tmp_path, monkeypatch):
    # Frame 70 is stamped 3/4 of a frame late (a capture's jitter): numbered by timestamp it
    # would be frame 71; counted, as a full decode numbers it, it is frame 70. The streams's
    # average rate is still 25 fps, so the check sees it only when the reads come near it.
    path = tmp_path / "late.mp4"
    _video(path, late={70: 3})
    skipped, n_skipping = _read(path, CHUNKS, True, monkeypatch)
    full, n_full = _read(path, CHUNKS, False, monkeypatch)
    assert all(np.array_equal(a, b) for a, b in zip(skipped, full))
    assert n_skipping < n_full  # the chunks before the gap came into view were still read skipping
    levels = [int(round(float(f.mean()))) for chunk in full for f in chunk]
    assert len(levels) == sum(map(len, CHUNKS)) and len(set(levels)) == len(levels)


@pytest.mark.parametrize("gop", ["closed", "open"])
def test_after_a_seek_the_sampled_frames_are_a_full_decodes_too(tmp_path, monkeypatch, gop):
    # A clip deep inside a long video: the reader seeks to the keyframe before frame 60. In an
    # open GOP the frames after that keyframe in the file include some shown before it, which a
    # full decode numbers differently from timestamps: nothing is skipped there.
    path = tmp_path / f"{gop}.mp4"
    _video(path, bframes=3, **({"x264-params": "open-gop=1"} if gop == "open" else {}))
    late_chunks = [chunk for chunk in CHUNKS if chunk[0] >= PyAVReader.SEEK_GAP]
    skipped, n_skipping = _read(path, late_chunks, True, monkeypatch)
    full, n_full = _read(path, late_chunks, False, monkeypatch)
    assert all(np.array_equal(a, b) for a, b in zip(skipped, full)) and len(full) == len(late_chunks)
    assert n_full < N_FRAMES - 40  # the seek left the first frames undecoded either way
    assert (n_skipping < n_full) if gop == "closed" else (n_skipping == n_full)
