"""A manifest folder's file is read as the kind of rows its caller asks for (by default the kind
its name says: identities.parquet the identities, any other name the train/test rows), and a file
holding another kind (its metadata's `mfhq.schema`) is refused before anything else, in one error
naming the file, the kind asked for and the kind it holds. Before, an identities file saved as
train.parquet read as rows until a caller asked for a column it lacked, and a run's faces/ shard
was named a manifest of another schema version. Every file mfhq's commands write reads as before."""
from __future__ import annotations

import json
import shutil

import pytest

from mfhq.config import CurateConfig
from mfhq.curate import resplit
from mfhq.manifest import ManifestError, ManifestFolder, read_manifest
from mfhq.manifest.io import file_digest


def _copy_over(source, dest) -> None:
    """`source` saved as `dest` and listed in the sidecar as that file, so only its kind is wrong."""
    shutil.copy(source, dest)
    sidecar = json.loads((dest.parent / "manifest.json").read_text())
    sidecar["files"][dest.name] = file_digest(dest)
    (dest.parent / "manifest.json").write_text(json.dumps(sidecar))


def test_an_identities_file_named_train_parquet_is_refused(built_folder):
    folder = built_folder
    _copy_over(folder / "identities.parquet", folder / "train.parquet")
    for read in (lambda: read_manifest(folder / "train.parquet", columns=[]),
                 lambda: ManifestFolder.open(folder).split("train", ["identity_id"]),  # a column both kinds have
                 lambda: read_manifest(folder / "train.parquet")):
        with pytest.raises(ManifestError) as error:
            read()
        assert str(error.value).startswith(f"{folder / 'train.parquet'}: holds identities rows (identities.parquet: "
                                           "one per clip), not the manifest rows (train/test: one per sampled face) "
                                           "asked for (its metadata's mfhq.schema is 'identities', not 'manifest')")


def test_rows_named_identities_parquet_and_a_faces_shard_named_test_parquet_are_refused(tmp_path, built_folder):
    folder = built_folder
    _copy_over(folder / "train.parquet", folder / "identities.parquet")
    with pytest.raises(ManifestError, match="holds manifest rows .* not the identities rows .* asked for"):
        read_manifest(folder / "identities.parquet", columns=[])
    with pytest.raises(ManifestError, match="holds manifest rows"):
        resplit(folder, CurateConfig(test_videos=2))  # `mfhq split` reads it as the identities it names
    shard = sorted((tmp_path / "run" / "faces").glob("*.parquet"))[0]
    _copy_over(shard, folder / "test.parquet")
    with pytest.raises(ManifestError) as error:  # named for what it is, not as a manifest of schema version 8
        read_manifest(folder / "test.parquet", columns=[])
    assert "holds a run's faces/ shard (one row per detected face), not the manifest rows" in str(error.value)


def test_the_kind_asked_for_overrides_the_name(built, tmp_path):
    """A caller that reads rows (the trainer) asks for them whatever the file is called."""
    ids = tmp_path / "ids.parquet"
    shutil.copy(built / "identities.parquet", ids)
    with pytest.raises(ManifestError, match="holds identities rows"):
        read_manifest(ids, ["identity_id"])  # not named identities.parquet: rows asked for
    assert read_manifest(ids, ["identity_id"], kind="identities").num_rows > 0
    with pytest.raises(ManifestError, match="holds identities rows .* not the manifest rows"):
        read_manifest(built / "identities.parquet", ["identity_id"], kind="manifest")


def test_every_file_the_commands_write_reads_as_its_kind(built, manifests, built_folder):
    """cluster-sample's folders (the CLI's over the sample run, the API's over synthetic runs), and
    `mfhq split`'s rewrite of one."""
    folder = built_folder
    resplit(folder, CurateConfig(test_videos=2))
    for written in (manifests, built, folder):
        for name in ("train.parquet", "test.parquet", "identities.parquet"):
            assert read_manifest(written / name).num_rows > 0, written / name
