"""Damaged run Parquet given to cluster-sample: a shard with a column removed or retyped, and a
shard with damaged data pages, are named with the problem and the remedy, not a DuckDB traceback.
Real Parquet shards (synthetic runs), the real CLI."""
from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.manifest.views import RunError
from synthetic_runs import ClipSpec, write_run


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    specs = [ClipSpec("celebvhq", f"clip{i:02d}", f"yt{i:02d}", person=i) for i in range(6)]
    return write_run(tmp_path_factory.mktemp("good") / "run", specs)


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def test_a_shard_with_a_column_removed_is_named(good_run, tmp_path):
    run = _copy(good_run, tmp_path)
    shard = run / "faces" / "s-00001.parquet"
    table = pq.read_table(shard)
    pq.write_table(table.drop_columns(["yaw"]), shard)  # keeps the schema version metadata
    result = run_cli("cluster-sample", "--run", str(run), "--out", str(tmp_path / "m"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{shard}: column(s) ['yaw'] missing from this faces shard" in result.stderr
    assert "done/s-00001.json" in result.stderr  # what to do about it
    assert not (tmp_path / "m" / "train.parquet").exists()


def test_a_shard_with_a_retyped_column_is_named(good_run, tmp_path):
    run = _copy(good_run, tmp_path)
    shard = run / "clips" / "s-00000.parquet"
    table = pq.read_table(shard)
    at = table.schema.get_field_index("fps")
    pq.write_table(table.set_column(at, "fps", table.column("fps").cast("string")), shard)
    with pytest.raises(RunError, match=f"{shard}: column 'fps' is string, expected float"):
        cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1))


def test_a_shard_with_damaged_data_pages_is_named(good_run, tmp_path):
    run = _copy(good_run, tmp_path)
    shard = run / "faces" / "s-00000.parquet"
    meta = pq.ParquetFile(shard).metadata
    column = [meta.schema.column(i).path for i in range(meta.num_columns)].index("landmarks.list.element")
    chunk = meta.row_group(0).column(column)
    data = bytearray(shard.read_bytes())
    middle = chunk.data_page_offset + chunk.total_compressed_size // 2  # inside compressed page data
    data[middle:middle + 8] = b"\xff" * 8
    shard.write_bytes(bytes(data))
    assert pq.read_schema(shard)  # the footer is intact: only reading the pages finds it
    result = run_cli("cluster-sample", "--run", str(run), "--out", str(tmp_path / "m"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{shard}: damaged Parquet data (ZSTD decompression failed" in result.stderr
    assert "delete it and its marker done/s-00000.json" in result.stderr


def test_undamaged_runs_still_sample(good_run, tmp_path):
    summary = cluster_sample([good_run], tmp_path / "m", CurateConfig(test_videos=1))
    assert summary["train"]["identities"] + summary["test"]["identities"] == 6


def test_only_marked_shards_are_read_and_a_marked_shard_without_its_file_is_named(good_run, tmp_path):
    run = _copy(good_run, tmp_path)
    gone = run / "clips" / "s-00001.parquet"
    gone.unlink()
    with pytest.raises(RunError, match=rf"^{gone}: missing, yet done/s-00001.json marks its shard finished; delete "
                                       rf"that marker, then run the same `mfhq extract` into {run} again"):
        cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1))
    shutil.rmtree(run / "done")  # files of shards that never finished: nothing a reader may count
    with pytest.raises(RunError, match=rf"^{run / 'done'}: no finished shard \(no completion marker\); the run "
                                       r"stopped \(or is still at work\) before its first shard finished. Run the same"):
        cluster_sample([run], tmp_path / "m", CurateConfig(test_videos=1))
