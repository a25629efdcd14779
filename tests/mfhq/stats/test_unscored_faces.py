"""A face no detector scored (a source's own annotation: VFHQ's per-frame lines) has no
det_score, and reads as NULL wherever a user asks DuckDB: a run of version 8 or older stored NaN
there, which DuckDB cannot be asked about over a Parquet file (it folds isnan() to false from the
column's min/max statistics, and orders NaN above every number, so `det_score > 0.5` kept every
annotation). mfhq's views read those NaNs as NULL, and stats counts them apart either way."""
from __future__ import annotations

import math

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfhq.manifest.io import atomic_write_table
from mfhq.manifest.schema import RUN_READABLE
from mfhq.manifest.views import connect_runs
from mfhq.records import FACE_SCHEMA, Clip, FaceMeasures, FaceRow
from mfhq.stats.report import write_report
from synthetic_runs import ClipSpec, write_run

SPECS = [ClipSpec("hq", f"c{i}", f"yt{i}", i) for i in range(4)]
UNSCORED = 7  # faces of the first shard given NaN, as version 8 wrote an annotation's score
# Every readable version before 9 wrote NaN there: each of them must read as NULL, not only the last.
NAN_WRITERS = sorted((v for v in RUN_READABLE if int(v) < 9), key=int)


def _older_run(tmp_path, version: str = "8"):
    """A run whose first faces shard is as `version` wrote it: NaN scores, non-null column, and
    without the face columns that version did not have yet."""
    run = write_run(tmp_path / "run", SPECS)
    shard = sorted((run / "faces").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    table = table.drop_columns([c for c in RUN_READABLE[version] if c in table.column_names])
    scores = table.column("det_score").to_pylist()
    scores[:UNSCORED] = [math.nan] * UNSCORED
    where = table.schema.get_field_index("det_score")
    old = table.schema.set(where, pa.field("det_score", pa.float32(), nullable=False))
    table = table.set_column(where, old.field(where), pa.array(scores, pa.float32())).cast(old)
    stamp = {**table.schema.metadata, b"mfhq.schema_version": version.encode()}
    pq.write_table(table.replace_schema_metadata(stamp), shard)
    return run, table.num_rows


@pytest.mark.parametrize("version", NAN_WRITERS)
def test_an_older_runs_nan_scores_read_as_null_and_a_threshold_leaves_them_out(tmp_path, version):
    run, _ = _older_run(tmp_path, version)
    con, _ = connect_runs([run])
    total = con.execute("SELECT count(*) FROM faces").fetchone()[0]
    assert con.execute("SELECT count(*) FROM faces WHERE det_score IS NULL").fetchone()[0] == UNSCORED
    # every other face scored 0.9: a threshold keeps them and no annotation
    assert con.execute("SELECT count(*) FROM faces WHERE det_score > 0.5").fetchone()[0] == total - UNSCORED
    assert con.execute("SELECT max(det_score) FROM faces").fetchone()[0] < 1


def test_stats_counts_an_older_runs_annotations_apart(tmp_path):
    run, _ = _older_run(tmp_path)
    write_report([run], None, tmp_path / "rep")
    head = pd.read_csv(tmp_path / "rep" / "tables" / "headline.csv").set_index("metric").value.to_dict()
    total = sum(spec.faces + spec.dropped for spec in SPECS)
    assert head["faces from source annotations (not detected)"] == UNSCORED
    assert head["faces detected"] == total - UNSCORED


def test_a_face_row_never_holds_nan(tmp_path):
    """The row builder owns the rule: whatever a stage hands over as 'not measured' (NaN from a
    model, a source annotation's missing score) is NULL in the shard, so DuckDB finds it."""
    clip = Clip("folder", "a", tmp_path / "a.mp4", "a")
    face = FaceMeasures(frame_index=0, time_sec=0.0, face_index=0, det_score=math.nan, bbox=[0.0, 0, 9, 9],
                        landmarks=[1.0] * 10, face_size=math.nan, identity_similarity=0.8, out_of_frame=0.0,
                        yaw=math.nan, pitch=1.0, roll=2.0, quality=math.nan, embedding=None, embedding_frame=None)
    rows = [FaceRow.kept(clip, face, "crops/a/0.jpg", "masks/a/0.png", "arcface448", "test"),
            FaceRow.dropped(clip, face._replace(det_score=0.9, quality=0.5), "too_small", "arcface448", "test")]
    path = tmp_path / "faces.parquet"
    atomic_write_table(path, rows, FACE_SCHEMA)
    found = duckdb.sql(f"SELECT count(*) FILTER (WHERE det_score IS NULL), count(*) FILTER (WHERE quality IS NULL), "
                       f"count(*) FILTER (WHERE det_score > 0.5), count(*) FILTER (WHERE yaw IS NULL) "
                       f"FROM '{path}'").fetchall()[0]
    assert found == (1, 1, 1, 2)
