"""MultiID-Bench's copy-paste score, from the angles between face embeddings.

    copy_paste = (theta(gen, GT) - theta(gen, ref)) / theta(GT, ref)

theta is the angle (radians) between two unit embeddings. By the triangle inequality on the
sphere the score lies in [-1, 1]: +1 when the generated face is the reference's (it copied the
input), -1 when it is the target's (it followed the ground truth), around 0 in between.

With several references we take the one nearest to the generated face (ours: the benchmark scores
one reference pair at a time), the same reference `Sim(Ref)` uses. When the target is nearly the
reference (theta(GT, ref) under `DEGENERATE_DEG`: a duplicate frame) the ratio means nothing: the
score is NaN and the row is counted as degenerate instead of dividing by (almost) zero.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DEGENERATE_DEG = 1.0  # ours: a target within 1 degree of its reference is that reference


def angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle in radians between two embeddings (normalised here, so any length works)."""
    cos = float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    return math.acos(min(1.0, max(-1.0, cos)))


def copy_paste(generated: np.ndarray | None, truth: np.ndarray | None,
               references: Sequence[np.ndarray | None]) -> tuple[float, bool]:
    """(score, degenerate): NaN without a generated face, a ground truth or a reference face;
    degenerate (and NaN) when the ground truth lies within DEGENERATE_DEG of the chosen reference."""
    refs = [r for r in references if r is not None]
    if generated is None or truth is None or not refs:
        return float("nan"), False
    to_refs = [angle(generated, r) for r in refs]
    nearest = int(np.argmin(to_refs))
    base = angle(truth, refs[nearest])
    if base < math.radians(DEGENERATE_DEG):
        return float("nan"), True
    return (angle(generated, truth) - to_refs[nearest]) / base, False
