"""cluster-sample over a run whose clips of non-square pixels an earlier mfhq read as stored (their
faces squeezed or stretched) says so, with how to mend it: the same `mfhq extract` into the run
extracts just those clips again, as shown."""
from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.config import CurateConfig
from mfhq.curate import cluster_sample
from mfhq.decode_shown import READ_AS_STORED
from synthetic_runs import ClipSpec, write_run

SPECS = [ClipSpec("hq", f"c{i}", f"yt{i}", i) for i in range(6)]


def _say_read_as_stored(run, clip_id: str) -> None:
    for shard in (run / "clips").glob("*.parquet"):
        table = pq.read_table(shard)
        reasons = [f"/videos/{clip_id}.mp4: non-square pixels (SAR 32:27, shown 853 px wide): {READ_AS_STORED}, "
                   "stretched as stored" if c == clip_id else r
                   for c, r in zip(table.column("clip_id").to_pylist(), table.column("reason").to_pylist())]
        where = table.schema.get_field_index("reason")
        pq.write_table(table.set_column(where, table.schema.field(where), pa.array(reasons, pa.string())), shard)


def test_clips_an_earlier_mfhq_read_as_stored_are_named_with_the_way_to_mend_them(tmp_path, caplog):
    run = write_run(tmp_path / "run", SPECS)
    with caplog.at_level(logging.WARNING):
        cluster_sample([run], tmp_path / "clean", CurateConfig(test_videos=1))
    assert "read as stored" not in caplog.text
    _say_read_as_stored(run, "c2")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cluster_sample([run], tmp_path / "man", CurateConfig(test_videos=1))
    assert "1 clip(s) have non-square pixels that an earlier mfhq read as stored" in caplog.text
    assert f"`mfhq extract` into {run.resolve()} again" in caplog.text
