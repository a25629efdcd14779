"""What `mfhq materialize` has to make: the sampled faces of a manifest, joined to their runs' rows,
as Clip records grouped into shards, and the plan's digest.

Only runs made with align.crops: materialize need work (a one-pass run wrote its crops already).
A face's inputs come from its run's faces/ row (landmarks, landmarks68, crop_digest) and clips/
row (video_path, decoder); its files are the paths the manifest row names.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mfhq.config import PipelineConfig, config_from_dict
from mfhq.manifest.folder import ManifestFolder
from mfhq.manifest.run_state import rows_changed_since
from mfhq.manifest.schema import SPLITS, ManifestError
from mfhq.manifest.views import RunError, connect_runs, naming_damaged_shards
from mfhq.records import Clip

ROW_KEYS = ["run", "source", "clip_id", "frame_index", "face_index", "crop_path", "mask_path"]


FACE_KEYS = ("frame_index", "face_index", "landmarks", "landmarks68", "crop_digest", "crop_path", "mask_path")


@dataclass
class RunWork:
    """One run's part of a manifest: its folder, config and the clips with faces to make. A clip's
    `extra` holds its decoder and where its faces are in the plan's table (`rows`: offset, count);
    the faces themselves become dicts only as its shard runs (`with_faces`), so the driver holds
    one Arrow table, not a Python object per sampled face."""

    name: str
    run_dir: Path
    cfg: PipelineConfig
    clips: list[Clip] = field(default_factory=list)
    run_id: str | None = None  # run.json's: a run made again at the same path has another one


@dataclass
class WorkShard:
    """Clips of one run whose files are vouched for by one marker: `<run name>-<n>`."""

    id: str
    run: str
    clips: list[Clip]

    @property
    def n_faces(self) -> int:
        return sum(c.extra["rows"][1] for c in self.clips)


def with_faces(clip: Clip, table: pa.Table) -> Clip:
    """The clip as the worker takes it: extra = {decoder, size: the frames' (width, height) extract
    read, faces: [{FACE_KEYS}]}."""
    offset, count = clip.extra["rows"]
    faces = table.select(list(FACE_KEYS)).slice(offset, count).to_pylist()
    return dataclasses.replace(clip, extra={"decoder": clip.extra["decoder"], "size": clip.extra.get("size"),
                                            "faces": faces})


def sampled_rows(folder: ManifestFolder) -> pa.Table:
    return pa.concat_tables([folder.split(name, ROW_KEYS) for name in SPLITS])


class StaleManifest(ManifestError):
    """A run's rows changed since cluster-sample sampled faces from them."""


def check_runs_unchanged(folder: ManifestFolder) -> None:
    """Refuse a manifest one of whose runs finished shards anew since cluster-sample built it
    (`extract --retry`, `--force` under another config): its faces were chosen from rows that no
    longer describe the run, even where the sampled rows are still there (_check_found catches
    the rest). A run extracted again with the same rows passes: a new run_id alone only means its
    crops must be made again, which materialize does."""
    for entry in folder.sidecar.get("runs", []):
        if entry.get("snapshot") is None:
            continue  # a manifest from before snapshots: only the sampled rows can be checked
        change = rows_changed_since(entry["snapshot"], folder.run_root(entry.get("name")))
        if change:
            raise StaleManifest(f"manifest {folder.folder} is older than its run {entry.get('name')!r}: {change}. Its "
                                "sampled faces were chosen from rows that no longer describe the run, so no crop is "
                                f"made; re-run `mfhq cluster-sample` into {folder.folder}, then `mfhq materialize`")


def plan_work(folder: ManifestFolder) -> tuple[list[RunWork], pa.Table | None]:
    """The runs of the manifest that made candidates only, each with its sampled clips, and the
    table of their faces (ordered by run, clip, frame, face)."""
    rows = sampled_rows(folder)
    names = sorted(set(rows.column("run").to_pylist()))
    runs = {name: folder.run_root(name).resolve() for name in names}
    con, metas = connect_runs([runs[n] for n in names])
    later = [m for m in metas if ((m.get("config") or {}).get("align") or {}).get("crops") == "materialize"]
    if not later:
        return [], None
    by_dir = {str(runs[n]): n for n in names}
    work = {by_dir[m["run_dir"]]: RunWork(by_dir[m["run_dir"]], Path(m["run_dir"]), config_from_dict(m["config"]),
                                          run_id=m.get("run_id")) for m in later}
    wanted = rows.filter(pa.array([r in work for r in rows.column("run").to_pylist()]))
    run_dirs = pa.array([str(work[r].run_dir) for r in wanted.column("run").to_pylist()])
    con.register("wanted", wanted.append_column("run_dir", run_dirs))
    with naming_damaged_shards([w.run_dir for w in work.values()]):
        table = con.sql(
            "SELECT w.run, w.source, w.clip_id, c.video_key, c.video_path, c.decoder, c.width, c.height, w.frame_index, "
            "w.face_index, "
            "f.landmarks, f.landmarks68, f.crop_digest, w.crop_path, w.mask_path FROM wanted w "
            "LEFT JOIN faces f USING (run_dir, source, clip_id, frame_index, face_index) "
            "LEFT JOIN clips c USING (run_dir, source, clip_id) "
            "ORDER BY w.run, w.source, w.clip_id, w.frame_index, w.face_index").to_arrow_table()
    _check_found(table, work)
    for offset, count in _clip_spans(table):
        first = table.slice(offset, 1).to_pylist()[0]
        work[first["run"]].clips.append(Clip(first["source"], first["clip_id"], Path(first["video_path"]),
                                             first["video_key"], extra={"decoder": first["decoder"],
                                                                        "size": (first["width"], first["height"]),
                                                                        "rows": (offset, count)}))
    return [work[name] for name in sorted(work)], table


def _check_found(table: pa.Table, work: dict[str, RunWork]) -> None:
    """Every sampled face has its run's row and a digest to check its crop against."""
    lost = table.filter(pc.is_null(table.column("crop_digest")))
    if lost.num_rows:
        row = lost.slice(0, 1).to_pylist()[0]
        face = f"{row['source']}/{row['clip_id']} frame {row['frame_index']} face {row['face_index']}"
        raise RunError(f"{work[row['run']].run_dir}: {lost.num_rows} sampled face(s) of the manifest have no row "
                       f"with a crop digest in its faces/ (e.g. {face}): the run changed after `mfhq "
                       "cluster-sample` read it; run cluster-sample again")


def _clip_spans(table: pa.Table):
    """(offset, count) of each (run, clip)'s consecutive rows."""
    keys = list(zip(*(table.column(c).to_pylist() for c in ("run", "source", "clip_id"))))
    begin = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[begin]:
            yield begin, i - begin
            begin = i


def shards_of(work: list[RunWork]) -> list[WorkShard]:
    """Each run's clips in key order, `run.shard_size` (the run's own) clips a shard."""
    shards = []
    for run in work:
        size = run.cfg.run.shard_size
        for n, begin in enumerate(range(0, len(run.clips), size)):
            shards.append(WorkShard(f"{run.name}-{n:05d}", run.name, run.clips[begin:begin + size]))
    return shards


def plan_digest(shards: list[WorkShard], table: pa.Table | None, work: list[RunWork] = ()) -> str:
    """What the plan makes, as a hash: a manifest rewritten with other faces gives another one, and
    so does a run deleted and extracted again at the same path (its run id differs), whose files
    the old markers do not vouch for even where its rows are the same. Runs from before run ids
    add nothing, so their plans keep the digest they had."""
    digest = hashlib.sha256()
    for run in work:
        if run.run_id:
            digest.update(f"run\t{run.name}\t{run.run_id}\n".encode())
    for shard in shards:
        digest.update(f"{shard.id}\t{','.join(c.key for c in shard.clips)}\n".encode())
    if table is not None:
        for column in ("crop_path", "mask_path", "crop_digest"):
            digest.update("\n".join(table.column(column).to_pylist()).encode())
    return digest.hexdigest()[:16]
