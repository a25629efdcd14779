"""cluster-sample reads faces without sorting them when they already arrive in key order, and
sorts them when they do not: both give the same faces (real Parquet, real DuckDB)."""
from __future__ import annotations

import dataclasses

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from mfhq.config import CurateConfig
from mfhq.curate import build
from mfhq.curate.bench import write_synthetic
from mfhq.curate.build import pick_faces, usable_filter
from mfhq.curate.cluster import NotInKeyOrder, stream_select


def _pick(table, cfg: CurateConfig, workers: int) -> pa.Table:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW usable_faces AS SELECT * FROM read_parquet('{table}') WHERE {usable_filter(cfg)}")
    con.execute("CREATE TEMP TABLE members AS SELECT source, clip_id, source || '/' || clip_id AS identity_id, "
                "count(*) AS identity_faces FROM usable_faces GROUP BY ALL")
    return pick_faces(con, cfg, workers)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    in_order, shuffled = folder / "in_order.parquet", folder / "shuffled.parquet"
    write_synthetic(in_order, 80, 12_000)  # written clip by clip, frames in order
    duckdb.execute(f"COPY (SELECT * FROM read_parquet('{in_order}') ORDER BY hash(clip_id, frame_index)) "
                   f"TO '{shuffled}' (FORMAT parquet)")
    return in_order, shuffled


def test_faces_in_key_order_are_not_sorted_and_give_the_sorted_selection(tables, monkeypatch):
    reads = []

    def spy(*args, check_order=False, **kwargs):
        try:
            yield from stream_select(*args, check_order=check_order, **kwargs)
            reads.append("unsorted" if check_order else "sorted")
        except NotInKeyOrder:
            reads.append("out of order")
            raise

    monkeypatch.setattr(build, "stream_select", spy)
    cfg = CurateConfig(chunk_faces=2_000)
    in_order = _pick(tables[0], cfg, workers=2)
    assert reads == ["unsorted"]
    shuffled = _pick(tables[1], cfg, workers=1)
    assert reads == ["unsorted", "out of order", "sorted"]
    assert in_order.num_rows > 0 and in_order.equals(shuffled)
    assert _pick(tables[0], dataclasses.replace(cfg, chunk_faces=1_000_000), workers=3).equals(in_order)


def test_a_stream_out_of_key_order_is_refused():
    keys = ["clip_rank", "frame_index", "face_index"]
    batch = pa.record_batch({"clip_rank": [0, 0, 1, 1], "frame_index": np.array([0, 1, 1, 0], np.int32),
                             "face_index": np.zeros(4, np.int16), "yaw": np.zeros(4, np.float32),
                             "pitch": np.zeros(4, np.float32), "roll": np.zeros(4, np.float32),
                             "quality": np.ones(4, np.float32)})
    with pytest.raises(NotInKeyOrder):
        list(stream_select([batch], 16, 8, 10, 0, 1_000, 1, keys, np.array([0, 1]), check_order=True))
    assert sum(t.num_rows for t in stream_select([batch], 16, 8, 10, 0, 1_000, 1, keys, np.array([0, 1]))) == 4
