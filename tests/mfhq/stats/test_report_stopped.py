"""A `mfhq stats` stopped part way leaves --out as it was: the earlier complete report (page,
tables, plots, strips), never its tables beside half of the new report's. SIGKILL of the real
process once it has written a table, and a real failure (a run whose Parquet pages are damaged,
found by the queries); the next run removes what the killed one left and writes its report whole.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO, run_cli


def _report(manifests, sample_run, out: Path) -> dict:
    """A complete report with a manifest (identity tables and strips a run-only report lacks)."""
    run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests), "--out", str(out))
    files = _files(out)
    assert "report.html" in files and "tables/identities_per_source.csv" in files
    assert any(name.startswith("strips/") for name in files) and "pose_yaw.png" in files
    return files


def _files(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _report_files(out: Path) -> dict:
    """The report's files: not the staging folder nor the lock (a killed run leaves both)."""
    return {k: v for k, v in _files(out).items() if not k.startswith(".stats-") and k != "lock"}


def _tables(out: Path) -> dict:
    """Every CSV under `out` with its mtime; os.walk passes over a folder removed while it looks."""
    found = {}
    for folder, _, names in os.walk(out):
        for name in names:
            if name.endswith(".csv"):
                try:
                    found[os.path.join(folder, name)] = os.stat(os.path.join(folder, name)).st_mtime_ns
                except FileNotFoundError:  # moved or removed between listing and stat
                    pass
    return found


def _killed_after_a_table(sample_run, out: Path) -> int | None:
    """The pid of a `mfhq stats` into `out` (without the manifest) SIGKILLed once it has written a
    table; None where it finished before this process looked again (a loaded machine)."""
    tables = _tables(out)
    process = subprocess.Popen([sys.executable, "-m", "mfhq", "stats", "--run", str(sample_run), "--out", str(out)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and _tables(out) == tables:
        time.sleep(0.005)  # polling only: no bound on how long the queries take
    if process.poll() is not None:
        return None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return process.pid


def test_a_killed_stats_leaves_the_earlier_report_whole_and_the_next_run_replaces_it(manifests, sample_run, tmp_path):
    out = tmp_path / "reports"
    for _ in range(5):  # a report with the manifest, then another one into its folder, killed part way
        before = _report(manifests, sample_run, out)
        pid = _killed_after_a_table(sample_run, out)
        if pid is not None:
            break
    else:
        pytest.fail("stats finished five times before it could be stopped part way")
    assert _report_files(out) == before  # the earlier report, every file of it as it was
    left = [p.name for p in out.glob(".stats-*")]
    assert left == [f".stats-{pid}"]
    assert json.loads((out / "lock").read_text())["pid"] == pid  # its lock, stale: the next run takes it over

    result = run_cli("stats", "--run", str(sample_run), "--out", str(out))
    assert f"report: removed .stats-{pid} in {out}, what a `mfhq stats` stopped part way" in result.stderr
    assert not list(out.glob(".stats-*")) and not (out / "lock").exists()
    files = _files(out)
    assert "tables/identities_per_source.csv" not in files and not any(k.startswith("strips/") for k in files)
    assert "Sampled faces" not in files["report.html"].decode()
    assert files["tables/headline.csv"] != before["tables/headline.csv"]  # the run-only headline


def _damage_pages(shard: Path, column: str = "yaw") -> None:
    """The header of the column chunk's first page overwritten: the footer reads, the page does not."""
    meta = pq.ParquetFile(shard).metadata
    at = [meta.schema.column(i).path for i in range(meta.num_columns)].index(column)
    chunk = meta.row_group(0).column(at)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(shard.read_bytes())
    data[start:start + 6] = b"\xff" * 6
    shard.write_bytes(bytes(data))
    assert pq.read_schema(shard)  # the footer is intact: only the queries find it


def test_a_stats_stopped_by_an_error_leaves_the_earlier_report_whole(manifests, sample_run, tmp_path):
    out = tmp_path / "reports"
    before = _report(manifests, sample_run, out)
    damaged = shutil.copytree(sample_run, tmp_path / "damaged")
    shard = sorted((damaged / "faces").glob("*.parquet"))[0]
    _damage_pages(shard)
    result = run_cli("stats", "--run", str(damaged), "--out", str(out), check=False)
    assert result.returncode == 2, result.stdout + result.stderr  # stopped by the query that reads the page
    # one line naming the shard and how to redo only it, no traceback
    assert f"{shard}: damaged Parquet data" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert _files(out) == before  # nothing of the stopped report, nothing of the earlier one removed
    query = run_cli("stats", "--run", str(damaged), "--sql", "SELECT avg(yaw) FROM faces", check=False)
    assert query.returncode == 2 and f"{shard}: damaged Parquet data" in query.stderr, query.stderr


def test_a_refused_stats_makes_no_out_folder(tmp_path):
    """The runs are checked before --out is touched: no empty report folder (nor a staging one)."""
    result = run_cli("stats", "--run", str(tmp_path / "missing"), "--out", str(tmp_path / "reports"), check=False)
    assert result.returncode == 2 and "no such run folder" in result.stderr
    assert not (tmp_path / "reports").exists()
