"""Dataset-shaped fixtures: the four datasets laid out as their users hold them on disk.

The videos are the bundled sample's generated clips, copied under each dataset's file names.
TalkingHead-1KH metadata may be real (MIT, copied under tests/data/); everything else here is
SYNTHETIC: written by us from the format descriptions in the shared metadata README, because
CelebV-HQ, CelebV-Text and VFHQ forbid redistributing any part of their data. Every synthetic
YouTube id contains "synth" so that no fixture can be mistaken for a real entry.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import duckdb
import numpy as np

from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import SourceProblem

MAIN = "astronaut_motion.mp4"   # 512x512, 25 fps, 100 frames, one face near the centre
OTHER = "t1_face2_motion.mp4"   # another person, same size and length

# SYNTHETIC ids, 11 characters like YouTube's, holding '_' and '-' on purpose.
HQ_RAW, HQ_CUT = "_synthHQ-a1", "synthHQ_b-2"
TXT_RAW = "synthTX-a_1"
TH_RAW, TH_CUT = "-synthTH_a1", "synthTH-b_2"
VF_RAW, VF_CUT = "synthVF-q_1", "synthVF_q-2"
VF_SCALE = 2.0  # the VFHQ meta is written for a 1024x1024 frame; the video is 512x512


def linked_sample_videos(sample_dir: Path, folder: Path, names: tuple[str, ...] = ("astronaut_motion",)) -> Path:
    """`folder`, made, holding links to the named clips of the bundled sample: a --root of just those."""
    folder.mkdir()
    for name in names:
        (folder / f"{name}.mp4").symlink_to(sample_dir / "videos" / f"{name}.mp4")
    return folder


def _copy(videos: Path, name: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(videos / name, dest)


def celebvhq(videos: Path, root: Path) -> Path:
    """SYNTHETIC celebvhq_info.json with two raw-video clips, one cut clip, one missing video
    and two malformed entries, plus the videos."""
    box = {"top": 0.2, "bottom": 0.75, "left": 0.25, "right": 0.75}
    clips = {
        f"{HQ_RAW}_0": {"ytb_id": HQ_RAW, "duration": {"start_sec": 1.0, "end_sec": 3.0}, "bbox": box},
        f"{HQ_RAW}_1_0": {"ytb_id": HQ_RAW, "duration": {"start_sec": 0.28000000000000114, "end_sec": 1.5},
                          "bbox": box},
        f"{HQ_CUT}_0": {"ytb_id": HQ_CUT, "duration": {"start_sec": 52.72, "end_sec": 56.1}, "bbox": box},
        "synthMISSNG_0": {"ytb_id": "synthMISSNG", "duration": {"start_sec": 0.0, "end_sec": 2.0}, "bbox": box},
        "synthREVERS_0": {"ytb_id": "synthREVERS", "duration": {"start_sec": 3.0, "end_sec": 1.0}, "bbox": box},
        "../synthESCAPE_0": {"ytb_id": "synthESCAPE", "duration": {"start_sec": 0.0, "end_sec": 1.0}, "bbox": box},
    }
    for entry in clips.values():
        entry.update(attributes={"appearance": [0, 1], "action": [0], "emotion": {"sep_flag": False, "labels": "neutral"}},
                     version="v0.1")
    info = {"meta_info": {"appearance_mapping": ["Blurry", "Male"], "action_mapping": ["blow"]}, "clips": clips}
    root.mkdir(parents=True, exist_ok=True)
    (root / "celebvhq_info.json").write_text(json.dumps(info, indent=1))
    _copy(videos, MAIN, root / "raw" / f"{HQ_RAW}.mp4")
    _copy(videos, OTHER, root / "processed" / f"{HQ_CUT}_0.mp4")
    return root


def celebvtext(videos: Path, root: Path) -> Path:
    """SYNTHETIC flat celebvtext_info.json (keys with .mp4), a normalised and a pixel box, and a
    pixel box that only the real video size shows to lie outside the frame."""
    duration = {"start_sec": 0.5, "end_sec": 2.5}
    info = {
        f"{TXT_RAW}_0_0.mp4": {"meta_video_names": f"{TXT_RAW}_0", "ytb_id": TXT_RAW, "duration": duration,
                               "bbox": {"top": 0.0, "bottom": 0.8, "left": 0.2, "right": 0.8}, "version": "v0.11"},
        f"{TXT_RAW}_0_1.mp4": {"meta_video_names": f"{TXT_RAW}_0", "ytb_id": TXT_RAW, "duration": duration,
                               "bbox": {"top": 60, "bottom": 420, "left": 90, "right": 420}, "version": "v0.11"},
        f"{TXT_RAW}_0_2.mp4": {"meta_video_names": f"{TXT_RAW}_0", "ytb_id": TXT_RAW, "duration": duration,
                               "bbox": {"top": 600, "bottom": 900, "left": 600, "right": 900}, "version": "v0.11"},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "celebvtext_info.json").write_text(json.dumps(info, indent=2))
    _copy(videos, MAIN, root / "raw" / f"{TXT_RAW}.mp4")
    return root


def talkinghead(videos: Path, root: Path) -> Path:
    """SYNTHETIC tube lines in the real format (boxes in a 720x1280 frame, the chunk is 512x512),
    one real line whose chunk is not on disk, a garbage line and a reversed range."""
    lists = root / "data_list"
    lists.mkdir(parents=True, exist_ok=True)
    train = [f"{TH_RAW}_0000, 720, 1280, 12, 80, 400, 100, 880, 620",
             "--Y9imYnfBw_0000, 720, 1280, 0, 271, 504, 63, 792, 351",  # real line (MIT), no video here
             "this is not a tube line",
             f"{TH_RAW}_0000, 720, 1280, 90, 40, 400, 100, 880, 620"]
    (lists / "train_video_tubes.txt").write_text("\n".join(train))  # no final newline, as upstream
    cut = f"{TH_CUT}_0003_S5_E60_L300_T0_R1000_B700"
    (lists / "val_video_tubes.txt").write_text(f"{TH_CUT}_0003, 720, 1280, 5, 60, 300, 0, 1000, 700\n")
    _copy(videos, MAIN, root / "train" / "1min_clips" / f"{TH_RAW}_0000.mp4")
    _copy(videos, OTHER, root / "val" / "cropped_clips" / f"{cut}.mp4")
    return root


def vfhq_faces(n_frames: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame face box [N, 4] (x1, y1, x2, y2) and 5 landmarks [N, 5, 2] of the sample's
    astronaut clip, from its known geometry: the photo's landmarks warped as its face is."""
    from mfhq.models import create_backend
    from mfhq.sample import _face_box, _homography, _plan_clips, load_photo

    detector = create_backend("detector", "yunet-dlib68")
    detector.setup()
    found = detector.detect([load_photo("astronaut", crop=False)])[0]
    photo_marks = found.landmarks[int(np.argmax(found.scores))].astype(np.float32)
    frames = _plan_clips(np.random.default_rng(0))["astronaut_motion"][0]  # make_sample's seed 0
    boxes, marks = [], []
    for frame in frames[:n_frames]:
        name, pose, crop = frame.layers[0]
        boxes.append(_face_box(name, pose, crop))
        marks.append(cv2.perspectiveTransform(photo_marks[None], _homography(name, pose, crop))[0])
    return np.asarray(boxes), np.asarray(marks)


def _meta_text(ytid: str, frames: range, boxes, marks, crop: tuple[int, int, int, int]) -> str:
    s = VF_SCALE
    lines = [f"Video ID: {ytid}", f"H: {int(512 * s)}", f"W: {int(512 * s)}", "FPS: 25.0", "",
             "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    for f in frames:
        x1, y1, x2, y2 = np.asarray(boxes[f]) * s
        points = " ".join(f"{v:.3f}" for v in (np.asarray(marks[f]) * s).ravel())
        lines.append(f"{f:08d} 0 {x1:.3f} {y1:.3f} {x2 - x1:.3f} {y2 - y1:.3f} {points}")
    lines.append("CROP: " + " ".join(str(int(v * s)) for v in crop))
    return "\n".join(lines) + "\n"


def vfhq(videos: Path, root: Path) -> Path:
    """SYNTHETIC per-clip meta files: a raw-video clip with every frame's box and landmarks
    (train), a cut clip without frame lines (test: the detector runs), a truncated file."""
    boxes, marks = vfhq_faces()
    train, test = root / "meta_info" / "train", root / "meta_info" / "test"
    train.mkdir(parents=True, exist_ok=True)
    test.mkdir(parents=True, exist_ok=True)
    name = f"Clip+{VF_RAW}+P0+C0+F4-96"
    (train / f"{name}.txt").write_text(_meta_text(VF_RAW, range(5, 96), boxes, marks, (96, 80, 416, 400)))
    cut = f"Clip+{VF_CUT}+P3+C1+F100-200"
    (test / f"{cut}.txt").write_text(_meta_text(VF_CUT, range(0), boxes, marks, (0, 0, 512, 512)))
    truncated = _meta_text("synthVF-trc", range(5, 40), boxes, marks, (96, 80, 416, 400))
    (train / "Clip+synthVF-trc+P0+C0+F4-40.txt").write_text(truncated[: len(truncated) // 2])
    _copy(videos, MAIN, root / "videos" / f"{VF_RAW}.mp4")
    _copy(videos, OTHER, root / "clips" / f"{cut}.mp4")
    return root


def all_datasets(videos: Path, root: Path) -> Path:
    """One root holding the four, each under a folder name its users would give it."""
    celebvhq(videos, root / "CelebV-HQ")
    celebvtext(videos, root / "celebvtext")
    talkinghead(videos, root / "TalkingHead-1KH")
    vfhq(videos, root / "vfhq")
    return root


TEST_PRESET = """# tests: the sample backends, few frames per clip, one worker (the suite runs on 2 cores)
name: sources-test
decode:
  fps: 2
  chunk_frames: 8
detect:
  backend: yunet-dlib68
  verify_every: 5
embed:
  backend: sface
align:
  min_face_px: 128
pose:
  backend: pnp5
quality:
  backend: brisque
parsing:
  backend: dlib68-hull
run:
  shard_size: 4
  workers: 1
"""


# Helpers the source tests share.


def scan(name: str, root: Path) -> tuple[dict[str, Clip], dict[str, SourceProblem]]:
    clips, problems = {}, {}
    for item in get_source(name, root).scan():
        (clips if isinstance(item, Clip) else problems)[item.clip_id] = item
    return clips, problems


def scan_unique(name: str, root: Path) -> tuple[dict[str, Clip], dict[str, SourceProblem]]:
    clips, problems = {}, {}
    for item in get_source(name, root).scan():
        bucket = clips if isinstance(item, Clip) else problems
        assert item.clip_id not in clips and item.clip_id not in problems, f"two entries share {item.clip_id}"
        bucket[item.clip_id] = item
    return clips, problems


def run_rows_of(run: Path, view: str, order: str) -> list[dict]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{run}/{view}/*.parquet') ORDER BY {order}").to_arrow_table().to_pylist()


def hq_entry(**changes) -> dict:
    entry = {"ytb_id": "synth_HQ-id", "duration": {"start_sec": 52.72, "end_sec": 56.1},
             "bbox": {"top": 0.0, "bottom": 0.6, "left": 0.3, "right": 1.0}, "version": "v0.1"}
    entry.update(changes)
    return entry


def vfhq_meta(frames=range(11, 14), crop="100 50 400 350", header=True) -> str:
    lines = ["Video ID: synthVF_a-1", "H: 720", "W: 1280", "FPS: 25.0", ""] if header else []
    lines += ["FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    for f in frames:
        lines.append(f"{f:08d} 0 200 100 100 120 230 150 270 150 250 175 235 200 265 200")
    return "\n".join(lines + [f"CROP: {crop}"]) + "\n"


def vfhq_root(tmp_path: Path, metas: dict[str, str]) -> Path:
    for rel, text in metas.items():
        (tmp_path / "meta_info" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "meta_info" / rel).write_text(text)
    return tmp_path
