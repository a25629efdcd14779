"""Non-square pixels (an anamorphic DVD rip, an HDV capture): both readers hand over the picture
as shown, resampled to square pixels (width stretched where SAR > 1, height where SAR < 1, an
even length), so a circle drawn on the shown picture comes back round; a source's box given in
the stored pixels lands on the same place of the shown frame; a square-pixel file's frames are
the decoder's own, byte for byte."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from format_videos import write_video
from mfhq.config import DecodeConfig
from mfhq.decode import DecordReader, PyAVReader
from mfhq.records import Clip
from mfhq.worker.clip_open import open_clip

FRAMES = [0, 7, 19]


def _circle(width: int, height: int) -> np.ndarray:
    """A white disc of radius 0.35 of the height, centred, on dark grey: the shown picture."""
    image = np.full((height, width, 3), 40, np.uint8)
    cv2.circle(image, (width // 2, height // 2), int(0.35 * height), (255, 255, 255), -1, cv2.LINE_AA)
    return image


def _extent(frame: np.ndarray) -> tuple[int, int]:
    """The disc's width and height in pixels (its bright pixels' span)."""
    bright = frame.mean(axis=2) > 150
    columns, rows = np.flatnonzero(bright.any(axis=0)), np.flatnonzero(bright.any(axis=1))
    return columns[-1] - columns[0] + 1, rows[-1] - rows[0] + 1


def _read(reader, path: Path):
    try:
        return reader.open(path), reader.read(FRAMES)
    finally:
        reader.close()


# (stored size, SAR, rotation, the frames' size as read): a DVD's NTSC widescreen (32:27) and 4:3
# (8:9: the height is stretched, no sample thrown away), an HDV 1440x1080 at 4:3, and an anamorphic
# phone-style file that its display matrix turns as well (resampled before the turn).
CASES = [((720, 480), Fraction(32, 27), None, (854, 480)),
         ((720, 480), Fraction(8, 9), None, (720, 540)),
         ((1440, 1080), Fraction(4, 3), None, (1920, 1080)),
         ((160, 96), Fraction(2), 90, (96, 320))]


@pytest.mark.parametrize("stored, sar, rotation, shown", CASES)
def test_both_readers_read_non_square_pixels_as_shown(tmp_path, stored, sar, rotation, shown):
    upright = (shown[1], shown[0]) if rotation else shown  # the shown picture before its turn
    picture = _circle(*upright)
    path = write_video(tmp_path / "anamorphic.mp4", cv2.resize(picture, stored, interpolation=cv2.INTER_AREA),
                       sar=sar, frames=20, rotation=rotation)
    for reader in (PyAVReader(), DecordReader()):
        info, frames = _read(reader, path)
        assert (info.width, info.height) == shown, reader.name
        assert frames.shape == (len(FRAMES), shown[1], shown[0], 3), reader.name
        assert info.stored == ((stored[1], stored[0]) if rotation else stored), reader.name
        width, height = _extent(frames[0])
        assert abs(width - height) <= 2, (reader.name, width, height)  # round, as drawn
        assert abs(height - 0.7 * min(shown)) <= 3, (reader.name, height)
        expected = np.rot90(picture, rotation // 90) if rotation else picture
        assert np.abs(frames[0].astype(int) - expected).mean() < 4, reader.name
        square = f"{upright[0]}x{upright[1]}"
        assert reader.facts[-1] == (f"{path}: non-square pixels (SAR {sar.numerator}:{sar.denominator}, stored "
                                    f"{stored[0]}x{stored[1]}): frames resampled to {square}, square pixels, as shown")


def _raw(reader_type, path: Path) -> np.ndarray:
    """The sampled frames as the reader's decoder gives them (PyAV's converter to BGR, decord's
    RGB with its channels swapped), nothing done after."""
    if reader_type is DecordReader:
        import decord

        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1).get_batch(FRAMES).asnumpy()[..., ::-1]
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    return np.stack([frames[i] for i in FRAMES])


@pytest.mark.parametrize("reader_type", [PyAVReader, DecordReader])
def test_only_non_square_pixels_are_resampled(tmp_path, reader_type):
    """Square pixels, said (1:1) or not, are read as before, byte for byte; the anamorphic copy
    of the same stored picture is not."""
    stored = cv2.resize(_circle(320, 180), (240, 180), interpolation=cv2.INTER_AREA)
    plain = write_video(tmp_path / "plain.mp4", stored, frames=20)
    said = write_video(tmp_path / "said.mp4", stored, frames=20, sar=Fraction(1))
    wide = write_video(tmp_path / "wide.mp4", stored, frames=20, sar=Fraction(4, 3))
    info, frames = _read(reader_type(), wide)
    assert frames.shape[1:3] == (180, 320)
    assert (info.width, info.height, info.stored) == (320, 180, (240, 180))
    for path in (plain, said):
        info, frames = _read(reader_type(), path)
        assert (info.width, info.height, info.stored) == (240, 180, None)
        assert np.array_equal(frames, _raw(reader_type, path)), path


def test_a_sar_beyond_any_capture_format_is_read_as_stored_and_said(tmp_path):
    """A header's SAR of 10:1 is taken as damaged: resampling by it would make 10x wider frames."""
    path = write_video(tmp_path / "odd.mp4", _circle(64, 48), frames=20, sar=Fraction(10))
    for reader in (PyAVReader(), DecordReader()):
        info, frames = _read(reader, path)
        assert reader.facts == [f"{path}: SAR 10:1 in its header, beyond 1:4..4:1 (taken as damaged): frames "
                                "read as stored, not resampled"]
        assert (info.width, info.height, info.stored) == (64, 48, None) and frames.shape[1:3] == (48, 64)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_a_sources_box_in_stored_pixels_lands_on_the_shown_frame(tmp_path, backend):
    """A box drawn on the stored 720x480 (as ffmpeg's crop filter sees it) around the disc is
    stretched with the frame: it surrounds the disc in the 854x480 frames."""
    picture = _circle(854, 480)
    stored = cv2.resize(picture, (720, 480), interpolation=cv2.INTER_AREA)
    path = write_video(tmp_path / "dvd.mp4", stored, frames=20, sar=Fraction(32, 27))
    columns = np.flatnonzero((stored.mean(axis=2) > 150).any(axis=0))
    box = (float(columns[0]), 72.0, float(columns[-1] + 1), 408.0)  # the disc's span in stored pixels
    clip = Clip("folder", "dvd", path, "dvd", person_box=box, box_space=(720, 480))
    opened = open_clip(clip, DecodeConfig(backend=backend), "test")
    try:
        assert opened.failed is None
        frame = next(opened.chunks).frames[0]
    finally:
        opened.close()
    assert frame.shape[:2] == (480, 854)
    x1, y1, x2, y2 = opened.clip.person_box
    shown = np.flatnonzero((frame.mean(axis=2) > 150).any(axis=0))
    assert abs(x1 - shown[0]) <= 2 and abs(x2 - (shown[-1] + 1)) <= 2, (opened.clip.person_box, shown[[0, -1]])
    assert (y1, y2) == (72.0, 408.0)
