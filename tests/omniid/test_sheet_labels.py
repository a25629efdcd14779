"""omniid-eval's contact sheets label each row of generations with its representation and k; a
label longer than 22 characters was cut there, so the rows of `omniid (ControlNet) k=1`, `k=3` and
`k=5` all read `omniid (ControlNet) k=` (the labels audit)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from omniid.report import TILE, sheet


def test_rows_whose_labels_differ_only_in_k_are_drawn_differently(tmp_path):
    face = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    labels = [f"omniid (ControlNet) k={k}" for k in (1, 3, 5)] + [f"omniid (runA, step 4) k={k}" for k in (1, 3)]
    path = sheet(tmp_path / "sheet.png", [face], [face], [(label, [face]) for label in labels])
    canvas = np.asarray(Image.open(path))
    label_w = canvas.shape[1] - TILE  # one tile a row: the rest is the label column
    drawn = [canvas[TILE * (2 + r): TILE * (3 + r), :label_w] for r in range(len(labels))]  # after inputs, truth
    assert all((part < 128).any() for part in drawn)  # every label is drawn
    for a in range(len(drawn)):
        for b in range(a + 1, len(drawn)):
            assert not np.array_equal(drawn[a], drawn[b]), (labels[a], labels[b])
