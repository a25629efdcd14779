"""omniid-eval's contact sheets: per identity, inputs | ground truth | one row of generations per
representation and k (the table is omniid.eval_table's, the HTML report omniid.eval_html's)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

TILE = 112
BANNER = 18  # px per line of the warning on top of a sheet (random weights)


def _tile(image) -> np.ndarray:
    from PIL import Image

    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    return np.asarray(image.convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC))


def sheet(path: Path, inputs: list, targets: list, rows: list[tuple[str, list]], note: str | None = None) -> Path:
    """inputs | ground truth | one row per (representation, k) of generations, labelled on the left;
    `note` (random weights) printed in red across the top."""
    import cv2
    from PIL import Image

    label_w = 160
    lines = [("inputs", inputs), ("ground truth", targets)] + rows
    width = label_w + TILE * max(len(images) for _, images in lines)
    banner = textwrap.wrap(note, int(width / 7)) if note else []
    top = BANNER * len(banner) + (6 if banner else 0)
    canvas = np.full((top + TILE * len(lines), width, 3), 255, np.uint8)
    for i, text in enumerate(banner):
        cv2.putText(canvas, text, (4, 14 + BANNER * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (200, 0, 0), 1, cv2.LINE_AA)
    for r, (label, images) in enumerate(lines):
        y = top + r * TILE
        cv2.putText(canvas, label[:22], (4, y + TILE // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for c, image in enumerate(images):
            canvas[y:y + TILE, label_w + c * TILE: label_w + (c + 1) * TILE] = _tile(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
