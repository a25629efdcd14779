"""VFHQ clips already cut from their YouTube video: the two layouts and where their frames and
faces are in the cut.

`clips/` or `processed/<clip name>.mp4`: the whole clip name, frames start+1 .. end-1 of the
source, showing the CROP region. `cropped_videos/Clip+<ytid>+P<pid>+C<n>.mp4` (the F range is not
in the name): what yunyu/vfhq-downloader's crop_clips.py writes. It reads frame_start = start+1
and frame_end = end-1 from the name, turns them into seconds at the meta file's FPS (rounded to
5 decimals, then to the millisecond by its time stamp format) and has ffmpeg seek to the first
and keep the duration up to the second, which ffmpeg counts as an open end: the cut holds source
frames start+1 .. end-2, at the download's own frame rate. It crops to the CROP box scaled to the
download's size (the `vfhq-downloader` rule of mfhq.geometry) and does not resize.
The rounded seek time skips frame start+1 where it falls after it: such a cut starts one frame
later than these numbers say. That is rare in yt-dlp's merged WebM or MKV (times in milliseconds),
common in an MP4 download at 30 or 29.97 fps (finer times), and the rule from about frame 30,000
on where the meta FPS is 29.97 for 30000/1001 (no real meta file was seen to tell how it is written).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mfhq.records import Clip, FrameAnnotations

CUT_DIRS = ("clips", "processed")
# crop_clips.py's default output folder, relative to its checkout (which holds meta_info/ too).
DOWNLOADER_DIRS = ("cropped_videos", "data/cropped_videos")


def downloader_name(clip_id: str) -> str:
    """The downloader's file name of a clip (a name of the official form): without the
    `+F<start>-<end>` part, P and C written back from the numbers it read (P01 becomes P1)."""
    _, ytid, pid, clip, _ = clip_id.split("+")
    return f"Clip+{ytid}+P{int(pid[1:])}+C{int(clip[1:])}"


def as_cut(clip: Clip, path: Path) -> Clip:
    """A cut clip starts at source frame start+1 and shows the CROP region only."""
    x0, y0, x1, y1 = clip.person_box
    ann = _shifted(clip.annotations, clip.start_frame, clip.end_frame, x0, y0)
    return dataclasses.replace(clip, video_path=path, start_frame=None, end_frame=None, person_box=None,
                               box_space=(x1 - x0, y1 - y0), annotations=ann, extra={**clip.extra, "layout": "cut"})


def as_downloader_cut(clip: Clip, path: Path) -> Clip:
    """The downloader's cut: frame 0 is source frame start+1, the last is end-2; the boxes stay in
    the meta file's pixels (with the CROP as person_box) for the `vfhq-downloader` rule, which
    needs the cut's real size, and the frames keep counting at the meta FPS (frame_fps), so that
    a download at another rate is retimed as a raw one is."""
    ann = _shifted(clip.annotations, clip.start_frame, clip.end_frame - 1, 0, 0)
    return dataclasses.replace(clip, video_path=path, start_frame=None, end_frame=None, annotations=ann,
                               geometry="vfhq-downloader", extra={**clip.extra, "layout": "downloader-cut"})


def _shifted(ann: FrameAnnotations | None, first: int, last: int, x0: float, y0: float) -> FrameAnnotations | None:
    """The annotations of source frames first..last, as frames 0.. of the cut, moved by (-x0, -y0)."""
    if ann is None:
        return None
    rows = [(i, f - first) for i, f in enumerate(ann.frames) if first <= f <= last]
    if not rows:
        return None
    return FrameAnnotations(
        tuple(f for _, f in rows),
        tuple((b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0) for b in (ann.boxes[i] for i, _ in rows)),
        tuple(tuple(v - (x0 if k % 2 == 0 else y0) for k, v in enumerate(ann.landmarks[i])) for i, _ in rows),
    )
