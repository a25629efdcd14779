"""Clip means: each clip's identity embedding summed over its usable faces (ours).

The identity merge starts from each clip's mean embedding. Making those at curation means
reading every face's embedding, and Parquet decodes every row of a list column: at MFHQ size
(17M faces) that costs 10-14 s on 2 cores, several times the merge. So extract writes each
clip's sum and count into its clip row (`embedding_sum`, `embedding_faces`), from its shard's
face rows by the query curation runs over the faces, and cluster-sample reads 134k clip rows
instead of 17M face rows. It reads the faces where curation narrows the usable faces
(`curate.min_quality`) or where a clip row has no sum (a shard written before them).
"""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Faces curation can use: kept, with pose and quality (curate.min_quality may narrow it).
USABLE_FACE = "kept AND yaw IS NOT NULL AND pitch IS NOT NULL AND roll IS NOT NULL AND quality IS NOT NULL"
# Each embedder output once (faces aliased u): with embed.every > 1 a face may carry a copy of a
# track neighbour's embedding; embedding_frame names the frame it came from (NULL in older runs).
EMBEDDER_OUTPUTS = "u.embedding IS NOT NULL AND (u.embedding_frame IS NULL OR u.embedding_frame = u.frame_index)"
BATCH_FACES = 1 << 16  # faces summed per step: 32 MiB of 128-d embeddings


def outputs_sql(faces: str, clip_codes: str) -> str:
    """(clip_code, embedding) of the usable embedder outputs of `faces` (aliased u) whose clip is
    in `clip_codes` (clip_code, source, clip_id)."""
    return (f"SELECT c.clip_code, u.embedding FROM {faces} u JOIN {clip_codes} c USING (source, clip_id) "
            f"WHERE ({USABLE_FACE}) AND {EMBEDDER_OUTPUTS}")


def clip_sums(con: duckdb.DuckDBPyConnection, sql: str, n_clips: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(sums [n_clips, dim] float32 or None when no row, counts [n_clips]) of the embeddings
    that `sql` gives as (clip_code, embedding) rows, streamed: 17M of them do not fit in memory.

    A batch is added to the rows of the clips it holds only, by a sparse indicator over those
    clips: its cost does not grow with the clip count."""
    from scipy import sparse

    sums, counts = None, np.zeros(n_clips, np.int64)
    for batch in con.sql(f"SELECT clip_code, embedding FROM ({sql})").to_arrow_reader(BATCH_FACES):
        if batch.num_rows == 0:
            continue
        codes = batch.column(0).to_numpy()
        flat = batch.column(1).flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        emb = flat.reshape(batch.num_rows, len(flat) // batch.num_rows)
        if sums is None:
            sums = np.zeros((n_clips, emb.shape[1]), np.float32)
        per_clip = np.bincount(codes, minlength=n_clips)
        clips = np.flatnonzero(per_clip)
        row = (np.cumsum(per_clip > 0) - 1)[codes]  # each face's clip, numbered among this batch's clips
        onehot = sparse.csr_matrix((np.ones(len(codes), np.float32), (row, np.arange(len(codes)))),
                                   shape=(len(clips), len(codes)))
        sums[clips] += onehot @ emb
        counts += per_clip
    return sums, counts


def sums_from_clip_rows(con: duckdb.DuckDBPyConnection, n_clips: int) -> tuple[np.ndarray | None, int]:
    """(sums [n_clips, dim] or None, clip rows without a sum) from the clip rows of the clips in
    views `clip_codes` and `clips`, one pass; the sums are None when some row has none."""
    sums, lacking = None, 0
    sql = ("SELECT c.clip_code, k.embedding_faces, k.embedding_sum FROM clip_codes c JOIN clips k "
           "USING (source, clip_id)")
    for batch in con.sql(sql).to_arrow_reader(BATCH_FACES):
        lacking += batch.column(1).null_count
        if lacking or batch.num_rows == 0:
            continue
        codes, lists = batch.column(0), batch.column(2)
        if lists.null_count:  # a clip without usable embedder outputs has no sum
            summed = pc.is_valid(lists)
            codes, lists = pc.filter(codes, summed), pc.filter(lists, summed)
        if len(codes) == 0:
            continue
        codes, flat = codes.to_numpy(), lists.flatten().to_numpy(zero_copy_only=False)
        if sums is None:
            sums = np.zeros((n_clips, len(flat) // len(codes)), np.float32)
        sums[codes] = flat.reshape(len(codes), -1)  # one row per clip: clip keys are unique
    return (None if lacking else sums), lacking


def unit_rows(sums: np.ndarray | None, n_clips: int, block: int = 8192) -> np.ndarray:
    """Sums scaled to unit length in place (a clip without faces: zeros), in row blocks: whole-array
    temporaries are fresh memory, and first touching 68 MB of it took longer than the read of the
    clip rows on the benchmark machine. Each row's norm is the one np.linalg.norm gives it."""
    if sums is None:
        return np.zeros((n_clips, 1), np.float32)
    for begin in range(0, len(sums), block):
        rows = sums[begin:begin + block]
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return sums


def fill_clip_rows(faces: pa.Table, clips: list[dict]) -> None:
    """Set each clip row's `embedding_sum` (None without faces) and `embedding_faces` from the
    shard's face rows, by the query curation would run over them."""
    codes = pa.table({"clip_code": np.arange(len(clips), dtype=np.int64),
                      "source": [c["source"] for c in clips], "clip_id": [c["clip_id"] for c in clips]})
    with duckdb.connect(config={"threads": 1}) as con:  # one shard's faces: more threads, more memory
        con.register("shard_faces", faces)
        con.register("shard_clips", codes)
        sums, counts = clip_sums(con, outputs_sql("shard_faces", "shard_clips"), len(clips))
    for i, clip in enumerate(clips):
        clip["embedding_faces"] = int(counts[i])
        clip["embedding_sum"] = sums[i].tolist() if counts[i] else None
