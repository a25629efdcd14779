"""A clip's box, annotations and frame numbers in the real video's pixels and frames.

Sources know how their dataset was annotated but never open a video; the worker opens it and
only then knows its width, height and fps. The source names its rule on the Clip
(`Clip.geometry`, plus `Clip.frame_fps` where frame numbers count at a known rate) and the
worker applies it here, so that the worker never calls back into `mfhq.sources`. Pure
functions of a Clip and the video's size: one owner for sources, worker and tests. Also the
overlap of boxes (`box_iou`), which the detect, embed and identity stages share.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mfhq.records import Clip, FrameAnnotations

EXPAND = 0.02  # CelebV's official scripts' margin, in normalised units
# A download whose rate is within 1% of the annotated one keeps its frame numbers.
RETIME_TOLERANCE = 0.01


def resolve(clip: Clip, width: int, height: int, fps: float | None = None,
            stored: tuple[int, int] | None = None) -> Clip:
    """The clip with its frame numbers retimed to `fps` and its box and annotations in
    `width` x `height` pixels, by the rule the source named. Raises ValueError for a box
    outside the frame (the clip's metadata is wrong for this video).

    `stored`: a video with non-square pixels, whose frames are resampled to square ones
    (`width` x `height`, mfhq.decode_shown): its picture's size before that. The source's
    box is taken in those pixels, as ffmpeg's crop filter, which the datasets' cutting scripts
    use, works in them (our assumption: the datasets' YouTube downloads have square pixels, so
    nothing there tells); the rule runs there, and its box and annotations are then stretched
    onto the shown frames, axis by axis."""
    rule = RULES.get(clip.geometry)
    if rule is None:  # a source's bug, not the video's: an `error` row, not `bad_metadata`
        raise LookupError(f"clip {clip.key}: unknown geometry rule {clip.geometry!r}; known: {', '.join(RULES)}")
    if fps and clip.frame_fps and abs(fps - clip.frame_fps) > RETIME_TOLERANCE * clip.frame_fps:
        # Frame numbers count frames at the annotated rate; a download at another rate (YouTube
        # serves several) holds the same instants at other numbers.
        clip = retime(clip, fps / clip.frame_fps)
    if stored is None or tuple(stored) == (width, height):
        return rule(clip, width, height)
    clip = rule(clip, *stored)
    sx, sy = width / stored[0], height / stored[1]
    return dataclasses.replace(
        clip, person_box=None if clip.person_box is None else _scale_box(clip.person_box, sx, sy),
        annotations=None if clip.annotations is None else _scale_annotations(clip.annotations, sx, sy))


def scaled(clip: Clip, width: int, height: int) -> Clip:
    """The default rule: box and annotations given in `Clip.box_space` pixels (or already in
    the video's own when it is None), scaled to the video and clamped to the frame."""
    if clip.box_space is None:
        box, annotations = clip.person_box, clip.annotations
    else:
        sx, sy = width / clip.box_space[0], height / clip.box_space[1]
        box = None if clip.person_box is None else _scale_box(clip.person_box, sx, sy)
        annotations = None if clip.annotations is None else _scale_annotations(clip.annotations, sx, sy)
    if box is not None:
        x1, y1, x2, y2 = box
        if x2 <= max(x1, 0) or y2 <= max(y1, 0) or x1 >= width or y1 >= height:
            raise ValueError(f"box {tuple(round(v, 1) for v in box)} lies outside the {width}x{height} frame")
        box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    return dataclasses.replace(clip, person_box=box, annotations=annotations, box_space=None)


def celebv_square(clip: Clip, width: int, height: int) -> Clip:
    """CelebV-HQ / CelebV-Text: the official script's expanded square around a normalised box
    (a box in pixels, box_space None, is normalised first: the official crop works in those units)."""
    if clip.person_box is None:
        return clip
    left, top, right, bottom = clip.person_box
    if clip.box_space is None:
        if right > width or bottom > height:
            raise ValueError(f"box {clip.person_box} lies outside the {width}x{height} frame")
        left, right, top, bottom = left / width, right / width, top / height, bottom / height
    square = expand_and_square((top, bottom, left, right), width, height)
    return dataclasses.replace(clip, person_box=square, box_space=None)


def talkinghead_trunc(clip: Clip, width: int, height: int) -> Clip:
    """TalkingHead-1KH: videos_crop.py rescales the box from H x W with int(T / H * h), a
    truncation, not a rounding; then the default rule's frame check."""
    if clip.person_box is None or clip.box_space is None:
        return scaled(clip, width, height)
    (w0, h0), (left, top, right, bottom) = clip.box_space, clip.person_box
    box = (int(left / w0 * width), int(top / h0 * height), int(right / w0 * width), int(bottom / h0 * height))
    return scaled(dataclasses.replace(clip, person_box=box, box_space=None), width, height)


def vfhq_downloader(clip: Clip, width: int, height: int) -> Clip:
    """A VFHQ clip cut by yunyu/vfhq-downloader's crop_clips.py, whose video is the crop only:
    `person_box` is the meta file's CROP in `box_space` (its W x H). The script scales the CROP
    to its download's w x h with int(v / W * w), a truncation, and ffmpeg's crop filter then
    takes the corner and the size down to even pixels (4:2:0 chroma), so a face at x in the
    meta file is at x * w / W - corner in the cut. The download is gone, so its size is the one
    whose cut has this video's size: the meta file's own first (the usual case), else the pair
    nearest the meta file's shape. A cut that no download size explains (resized by another
    tool) is mapped proportionally, CROP onto the whole frame."""
    if clip.person_box is None or clip.box_space is None:
        return scaled(clip, width, height)
    (w0, h0), (left, top, right, bottom) = clip.box_space, clip.person_box
    xs, ys = _cut_corners(left, right, w0, width), _cut_corners(top, bottom, h0, height)
    if int(w0) in xs and int(h0) in ys:
        (sx, ox), (sy, oy) = (1.0, xs[int(w0)]), (1.0, ys[int(h0)])
    elif xs and ys:  # a smaller download keeps the video's shape: the pair nearest it
        guess = width * w0 / (right - left)
        nw, nh = min(((a, b) for a in xs for b in ys), key=lambda p: (abs(p[0] / w0 - p[1] / h0), abs(p[0] - guess)))
        (sx, ox), (sy, oy) = (nw / w0, xs[nw]), (nh / h0, ys[nh])
    else:
        sx, sy = width / (right - left), height / (bottom - top)
        ox, oy = left * sx, top * sy
    ann = clip.annotations
    if ann is not None:
        def at(v: float, i: int) -> float:  # i even: an x; odd: a y
            return v * sx - ox if i % 2 == 0 else v * sy - oy
        ann = FrameAnnotations(ann.frames, tuple(tuple(at(v, i) for i, v in enumerate(b)) for b in ann.boxes),
                               tuple(tuple(at(v, i) for i, v in enumerate(m)) for m in ann.landmarks))
    return dataclasses.replace(clip, person_box=None, box_space=None, annotations=ann)


def _cut_corners(low: float, high: float, side: float, cut: int) -> dict[int, int]:
    """Along one axis: each download length near the proportional guess (and the meta file's own)
    whose vfhq-downloader crop of [low, high) of `side` is `cut` pixels long -> the crop's corner."""
    guess = cut * side / (high - low)
    found = {}
    for n in sorted({int(side), *range(max(2, int(guess) - 4), int(guess) + 6)}):
        first, last = int(low / side * n), int(high / side * n)
        if (last - first) & ~1 == cut:
            found[n] = first & ~1
    return found


RULES: dict[str, Callable[[Clip, int, int], Clip]] = {
    "scaled": scaled,
    "celebv-square": celebv_square,
    "talkinghead-trunc": talkinghead_trunc,
    "vfhq-downloader": vfhq_downloader,
}


def expand_and_square(box_tblr: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    """The official CelebV crop of a normalised (top, bottom, left, right) box -> x1, y1, x2, y2 px:
    widen by EXPAND per side (clamped to [0, 1]), denormalise with round(), and take a square of
    side 2 * (min(h, w) // 2) around the box centre."""
    top, bottom, left, right = box_tblr
    top, bottom = max(top - EXPAND, 0.0), min(bottom + EXPAND, 1.0)
    left, right = max(left - EXPAND, 0.0), min(right + EXPAND, 1.0)
    top, bottom, left, right = round(top * height), round(bottom * height), round(left * width), round(right * width)
    half = min(bottom - top, right - left) // 2
    cy, cx = (top + bottom) / 2, (left + right) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def retime(clip: Clip, ratio: float) -> Clip:
    """Frame numbers (range and annotations) multiplied by `ratio` (video fps / annotated fps).
    The range's last frame is inclusive: it lasts until frame end+1 starts, so that instant is
    what is retimed (frames 11..14 at 25 fps are 22..29 at 50, not 22..28)."""
    def at(frame: int) -> int:
        return int(round(frame * ratio))

    ann = clip.annotations
    if ann is not None:
        rows: dict[int, int] = {}
        for i, frame in enumerate(ann.frames):
            rows.setdefault(at(frame), i)  # two annotated frames may fall on one: keep the first
        ann = FrameAnnotations(tuple(rows), tuple(ann.boxes[i] for i in rows.values()),
                               tuple(ann.landmarks[i] for i in rows.values()))
    first = None if clip.start_frame is None else at(clip.start_frame)
    last = None if clip.end_frame is None else max(first, at(clip.end_frame + 1) - 1)
    return dataclasses.replace(clip, start_frame=first, end_frame=last, annotations=ann)


def _scale_box(box, sx: float, sy: float) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def _scale_annotations(ann: FrameAnnotations, sx: float, sy: float) -> FrameAnnotations:
    boxes = tuple(_scale_box(b, sx, sy) for b in ann.boxes)
    marks = tuple(tuple(v * (sx if i % 2 == 0 else sy) for i, v in enumerate(m)) for m in ann.landmarks)
    return FrameAnnotations(ann.frames, boxes, marks)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of boxes [N, 4]."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
