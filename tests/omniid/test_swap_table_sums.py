"""The identity-swap table's Margin is its Own minus its Swapped, as the note above it says, also
when identities have unequal numbers of measured pairs (the labels audit)."""
from __future__ import annotations

import pandas as pd
import pytest

from omniid.evaluate import Protocol
from omniid.swap_eval import summarise, write_swap


def _pair(identity: str, target: int, own: float, swapped: float) -> dict:
    return {"identity_id": identity, "representation": "omniid", "k": 1, "target": target, "sample": 0, "seed": 0,
            "donor_id": "b" if identity == "a" else "a", "image_path": "x.png", "face": True, "own_face": True,
            "gt_face": True, "id_similarity_own": own, "id_similarity_swapped": swapped, "margin": own - swapped}


def test_the_swap_tables_margin_is_own_minus_swapped_with_unequal_pairs_per_identity(tmp_path):
    """Identity a has one measured pair, b three (the others' generations had a face): the margin
    is averaged per identity, then over identities, and so must Own and Swapped be, or the row
    reads Own 0.600, Swapped 0.325, Margin +0.450."""
    rows = [_pair("a", 0, 0.9, 0.1)] + [_pair("b", j, 0.5, 0.4) for j in range(3)]
    protocol = Protocol(inputs=(1,), swap_k=1, bootstrap=50)
    summary = summarise(rows, ["omniid"], protocol, "sface")
    (tmp_path / "table.md").write_text("main table\n")
    write_swap(tmp_path, rows, summary, protocol, {})
    line = pd.read_csv(tmp_path / "swap.csv").set_index("representation").loc["omniid"]
    assert line["margin"] == pytest.approx((0.8 + 0.1) / 2)
    assert line["own"] - line["swapped"] == pytest.approx(line["margin"])
    row = next(r for r in (tmp_path / "table.md").read_text().splitlines() if r.startswith("| omniid"))
    own, swapped, margin = (float(cell) for cell in row.strip("|").split("|")[1:4])
    assert own - swapped == pytest.approx(margin, abs=1.5e-3)  # as printed, 3 decimals each
