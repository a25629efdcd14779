"""A chain of several --init-from runs (an MTD run, a flow run started from it, a second flow run
started from that one): omniid-eval follows state.json's `init_from` to the chain's start, so the
identities any run along it trained on are labelled seen, not only those of the checkpoint and of
the run it started from; a chain that leads back to a step folder already read ends, and says so."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.manifest import MANIFEST_SCHEMA
from mfhq.manifest.io import sha256_of
from omniid.eval_seen import seen_in_training, seen_labels, seen_line


def _manifest(path: Path, identities: list[str]) -> Path:
    """A manifest's identity column, two faces an identity (what the check reads of it), with the
    contract's metadata: the check reads it through `read_manifest`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"identity_id": [i for i in identities for _ in range(2)],
                      "crop_path": [f"crops/{i}/{n}.jpg" for i in identities for n in range(2)]})
    pq.write_table(table.replace_schema_metadata(MANIFEST_SCHEMA.metadata), path)
    return path


def _step(folder: Path, stage: str, manifest: Path, init_from: Path | None = None) -> dict:
    """A step folder's state.json as omniid-train records it (omniid.command_facts); returns it."""
    state = {"stage": stage, "manifest": str(manifest.resolve()), "manifest_sha256": sha256_of(manifest),
             **({"init_from": str(init_from.resolve())} if init_from else {})}
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps(state))
    return state


def test_every_run_of_a_two_link_chain_is_compared(tmp_path):
    mtd = tmp_path / "mtd" / "checkpoints" / "step-00000002"
    first = tmp_path / "flow" / "checkpoints" / "step-00000002"
    _step(mtd, "mtd", _manifest(tmp_path / "mtd-set" / "train.parquet", ["a", "b"]))
    _step(first, "flow", _manifest(tmp_path / "flow-set" / "train.parquet", ["c"]), init_from=mtd)
    state = _step(tmp_path / "flow2" / "checkpoints" / "step-00000002", "flow",
                  _manifest(tmp_path / "flow2-set" / "train.parquet", ["d"]), init_from=first)
    evaluated = _manifest(tmp_path / "eval-set" / "test.parquet", ["a", "c", "x"])
    seen = seen_in_training({"omniid": state}, evaluated, ["a", "c", "x"])["omniid"]
    # "a" only the MTD run two links up saw: read as held out where the chain stops after one link
    assert (seen["seen"], seen["of"]) == (2, 3), seen
    assert [(link["run"], link["stage"], link["seen"]) for link in seen["by"]] == [
        (str(first.resolve()), "flow", 1), (str(mtd.resolve()), "mtd", 1)]
    assert "unfollowed" not in seen
    assert seen_labels({"omniid": seen}, ["omniid"]) == {"omniid": {"training": "saw 2/3 identities (flow, mtd)"}}


def test_a_chain_that_leads_back_to_itself_ends_and_is_said(tmp_path):
    one, two = (tmp_path / run / "checkpoints" / "step-00000002" for run in ("one", "two"))
    trained = _manifest(tmp_path / "set" / "train.parquet", ["a"])
    _step(one, "flow", trained, init_from=two)
    state = _step(two, "flow", trained, init_from=one)  # (a step folder edited or copied over by hand)
    seen = seen_in_training({"omniid": state}, trained, ["a"])["omniid"]
    assert seen["seen"] == 1, seen
    # each step folder named once: the checkpoint as "itself", not again as an --init-from of `one`
    saw = seen_line({"omniid": seen}).split("TRAINING DATA NOT FULLY CHECKED")[0]
    assert saw.count("(seen by itself: 1") == 1 and saw.count(str(one.resolve())) == 1, saw
    assert str(two.resolve()) not in saw, saw
    assert [link["run"] for link in seen["by"]] == [None, str(one.resolve())]
    assert seen["unfollowed"] == f"--init-from {two.resolve()} leads back to itself"
