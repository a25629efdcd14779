"""omniid-eval's tables (the layout of the paper's Table 1) and contact sheets.

Aggregation per (representation, k), over every scored row (rows whose ground truth has a face):
  id_similarity  mean cosine to the ground truth, a generation without a face counting 0
  sim_ref        mean cosine to the nearest input (copy-paste check), 0 without a face
  pose_error     mean |Δyaw| + |Δpitch| + |Δroll| (deg) over rows where both faces were found
  no_face_rate   share of generations (all rows) without a detected face
  n              rows (generated images)
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

METRICS = ("id_similarity", "sim_ref", "pose_error", "no_face_rate", "n")
TITLES = {"id_similarity": "ID sim", "sim_ref": "Sim(Ref)", "pose_error": "Pose err", "no_face_rate": "No face",
          "n": "n"}
TILE = 112


def aggregate(table: pa.Table, representation: str, k: int) -> dict[str, float]:
    rows = [r for r in table.to_pylist() if r["representation"] == representation and r["k"] == k]
    scored = [r for r in rows if r["gt_face"]]
    posed = [r["pose_error"] for r in scored if r["face"]]

    def mean(values) -> float:
        return float(np.mean(values)) if len(values) else float("nan")

    return {"id_similarity": mean([r["id_similarity"] for r in scored]),
            "sim_ref": mean([r["sim_ref"] for r in scored]),
            "pose_error": mean(posed),
            "no_face_rate": mean([0.0 if r["face"] else 1.0 for r in rows]),
            "n": float(len(rows))}


def write_tables(table: pa.Table, out: Path, representations: list[str], ks: list[int], models: dict,
                 protocol) -> None:
    cells = {(rep, k): aggregate(table, rep, k) for rep in representations for k in ks}
    # which setting made each row (omniid.eval_setting): Table 1-like with a ControlNet, or decoder-only
    setting = dict(zip(table.column("representation").to_pylist(), table.column("setting").to_pylist()))
    header = ["representation", "setting"] + [f"{m}@k{k}" for m in METRICS for k in ks]
    with open(out / "table.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for rep in representations:
            writer.writerow([rep, setting.get(rep, "")] + [repr(cells[rep, k][m]) for m in METRICS for k in ks])

    def fmt(value: float, metric: str) -> str:
        if math.isnan(value):
            return "–"
        return f"{int(value)}" if metric == "n" else f"{value:.1f}" if metric == "pose_error" else f"{value:.3f}"

    shown = METRICS[:-1]
    lines = [
        "| Representation | Setting | " + " | ".join(f"{TITLES[m]} k={k}" for m in shown for k in ks) + " |",
        "|---|---|" + "---:|" * (len(shown) * len(ks)),
    ]
    for rep in representations:
        lines.append(f"| {rep} | {setting.get(rep, '')} | " + " | ".join(fmt(cells[rep, k][m], m) for m in shown for k in ks) + " |")
    n = {int(cells[rep, k]["n"]) for rep in representations for k in ks}
    guidance = "each run's own (settings.json)" if protocol.guidance is None else protocol.guidance
    lines += [
        "",
        f"ID sim and Sim(Ref): cosine with {models['identity_model']} embeddings (ground truth / nearest input); "
        f"pose error: |Δyaw|+|Δpitch|+|Δroll| in degrees with {models['pose_model']} (the paper used Hopenet: "
        f"absolute values are not comparable); faces found with {models['detector']} "
        f"(mfhq pipeline `{models['pipeline']}`).",
        f"{len({r['identity_id'] for r in table.to_pylist()})} identities, {protocol.targets} targets x "
        f"{protocol.samples} sample(s) each, {sorted(n)} images per cell; steps {protocol.steps}, guidance "
        f"{guidance}, seeds {protocol.seed} + 1000 x target + sample. `copy-input` scores the first input "
        f"itself (what copy-pasting earns).",
    ]
    (out / "table.md").write_text("\n".join(lines) + "\n")


def _tile(image) -> np.ndarray:
    from PIL import Image

    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    return np.asarray(image.convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC))


def sheet(path: Path, inputs: list, targets: list, rows: list[tuple[str, list]]) -> Path:
    """inputs | ground truth | one row per (representation, k) of generations, labelled on the left."""
    import cv2
    from PIL import Image

    label_w = 160
    lines = [("inputs", inputs), ("ground truth", targets)] + rows
    width = label_w + TILE * max(len(images) for _, images in lines)
    canvas = np.full((TILE * len(lines), width, 3), 255, np.uint8)
    for r, (label, images) in enumerate(lines):
        y = r * TILE
        cv2.putText(canvas, label[:22], (4, y + TILE // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for c, image in enumerate(images):
            canvas[y:y + TILE, label_w + c * TILE: label_w + (c + 1) * TILE] = _tile(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
