"""DuckDB views over runs and manifests: the one place that turns folders into queryable views.

`connect_runs` checks run folders (cheap: run.json and Parquet footers, no data) and exposes
views `faces` and `clips` over all of them, each row with its absolute `run_dir`. Only finished
shards count: the files of a shard whose marker is missing (a stop between their renames and the
marker, a retry cut short) are not vouched for, and the shard will be redone.
`attach_manifest` adds `manifest` (train and test rows, with `crop_file` / `mask_file` resolved
through the sidecar) and `identities`.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.manifest.folder import ManifestFolder, read_manifest
from mfhq.manifest.io import ShardMarkers, check_schema_version
from mfhq.manifest.schema import MANIFEST_SCHEMA, NAN_SCORE_VERSIONS, RUN_READABLE, SPLITS, ManifestError, retyped

REDO = ("delete it and its marker done/{shard}.json, then run the same `mfhq extract` into {run} again: "
        "only that shard is redone")


class RunError(ManifestError):
    """A run folder that cannot be read; the message names the path and the problem."""


def sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def check_run(run_dir: Path) -> dict:
    """Validate a run folder; returns its run.json."""
    return _checked_run(run_dir)[0]


def _checked_run(run_dir: Path) -> tuple[dict, set[str]]:
    """check_run's work: the run.json, and the schema versions of its faces shards."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder; make one with `mfhq extract --out {run_dir}`")
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise RunError(f"{meta_path}: missing; {run_dir} is not an `mfhq extract` run folder")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{meta_path}: not valid JSON ({exc})") from exc
    face_versions = set()
    for view in ("faces", "clips"):
        for path in shard_files(run_dir, view):
            try:
                schema = pq.read_schema(path)
            except Exception as exc:  # pyarrow raises several types for a damaged footer
                raise RunError(f"{path}: not a readable Parquet file ({exc}); {_redo(path)}") from exc
            _check_kind(path, schema, view)
            version = check_schema_version(path, schema.metadata or {},
                                           "re-run `mfhq extract` into a new folder, or use the mfhq release that wrote it")
            _check_columns(path, schema, _run_schemas()[view], RUN_READABLE[version])
            if view == "faces":
                face_versions.add(version)
    return meta, face_versions


def shard_files(run_dir: Path, view: str) -> list[Path]:
    """The `faces` or `clips` files of the run's finished shards (those with a marker in done/),
    in shard order; a marker whose file is gone, or no finished shard at all, is a RunError."""
    run_dir = Path(run_dir)
    done = sorted(ShardMarkers(run_dir).done_ids())
    if not done:
        # (its readers check run.json first: a folder that is no run is named so before this)
        raise RunError(f"{run_dir / 'done'}: no finished shard (no completion marker); the run stopped (or is still "
                       f"at work) before its first shard finished. Run the same `mfhq extract` into {run_dir} to finish it")
    files = [run_dir / view / f"{sid}.parquet" for sid in done]
    for path in files:
        if not path.is_file():
            raise RunError(f"{path}: missing, yet done/{path.stem}.json marks its shard finished; delete that marker, "
                           f"then run the same `mfhq extract` into {run_dir} again: only that shard is redone")
    return files


def _check_kind(path: Path, schema: pa.Schema, view: str) -> None:
    """A file of another kind among the shards (manifests once written with `--out RUN/faces`)
    is named as what it is: the run is fine once it goes, so no advice to redo the run."""
    kind = (schema.metadata or {}).get(b"mfhq.schema", b"").decode()
    if kind and kind != view:
        maker = "`mfhq cluster-sample`'s output" if kind in ("manifest", "identities") else f"a {kind} file"
        raise RunError(f"{path}: not a {view} shard of this run but {maker} (mfhq.schema: {kind}), written into "
                       f"the run folder; move it out of {path.parent}: the run itself is fine")


_SQL_TYPES = {pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float32(): "FLOAT",
              pa.float64(): "DOUBLE", pa.string(): "VARCHAR", pa.bool_(): "BOOLEAN"}


# Runs of version 8 and older wrote NaN for "no detector score" (now NULL). DuckDB cannot be
# asked about those NaNs directly: it folds isnan() and x <> x to false from the Parquet min/max
# statistics (which leave NaN out), so a WHERE on them loses every NaN row. The text of the
# value is outside that reasoning. Only runs holding such shards pay for the cast.
_NAN_AS_NULL = " REPLACE (CASE WHEN CAST(det_score AS VARCHAR) ILIKE 'nan' THEN NULL ELSE det_score END AS det_score)"


def _sql_type(arrow: pa.DataType) -> str:
    if pa.types.is_list(arrow):
        return _sql_type(arrow.value_type) + "[]"
    return _SQL_TYPES[arrow]


def _run_schemas() -> dict[str, pa.Schema]:
    from mfhq.manifest.run_schema import CLIP_SCHEMA, FACE_SCHEMA

    return {"faces": FACE_SCHEMA, "clips": CLIP_SCHEMA}


def _redo(path: Path) -> str:
    return REDO.format(shard=path.stem, run=path.parent.parent)


def _check_columns(path: Path, schema: pa.Schema, expected: pa.Schema, absent_ok=frozenset()) -> None:
    """Every column this code reads, with its type: a shard edited after extract (a column
    dropped or retyped) is named here, not in a query error halfway through curation.
    `absent_ok`: columns an older readable version never had."""
    missing = [f.name for f in expected if f.name not in schema.names and f.name not in absent_ok]
    if missing:
        raise RunError(f"{path}: column(s) {missing} missing from this {expected.metadata[b'mfhq.schema'].decode()} "
                       f"shard; it was changed after `mfhq extract` wrote it. {_redo(path).capitalize()}")
    wrong = retyped(schema, expected)  # the manifests' rule too (mfhq.manifest.schema.reads_as)
    if wrong:
        raise RunError(f"{path}: column {'; column '.join(wrong)}; {_redo(path)}")


def damaged_shard(run_dirs: list[Path]) -> RunError | None:
    """Read every shard in full (all data pages): the first that fails, as a RunError."""
    for run_dir in run_dirs:
        for view in ("faces", "clips"):
            for path in shard_files(run_dir, view):
                try:
                    pq.read_table(path)
                except Exception as exc:  # OSError, ArrowInvalid...: whatever the damage raises
                    return RunError(f"{path}: damaged Parquet data ({exc}); {_redo(path)}")
    return None


@contextmanager
def naming_damaged_shards(run_dirs: list[Path]) -> Iterator[None]:
    """A DuckDB error while reading runs becomes one RunError naming the damaged shard.

    Footers and schemas are checked up front (cheaply); data pages are only read by the
    queries themselves, so a damaged page surfaces there. Only then is each shard read in
    full to find the culprit; an error no shard explains is raised as it was."""
    try:
        yield
    except duckdb.Error as exc:
        damage = damaged_shard(run_dirs)
        if damage is None:
            raise
        raise damage from exc


def connect_runs(run_dirs: list[Path]) -> tuple[duckdb.DuckDBPyConnection, list[dict]]:
    """DuckDB views `faces` and `clips` over the finished shards of all runs, each row with its
    absolute `run_dir`.

    Clip keys (source/clip_id) must be unique across runs: they are the identities' units.
    """
    if not run_dirs:
        raise RunError("no run folder given")
    check_given_once(run_dirs)
    metas, parts = [], {"faces": [], "clips": []}
    for run_dir in run_dirs:
        run_dir = Path(run_dir).resolve()
        meta, face_versions = _checked_run(run_dir)
        metas.append({**meta, "run_dir": str(run_dir)})
        for view in parts:
            listing = ", ".join(sql_str(str(p)) for p in shard_files(run_dir, view))
            scores = _NAN_AS_NULL if view == "faces" and face_versions & NAN_SCORE_VERSIONS else ""
            parts[view].append(f"SELECT *{scores}, {sql_str(str(run_dir))} AS run_dir "
                               f"FROM read_parquet([{listing}], union_by_name = true)")
    con = duckdb.connect()
    for view, selects in parts.items():
        union = " UNION ALL BY NAME ".join(selects)
        # Runs of an older readable version only: the columns they lack, as NULLs of their type.
        have = {row[0] for row in con.execute(f"DESCRIBE {union}").fetchall()}
        nulls = "".join(f", CAST(NULL AS {_sql_type(f.type)}) AS {f.name}" for f in _run_schemas()[view] if f.name not in have)
        con.execute(f"CREATE VIEW {view} AS SELECT *{nulls} FROM ({union})")
    _refuse_a_clip_in_two_runs(con)
    return con, metas


def check_given_once(run_dirs: list[Path]) -> None:
    """RunError for a run folder given twice, however spelled: every face would be read twice,
    and sampled twice (commands that compare the runs with a manifest's call it first)."""
    given: dict[Path, Path] = {}
    for as_given in run_dirs:
        run_dir = Path(as_given).resolve()
        if run_dir in given:
            raise RunError(f"{as_given}: the run {given[run_dir]} given again (both are {run_dir}); give each run once")
        given[run_dir] = as_given


def _refuse_a_clip_in_two_runs(con: duckdb.DuckDBPyConnection) -> None:
    """A clip key is an identity's unit: in two runs it is either one video extracted twice (runs
    that overlap) or two videos under one id (two folders holding files of one name)."""
    found = con.execute(
        "SELECT source || '/' || clip_id, list(DISTINCT run_dir ORDER BY run_dir), "
        "list(DISTINCT coalesce(video_digest, video_path) ORDER BY coalesce(video_digest, video_path)), "
        "list(DISTINCT video_path ORDER BY video_path), count(*) OVER () FROM clips GROUP BY source, clip_id "
        "HAVING count(DISTINCT run_dir) > 1 ORDER BY 1 LIMIT 1").fetchall()
    if not found:
        return
    key, runs, files, paths, clips = found[0]
    where = f"clip {key} is in {len(runs)} of the runs given ({', '.join(runs)}; {clips} clip(s) are in more than one)"
    if len(files) <= 1:
        raise RunError(f"{where}, read from the same video {paths[0] or '(none: no video)'}: runs that overlap; give "
                       "each clip's run once, or extract the clips of one run only")
    raise RunError(f"{where}, each from another video ({', '.join(paths)}): a clip id is the dataset's own id, or for "
                   "the folder source the file's path under --root, so two folders holding files of one name meet. "
                   "Extract those folders as one run over a common parent (each subfolder becomes part of the id), "
                   "or rename the files")


def connect(run_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views `faces` and `clips` over one run's completed shards."""
    return connect_runs([run_dir])[0]


def attach_manifest(con: duckdb.DuckDBPyConnection, path: Path, roots: dict[str, Path] | None = None) -> ManifestFolder:
    """Views `manifest` (train + test rows, plus absolute `crop_file` / `mask_file`) and
    `identities` over a manifest folder (or one of its files), checked first."""
    folder = ManifestFolder.open(path, roots)
    files = [folder.folder / f"{name}.parquet" for name in SPLITS]
    for f in files:
        read_manifest(f, columns=[])  # clear errors for a missing or foreign file, or another version
    ident = folder.folder / "identities.parquet"
    read_manifest(ident, columns=[])
    run_names = sorted({r["name"] for r in folder.sidecar.get("runs", [])})
    con.register("manifest_runs_arrow", pa.table({"run": run_names,
                                                  "run_root": [str(folder.run_root(n).resolve()) for n in run_names]}))
    con.execute("CREATE TABLE manifest_runs AS SELECT * FROM manifest_runs_arrow")
    con.unregister("manifest_runs_arrow")
    rows = f"read_parquet([{', '.join(sql_str(str(f)) for f in files)}])"
    # An older readable version (MANIFEST_READABLE): the columns it lacks, as NULLs of their type.
    have = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {rows}").fetchall()}
    nulls = "".join(f", CAST(NULL AS {_sql_type(f.type)}) AS {f.name}" for f in MANIFEST_SCHEMA if f.name not in have)
    con.execute(
        f"CREATE VIEW manifest AS SELECT m.*{nulls}, r.run_root || '/' || m.crop_path AS crop_file, "
        "CASE WHEN m.mask_path IS NULL THEN NULL ELSE r.run_root || '/' || m.mask_path END AS mask_file "
        f"FROM {rows} m JOIN manifest_runs r USING (run)"
    )
    con.execute(f"CREATE VIEW identities AS SELECT * FROM read_parquet({sql_str(str(ident))})")
    return folder

