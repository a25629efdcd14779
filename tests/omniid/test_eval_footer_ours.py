"""The lines under omniid-eval's table label what is ours beside MultiID-Bench's copy-paste score:
which of several inputs is its reference (the one nearest the generation) and the 1-degree rule
that leaves a score out (the labels audit: docs/eval.md says both are ours, the table did not)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from omniid.eval_plan import Fitted, Plan
from omniid.evaluate import Protocol
from omniid.table_notes import footer_lines


def test_the_copy_paste_notes_say_which_choices_are_ours():
    plans = {name: Plan([Path(f"{name}/{i}.jpg") for i in range(3)], [Path(f"{name}/t.jpg")], (1, 3))
             for name in ("a", "b")}
    rows = [{"degenerate:sface": False}]
    metrics = SimpleNamespace(recognisers=["sface"], models={"pose_model": "pnp68", "detector": "yunet-dlib68",
                                                             "pipeline": "sample"})
    lines = footer_lines(Fitted((1, 3), plans, {}, []), rows, metrics, Protocol(inputs=(1, 3)), {}, "‡", None)
    formula = next(line for line in lines if "MultiID-Bench's" in line)
    said = formula.split("MultiID-Bench's", 1)[1].split(". ", 1)[0]  # the sentence giving its formula
    assert "nearest the generation, ours" in said
    left_out = next(line for line in lines if line.startswith("Copy-paste left out"))
    assert "(ours;" in left_out
