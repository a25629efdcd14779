"""The clip where a second person walks in and dominates keeps only the first person."""
from __future__ import annotations

import duckdb
import numpy as np

from mfhq.geometry import box_iou


def test_intruder_is_dropped_and_only_the_first_person_is_kept(sample_run, sample_meta):
    clip = next(c for c in sample_meta["clips"] if c["clip_id"] == "t1_intruder")
    intruder = next(p for p in clip["persons"] if p["role"] == "intruder")
    partial = set(intruder.get("partial_frames", []))
    rows = duckdb.connect().execute(
        f"SELECT frame_index, bbox, kept, drop_reason FROM read_parquet('{sample_run}/faces/*.parquet') "
        "WHERE clip_id = 't1_intruder'"
    ).fetchall()
    intruder_rows = 0
    for frame, bbox, kept, reason in rows:
        box = np.array(bbox, np.float64)
        main = clip["main_face_boxes"].get(str(frame))
        other = clip.get("intruder_face_boxes", {}).get(str(frame))
        if kept:
            assert main is not None and box_iou(np.array(main, float), box[None])[0] > 0.4, (frame, bbox)
        if other is not None and frame not in partial and box_iou(np.array(other, float), box[None])[0] > 0.4:
            intruder_rows += 1
            assert not kept and reason == "other_identity", (frame, bbox)
    # The intruder is larger than the first person in these frames: a largest-face rule would fail.
    assert intruder_rows >= 8
    assert sum(1 for r in rows if r[2]) >= 18


def _batch(boxes_per_frame, embeddings_per_frame, state=None):
    from pathlib import Path

    from mfhq.records import Clip
    from mfhq.stages.base import ClipState, FaceBatch

    counts = [len(b) for b in boxes_per_frame]
    batch = FaceBatch(
        Clip("folder", "c", Path("c.mp4"), "c"), np.arange(len(counts)), np.zeros((len(counts), 4, 4, 3), np.uint8),
        25.0, state or ClipState(),
    )
    batch.frame_pos = np.repeat(np.arange(len(counts)), counts)
    batch.boxes = np.array([b for frame in boxes_per_frame for b in frame], np.float32)
    batch.embeddings = np.array([e for frame in embeddings_per_frame for e in frame], np.float32)
    batch.drop_reason = [None] * len(batch.boxes)
    batch.similarity = np.full(len(batch.boxes), np.nan, np.float32)
    batch.scores = np.ones(len(batch.boxes), np.float32)
    return batch


def _unit(*values):
    v = np.array(values, np.float64)
    return v / np.linalg.norm(v)


def test_track_keeps_a_weak_match_in_place_but_not_a_stranger():
    from mfhq.config import IdentityConfig
    from mfhq.stages.identity import IdentityStage

    person, weak = _unit(1, 0, 0), _unit(0.3, 0.95, 0)  # cosine 0.30: under 0.363, over the 0.2 floor
    here, there = [100, 100, 200, 200], [300, 100, 400, 200]
    stage = IdentityStage(IdentityConfig())
    batch = stage(_batch([[here], [here], [there]], [[person], [weak], [weak]]))
    assert batch.drop_reason == [None, None, "other_identity"]
    # After a gap longer than track_max_gap the track is gone: the weak match is dropped.
    batch = stage(_batch([[here], [], [], [], [here]], [[person], [], [], [], [weak]]))
    assert batch.drop_reason == [None, "other_identity"]
