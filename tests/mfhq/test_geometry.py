"""mfhq.geometry: each rule a source can name on its Clip, on known numbers; and the worker's
side of the contract, that it reaches the rules without importing mfhq.sources."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mfhq.geometry import RULES, celebv_square, expand_and_square, resolve, retime, scaled, talkinghead_trunc, vfhq_downloader
from mfhq.records import Clip, FrameAnnotations

ROOT = Path(__file__).resolve().parents[2]
# One face annotated on frames 11..13 of a 1280x720 frame (VFHQ's layout).
ANN = FrameAnnotations((11, 12, 13), ((200, 100, 300, 220),) * 3,
                       ((120, 230, 150, 270, 150, 250, 175, 235, 200, 265),) * 3)


def _clip(**fields) -> Clip:
    return Clip("folder", "c", Path("c.mp4"), "c", **fields)


def test_a_clip_built_without_a_rule_uses_the_default_one():
    clip = _clip()
    assert (clip.geometry, clip.frame_fps) == ("scaled", None)
    assert set(RULES) == {"scaled", "celebv-square", "talkinghead-trunc", "vfhq-downloader"}


def test_scaled_rescales_box_and_annotations_from_box_space_and_clamps():
    clip = _clip(person_box=(100, 50, 400, 350), box_space=(1280, 720), annotations=ANN)
    out = scaled(clip, 640, 360)  # every coordinate halves
    assert out.person_box == (50, 25, 200, 175) and out.box_space is None
    assert out.annotations.boxes[0] == (100, 50, 150, 110) and out.annotations.landmarks[0][:4] == (60, 115, 75, 135)
    assert out.annotations.frames == ANN.frames
    # A box already in the video's pixels is only clamped to the frame.
    assert scaled(_clip(person_box=(-10, -5, 700, 100)), 640, 360).person_box == (0.0, 0.0, 640.0, 100)
    with pytest.raises(ValueError, match=r"lies outside the 640x360 frame"):
        scaled(_clip(person_box=(650, 10, 700, 100)), 640, 360)
    assert scaled(_clip(), 640, 360).person_box is None


def test_celebv_square_is_the_official_expanded_square_for_either_box_kind():
    # (top, bottom, left, right) = (0, .6, .3, 1) widened by .02 (clamped) -> 640x360 px: 0, 223, 179, 640;
    # the square's side is 2 * (min(223, 461) // 2) = 222 around the centre (409.5, 111.5).
    assert expand_and_square((0.0, 0.6, 0.3, 1.0), 640, 360) == (298.5, 0.5, 520.5, 222.5)
    norm = _clip(person_box=(0.3, 0.0, 1.0, 0.6), box_space=(1.0, 1.0), geometry="celebv-square")
    pixels = _clip(person_box=(192, 0, 640, 216), geometry="celebv-square")
    assert celebv_square(norm, 640, 360).person_box == (298.5, 0.5, 520.5, 222.5)
    assert resolve(pixels, 640, 360).person_box == (298.5, 0.5, 520.5, 222.5)
    with pytest.raises(ValueError, match="outside the 320x180 frame"):
        resolve(pixels, 320, 180)
    # A cut clip (already cropped by the official script) has no box and stays as it is.
    assert celebv_square(_clip(geometry="celebv-square"), 640, 360).person_box is None


def test_talkinghead_trunc_truncates_where_the_default_rule_keeps_fractions():
    clip = _clip(person_box=(504, 63, 792, 351), box_space=(1280, 720), geometry="talkinghead-trunc")
    # videos_crop.py: int(63 / 720 * 360) = int(31.5) = 31, int(351 / 720 * 360) = int(175.5) = 175.
    assert talkinghead_trunc(clip, 640, 360).person_box == (252, 31, 396, 175)
    assert resolve(clip, 640, 360).person_box == (252, 31, 396, 175)
    assert scaled(clip, 640, 360).person_box == (252, 31.5, 396, 175.5)


def test_vfhq_downloader_maps_faces_through_its_truncated_even_crop():
    # CROP (101, 51)-(402, 352) of a 1280x720 meta file: odd corner, odd sides. From a download of
    # that size crop_clips.py cuts int() of it, ffmpeg's crop takes corner and size down to even:
    # (100, 50), 300x300. From a 640x360 download: int(50.5) = 50, int(25.5) = 25 -> 24; sides
    # 201 - 50 and 176 - 25, 151 -> 150: 150x150 from (50, 24) at half scale.
    clip = _clip(person_box=(101, 51, 402, 352), box_space=(1280, 720), annotations=ANN, frame_fps=25.0,
                 geometry="vfhq-downloader")
    native, half = vfhq_downloader(clip, 300, 300), resolve(clip, 150, 150)
    assert (native.person_box, native.box_space, half.person_box, half.box_space) == (None, None, None, None)
    assert native.annotations.boxes[0] == (100, 50, 200, 170) and native.annotations.landmarks[0][:2] == (20, 180)
    assert half.annotations.boxes[0] == (50, 26, 100, 86) and half.annotations.landmarks[0][:2] == (10, 91)
    # The 25 fps frame numbers of a cut from a 50 fps download are retimed, as a raw download's.
    assert resolve(clip, 300, 300, fps=50.0).annotations.frames == (22, 24, 26)
    # A cut no download size explains (an odd side, which ffmpeg's crop never writes: another
    # tool's): the CROP mapped onto the whole frame.
    resized = vfhq_downloader(clip, 602, 301)
    assert resized.annotations.boxes[0] == pytest.approx((198, 49, 398, 169))


def test_retime_follows_the_annotated_frame_rate():
    clip = _clip(start_frame=11, end_frame=14, person_box=(100, 50, 400, 350), box_space=(1280, 720),
                 annotations=ANN, frame_fps=25.0)
    # A download at 50 fps holds the annotated 25 fps frame n at frames 2n and 2n + 1: the inclusive
    # last frame 14 ends where frame 15 starts, at frame 30.
    doubled = resolve(clip, 640, 360, fps=50.0)
    assert doubled.annotations.frames == (22, 24, 26) and (doubled.start_frame, doubled.end_frame) == (22, 29)
    assert doubled.person_box == (50, 25, 200, 175)
    # Within 1% of the annotated rate, or with no rate known on either side, frames stay.
    for same in (resolve(clip, 640, 360, fps=25.2), resolve(clip, 640, 360, fps=None),
                 resolve(_clip(start_frame=11, end_frame=14), 640, 360, fps=50.0)):
        assert (same.start_frame, same.end_frame) == (11, 14)
    # At half the rate, 11, 12, 13 -> round(5.5), 6, round(6.5): one frame, the first row kept.
    halved = retime(clip, 0.5)
    assert halved.annotations.frames == (6,) and (halved.start_frame, halved.end_frame) == (6, 7)


def test_an_unknown_rule_is_a_clear_error():
    with pytest.raises(LookupError, match="unknown geometry rule 'bogus'.*scaled"):
        resolve(_clip(geometry="bogus"), 640, 360)


def test_the_worker_modules_do_not_import_the_sources():
    """DESIGN.md: workers never call back into sources/; the Clip carries what they need."""
    code = ("import sys, mfhq.worker.clip, mfhq.worker.shard, mfhq.worker.process; "
            "print(sorted(m for m in sys.modules if m.startswith('mfhq.sources')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_non_square_pixel_video_takes_the_box_in_stored_pixels_and_stretches_it():
    """Frames resampled to square pixels (720x480 at SAR 32:27 read 854x480): the rule runs in
    the stored 720x480, as ffmpeg's crop filter sees it, then x is stretched by 854 / 720."""
    sx = 854 / 720
    clip = _clip(person_box=(100, 50, 400, 350), box_space=(1440, 960), annotations=ANN)
    out = resolve(clip, 854, 480, stored=(720, 480))
    assert out.person_box == pytest.approx((50 * sx, 25, 200 * sx, 175))
    assert out.annotations.boxes[0] == pytest.approx((100 * sx, 50, 150 * sx, 110))
    assert out.annotations.landmarks[0][:2] == pytest.approx((60 * sx, 115))
    # CelebV's official square is square in the stored pixels it cropped: wider than high as shown.
    square = resolve(_clip(person_box=(0.3, 0.0, 1.0, 0.6), box_space=(1.0, 1.0), geometry="celebv-square"),
                     854, 480, stored=(720, 480))
    side = celebv_square(_clip(person_box=(0.3, 0.0, 1.0, 0.6), box_space=(1.0, 1.0), geometry="celebv-square"),
                         720, 480).person_box
    assert square.person_box == pytest.approx((side[0] * sx, side[1], side[2] * sx, side[3]))
    # A box outside the stored frame is refused as before, naming the size it was checked in.
    with pytest.raises(ValueError, match="outside the 720x480 frame"):
        resolve(_clip(person_box=(750, 10, 800, 100)), 854, 480, stored=(720, 480))
    # Square pixels (stored None, or the frame's own size) are the rule alone.
    assert resolve(clip, 640, 360, stored=(640, 360)).person_box == scaled(clip, 640, 360).person_box
