"""Synthetic extract runs for the curation tests: real Parquet shards in the run schemas.

A `Person` is an embedding direction; each clip shows one person from one source video, with
poses spread on purpose (two pose blobs plus a spread) so that picking matters.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mfhq.manifest.clip_means import fill_clip_rows
from mfhq.manifest.io import atomic_write_arrow, atomic_write_json, atomic_write_table
from mfhq.records import CLIP_SCHEMA, FACE_SCHEMA, SCHEMA_VERSION

DIM = 128  # random people: chance cosines stay far under the merge threshold


@dataclass
class ClipSpec:
    source: str
    clip_id: str
    video_key: str
    person: int
    faces: int = 30
    split: str | None = None
    dropped: int = 2   # faces dropped as other_identity (another person in frame)
    person_key: str | None = None  # the source's person id within the video (VFHQ's P<pid>)
    also: int | None = None  # a second person blended in equally: a face between two people


def person_vector(person: int) -> np.ndarray:
    v = np.random.default_rng(1000 + person).normal(size=DIM)
    return v / np.linalg.norm(v)


def clip_rows(spec: ClipSpec, seed: int) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(seed)
    base = person_vector(spec.person)
    if spec.also is not None:
        base = base + person_vector(spec.also)
        base = base / np.linalg.norm(base)
    faces = []
    n = spec.faces + spec.dropped
    # Most frames near frontal, some turned: random picking tends to take the frontal crowd.
    yaw = np.where(rng.random(n) < 0.7, rng.normal(0, 3, n), rng.uniform(-60, 60, n))
    pitch = np.where(rng.random(n) < 0.7, rng.normal(0, 2, n), rng.uniform(-25, 25, n))
    roll = rng.normal(0, 5, n)
    for i in range(n):
        kept = i < spec.faces
        emb = (base if kept else person_vector(spec.person + 500)) + rng.normal(0, 0.15, DIM)
        emb = emb / np.linalg.norm(emb)
        faces.append({
            "source": spec.source, "clip_id": spec.clip_id, "video_key": spec.video_key,
            "frame_index": i * 5, "time_sec": i * 0.2, "face_index": 0 if kept else 1, "kept": kept,
            "drop_reason": None if kept else "other_identity", "det_score": 0.9,
            "bbox": [0.0, 0.0, 200.0, 200.0], "landmarks": [float(x) for x in range(10)], "face_size": 200.0,
            "identity_similarity": 0.9, "yaw": float(yaw[i]), "pitch": float(pitch[i]), "roll": float(roll[i]),
            "quality": float(rng.uniform(0.2, 0.9)), "embedding": emb.astype(np.float32).tolist(),
            "crop_path": f"crops/{spec.source}/{spec.clip_id}/{i * 5:06d}_0.jpg" if kept else None,
            "mask_path": f"masks/{spec.source}/{spec.clip_id}/{i * 5:06d}_0.png" if kept else None,
            "align_template": "arcface", "provenance": "synthetic@test",
        })
    clip = {
        "source": spec.source, "clip_id": spec.clip_id, "video_key": spec.video_key, "person_key": spec.person_key,
        "video_path": f"/videos/{spec.clip_id}.mp4", "split": spec.split, "status": "ok", "reason": None,
        "n_frames_read": n, "n_faces_detected": n, "n_faces_kept": spec.faces, "duration_sec": n * 0.2,
        "fps": 25.0, "width": 512, "height": 512, "decoder": "synthetic",
        "stage_seconds": [("decode", 0.1 * n), ("detect", 0.3 * n)], "provenance": "synthetic@test",
    }
    return faces, clip


def write_run(run_dir: Path, specs: list[ClipSpec], shard_size: int = 3) -> Path:
    """A finished run folder: run.json, faces/ and clips/ shards, done markers."""
    run_dir = Path(run_dir)
    plan = {}
    for n, begin in enumerate(range(0, len(specs), shard_size)):
        plan[f"s-{n:05d}"] = [f"{s.source}/{s.clip_id}" for s in specs[begin:begin + shard_size]]
        faces, clips = [], []
        for k, spec in enumerate(specs[begin:begin + shard_size]):
            f, c = clip_rows(spec, seed=begin + k)
            faces += f
            clips.append(c)
        face_table = pa.Table.from_pylist(faces, schema=FACE_SCHEMA)
        fill_clip_rows(face_table, clips)  # each clip's embedding sum, as extract's shard writer does
        atomic_write_arrow(run_dir / "faces" / f"s-{n:05d}.parquet", face_table)
        atomic_write_table(run_dir / "clips" / f"s-{n:05d}.parquet", clips, CLIP_SCHEMA)
        atomic_write_json(run_dir / "done" / f"s-{n:05d}.json", {"clips": len(clips)})
    atomic_write_json(run_dir / "plan.json", plan)
    atomic_write_json(run_dir / "run.json", {"schema_version": SCHEMA_VERSION, "code_version": "test",
                                             "provenance": "synthetic@test", "config_fingerprint": "test",
                                             "state": "complete"})
    return run_dir


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
