"""A training manifest rewritten at its path since a checkpoint trained on it (`mfhq split` or
`cluster-sample` again: another split of the same identities) is not the file it trained on:
omniid-eval never reads the new file's identities as what the checkpoint saw, which would label
identities moved from train to test as held out. The row says its training data was not checked."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.manifest import MANIFEST_SCHEMA
from mfhq.manifest.io import sha256_of
from omniid.eval_seen import seen_in_training, seen_labels, seen_line


def _manifest(path, identities: list[str]) -> None:
    """A manifest's identity column, two faces an identity (what the check reads of it), with the
    contract's metadata (kind and version): the check reads it through `read_manifest`."""
    table = pa.table({"identity_id": [i for i in identities for _ in range(2)],
                      "crop_path": [f"crops/{i}/{n}.jpg" for i in identities for n in range(2)]})
    pq.write_table(table.replace_schema_metadata(MANIFEST_SCHEMA.metadata), path)


def test_a_training_manifest_rewritten_since_is_not_read_as_what_the_checkpoint_saw(tmp_path):
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    _manifest(train, ["id0", "id1", "id2"])
    # what omniid-train records in state.json (omniid.command_facts): the resolved path and its SHA-256
    state = {"stage": "flow", "manifest": str(train.resolve()), "manifest_sha256": sha256_of(train)}
    assert seen_in_training({"omniid": state}, train, ["id1"])["omniid"]["seen"] == 1  # before the re-split

    # a re-split moves id1 to test: the new train file no longer holds it
    _manifest(train, ["id0", "id2"])
    _manifest(test, ["id1"])
    seen = seen_in_training({"omniid": state}, test, ["id1"])
    assert "omniid" in seen, "read as held out: the rewritten train.parquet was taken for the training manifest"
    assert seen["omniid"]["seen"] == 0 and seen["omniid"]["rewritten"] == (
        f"its training manifest {train.resolve()} was rewritten since it trained (another SHA-256, e.g. by mfhq "
        "split or cluster-sample), so the identities it trained on cannot be compared")
    assert seen_labels(seen, ["omniid"]) == {"omniid": {"training": "unknown: training manifest rewritten since"}}
    assert seen_line(seen).startswith("TRAINING DATA NOT CHECKED: these rows may have seen the identities; "
                                      "held-out numbers may not apply. omniid: its training manifest")
