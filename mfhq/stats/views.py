"""Named DuckDB views for `mfhq stats`, over run folders and (optionally) a manifest.

Base views: `faces`, `clips` (every run), and with a manifest `manifest` (train and test rows,
with `crop_file` / `mask_file` resolved through its sidecar) and `identities` (one row per clip:
identity, merge decision, status); mfhq.manifest.views builds them. The named views below are
plain SQL over them, so `--sql` can query them and the report is nothing but their rows.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from mfhq.config import AlignConfig
from mfhq.errors import MfhqError
from mfhq.manifest.folder import ManifestFolder
from mfhq.manifest.views import attach_manifest, check_run, connect_runs
from mfhq.records import DROP_REASONS


class StatsError(MfhqError, RuntimeError):
    """Stats cannot be computed; the message names the file and the problem."""


# Which stage drops a face for a reason: the vocabulary's own table.
STAGE_OF_REASON = DROP_REASONS
_STAGE_CASE = "CASE " + " ".join(f"WHEN drop_reason = '{r}' THEN '{s}'" for r, s in STAGE_OF_REASON.items()) + \
    " WHEN kept THEN 'kept' ELSE 'other' END"
_SPREAD = "sqrt(var_pop(yaw) + var_pop(pitch) + var_pop(roll))"
# Every kept face, named so: curation's candidates are fewer where curate.min_quality narrows them.
_POSE_HIST = ("SELECT 'kept' AS faces_of, axis, bin, count(*) AS faces FROM ("
              "SELECT 'yaw' AS axis, floor(yaw / 10) * 10 AS bin FROM faces WHERE kept AND yaw IS NOT NULL UNION ALL "
              "SELECT 'pitch', floor(pitch / 10) * 10 FROM faces WHERE kept AND pitch IS NOT NULL) GROUP BY ALL")
_QUALITY_HIST = ("SELECT 'kept' AS faces_of, floor(quality * 20) / 20 AS bin, count(*) AS faces FROM faces "
                 "WHERE kept AND quality IS NOT NULL GROUP BY ALL")

# The report's headline: (section, metric, value) rows, so its totals are view rows like every number.
# Videos are source videos (video_key): a dataset's many clip files of one YouTube video count
# once, and so does a YouTube video that two datasets cut clips from (CelebV-HQ and CelebV-Text
# share ids), as the merge, the split and the manifest card count it. Those with a clip that read
# frames are counted apart (one clip decoded is enough to count its video).
_HEADLINE_RUN = (
    "SELECT 0 AS ord, 'totals' AS section, 'source videos' AS metric, "
    "count(DISTINCT video_key) AS value FROM clips "
    "UNION ALL SELECT 1, 'totals', 'source videos with a clip decoded', count(DISTINCT video_key) "
    "FILTER (WHERE n_frames_read > 0) FROM clips "
    "UNION ALL SELECT 2, 'totals', 'clips', count(*) FROM clips "
    # faces a source's annotations gave (VFHQ's per-frame lines, where detection was skipped) have
    # no detector score (NULL; the faces view reads older runs' NaN so): counted apart, so 'detected'
    # means what the detector found. Their row only where there are some: most sources give none,
    # and a 0 there reads as annotations lost.
    "UNION ALL SELECT 3, 'totals', 'faces detected', count(det_score) FROM faces "
    "UNION ALL SELECT 4, 'totals', 'faces from source annotations (not detected)', count(*) "
    "FILTER (WHERE det_score IS NULL) FROM faces HAVING count(*) FILTER (WHERE det_score IS NULL) > 0 "
    "UNION ALL SELECT 5, 'totals', 'faces kept', count(*) FILTER (WHERE kept) FROM faces "
    "UNION ALL SELECT CASE WHEN status = 'ok' THEN 6 ELSE 7 END, 'clips by status', 'clips ' || status, count(*) "
    "FROM clips GROUP BY status"
)
# The manifest's numbers in a section of their own: it may have been built from an older state of
# the run (`stats` says so), and its totals must not read as the run's.
_HEADLINE_MANIFEST = (
    " UNION ALL SELECT 8, '{manifest}', 'identities', count(DISTINCT identity_id) FROM manifest "
    # merge: merge marks every clip of a merged identity 'merged'; the one naming it was merged into nothing
    "UNION ALL SELECT 9, '{manifest}', 'clips merged into another''s identity', count(*) FILTER (WHERE "
    "decision = 'merged' AND source || '/' || clip_id <> identity_id) FROM identities "
    "UNION ALL SELECT 9, '{manifest}', 'clips dropped as duplicates (merge: dedup)', "
    "count(*) FILTER (WHERE decision = 'dedup_dropped') FROM identities "
    "UNION ALL SELECT CASE WHEN split = 'train' THEN 10 ELSE 11 END, '{manifest}', split || ' identities', "
    "count(DISTINCT identity_id) FROM manifest GROUP BY split "
    "UNION ALL SELECT CASE WHEN split = 'train' THEN 10 ELSE 11 END, '{manifest}', split || ' faces', count(*) "
    "FROM manifest GROUP BY split "
    # face_size is the source extent the crop covers: under the run's align.size, the crop was upscaled
    "UNION ALL SELECT 12, '{manifest}', 'sampled faces upscaled (face_size < align.size)', "
    "count(*) FILTER (WHERE m.face_size < a.align_size) FROM manifest m JOIN manifest_align a USING (run) "
    "UNION ALL SELECT 13, '{manifest}', 'sampled faces of unknown face_size (manifest version 2)', count(*) "
    "FROM manifest WHERE face_size IS NULL HAVING count(*) > 0"
)
_HEADLINE = "SELECT section, metric, value::BIGINT AS value FROM ({}) ORDER BY ord, metric DESC"

RUN_VIEWS = {
    "headline": _HEADLINE.format(_HEADLINE_RUN),
    "clip_status": "SELECT status, count(*) AS clips FROM clips GROUP BY status ORDER BY clips DESC, status",
    "clip_reasons": "SELECT status, coalesce(reason, '') AS reason, count(*) AS clips FROM clips "
                    "WHERE status <> 'ok' GROUP BY ALL ORDER BY status, reason",
    "face_outcomes": f"SELECT CASE WHEN kept THEN 'kept' ELSE 'dropped' END AS outcome, {_STAGE_CASE} AS stage, "
                     "coalesce(drop_reason, '') AS reason, count(*) AS faces FROM faces GROUP BY ALL ORDER BY outcome DESC, stage, reason",
    "clips_per_source": "SELECT source, count(*) AS clips, count(*) FILTER (WHERE n_faces_kept > 0) AS clips_with_kept_faces, "
                        "sum(n_faces_kept)::BIGINT AS faces_kept FROM clips GROUP BY source ORDER BY source",
    "pose_hist": _POSE_HIST + " ORDER BY axis, bin",
    "quality_hist": _QUALITY_HIST + " ORDER BY bin",
    "stage_throughput": "SELECT stage, count(*) AS clips, round(sum(seconds), 3) AS seconds, "
                        "round(sum(frames) / nullif(sum(seconds), 0), 2) AS frames_per_s FROM ("
                        "SELECT unnest(map_keys(stage_seconds)) AS stage, unnest(map_values(stage_seconds)) AS seconds, "
                        "n_frames_read AS frames FROM clips WHERE stage_seconds IS NOT NULL) GROUP BY stage ORDER BY seconds DESC",
    # Without a manifest an identity is a clip: spread of its kept faces' pose.
    "pose_spread": f"SELECT source || '/' || clip_id AS identity_id, count(*) AS faces_before, {_SPREAD} AS spread_before, "
                   "NULL::DOUBLE AS spread_after FROM faces WHERE kept AND yaw IS NOT NULL GROUP BY ALL ORDER BY identity_id",
}

MANIFEST_VIEWS = {
    "headline": _HEADLINE.format(_HEADLINE_RUN + _HEADLINE_MANIFEST),  # {manifest}: filled by connect_stats
    "identities_per_source": "SELECT source, split, count(DISTINCT identity_id) AS identities, count(*) AS faces, "
                             "count(DISTINCT video_key) AS videos FROM manifest GROUP BY ALL ORDER BY source, split",
    "identity_status": "SELECT status, decision, count(*) AS clips, count(DISTINCT identity_id) AS identities "
                       "FROM identities GROUP BY ALL ORDER BY status, decision",
    "pose_hist": _POSE_HIST + " UNION ALL SELECT 'sampled', axis, bin, count(*) FROM ("
                 "SELECT 'yaw' AS axis, floor(yaw / 10) * 10 AS bin FROM manifest UNION ALL "
                 "SELECT 'pitch', floor(pitch / 10) * 10 FROM manifest) GROUP BY ALL ORDER BY 1, 2, 3",
    "quality_hist": _QUALITY_HIST + " UNION ALL SELECT 'sampled', floor(quality * 20) / 20, count(*) "
                    "FROM manifest GROUP BY ALL ORDER BY 1, 2",
    # Before: every kept face of the identity's member clips; after: its sampled faces.
    "pose_spread": f"SELECT b.identity_id, b.faces_before, b.spread_before, a.spread_after FROM ("
                   f"SELECT i.identity_id, count(*) AS faces_before, {_SPREAD} AS spread_before FROM faces f "
                   "JOIN identities i USING (source, clip_id) WHERE f.kept AND f.yaw IS NOT NULL AND i.decision <> 'dedup_dropped' "
                   f"GROUP BY ALL) b JOIN (SELECT identity_id, {_SPREAD} AS spread_after FROM manifest GROUP BY ALL) a "
                   "USING (identity_id) ORDER BY identity_id",
}


def connect_stats(run_dirs: list[Path], manifest: Path | None = None,
                  manifest_section: str = "manifest") -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A connection with the base and named views; returns it and the named views' names.
    manifest_section: the headline's name for the manifest's numbers."""
    con, _ = connect_runs(run_dirs)
    views = dict(RUN_VIEWS)
    if manifest is not None:
        # a run given with --run is found there even if the manifest recorded it elsewhere
        align_sizes(con, attach_manifest(con, Path(manifest), roots=given_runs(run_dirs)))
        views.update(MANIFEST_VIEWS)
        views["headline"] = views["headline"].replace("{manifest}", manifest_section.replace("'", "''"))
    for name, sql in views.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    return con, list(views)


def align_sizes(con: duckdb.DuckDBPyConnection, folder: ManifestFolder) -> None:
    """Table `manifest_align` (run, align_size): the crop side each of the manifest's runs was
    extracted at (its run.json config; a run that records no config: the default)."""
    names = sorted({r["name"] for r in folder.sidecar.get("runs", [])})
    sizes = [((check_run(folder.run_root(n)).get("config") or {}).get("align") or {}).get("size", AlignConfig().size)
             for n in names]
    con.register("manifest_align_arrow", pa.table({"run": names, "align_size": pa.array(sizes, pa.int64())}))
    con.execute("CREATE TABLE manifest_align AS SELECT * FROM manifest_align_arrow")
    con.unregister("manifest_align_arrow")


def given_runs(run_dirs: list[Path]) -> dict[str, Path]:
    """Run name -> folder, for the runs given with --run."""
    return {Path(r).resolve().name: Path(r).resolve() for r in run_dirs}
