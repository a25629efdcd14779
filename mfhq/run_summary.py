"""What `mfhq summary`, `extract` and `cluster-sample` print about a run: its state first, then
one line per clip (reasons wrapped at word boundaries, never cut), or the totals."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from mfhq.changed_videos import RETRY_CHANGED
from mfhq.manifest.run_state import read_run_state
from mfhq.manifest.views import connect
from mfhq.records import TRANSIENT_STATUSES, Status

# frames_read: the sampled frames read (fewer than sampled for a stream that ended early), faces: detected
# or given by the source's annotations, kept: the faces kept (n_faces_kept)
COLUMNS = ("source", "clip_id", "status", "frames_read", "faces", "kept", "decoder")
_COUNTS = ("frames_read", "faces", "kept")
_QUERY = ("SELECT source, clip_id, status, n_frames_read, n_faces_detected, n_faces_kept, decoder, "
          "coalesce(reason, '') FROM clips ORDER BY source, clip_id")


def summary_text(run_dir: Path, full: bool = False, width: int | None = None) -> str:
    """The run's clip table. Reasons wrap under their row to fit `width` (the terminal's by
    default); with `full`, each reason stays whole on its row, however long."""
    state = read_run_state(run_dir)
    said = [state.headline(), *([f"WARNING: {state.mixed_configs}"] if state.mixed_configs else [])]
    width = width or shutil.get_terminal_size((120, 24)).columns
    said = [part for line in said for part in textwrap.wrap(line, max(width, 40), break_on_hyphens=False)]
    if not state.shards_done:  # stopped (or still at work) before its first shard finished: no rows yet
        return "\n".join([*said, f"0 clips, 0 ok, {state.never_processed} never processed"])
    rows = connect(run_dir).execute(_QUERY).fetchall()
    cells = [["" if v is None else str(v) for v in row[:-1]] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(COLUMNS)]
    fmt = "  ".join(f"{{:{'>' if h in _COUNTS else '<'}{w}}}" for h, w in zip(COLUMNS, widths))
    lead = len(fmt.format(*COLUMNS)) + 2
    room = max(width - lead, 30)
    lines = [*said, fmt.format(*COLUMNS) + "  reason"]
    for row, reason in zip(cells, (r[-1] for r in rows)):
        head = fmt.format(*row)
        if full or len(reason) <= room:
            lines.append(f"{head}  {reason}".rstrip())
            continue
        # Wrap at spaces only: a cut mid-word ("no_fa") reads as another reason.
        parts = textwrap.wrap(reason, room, break_long_words=False, break_on_hyphens=False)
        lines.append(f"{head}  {parts[0]}")
        lines.extend(" " * lead + part for part in parts[1:])
    ok = sum(1 for r in rows if r[2] == Status.OK)
    unseen = f", {state.never_processed} never processed (not in this table)" if state.never_processed else ""
    lines.append(f"{len(rows)} clips, {ok} ok{unseen}")
    return "\n".join(lines)


def _counts(counts: dict) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _pending(summary, run_dir: Path) -> str | None:
    """The run's state line where shards were left pending: the counts above are not the run's."""
    return read_run_state(run_dir).line() if summary.shards_pending else None


def extract_lines(summary, run_dir: Path, retry: list[str] = ()) -> list[str]:
    """What `mfhq extract` says at the end: what this call did, or, when it had nothing to do,
    the run's own totals and the clips a --retry would run again."""
    if summary.clips:
        skipped = (f"detection skipped on {summary.frames_detect_skipped} frames whose faces the source's "
                   f"annotations gave" if summary.frames_detect_skipped else None)
        # the shards this call ran, not only the newly planned: a resumed run runs shards planned before
        shards = (f"{summary.shards_run} shard{'s' if summary.shards_run != 1 else ''} run, {summary.shards_added} of "
                  f"them newly planned; {summary.shards_skipped} already done")
        return [line for line in (skipped, f"{summary.clips} clips in {summary.seconds:.1f} s ({shards}): "
                f"{_counts(summary.status_counts)}; faces kept {summary.faces_kept}, dropped {summary.faces_dropped}. "
                f"Output: {run_dir}", summary.videos_changed, _pending(summary, run_dir)) if line]
    state = read_run_state(run_dir)
    if not state.shards_total:
        return [f"no clips to process (the source listed none); nothing to do. Output: {run_dir}"]
    if not state.complete:
        return [state.line()]
    con = connect(run_dir)
    statuses = dict(con.execute("SELECT status, count(*) FROM clips GROUP BY status").fetchall())
    kept = con.execute("SELECT count(*) FROM faces WHERE kept").fetchone()[0]
    lines = [f"already complete: {sum(statuses.values())} clips ({_counts(statuses)}), {kept} faces kept; "
             f"nothing to do. Output: {run_dir}"]
    if state.mixed_configs:
        lines.append(state.mixed_configs)
    if retry:
        asked = [s for s in retry if s != RETRY_CHANGED]
        wanted = ([f"status {', '.join(asked)}"] if asked else []) + (
            ["a video changed since it was extracted"] if RETRY_CHANGED in retry else [])
        lines.insert(0, f"no clip has {' or '.join(wanted)}: nothing to retry")
    if summary.videos_changed:
        lines.append(summary.videos_changed)
    again = [s for s in TRANSIENT_STATUSES if statuses.get(s) and s not in retry]
    if again:
        lines.append(f"{sum(statuses[s] for s in again)} clip(s) ended {', '.join(again)}, which may pass now: "
                     f"run them again with --retry {','.join(again)}")
    return lines


def split_lines(summary: dict) -> list[str]:
    """`cluster-sample` / `split`: one line per split."""
    lines = []
    for name in ("train", "test"):
        c = summary[name]
        short = f" ({c['short_identities']} short of faces)" if c.get("short_identities") else ""
        lines.append(f"{name}: {c['identities']} identities{short}, {c['faces']} faces, {c['videos']} videos")
    return lines
