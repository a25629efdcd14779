"""Generate the bundled demo sample: short H.264 clips made from face photos shipped in installed packages.

Nothing binary is committed: every clip is rendered from the photos (scikit-image's astronaut and
insightface's group photo t1.jpg) by warping a face region onto a smooth synthetic background.
The geometry is known exactly, so sample.json carries per-frame face boxes that tests can check.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import pathlib
from dataclasses import dataclass

import av
import cv2
import numpy as np

from mfhq.manifest.io import atomic_write_bytes
from mfhq.sample_out import write_index, writing_sample
from mfhq.unfinished import partial

SAMPLE_FPS = 25
SIZE = 512
N_FRAMES = 100  # 4 s per clip
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Photo:
    dist: str  # distribution name, for importlib.metadata.version
    package: str  # import package that holds the file
    relpath: str  # path inside the package
    box: tuple[int, int, int, int]  # face box in the photo: x, y, w, h
    licence: str


_T1_LICENCE = ("insightface package sample image; licence: as distributed with the insightface wheel "
               "(MIT code licence), used for testing only")
# YuNet boxes on t1.jpg, sorted by x: face index i is the i-th person from the left.
_T1_BOXES = ((60, 268, 106, 128), (266, 151, 105, 126), (465, 266, 101, 144),
             (748, 353, 98, 122), (905, 58, 99, 143), (1125, 272, 95, 123))
PHOTOS: dict[str, _Photo] = {
    "astronaut": _Photo("scikit-image", "skimage", "data/astronaut.png", (178, 62, 90, 114),
                        "public domain: NASA photograph of Eileen Collins (no known copyright "
                        "restrictions, as stated by scikit-image's skimage.data.astronaut)"),
    **{f"t1_face{i}": _Photo("insightface", "insightface", "data/images/t1.jpg", b, _T1_LICENCE)
       for i, b in enumerate(_T1_BOXES)},
}
_PERSON_A, _PERSON_B, _PERSON_C = "t1_face0", "t1_face3", "t1_face2"
_USED = ("astronaut", _PERSON_A, _PERSON_B, _PERSON_C)
_CROP = (2.2, 2.2)  # crop region around the face box (x, y factors): keeps hair and neck in view


def _photo_file(name: str) -> pathlib.Path:
    p = PHOTOS[name]
    spec = importlib.util.find_spec(p.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {p.package!r} is not installed")
    return pathlib.Path(spec.submodule_search_locations[0]) / p.relpath


@functools.lru_cache(maxsize=None)
def _read_image(path: pathlib.Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        # decord's wheel bundles an old libz; imported before cv2 it breaks cv2's PNG reader.
        # ffmpeg's PNG decoder (via PyAV) gives bit-identical pixels, so fall back to it.
        log.debug("cv2 could not read %s; decoding it with PyAV", path)
        with av.open(str(path)) as container:
            img = next(container.decode(video=0)).to_ndarray(format="bgr24")
    return img


def _crop_rect(name: str, crop: tuple[float, float] = _CROP) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of the crop region around the photo's face box."""
    x, y, w, h = PHOTOS[name].box
    unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    return unit * [crop[0] * w / 2, crop[1] * h / 2] + [x + w / 2, y + h / 2]


def load_photo(name: str, crop: bool = True) -> np.ndarray:
    """BGR uint8 image of a photo: the crop region around its face (one face, centred), or the whole file."""
    img = _read_image(_photo_file(name))
    if not crop:
        return img.copy()
    (x1, y1), (x2, y2) = _crop_rect(name)[[0, 2]].round().astype(int)
    return img[max(y1, 0):y2, max(x1, 0):x2].copy()


def photo_provenance() -> dict:
    out = {}
    for name in _USED:
        p, path = PHOTOS[name], _photo_file(name)
        out[name] = {"package": p.dist, "import_package": p.package,
                     "package_version": importlib.metadata.version(p.dist),
                     "path": f"{p.package}/{p.relpath}",
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                     "licence": p.licence, "face_box_xywh": list(p.box)}
    return out


@dataclass(frozen=True)
class _Pose:
    cx: float  # face centre in the frame
    cy: float
    width: float  # face box width in the frame, px
    angle: float  # in-plane rotation, degrees
    yaw: float  # fraction by which one side of the quad shrinks (sign picks the side)


@dataclass
class _Frame:
    layers: list[tuple[str, _Pose, tuple[float, float]]]  # (photo, pose, crop), back to front
    light: float | None = None  # lighting ramp position 0..1; None leaves colours alone
    blur: float = 0.0  # Gaussian sigma applied to the whole frame


_PERIODS = (83, 109, 71, 97, 61)  # frames; incommensurate so the motion does not look periodic


def _wobble(i: int, phases: np.ndarray, centre: tuple[float, float], width: float, amp: float = 1.0) -> _Pose:
    s = [math.sin(2 * math.pi * i / p + ph) for p, ph in zip(_PERIODS, phases)]
    return _Pose(centre[0] + 40 * amp * s[2], centre[1] + 30 * amp * s[3], width * (1 + 0.15 * amp * s[0]),
                 15 * amp * s[1], 0.15 * amp * s[4])


def _homography(name: str, pose: _Pose, crop: tuple[float, float]) -> np.ndarray:
    src = _crop_rect(name, crop)
    k = pose.width / PHOTOS[name].box[2]
    dst = (src - src.mean(axis=0)) * k
    # A head turning away makes its far side look shorter: shrink that side's vertical extent.
    left = dst[:, 0] < 0
    dst[:, 1] *= np.where(left, 1 - max(pose.yaw, 0), 1 - max(-pose.yaw, 0))
    a = math.radians(pose.angle)
    dst = dst @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) + [pose.cx, pose.cy]
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))


def _face_box(name: str, pose: _Pose, crop: tuple[float, float]) -> list[float]:
    """Axis-aligned bounds of the photo's face box after the frame warp: [x1, y1, x2, y2]."""
    x, y, w, h = PHOTOS[name].box
    corners = np.array([[[x, y], [x + w, y], [x + w, y + h], [x, y + h]]], np.float32)
    pts = cv2.perspectiveTransform(corners, _homography(name, pose, crop))[0]
    return [round(float(v), 1) for v in (*pts.min(axis=0), *pts.max(axis=0))]


@functools.lru_cache(maxsize=None)
def _mask(name: str, crop: tuple[float, float]) -> np.ndarray:
    """Soft elliptical alpha in photo coordinates: a vignette, so no hard card edge shows around the face."""
    img = _read_image(_photo_file(name))
    rect = _crop_rect(name, crop)
    centre, half = rect.mean(axis=0), (rect[2] - rect[0]) / 2
    m = np.zeros(img.shape[:2], np.float32)
    cv2.ellipse(m, tuple(int(v) for v in centre), tuple(int(v) for v in half * 0.85), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), 0.08 * float(half.min()))


def _background(rng: np.random.Generator, photo: np.ndarray) -> np.ndarray:
    """Defocused-room backdrop: a dim gradient in the photo's colours plus soft blobs and faint grain."""
    base = photo.reshape(-1, 3).mean(axis=0) * 0.55
    ramp = np.linspace(0.7, 1.2, SIZE, dtype=np.float32)
    bg = base[None, None, :] * ramp[:, None, None] * np.ones((1, SIZE, 1), np.float32)
    # Blobs vary mostly in brightness, with only a faint tint, like out-of-focus furniture.
    coarse = rng.normal(0, 1, (5, 5, 1)) * 18 + rng.normal(0, 1, (5, 5, 3)) * 5
    blobs = cv2.resize(coarse.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0, 3, (SIZE, SIZE, 3)).astype(np.float32), (0, 0), 1.0)
    return np.clip(bg + blobs + grain, 0, 255).astype(np.float32)


def _light_lut(p: float) -> np.ndarray:
    """Dark, cool start to bright, warm end: gain and gamma ramp plus a slight colour cast."""
    gain, gamma = 0.5 + 0.65 * p, 1.5 - 0.6 * p
    cast = np.array([1.08 - 0.16 * p, 1.0, 0.92 + 0.16 * p])  # BGR
    v = (np.arange(256, dtype=np.float64) / 255.0) ** gamma * gain * 255.0
    return np.clip(v[:, None] * cast[None, :], 0, 255).astype(np.uint8).reshape(256, 1, 3)


def _render(frame: _Frame, bg: np.ndarray) -> np.ndarray:
    canvas = bg
    for name, pose, crop in frame.layers:
        h = _homography(name, pose, crop)
        img = cv2.warpPerspective(_read_image(_photo_file(name)), h, (SIZE, SIZE), flags=cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        alpha = cv2.warpPerspective(_mask(name, crop), h, (SIZE, SIZE), flags=cv2.INTER_LINEAR)[..., None]
        canvas = canvas + (img - canvas) * alpha  # alpha blend, one temporary fewer
    out = np.clip(canvas, 0, 255).astype(np.uint8)
    if frame.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), frame.blur)
    if frame.light is not None:
        out = cv2.LUT(out, _light_lut(frame.light))
    return out


def _write_mp4(path: pathlib.Path, frames: list[_Frame], bg: np.ndarray) -> None:
    tmp = partial(path)
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=SAMPLE_FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.options = {"crf": "18", "preset": "medium"}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(_render(f, bg), format="bgr24")))
        container.mux(stream.encode())
    os.replace(tmp, path)


def _smooth(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def _plan_clips(rng: np.random.Generator) -> dict[str, tuple[list[_Frame], list[str]]]:
    """Frame plans per clip id, with the clip's conditions."""
    # Each moving face gets its own sinusoid phases, so no two clips move alike.
    p1, p2, p4, pa, pb = (rng.uniform(0, 2 * math.pi, len(_PERIODS)) for _ in range(5))
    centre, width = (256.0, 240.0), 180.0  # face ~150-210 px wide, bounds up to ~270 when rotated
    motion = [_Frame([("astronaut", _wobble(i, p1, centre, width), _CROP)]) for i in range(N_FRAMES)]
    blur, gone = range(30, 45), range(60, 80)  # 0.6 s blurred, 0.8 s without a face
    light = [_Frame([] if i in gone else [("astronaut", _wobble(i, p2, centre, width), _CROP)],
                    light=i / (N_FRAMES - 1), blur=4.0 if i in blur else 0.0) for i in range(N_FRAMES)]
    # Intruder: A alone and centred, then shrinks to the left while B slides in from the right, larger.
    intruder = []
    start, end = int(0.4 * N_FRAMES), int(0.4 * N_FRAMES) + 14  # A's move; B's slide takes the first 10 frames
    b_crop = (1.6, 2.2)  # narrower than usual so B's shoulders never cover A's face
    for i in range(N_FRAMES):
        u = _smooth((i - start) / (end - start))
        a_pose = _wobble(i, pa, (256 - 150 * u, 240 + 10 * u), 190 - 70 * u, 0.6 - 0.35 * u)
        layers = [(_PERSON_A, a_pose, _CROP)]
        if i >= start:
            slide = min((i - start) / 10, 1.0)
            # ease-out: B enters fast and settles, so its face is cut by the edge for only a few frames
            b = _wobble(i, pb, (368 + 300 * (1 - slide) ** 2, 250), 205, 0.25)
            layers.append((_PERSON_B, b, b_crop))
        intruder.append(_Frame(layers))
    third = [_Frame([(_PERSON_C, _wobble(i, p4, centre, width), _CROP)]) for i in range(N_FRAMES)]
    return {"astronaut_motion": (motion, ["motion"]),
            "astronaut_light_blur": (light, ["motion", "lighting", "blur", "no_face"]),
            "t1_intruder": (intruder, ["motion", "intruder"]),
            "t1_face2_motion": (third, ["motion"])}


def _annotate(clip_id: str, frames: list[_Frame], conditions: list[str]) -> dict:
    """sample.json entry for a rendered clip, from the known geometry."""
    boxes: dict[str, dict[str, list[float]]] = {}
    for i, f in enumerate(frames):
        for name, pose, crop in f.layers:
            box = _face_box(name, pose, crop)
            if box[2] > 0 and box[0] < SIZE and box[3] > 0 and box[1] < SIZE:  # at least partly in view
                boxes.setdefault(name, {})[str(i)] = box
    names = list(boxes)  # first seen is the main person
    persons = [{"photo": n, "role": "main" if k == 0 else "intruder",
                "frames": [min(map(int, boxes[n])), max(map(int, boxes[n]))],
                "partial_frames": [int(i) for i, b in boxes[n].items()
                                   if min(b[:2]) < 0 or max(b[2:]) > SIZE]} for k, n in enumerate(names)]
    entry = {"file": f"videos/{clip_id}.mp4", "clip_id": clip_id, "n_frames": len(frames), "photos": names,
             "conditions": conditions, "expected_status": "ok", "persons": persons,
             "no_face_frames": [i for i, f in enumerate(frames) if not f.layers],
             "blur_frames": [i for i, f in enumerate(frames) if f.blur > 0],
             "main_face_boxes": boxes[names[0]]}
    if len(names) > 1:
        entry["intruder_face_boxes"] = boxes[names[1]]
    return entry


def _broken_entry(clip_id: str, status: str) -> dict:
    return {"file": f"videos/{clip_id}.mp4", "clip_id": clip_id, "n_frames": 0, "photos": [],
            "conditions": [status], "expected_status": status, "persons": [],
            "no_face_frames": [], "blur_frames": [], "main_face_boxes": {}}


def _write_corrupt(path: pathlib.Path, donor: pathlib.Path, rng: np.random.Generator) -> None:
    """A real ftyp box (so the file sniffs as MP4) followed by noise: no decoder can find a frame in it."""
    head = donor.read_bytes()[:64]
    ftyp_len = int.from_bytes(head[:4], "big") if head[4:8] == b"ftyp" else 32
    atomic_write_bytes(path, head[:ftyp_len] + rng.bytes(50_000), durable=False)


def make_sample(out: pathlib.Path, seed: int = 0) -> dict:
    """Writes out/videos/*.mp4 and out/sample.json; returns the sample.json content as a dict."""
    out, rng, clips = pathlib.Path(out), np.random.default_rng(seed), []
    plans = _plan_clips(rng)
    # locked until the marker is gone (another writer would remove it, or mix clips), checked, marked
    with writing_sample(out, seed, [f"{name}.mp4" for name in (*plans, "corrupt", "empty")]):
        videos = out / "videos"
        for clip_id, (frames, conditions) in plans.items():
            first = frames[0].layers[0][0]
            _write_mp4(videos / f"{clip_id}.mp4", frames, _background(rng, _read_image(_photo_file(first))))
            clips.append(_annotate(clip_id, frames, conditions))
            log.info("wrote %s (%d frames)", clip_id, len(frames))
        _write_corrupt(videos / "corrupt.mp4", videos / "astronaut_motion.mp4", rng)
        atomic_write_bytes(videos / "empty.mp4", b"", durable=False)
        clips += [_broken_entry("corrupt", "decode_error"), _broken_entry("empty", "empty")]
        sample = {"version": 1, "generator": "mfhq.sample", "seed": seed, "fps": SAMPLE_FPS, "size": [SIZE, SIZE],
                  "photos": photo_provenance(), "clips": clips}
        write_index(out, sample)  # last: it removes the marker
    return sample
