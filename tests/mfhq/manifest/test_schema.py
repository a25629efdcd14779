"""Runs written before the embedding schedule (run schema 3, no embedding_frame) still curate,
alone or beside newer shards, and copied embeddings count once in a clip's mean."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.manifest.clip_means import EMBEDDER_OUTPUTS, clip_sums, unit_rows
from mfhq.manifest.io import SchemaVersionError
from mfhq.manifest.views import connect_runs
from synthetic_runs import ClipSpec, write_run


def _as_version_3(shard):
    _as_version(shard, "3", ["embedding_frame", "landmarks68", "crop_digest"])


def _as_version(shard, version: str, dropped: list[str]):
    table = pq.read_table(shard).drop_columns(dropped)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"mfhq.schema_version": version.encode()}), shard)


def _clips(n):
    return [ClipSpec("folder", f"c{i}", f"v{i}", person=i, faces=30) for i in range(n)]


@pytest.mark.parametrize("old_shards", ["all", "one"])
def test_a_schema_3_run_curates_like_the_same_run_at_schema_4(tmp_path, old_shards):
    new = write_run(tmp_path / "new", _clips(4))
    old = write_run(tmp_path / "old", _clips(4))
    shards = sorted((old / "faces").glob("*.parquet"))
    for shard in shards if old_shards == "all" else shards[:1]:
        _as_version_3(shard)
    cfg = CurateConfig(test_videos=1)
    a = cluster_sample([new], tmp_path / "a", cfg)
    b = cluster_sample([old], tmp_path / "b", cfg)
    assert a["train"] == b["train"] and a["test"] == b["test"]
    con, _ = connect_runs([old])
    assert con.execute("SELECT count(*) FROM faces WHERE embedding_frame IS NULL").fetchall()[0][0] > 0


def test_a_schema_4_shard_curates_beside_schema_5_ones(tmp_path):
    new = write_run(tmp_path / "new", _clips(4))
    old = write_run(tmp_path / "old", _clips(4))
    _as_version(sorted((old / "faces").glob("*.parquet"))[0], "4", ["landmarks68", "crop_digest"])
    cfg = CurateConfig(test_videos=1)
    assert cluster_sample([new], tmp_path / "a", cfg)["train"] == cluster_sample([old], tmp_path / "b", cfg)["train"]
    con, _ = connect_runs([old])
    assert con.execute("SELECT count(*) FROM faces WHERE landmarks68 IS NULL").fetchall()[0][0] > 0


def test_a_schema_6_clips_shard_reads_person_key_as_null_and_merges_as_it_did(tmp_path):
    """Clip rows written before person_key (run schema 6) read as null beside newer shards, and
    their clips merge by the guard alone, as that version's code merged them."""
    look_alikes = [ClipSpec("vfhq", f"Clip+synthVF-pk1+P{p}+C0+F0-90", "synthVF-pk1", person=1, person_key=f"P{p}")
                   for p in (0, 1)]
    specs = look_alikes + [ClipSpec("vfhq", "Clip+synthVF-pk2+P0+C0+F0-90", "synthVF-pk2", 7, person_key="P0")]
    run = write_run(tmp_path / "run", specs, shard_size=2)
    cfg = CurateConfig(test_videos=1)
    apart = cluster_sample([run], tmp_path / "new", cfg)
    _as_version(run / "clips" / "s-00000.parquet", "6", ["person_key"])  # the shard of the two look-alikes
    con, _ = connect_runs([run])
    keys = dict(con.execute("SELECT clip_id, person_key FROM clips").fetchall())
    assert keys == {look_alikes[0].clip_id: None, look_alikes[1].clip_id: None, specs[2].clip_id: "P0"}
    together = cluster_sample([run], tmp_path / "old", cfg)
    assert apart["train"]["identities"] + apart["test"]["identities"] == 3
    assert together["train"]["identities"] + together["test"]["identities"] == 2


def test_an_unreadable_version_names_the_readable_ones(tmp_path):
    run = write_run(tmp_path / "run", _clips(2))
    shard = next((run / "faces").glob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"mfhq.schema_version": b"2"}), shard)
    with pytest.raises(SchemaVersionError, match=r"schema version 2, this code reads version 9 \(and 3, 4, 5, 6, 7, 8\)"):
        cluster_sample([run], tmp_path / "m", CurateConfig())


def test_a_copied_embedding_counts_once_in_the_clip_mean(tmp_path):
    run = write_run(tmp_path / "run", _clips(1))
    shard = next((run / "faces").glob("*.parquet"))
    table = pq.read_table(shard)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    frames = table.column("frame_index").to_numpy()
    # The first face's embedding copied onto the next nine, as the schedule would record it.
    emb[1:10] = emb[0]
    source = frames.copy()
    source[1:10] = frames[0]
    table = table.set_column(table.schema.get_field_index("embedding"), "embedding",
                             pa.array(list(emb), table.schema.field("embedding").type))
    table = table.set_column(table.schema.get_field_index("embedding_frame"), "embedding_frame",
                             pa.array(source, pa.int32()))
    pq.write_table(table, shard)
    con, _ = connect_runs([run])
    sums, _ = clip_sums(con, f"SELECT 0::BIGINT AS clip_code, u.embedding FROM faces u WHERE {EMBEDDER_OUTPUTS}", 1)
    got = unit_rows(sums, 1)[0]
    real = np.concatenate([emb[:1], emb[10:]])
    unit = real / np.linalg.norm(real, axis=1, keepdims=True)
    want = unit.mean(0) / np.linalg.norm(unit.mean(0))
    assert np.allclose(got, want, atol=1e-5)
