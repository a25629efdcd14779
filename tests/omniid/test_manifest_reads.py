"""omniid reads every manifest's identity_ids through the contract's reader (mfhq.manifest.read_manifest):
omniid-train's shared-identity check of --test-manifest and omniid-eval's seen-in-training check of
a checkpoint's recorded training manifest. A damaged, retyped or foreign file is one ManifestError
naming it, as everywhere else, never a pyarrow traceback, a silent fallback or a set of wrong names."""
from __future__ import annotations

import logging
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfhq.manifest import ManifestError, ManifestFolder
from mfhq.manifest.io import sha256_of
from omniid.cli import _say_shared_identities, main
from omniid.eval_seen import seen_in_training
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


def _retyped(sample_manifest, dest):
    """The manifest with identity_id stored as binary (not necessarily UTF-8: refused by reads_as),
    its schema version kept: pyarrow reads it as bytes, whose str() matches no identity."""
    table = pq.read_table(sample_manifest)
    at = table.schema.get_field_index("identity_id")
    table = table.set_column(at, pa.field("identity_id", pa.binary()), table.column(at).cast(pa.binary()))
    pq.write_table(table, dest)
    return dest


def _damaged(sample_manifest, dest):
    """The manifest with its first data pages overwritten (the footer, hence the schema, intact)."""
    data = bytearray(sample_manifest.read_bytes())
    data[4:600] = b"\xff" * 596
    dest.write_bytes(bytes(data))
    return dest


def _foreign(sample_manifest, dest):
    """A faces/ shard of the run the manifest was made from, under a manifest's name."""
    run = ManifestFolder.open(sample_manifest).sidecar["runs"][0]["name"]
    shutil.copy(sorted((ManifestFolder.open(sample_manifest).run_root(run) / "faces").glob("*.parquet"))[0], dest)
    return dest


@pytest.mark.parametrize("make, problem", [(_retyped, "'identity_id' is binary, expected string"),
                                           (_damaged, "damaged Parquet data"), (_foreign, "holds a run's faces/ shard")])
def test_the_shared_identity_check_names_a_bad_test_manifest(sample_manifest, tmp_path, make, problem):
    test = make(sample_manifest, tmp_path / "test.parquet")
    with pytest.raises(ManifestError) as error:
        _say_shared_identities({"manifest": str(sample_manifest), "test_manifest": str(test)})
    assert str(error.value).startswith(f"{test}: ") and problem in str(error.value)


def test_omniid_train_refuses_a_damaged_test_manifest_in_one_line(sample_manifest, tmp_path, caplog):
    """Before, pyarrow's error came out of omniid-train as a traceback."""
    test = _damaged(sample_manifest, tmp_path / "test.parquet")
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert main(["--manifest", str(sample_manifest), "--test-manifest", str(test), "--out", str(tmp_path / "run"),
                     "--preset", "tiny", "--steps", "1", "--batch-size", "1"]) == 2
    assert f"{test}: damaged Parquet data" in caplog.text


@pytest.mark.parametrize("make, problem", [(_retyped, "'identity_id' is binary, expected string"),
                                           (_damaged, "damaged Parquet data"), (_foreign, "holds a run's faces/ shard")])
def test_a_bad_recorded_training_manifest_is_named_not_read_as_held_out(sample_manifest, tmp_path, make, problem):
    """The recorded file is there, the very file recorded (its SHA-256; or a state.json from before
    the digest), yet cannot be read as a manifest (checks added since it trained): before, a retyped
    one gave identity_ids that matched nothing (every identity 'held out'), a damaged one fell back
    to the SHA-256 as if it had moved. (A file of another SHA-256 is not read: `rewritten`.)"""
    recorded = make(sample_manifest, tmp_path / "train.parquet")
    names = sorted(set(pq.read_table(sample_manifest, columns=["identity_id"]).column(0).to_pylist()))
    for state in ({"manifest": str(recorded), "manifest_sha256": sha256_of(recorded)}, {"manifest": str(recorded)}):
        with pytest.raises(ManifestError) as error:
            seen_in_training({"omniid": state}, sample_manifest, names)
        assert str(error.value).startswith(f"{recorded}: ") and problem in str(error.value)


def test_a_recorded_training_manifest_that_moved_still_falls_back_to_the_sha256(sample_manifest, tmp_path):
    state = {"manifest": str(tmp_path / "gone" / "train.parquet"), "manifest_sha256": sha256_of(sample_manifest)}
    seen = seen_in_training({"omniid": state}, sample_manifest, ["a", "b"])
    assert seen["omniid"]["seen"] == 2 and "same SHA-256" in seen["omniid"]["how"]
