"""Hardening: where output goes (issue 12, items 7 and 13): an --out that is a file is refused
before any work, and every output file gets the mode the umask gives, as with any tool."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mfhq.checks import OutputError, check_output_dir
from mfhq.manifest.io import atomic_write_bytes, atomic_write_json, atomic_write_table, current_umask
from mfhq.records import CLIP_SCHEMA
from tests.conftest import run_cli


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_out_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    (tmp_path / "videos").mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for out, needle in ((a_file, f"--out {a_file}: is a file, not a folder"),
                        (a_file / "runs" / "r1", f"--out {a_file}/runs/r1: {a_file} is a file, so no folder can be made under it")):
        result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(out), check=False)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=f"--out {locked}/run: {locked}, where it would be made, is not writable"):
            check_output_dir(locked / "run")
    finally:
        locked.chmod(0o755)
    check_output_dir(tmp_path / "new" / "run")  # missing folders on the way are fine


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


def test_cluster_sample_out_that_is_a_file_is_refused(tmp_path):
    a_file = tmp_path / "manifests"
    a_file.write_text("mine")
    result = run_cli("cluster-sample", "--run", str(tmp_path / "no-run"), "--out", str(a_file / "sub"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--out {a_file}/sub: {a_file} is a file, so no folder can be made under it" in result.stderr
