"""Manifest files are held to their schema's column types when read: a train/test/identities file
rewritten with a column of another type is refused in one error naming the file and every such
column; one whose values read back exactly in another layout (large strings, dictionaries, large
lists, as other tools write them) reads in the contract's types. Real manifest folders written by
cluster-sample over synthetic runs, rewritten with pyarrow and pandas."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import resplit
from mfhq.manifest import IDENTITY_SCHEMA, MANIFEST_SCHEMA, ManifestError, read_manifest
from mfhq.manifest.io import file_digest


def _rewrite(path, table: pa.Table) -> None:
    """`table` written over `path`, keeping the schema version, and listed in the sidecar as the
    folder's file, so that only its types differ from what cluster-sample wrote."""
    metadata = pq.read_schema(path).metadata
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), path)
    sidecar = json.loads((path.parent / "manifest.json").read_text())
    sidecar["files"][path.name] = file_digest(path)
    (path.parent / "manifest.json").write_text(json.dumps(sidecar))


def _retyped(table: pa.Table, **types) -> pa.Table:
    for name, to in types.items():
        at = table.schema.get_field_index(name)
        table = table.set_column(at, pa.field(name, to), table.column(name).cast(to))
    return table


def test_columns_of_another_type_are_named_in_one_error(built_folder):
    folder = built_folder
    train = folder / "train.parquet"
    _rewrite(train, _retyped(pq.read_table(train), yaw=pa.string(), quality=pa.string()))
    with pytest.raises(ManifestError) as refused:
        read_manifest(train, ["identity_id", "crop_path"])  # columns not asked for are checked too
    assert str(refused.value).startswith(f"{train}: column(s) of another type than the manifest schema's: 'yaw' is "
                                         "string, expected float; 'quality' is string, expected float. ")
    assert f"rebuild {folder} with `mfhq cluster-sample`" in str(refused.value)
    ident = folder / "identities.parquet"
    _rewrite(ident, _retyped(pq.read_table(ident), n_usable=pa.float64()))
    with pytest.raises(ManifestError, match=rf"^{ident}: column\(s\) of another type than the identities schema's: "
                                            r"'n_usable' is double, expected int64\. "):
        read_manifest(ident)
    with pytest.raises(ManifestError, match="'yaw' is string, expected float"):
        resplit(folder, CurateConfig(test_videos=1))  # `mfhq split` reads through it


def test_a_pandas_rewrite_names_the_numbers_made_text_and_the_landmarks_made_a_list(built_folder):
    """pandas writes strings as large_string (read exactly: not named) and a fixed-size list as a
    list of any length (the 5 points are no longer promised: named)."""
    folder = built_folder
    train = folder / "train.parquet"
    frame = pq.read_table(train).to_pandas()
    frame["yaw"] = frame["yaw"].map("{:.3f}".format)
    _rewrite(train, pa.Table.from_pandas(frame, preserve_index=False))
    with pytest.raises(ManifestError) as refused:
        read_manifest(train)
    named = str(refused.value).split("manifest schema's: ")[1].split(". It was")[0].split("; ")
    assert named == ["'landmarks' is list<element: float>, expected fixed_size_list<item: float>[10]",
                     "'yaw' is large_string, expected float"]


def test_other_layouts_of_the_same_values_read_in_the_contract_types(built_folder):
    """large_string, dictionary-encoded strings, large lists and a narrower integer: the values come
    back exactly, in the contract's types, so `mfhq split` joins the rewritten split to the other."""
    folder = built_folder
    train = folder / "train.parquet"
    before = read_manifest(train)
    split_dictionary = pa.dictionary(pa.int8(), pa.string())  # pandas' categoricals
    _rewrite(train, _retyped(pq.read_table(train), identity_id=pa.large_string(), split=split_dictionary,
                             embedding=pa.large_list(pa.float32()), frame_index=pa.int16()))
    assert pq.read_schema(train).field("split").type == split_dictionary  # as written: Parquet keeps it
    after = read_manifest(train)
    assert [f.type for f in after.schema] == [f.type for f in MANIFEST_SCHEMA]
    assert after.to_pylist() == before.to_pylist()
    summary = resplit(folder, CurateConfig(test_videos=1))
    assert summary["train"]["faces"] + summary["test"]["faces"] == before.num_rows + read_manifest(
        folder / "test.parquet").num_rows


@pytest.mark.parametrize("found, expected, same", [
    (pa.string(), pa.string(), True),
    (pa.large_string(), pa.string(), True),
    (pa.dictionary(pa.int32(), pa.string()), pa.string(), True),
    (pa.dictionary(pa.int8(), pa.large_string()), pa.string(), True),
    (pa.binary(), pa.string(), False),          # need not be UTF-8
    (pa.int32(), pa.string(), False),
    (pa.string(), pa.float32(), False),         # yaw written as text
    (pa.float64(), pa.float32(), False),        # would be rounded
    (pa.float16(), pa.float32(), True),
    (pa.int32(), pa.float32(), False),
    (pa.int64(), pa.int16(), False),            # may not fit
    (pa.int8(), pa.int16(), True),
    (pa.uint8(), pa.int16(), False),
    (pa.int16(), pa.int32(), True),
    (pa.int8(), pa.bool_(), False),
    (pa.large_list(pa.float32()), pa.list_(pa.float32()), True),
    (pa.list_(pa.field("element", pa.float32(), nullable=False)), pa.list_(pa.float32()), True),
    (pa.list_(pa.float32(), 128), pa.list_(pa.float32()), True),
    (pa.list_(pa.float64()), pa.list_(pa.float32()), False),
    (pa.list_(pa.float32()), pa.list_(pa.float32(), 10), False),  # a row could hold 4 points
    (pa.list_(pa.float32(), 8), pa.list_(pa.float32(), 10), False),
    (pa.list_(pa.field("element", pa.float32(), nullable=False), 10), pa.list_(pa.float32(), 10), True),
])
def test_what_reads_as_the_contract_type(found, expected, same):
    from mfhq.manifest.schema import reads_as

    assert reads_as(found, expected) is same


def test_every_contract_column_reads_as_itself():
    from mfhq.manifest.schema import reads_as

    for schema in (MANIFEST_SCHEMA, IDENTITY_SCHEMA):
        assert all(reads_as(f.type, f.type) for f in schema)
