"""omniid-eval's checkpoint rows say their step: rows that share a representation are each labelled
with it (before, the first kept the bare name: `omniid` beside `omniid (step-00000004)`), and every
checkpoint row has a `step` column in table.md / table.csv."""
from __future__ import annotations

import pandas as pd
import pytest

from omniid.eval_cli import eval_main
from omniid.eval_rows import EvalRows, _labels
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             write_eval_set)


@pytest.fixture(scope="module")
def run(sample_manifest, tmp_path_factory):
    """A tiny flow run with two step folders, 2 and 4."""
    from omniid.cli import main

    out = tmp_path_factory.mktemp("flow") / "run"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "flow", "--out", str(out),
                 "--steps", "4", "--batch-size", "1", "--eval-every", "100", "--save-every", "2"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000004"]
    return out


def test_two_steps_of_one_run_are_each_labelled_with_their_step(run):
    steps = [str(run / "checkpoints" / "step-00000002"), str(run / "checkpoints" / "step-00000004")]
    assert EvalRows(steps, []).labels == ["omniid (step 2)", "omniid (step 4)"]
    assert EvalRows([str(run)], []).labels == ["omniid"]  # a name no other row shares stays as it is


def test_labels_stay_unique_when_steps_and_runs_tie():
    rows = [("omniid", False, 4, "a", "x/a"), ("omniid", False, 4, "b", "x/b"), ("clip", False, 4, "a", "x/c"),
            ("omniid", True, 2, "c", "x/d"), ("omniid", False, 4, "b", "y/b"), ("omniid", False, 4, "b", "y/b")]
    assert _labels(rows) == ["omniid (a, step 4)", "omniid (b, step 4)", "clip", "omniid (ControlNet)",
                             "omniid (y/b, step 4)", "omniid (y/b, step 4)'"]


def test_every_checkpoint_row_of_the_table_says_its_step(run, kept_faces, sample_run, tmp_path):
    (tmp_path / "set").mkdir()
    evalset = write_eval_set(tmp_path / "set", kept_faces, sample_run, identities=2, faces=2)
    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(run / "checkpoints" / "step-00000002"), str(run), "--manifest",
                      str(evalset), "--out", str(out), "--inputs", "1", "--steps", "2", "--bootstrap", "10"]) == 0
    table = pd.read_csv(out / "table.csv", keep_default_na=False)
    assert table[["representation", "step"]].drop_duplicates().values.tolist() == [
        ["omniid (step 2)", "2"], ["omniid (step 4)", "4"], ["copy-input", ""]]
    text = (out / "table.md").read_text()
    assert "| Representation | setting | step | k |" in text
    assert "| omniid (step 2) | decoder-only | 2 | 1 |" in text and "| omniid (step 4) | decoder-only | 4 | 1 |" in text
    assert "| omniid |" not in text  # no row without its step, in the swap table either
