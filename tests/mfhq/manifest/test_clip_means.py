"""Clip means: extract writes each clip's embedding sum over its usable faces into its clip row,
cluster-sample makes the clip means from those rows, and from every face's embedding where
curation narrows the faces or a shard was written without the sums: the same means either way."""
from __future__ import annotations

import logging

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.curate.build import usable_filter
from mfhq.curate.merge import clip_means
from mfhq.manifest import clip_means as sums_module
from mfhq.manifest.clip_means import clip_sums
from mfhq.manifest.views import connect_runs
from synthetic_runs import ClipSpec, write_run


@pytest.mark.parametrize("batch", [7, 1 << 16])
def test_clip_sums_are_each_clips_sum_in_any_batches_and_any_face_order(batch, monkeypatch):
    """Faces of one clip split across batches and interleaved with other clips' faces still sum
    into their own clip's row; a clip with no faces in between stays empty."""
    monkeypatch.setattr(sums_module, "BATCH_FACES", batch)
    rng = np.random.default_rng(5)
    codes = rng.permutation(np.repeat(np.arange(6), [9, 1, 0, 13, 2, 5]))  # clip 2 has no faces
    emb = rng.normal(size=(len(codes), 16)).astype(np.float32)
    con = duckdb.connect()
    con.register("faces", pa.table({"clip_code": codes, "embedding": [row.tolist() for row in emb]}))
    sums, counts = clip_sums(con, "SELECT clip_code, embedding FROM faces", 6)
    for clip in (0, 1, 3, 4, 5):
        assert np.allclose(sums[clip], emb[codes == clip].sum(0), atol=1e-5)
    assert counts.tolist() == [9, 1, 0, 13, 2, 5] and not sums[2].any()


def _views(con: duckdb.DuckDBPyConnection, cfg: CurateConfig) -> int:
    """The views cluster-sample makes before its clip means; returns the clip count."""
    con.execute(f"CREATE TEMP VIEW usable_faces AS SELECT * FROM faces WHERE {usable_filter(cfg)}")
    con.execute("CREATE TEMP TABLE clip_codes AS SELECT (row_number() OVER (ORDER BY source, clip_id) - 1)::BIGINT "
                "AS clip_code, source, clip_id FROM (SELECT DISTINCT source, clip_id FROM usable_faces)")
    return con.execute("SELECT count(*) FROM clip_codes").fetchall()[0][0]


def test_extract_writes_each_clips_sum_of_its_usable_embedder_outputs(sample_run):
    """The sample preset embeds 1 face in 4 along a track and copies the rest: a clip row sums
    the embedder's outputs among its kept faces with pose and quality, each once."""
    con, _ = connect_runs([sample_run])
    faces = con.sql("SELECT source, clip_id, kept, yaw, quality, embedding, embedding_frame, frame_index "
                    "FROM faces").to_arrow_table().to_pylist()
    clips = con.sql("SELECT source, clip_id, embedding_sum, embedding_faces FROM clips").to_arrow_table().to_pylist()
    copies = sum(1 for f in faces if f["embedding_frame"] is not None and f["embedding_frame"] != f["frame_index"])
    assert copies > 0 and any(row["embedding_faces"] for row in clips)
    for row in clips:
        outputs = [f["embedding"] for f in faces if (f["source"], f["clip_id"]) == (row["source"], row["clip_id"])
                   and f["kept"] and f["yaw"] is not None and f["quality"] is not None and f["embedding"] is not None
                   and f["embedding_frame"] in (None, f["frame_index"])]
        assert row["embedding_faces"] == len(outputs), row["clip_id"]
        if outputs:
            assert np.allclose(row["embedding_sum"], np.sum(outputs, axis=0), atol=1e-5)
        else:
            assert row["embedding_sum"] is None


def test_the_clip_rows_give_the_means_reading_every_face_gives(sample_run, caplog):
    con, _ = connect_runs([sample_run])
    n = _views(con, CurateConfig())
    with caplog.at_level(logging.INFO, logger="mfhq.curate.merge"):
        from_rows = clip_means(con, n, narrowed=False)
        first = caplog.text
        from_faces = clip_means(con, n, narrowed=True)
    assert "read from every usable face" not in first  # the clip rows were read
    assert "curate.min_quality narrows the usable faces" in caplog.text
    assert from_rows.shape == from_faces.shape and np.allclose(from_rows, from_faces, atol=1e-6)
    assert np.allclose(np.linalg.norm(from_rows, axis=1), 1, atol=1e-5)


def test_a_shard_written_without_sums_is_read_from_its_faces_with_the_same_identities(tmp_path, caplog):
    """A run resumed across the version that added the sums: one clips file lacks them, so the
    clip means come from the faces, and the identities equal those of the run with sums."""
    specs = [ClipSpec("vfhq", "p5_one", "v1", person=5, faces=20), ClipSpec("vfhq", "p5_two", "v2", person=5),
             ClipSpec("vfhq", "p6", "v3", person=6), ClipSpec("vfhq", "p7", "v4", person=7)]
    run = write_run(tmp_path / "run", specs, shard_size=2)
    cfg = CurateConfig(merge_by_video_key=False, test_videos=1)
    cluster_sample([run], tmp_path / "with", cfg)
    old = run / "clips" / "s-00001.parquet"
    table = pq.read_table(old).drop_columns(["embedding_sum", "embedding_faces"])
    metadata = {**table.schema.metadata, b"mfhq.schema_version": b"5"}
    assert b"mfhq.schema_version" in table.schema.metadata  # the key the version check reads
    pq.write_table(table.replace_schema_metadata(metadata), old)
    with caplog.at_level(logging.INFO, logger="mfhq.curate.merge"):
        cluster_sample([run], tmp_path / "without", cfg)
    assert "2 clip rows were written without their embedding sum" in caplog.text
    ids = {}
    for name in ("with", "without"):
        rows = pq.read_table(tmp_path / name / "identities.parquet", columns=["clip_id", "identity_id"]).to_pylist()
        ids[name] = {r["clip_id"]: r["identity_id"] for r in rows}
    assert ids["with"] == ids["without"] and ids["with"]["p5_one"] == ids["with"]["p5_two"] != ids["with"]["p6"]
