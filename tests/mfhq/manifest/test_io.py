"""Atomic writers: every output file gets the mode the umask gives, and a Parquet file of another
schema version is refused."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest

from mfhq.manifest.io import (SchemaVersionError, atomic_write_bytes, atomic_write_json, atomic_write_table,
                              current_umask, read_table)
from mfhq.records import CLIP_SCHEMA, FACE_SCHEMA


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o002, 0o027, 0o077])
def test_atomic_writers_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_json(tmp_path / "run.json", {"a": 1})
        atomic_write_bytes(tmp_path / "crops" / "x.jpg", b"\xff\xd8", durable=False)
        atomic_write_table(tmp_path / "clips" / "s.parquet", [], CLIP_SCHEMA)
    finally:
        os.umask(old)
    for path in ("run.json", "crops/x.jpg", "clips/s.parquet"):
        assert _mode(tmp_path / path) == 0o666 & ~umask, path


def test_every_file_of_an_extract_run_follows_the_umask(sample_run):
    # The run was made by the CLI in a subprocess that inherited this process's umask.
    expected = 0o666 & ~current_umask()
    files = [p for p in sample_run.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".parquet", ".jpg", ".png"} <= kinds
    wrong = [(str(p.relative_to(sample_run)), oct(_mode(p))) for p in files if _mode(p) != expected]
    assert not wrong, f"expected {oct(expected)}: {wrong[:5]}"


def test_reading_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "old.parquet"
    atomic_write_table(path, [], FACE_SCHEMA.with_metadata({b"mfhq.schema_version": b"0"}))
    with pytest.raises(SchemaVersionError, match="schema version 0"):
        read_table(path)
    atomic_write_table(path, [], FACE_SCHEMA)
    assert isinstance(read_table(path), pa.Table)
