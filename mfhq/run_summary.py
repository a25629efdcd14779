"""`mfhq summary`: one line per clip of a run, reasons wrapped at word boundaries, never cut."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from mfhq.manifest.views import connect
from mfhq.records import Status

COLUMNS = ("source", "clip_id", "status", "frames", "faces", "kept", "decoder")
_QUERY = ("SELECT source, clip_id, status, n_frames_read, n_faces_detected, n_faces_kept, decoder, "
          "coalesce(reason, '') FROM clips ORDER BY source, clip_id")


def summary_text(run_dir: Path, full: bool = False, width: int | None = None) -> str:
    """The run's clip table. Reasons wrap under their row to fit `width` (the terminal's by
    default); with `full`, each reason stays whole on its row, however long."""
    rows = connect(run_dir).execute(_QUERY).fetchall()
    cells = [["" if v is None else str(v) for v in row[:-1]] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(COLUMNS)]
    fmt = "  ".join(f"{{:{'>' if h in ('frames', 'faces', 'kept') else '<'}{w}}}" for h, w in zip(COLUMNS, widths))
    lead = len(fmt.format(*COLUMNS)) + 2
    width = width or shutil.get_terminal_size((120, 24)).columns
    room = max(width - lead, 30)
    lines = [fmt.format(*COLUMNS) + "  reason"]
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
    lines.append(f"{len(rows)} clips, {ok} ok")
    return "\n".join(lines)
