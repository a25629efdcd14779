"""omniid-eval's contact sheets: per identity, inputs | ground truth | one row of generations per
representation and k (the table is omniid.eval_table's, the HTML report omniid.eval_html's)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

TILE = 112
BANNER = 18  # px per line of the warning on top of a sheet (random weights)
LABEL_W = 160  # px left of the tiles for a row's label
LABEL_LINE = 16  # px per line of a row's label: a TILE holds 7
FONT_SCALE = 0.45


def _tile(image) -> np.ndarray:
    from PIL import Image

    from omniid.photos import as_shown, open_photo

    # as viewers show it: an input photo stored sideways with an EXIF orientation is shown upright
    image = as_shown(image)[0] if isinstance(image, Image.Image) else open_photo(image)[0]
    return np.asarray(image.resize((TILE, TILE), Image.Resampling.BICUBIC))


def label_lines(label: str) -> list[str]:
    """A row's label in lines that each fit LABEL_W, broken at spaces (a word too wide for a line
    at characters). Every character is kept: a label cut short lost its end, the `k=5` of
    `omniid (ControlNet) k=5`, and rows of every k read alike."""
    import cv2

    def fits(text: str) -> bool:
        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)[0][0] <= LABEL_W - 8

    lines: list[str] = []
    for word in label.split(" "):
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
            continue
        lines.append("")
        for char in word:
            if lines[-1] and not fits(lines[-1] + char):
                lines.append("")
            lines[-1] += char
    return lines


def sheet(path: Path, inputs: list, targets: list, rows: list[tuple[str, list]], note: str | None = None) -> Path:
    """inputs | ground truth | one row per (representation, k) of generations, labelled on the left;
    `note` (random weights) printed in red across the top."""
    import cv2
    from PIL import Image

    label_w = LABEL_W
    lines = [("inputs", inputs), ("ground truth", targets)] + rows
    width = label_w + TILE * max(len(images) for _, images in lines)
    banner = textwrap.wrap(note, int(width / 7)) if note else []
    top = BANNER * len(banner) + (6 if banner else 0)
    canvas = np.full((top + TILE * len(lines), width, 3), 255, np.uint8)
    for i, text in enumerate(banner):
        cv2.putText(canvas, text, (4, 14 + BANNER * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (200, 0, 0), 1, cv2.LINE_AA)
    for r, (label, images) in enumerate(lines):
        y = top + r * TILE
        texts = label_lines(label)[:TILE // LABEL_LINE]
        first = y + TILE // 2 + 5 - LABEL_LINE * (len(texts) - 1) // 2  # the lines centred on the row
        for i, text in enumerate(texts):
            cv2.putText(canvas, text, (4, first + LABEL_LINE * i), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, (0, 0, 0), 1,
                        cv2.LINE_AA)
        for c, image in enumerate(images):
            canvas[y:y + TILE, label_w + c * TILE: label_w + (c + 1) * TILE] = _tile(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
