"""`mfhq summary` wraps long reasons at word boundaries, never mid-word."""
from __future__ import annotations

from conftest import run_cli


def test_summary_wraps_long_reasons_at_word_boundaries(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mfhq.run_summary import summary_text
    from synthetic_runs import ClipSpec, write_run

    run = write_run(tmp_path / "run", [ClipSpec("folder", "c1", "v1", 1, faces=2)])
    shard = next((run / "clips").glob("*.parquet"))
    table = pq.read_table(shard)
    reason = ("decode_error: the container reports 9000 frames but the stream ends after 212; "
              "decord gave up at frame 213 and PyAV could not seek past the damaged keyframe")
    table = table.set_column(table.schema.get_field_index("status"), "status", pa.array(["decode_error"]))
    table = table.set_column(table.schema.get_field_index("reason"), "reason", pa.array([reason]))
    pq.write_table(table, shard)
    wrapped = summary_text(run, width=100)
    assert all(len(line) <= 100 for line in wrapped.splitlines())
    words = " ".join(line.strip() for line in wrapped.splitlines()[1:-1]).split()
    for word in reason.split():  # every word whole, none cut at a column edge
        assert word in words, word
    full = run_cli("summary", "--run", str(run), "--full").stdout
    assert reason in full
