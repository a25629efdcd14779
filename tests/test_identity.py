"""The clip where a second person walks in and dominates keeps only the first person."""
from __future__ import annotations

import duckdb
import numpy as np

from mfhq.stages.identity import box_iou


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
