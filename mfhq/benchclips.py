"""Benchmark clips: 1080p or 4K H.264 with one large face in head-like motion.

`mfhq bench --make-clips N` renders these so that anyone can reproduce the speed figures on
video like the paper's sources (faces above 448 px in 1080p interviews) instead of the 512 px
demo sample. The photos, their provenance and the head motion (scale, in-plane rotation,
translation, yaw-like perspective) are the sample's own (`mfhq.sample`); only the frame size,
the face size and the encoder settings differ. Each clip shows one photo; clips cycle through
the sample's photos, so identities differ between neighbouring clips.

Frames are encoded as ffmpeg's command line encodes them (the sources' clips were cut and
re-encoded with it): libx264 with frame threads, so one slice per frame, and a decoder has one
core per stream. PyAV's own default, slice threads, writes one slice per encoder thread, which
lets a decoder spread one stream over several cores; `slice_threads=True` keeps that for
comparison.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from contextlib import nullcontext
from pathlib import Path

import av
import cv2
import numpy as np

from mfhq import sample
from mfhq.manifest.io import atomic_write_json
from mfhq.unfinished import CLIPS, VideosLock, finish, partial, remove_leftovers, start

log = logging.getLogger(__name__)

# Frame size and the face box width (px) at rest; the motion scales it by +-15%.
RESOLUTIONS = {"1080p": ((1920, 1080), 550.0), "4k": ((3840, 2160), 760.0)}
FPS = sample.SAMPLE_FPS
PHOTO_CYCLE = sample._USED  # the photos whose provenance sample.json records


def _background(rng: np.random.Generator, size: tuple[int, int], photo: np.ndarray) -> np.ndarray:
    """A defocused room: the photo's mean colour in a gradient plus soft blobs, a little larger
    than the frame so the camera can pan across it."""
    width, height = size[0] + 64, size[1] + 64
    base = photo.reshape(-1, 3).mean(axis=0) * 0.55
    coarse = rng.normal(0, 1, (6, 10, 1)) * 22 + rng.normal(0, 1, (6, 10, 3)) * 6
    blobs = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(0.7, 1.2, height, dtype=np.float32)[:, None, None]
    grain = cv2.GaussianBlur(rng.normal(0, 4, (height, width, 3)).astype(np.float32), (0, 0), 1.2)
    return np.clip(base * ramp + blobs + grain, 0, 255).astype(np.uint8)


def _pose(i: int, phases: np.ndarray, size: tuple[int, int], face: float) -> sample._Pose:
    """The sample's head motion, its translation scaled from the 512 px sample to this frame."""
    centre = (size[0] / 2, size[1] * 0.47)
    pose = sample._wobble(i, phases, centre, face)
    k = size[1] / sample.SIZE
    return dataclasses.replace(pose, cx=centre[0] + (pose.cx - centre[0]) * k, cy=centre[1] + (pose.cy - centre[1]) * k)


def render_frame(name: str, pose: sample._Pose, background: np.ndarray, size: tuple[int, int],
                 offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One BGR frame: the photo's face region warped by `pose` and blended over the background.

    Only the face's bounding region is warped and blended, so a 4K frame costs little more
    than a 1080p one."""
    width, height = size
    frame = background[offset[1]:offset[1] + height, offset[0]:offset[0] + width].copy()
    h = sample._homography(name, pose, sample._CROP)
    corners = cv2.perspectiveTransform(sample._crop_rect(name)[None].astype(np.float32), h)[0]
    x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, [width, height])
    x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return frame
    shifted = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64) @ h
    roi = (int(x1 - x0), int(y1 - y0))
    photo = sample._read_image(sample._photo_file(name))
    img = cv2.warpPerspective(photo, shifted, roi, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpPerspective(sample._mask(name, sample._CROP), shifted, roi, flags=cv2.INTER_LINEAR)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(region + (img.astype(np.float32) - region) * alpha, 0, 255).astype(np.uint8)
    return frame


def face_box(name: str, pose: sample._Pose) -> list[float]:
    return sample._face_box(name, pose, sample._CROP)


def write_clip(path: Path, name: str, resolution: str, seconds: float, seed: int, slice_threads: bool = False) -> dict:
    """Render and encode one clip; returns its entry for clips.json (ground-truth face boxes)."""
    size, face = RESOLUTIONS[resolution]
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * math.pi, len(sample._PERIODS))
    photo = sample._read_image(sample._photo_file(name))
    background = _background(rng, size, photo)
    n_frames = max(1, int(round(seconds * FPS)))
    boxes = {}
    tmp = partial(path)
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        # A keyframe every 2 s, as streaming sites encode; "fast" keeps the render quick while
        # the bit rate stays that of real footage at this size.
        stream.options = {"crf": "20", "preset": "fast", "g": str(2 * FPS)}
        # libx264 cuts a frame into one slice per thread only when told slice threads alone.
        stream.codec_context.thread_type = "SLICE" if slice_threads else "AUTO"
        for i in range(n_frames):
            pose = _pose(i, phases, size, face)
            pan = (int(32 + 30 * math.sin(2 * math.pi * i / 150)), int(32 + 20 * math.sin(2 * math.pi * i / 190)))
            frame = render_frame(name, pose, background, size, pan)
            boxes[str(i)] = face_box(name, pose)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    os.replace(tmp, path)
    return {"file": path.name, "photo": name, "resolution": resolution, "size": list(size), "fps": FPS,
            "n_frames": n_frames, "face_boxes": boxes}


def clips_lock(out: Path) -> VideosLock:
    """`ROOT/lock` (mfhq.unfinished.VideosLock), as `mfhq bench --make-clips` holds it: ROOT made
    if need be (the lock lives in it), the lock not yet taken."""
    Path(out).mkdir(parents=True, exist_ok=True)
    return VideosLock(out, command="mfhq bench --make-clips")


def make_clips(out: Path, n: int, resolution: str = "1080p", seconds: float = 4.0, seed: int = 0,
               slice_threads: bool = False, held: bool = False) -> list[Path]:
    """Writes out/bench-<resolution>-<i>.mp4 (n clips) and out/clips.json; returns the video paths.

    Clips already there with the same settings are reused, so repeated benchmarks skip the render.
    While it works the folder holds its marker (mfhq.unfinished.CLIPS), removed once the n clips
    and their index are whole: a render killed part way is refused by every reader (the folder
    source), and the next call completes it. clips.json only ever names clips rendered with the
    settings it records (written again before each clip is rendered), so those are kept.

    One writer at a time: it holds the folder's lock (`out/lock`, `clips_lock`: the lock a sample
    holds on its videos/ too) from before it reads clips.json until the marker is gone, so a second
    render or a sample into the folder is refused (FolderInUse, naming the holder) instead of
    removing the first's marker or clips while it writes. `held`: the caller holds it already
    (`mfhq bench`, which measures the clips under the same hold). A lock left by a killed render is
    taken over, with a warning."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}")
    if n < 1:
        raise ValueError(f"--make-clips must be at least 1, got {n}")
    out = Path(out)
    wanted = {"resolution": resolution, "seconds": seconds, "seed": seed, "photos": sample.photo_provenance(),
              "slices": "one per encoder thread" if slice_threads else "one per frame"}
    with nullcontext() if held else clips_lock(out):
        start(out, CLIPS, f"mfhq bench --make-clips {n} --resolution {resolution} --seconds {seconds}"
              f"{' --slice-threads' if slice_threads else ''} --root {{folder}}")
        remove_leftovers(out, ["clips.json", CLIPS.marker])  # what a killed render left (its clips: _render)
        paths = _render(out, n, wanted, slice_threads)
        finish(out, CLIPS)  # last: the folder is whole
    return paths


def _render(out: Path, n: int, wanted: dict, slice_threads: bool) -> list[Path]:
    """The n clips (those clips.json vouches for kept) and clips.json naming exactly them."""
    index_path, resolution = out / "clips.json", wanted["resolution"]
    index = _read_index(index_path)
    stale_index = {k: index.get(k) for k in wanted} != wanted  # clips.json describes other clips
    if stale_index:
        index = {**wanted, "clips": []}
    paths = []
    for i in range(n):
        path = out / f"bench-{resolution}-{i:03d}.mp4"
        if i >= len(index["clips"]) or not path.is_file():
            # the index first forgets clip i and those after it: a kill while it is rendered (or
            # before the index names it) leaves no entry describing another clip than the file
            if stale_index or len(index["clips"]) > i:
                index["clips"], stale_index = index["clips"][:i], False
                atomic_write_json(index_path, index)
            index["clips"].append(write_clip(path, PHOTO_CYCLE[i % len(PHOTO_CYCLE)], resolution, wanted["seconds"],
                                             wanted["seed"] * 1000 + i, slice_threads))
            atomic_write_json(index_path, index)
            log.info("wrote %s", path)
        paths.append(path)
    for stale in [*out.glob("bench-*.mp4"), *out.glob(".bench-*.partial.mp4")]:
        if stale not in paths:  # a folder of exactly n clips: the bench reads it whole
            stale.unlink()
    index["clips"] = index["clips"][:n]
    atomic_write_json(index_path, index)  # by a rename: a killed write leaves the earlier index whole
    return paths


def _read_index(path: Path) -> dict:
    """clips.json, or {} (every clip rendered again) where there is none or it cannot be read:
    a cut-short index, left by a version that wrote it in place, says nothing about the clips."""
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as error:
        log.warning("%s: unreadable (%s); the clips are rendered again", path, error)
        return {}
    return index if isinstance(index, dict) and isinstance(index.get("clips"), list) else {}
