"""Identities seen in training through --init-from: a flow run started from an MTD run trained its
encoder on the MTD run's manifest too. omniid-eval follows state.json's `init_from` to every
ancestor's manifest, labels the rows that any of them saw (naming the run), and says when the
chain cannot be followed instead of reading the row as held out."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from omniid.checkpoint import read_state, resolve_checkpoint
from omniid.cli import main
from omniid.eval_cli import eval_main
from omniid.eval_seen import seen_in_training, seen_labels, seen_line
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             write_eval_set)


def _train(manifest: Path, out: Path, stage: str, *extra: str) -> Path:
    assert main(["--manifest", str(manifest), "--preset", "tiny", "--stage", stage, "--out", str(out),
                 "--eval-every", "100", "--batch-size", "1", "--steps", "2", "--save-every", "2", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(sample_manifest, kept_faces, sample_run, tmp_path_factory) -> dict[str, Path]:
    """An MTD run on the sample manifest (its clips as identities), then a flow run --init-from it on
    another manifest whose identities (id0, id1) the MTD run never saw."""
    root = tmp_path_factory.mktemp("lineage")
    (root / "other").mkdir()
    other = write_eval_set(root / "other", kept_faces, sample_run, identities=2, faces=4).parent / "train.parquet"
    mtd = _train(sample_manifest, root / "mtd", "mtd")
    flow = _train(other, root / "flow", "flow", "--init-from", str(mtd))
    return {"mtd": mtd, "flow": flow, "other": other}


def _identities(manifest: Path) -> list[str]:
    return sorted(set(pq.read_table(manifest, columns=["identity_id"]).column(0).to_pylist()))


def test_eval_labels_identities_the_init_from_run_trained_on(runs, sample_manifest, tmp_path):
    """Before, the flow checkpoint was compared with its own manifest only and read as held out."""
    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(runs["flow"]), "--manifest", str(sample_manifest), "--out", str(out),
                      "--identities", "2", "--inputs", "1,2", "--targets", "1", "--steps", "2", "--no-swap"]) == 0
    mtd_step = str(resolve_checkpoint(runs["mtd"]).resolve())
    settings = json.loads((out / "settings.json").read_text())
    assert settings["seen_in_training"] == {"omniid": {
        "seen": 2, "of": 2, "training_manifest": str(sample_manifest.resolve()),
        "how": "identity_id overlap with its training manifest",
        "by": [{"run": mtd_step, "stage": "mtd", "training_manifest": str(sample_manifest.resolve()), "seen": 2,
                "how": "identity_id overlap with its training manifest"}]}}
    table = (out / "table.md").read_text()
    assert f"IDENTITIES SEEN IN TRAINING: held-out numbers do not apply to these rows. omniid: 2 of 2 (seen by " \
           f"--init-from {mtd_step} (mtd stage)" in table.split("| Representation", 1)[0]
    assert "| omniid | decoder-only | 2 | saw 2/2 identities (mtd) |" in table


def test_every_run_of_the_chain_is_named_and_its_own_manifest_still_counts(runs, sample_manifest):
    state = read_state(resolve_checkpoint(runs["flow"]))
    own, theirs = _identities(runs["other"]), _identities(sample_manifest)
    assert not set(own) & set(theirs)
    seen = seen_in_training({"omniid": state}, sample_manifest, [own[0], theirs[0], "someone-else"])["omniid"]
    assert (seen["seen"], seen["of"]) == (2, 3)
    assert [(link["run"] is None, link["stage"], link["seen"]) for link in seen["by"]] == [(True, "flow", 1),
                                                                                          (False, "mtd", 1)]
    assert seen_labels({"omniid": seen}, ["omniid"]) == {"omniid": {"training": "saw 2/3 identities (flow, mtd)"}}
    assert seen_in_training({"omniid": state}, sample_manifest, ["someone-else"]) == {}  # held out all along


def test_a_chain_that_cannot_be_followed_is_said_not_read_as_held_out(runs, sample_manifest, tmp_path):
    """The MTD step folder deleted (here: a copy of the flow checkpoint's record pointing at one
    that was copied and then deleted), or its state.json older than the manifest record."""
    state = read_state(resolve_checkpoint(runs["flow"]))
    gone = shutil.copytree(resolve_checkpoint(runs["mtd"]), tmp_path / "mtd-copy" / "step-00000002")
    shutil.rmtree(gone)
    broken = {**state, "init_from": str(gone)}
    seen = seen_in_training({"omniid": broken}, sample_manifest, _identities(sample_manifest)[:2])
    assert seen["omniid"]["seen"] == 0 and seen["omniid"]["by"] == []
    assert seen["omniid"]["unfollowed"] == (f"its --init-from {gone.resolve()} is gone (no state.json), so the "
                                            "manifests of the runs it started from cannot be compared")
    assert seen_labels(seen, ["omniid"]) == {"omniid": {"training": "unknown: its --init-from not checked"}}
    line = seen_line(seen)
    assert line.startswith("TRAINING DATA NOT FULLY CHECKED: these rows may have seen the identities in a run "
                           f"they started from. omniid: its --init-from {gone.resolve()} is gone")
    assert "IDENTITIES SEEN IN TRAINING" not in line
    # an ancestor saved before the manifest record: said too
    old = shutil.copytree(resolve_checkpoint(runs["mtd"]), tmp_path / "old" / "step-00000002")
    record = json.loads((old / "state.json").read_text())
    (old / "state.json").write_text(json.dumps({k: v for k, v in record.items()
                                                if k not in ("manifest", "manifest_sha256")}))
    seen = seen_in_training({"omniid": {**state, "init_from": str(old)}}, sample_manifest,
                            _identities(sample_manifest)[:1])
    assert seen["omniid"]["unfollowed"] == f"its --init-from {old.resolve()} records no training manifest to compare"
