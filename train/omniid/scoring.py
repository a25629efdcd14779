"""The scores of one image in omniid-eval, with each recogniser: one row of results.parquet.

Per recogniser R (an identity model of mfhq's registry, `--recognisers`):
  id_similarity:R  cosine to the ground truth; 0 without a generated face (a failure is penalised,
                   as in the paper's protocol; counted as no face)
  sim_ref:R        cosine to the nearest input; NaN without a generated face (left out of the mean,
                   as copy-paste: a failed generation must not read as "copies less")
  copy_paste:R     MultiID-Bench's copy-paste score (omniid.copypaste); NaN without a face
  degenerate:R     the ground truth lies within a degree of that input, so copy_paste is NaN
`id_similarity` and `sim_ref` without a suffix are the first recogniser's. Beside them the pose
error to the ground truth and the pose gap: |Δyaw| + |Δpitch| + |Δroll| between the ground truth
and its nearest input (in pose) among the first k, what the pose-gap curve bins.
`input_preprocessing`: how the generator read each of its k inputs (`omniid.face_inputs.Prepared.record`:
given as an aligned crop, found to be one, or a face detected and aligned, with the faces found, the
box taken and the EXIF orientation applied); null on the reference rows, which no encoder reads.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from omniid.copypaste import copy_paste
from omniid.metrics import Face, cosine, pose_error

PER_RECOGNISER = (("id_similarity", pa.float64()), ("sim_ref", pa.float64()), ("copy_paste", pa.float64()),
                  ("degenerate", pa.bool_()))
# one input's `omniid.face_inputs.Prepared.record()`
PREPARED = pa.struct([("how", pa.string()), ("faces_found", pa.int32()), ("face_box", pa.list_(pa.float64())),
                      ("exif_orientation", pa.int32())])
BASE_FIELDS = [
    ("identity_id", pa.string()), ("representation", pa.string()), ("setting", pa.string()),
    ("checkpoint", pa.string()),
    ("k", pa.int32()), ("target", pa.int32()), ("sample", pa.int32()), ("seed", pa.int64()),
    ("target_path", pa.string()), ("input_paths", pa.list_(pa.string())),
    ("input_preprocessing", pa.list_(PREPARED)), ("image_path", pa.string()),
    ("face", pa.bool_()), ("gt_face", pa.bool_()),
    ("id_similarity", pa.float64()), ("sim_ref", pa.float64()), ("pose_error", pa.float64()),
    ("pose_gap", pa.float64()),
    ("yaw", pa.float64()), ("pitch", pa.float64()), ("roll", pa.float64()),
    ("gt_yaw", pa.float64()), ("gt_pitch", pa.float64()), ("gt_roll", pa.float64()),
]


def row_schema(recognisers: Sequence[str]) -> pa.Schema:
    return pa.schema(BASE_FIELDS + [(f"{metric}:{r}", kind) for r in recognisers for metric, kind in PER_RECOGNISER])


def _vector(face: Face | None, recogniser: str) -> np.ndarray | None:
    if face is None:
        return None
    return face.embeddings.get(recogniser, face.embedding) if face.embeddings else face.embedding


def pose_gap(truth: Face | None, inputs: Sequence[Face | None]) -> float:
    """The smallest summed |Δ| pose (degrees) between the ground truth and an input; NaN if none."""
    gaps = [pose_error(face, truth) for face in inputs if face is not None and truth is not None]
    return min(gaps) if gaps else float("nan")


def _pose(face: Face | None) -> list[float]:
    return [float(v) for v in face.pose] if face is not None else [float("nan")] * 3


def score(face: Face | None, truth: Face | None, inputs: Sequence[Face | None],
          recognisers: Sequence[str]) -> dict:
    """The metric columns of one image (`face`: its face or None) against its ground truth and inputs."""
    out = {"face": face is not None, "gt_face": truth is not None, "pose_error": pose_error(face, truth),
           "pose_gap": pose_gap(truth, inputs),
           **dict(zip(("yaw", "pitch", "roll"), _pose(face))),
           **dict(zip(("gt_yaw", "gt_pitch", "gt_roll"), _pose(truth)))}
    for r in recognisers:
        gen, gt = _vector(face, r), _vector(truth, r)
        refs = [_vector(f, r) for f in inputs]
        sim = float("nan") if gt is None else 0.0 if gen is None else cosine(gen, gt)
        ref = [cosine(gen, v) for v in refs if v is not None] if gen is not None else []
        cp, degenerate = copy_paste(gen, gt, refs)
        out.update({f"id_similarity:{r}": sim, f"sim_ref:{r}": max(ref) if ref else float("nan"),
                    f"copy_paste:{r}": cp, f"degenerate:{r}": degenerate})
    out["id_similarity"], out["sim_ref"] = out[f"id_similarity:{recognisers[0]}"], out[f"sim_ref:{recognisers[0]}"]
    return out
