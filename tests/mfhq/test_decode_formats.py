"""The formats real downloads and phones bring, read by both readers: a display matrix turns the
frames as ffmpeg shows them (on PyAV as on decord), 10-bit HEVC and AV1 keep their colours in
8-bit BGR, AV1 is named as such where decord is not used, interlaced H.264 reads whole frames."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from format_videos import COLOURS, patch_means, patches, write_video
from mfhq.config import DecodeConfig
from mfhq.decode import ClipDecoder, DecordReader, PyAVReader
from mfhq.decode_containers import MATROSKA, MP4, decord_refusal, lacking_decoder
from mfhq.decode_end import DecodeError
from mfhq.decode_shown import may_turn

FRAMES = [0, 7, 19]


def _read(reader, path: Path) -> tuple[object, np.ndarray]:
    try:
        info = reader.open(path)
        return info, reader.read(FRAMES)
    finally:
        reader.close()


@pytest.mark.parametrize("rotation", [90, 180, 270, -90])
def test_turned_video_reads_as_shown_on_both_readers(tmp_path, rotation):
    stored = patches(160, 96)
    path = write_video(tmp_path / "phone.mp4", stored, rotation=rotation)
    shown = np.rot90(stored, (rotation // 90) % 4)  # as ffmpeg shows it: counterclockwise by `rotation`
    for reader in (PyAVReader(), DecordReader()):
        info, frames = _read(reader, path)
        assert (info.width, info.height) == (shown.shape[1], shown.shape[0]), reader.name
        assert frames.shape == (len(FRAMES), *shown.shape), reader.name
        for frame in frames:
            assert np.abs(frame.astype(int) - shown).mean() < 3, reader.name
        assert reader.facts == [f"{path}: turned {90 * ((rotation // 90) % 4)} degrees counterclockwise by its "
                                f"display matrix (frames read as shown, {info.width}x{info.height})"]


def test_turned_matroska_reads_as_shown_on_pyav_and_is_refused_by_decord(tmp_path):
    """decord turns an MP4's frames by the display matrix but not a Matroska's (its Projection)."""
    stored = patches(160, 96)
    path = write_video(tmp_path / "phone.mkv", stored, rotation=90, fmt="matroska")
    info, frames = _read(PyAVReader(), path)
    assert (info.width, info.height) == (96, 160)
    assert np.abs(frames[0].astype(int) - np.rot90(stored)).mean() < 3
    with pytest.raises(DecodeError, match="decord is not used on a Matroska/WebM whose display matrix turns it"):
        DecordReader().open(path)


def test_only_a_header_that_may_turn_costs_a_decode(tmp_path):
    """The display matrix is looked for in the header's bytes: a plain MP4, Matroska or WebM
    decodes no frame when opened; a turned MP4, MOV or Matroska is asked of FFmpeg."""
    image = patches()
    plain = [write_video(tmp_path / "a.mp4", image), write_video(tmp_path / "a.mkv", image, fmt="matroska"),
             write_video(tmp_path / "a.webm", image, codec="libvpx-vp9", fmt="webm"),
             write_video(tmp_path / "wide.mp4", image, sar=Fraction(2))]
    turned = [write_video(tmp_path / "t.mp4", image, rotation=90), write_video(tmp_path / "t.mov", image, rotation=180, fmt="mov"),
              write_video(tmp_path / "t.mkv", image, rotation=270, fmt="matroska")]
    assert [may_turn(p, MATROSKA if p.suffix in (".mkv", ".webm") else MP4) for p in plain + turned] == [False] * 4 + [True] * 3


def test_unturned_video_says_nothing_of_its_display(tmp_path):
    path = write_video(tmp_path / "plain.mp4", patches())
    decoder = ClipDecoder(DecodeConfig())
    try:
        info = decoder.open(path)
        frames = next(decoder.chunks(path, FRAMES)).frames
    finally:
        decoder.close()
    assert (info.width, info.height) == (160, 96) and frames.shape[1:] == (96, 160, 3)
    assert decoder.facts == []


@pytest.mark.parametrize("codec, fmt", [("libx265", "mp4"), ("libsvtav1", "matroska")])
def test_ten_bit_video_keeps_its_colours(tmp_path, codec, fmt):
    """A regression guard: 10-bit HDR-style streams come out as 8-bit BGR of the colours encoded."""
    path = write_video(tmp_path / f"ten.{fmt[:3]}", patches(), codec=codec, pix_fmt="yuv420p10le", fmt=fmt)
    decoder = ClipDecoder(DecodeConfig())
    try:
        decoder.open(path)
        frames = next(decoder.chunks(path, FRAMES)).frames
    finally:
        decoder.close()
    assert frames.dtype == np.uint8 and frames.shape == (len(FRAMES), 96, 160, 3)
    for frame in frames:
        for got, want in zip(patch_means(frame), COLOURS):
            assert np.abs(got - want).max() < 6, (codec, got, want)


def test_av1_is_named_where_decord_is_not_used(tmp_path):
    path = write_video(tmp_path / "av1.mkv", patches(), codec="libsvtav1", fmt="matroska")
    info, frames = _read(PyAVReader(), path)  # the wheel's dav1d decodes it
    assert frames.shape == (len(FRAMES), 96, 160, 3)
    assert "decord is not used on av1 video in Matroska/WebM" in decord_refusal(path)


def test_a_build_without_a_software_av1_decoder_says_what_to_install(tmp_path):
    """FFmpeg's own `av1` decoder decodes only through a GPU's hwaccel: a PyAV built without dav1d
    picks it, and would fail on the first frame with a message naming neither."""
    reason = lacking_decoder(tmp_path / "a.mkv", "av1")
    assert str(tmp_path / "a.mkv") in reason and "no software AV1 decoder" in reason
    assert "pip install -U av" in reason
    assert lacking_decoder(tmp_path / "a.mkv", "libdav1d") is None and lacking_decoder(tmp_path / "a.mp4", "h264") is None


def test_interlaced_video_reads_whole_frames(tmp_path):
    """Interlaced H.264 (a TV capture) is read as woven frames, not deinterlaced: on still content
    the two fields agree, so the picture is the one encoded (a moving one would comb)."""
    path = write_video(tmp_path / "tv.mp4", patches(), options={"flags": "+ildct+ilme", "x264-params": "interlaced=1"})
    for reader in (PyAVReader(), DecordReader()):
        info, frames = _read(reader, path)
        assert frames.shape == (len(FRAMES), 96, 160, 3), reader.name
        for got, want in zip(patch_means(frames[0]), COLOURS):
            assert np.abs(got - want).max() < 6, (reader.name, got, want)
