"""Identity strips for the report: each sampled identity's faces (in sample order) as small
thumbnails, with pose and quality under each. Thumbnails are copied into the report folder, so
the page works when moved, and every image it references exists."""
from __future__ import annotations

import html
import logging
from pathlib import Path

import duckdb
import numpy as np

log = logging.getLogger(__name__)
THUMB = 112
STRIP_GLOB = "[0-9][0-9][0-9]_*.jpg"  # strips/<identity n>_<rank>.jpg, the names strips_html gives


def sample_identities(con: duckdb.DuckDBPyConnection, limit: int) -> list[str]:
    """All identities when few; otherwise `limit` of them evenly spaced in id order (stable)."""
    ids = [r[0] for r in con.execute("SELECT DISTINCT identity_id FROM manifest ORDER BY 1").fetchall()]
    if len(ids) <= limit:
        return ids
    return [ids[int(i)] for i in np.linspace(0, len(ids) - 1, limit).round()]


def _thumbnail(src: str, dest: Path) -> bool:
    import cv2

    image = cv2.imread(src, cv2.IMREAD_COLOR)
    if image is None:
        log.warning("report: crop not readable, shown as missing: %s", src)
        return False
    return bool(cv2.imwrite(str(dest), cv2.resize(image, (THUMB, THUMB), interpolation=cv2.INTER_AREA),
                            [cv2.IMWRITE_JPEG_QUALITY, 85]))


def strips_html(con: duckdb.DuckDBPyConnection, out: Path, limit: int = 12) -> tuple[str, int, int]:
    """HTML of the strips, the identities shown and the identities in all."""
    total = con.execute("SELECT count(DISTINCT identity_id) FROM manifest").fetchall()[0][0]
    chosen = sample_identities(con, limit)
    folder = out / "strips"
    folder.mkdir(parents=True, exist_ok=True)  # in the staging folder: an earlier report's are removed as it moves in
    blocks = []
    for n, ident in enumerate(chosen):
        rows = con.execute("SELECT split, clip_id, crop_file, yaw, pitch, roll, quality FROM manifest "
                           "WHERE identity_id = ? ORDER BY sample_rank", [ident]).fetchall()
        cells = []
        for rank, (split, clip_id, crop, yaw, pitch, roll, quality) in enumerate(rows):
            name = f"strips/{n:03d}_{rank}.jpg"
            image = (f"<img src='{name}' width='{THUMB}' height='{THUMB}' alt='{html.escape(clip_id)}'>"
                     if _thumbnail(crop, out / name) else f"<div class='missing'>missing<br>{html.escape(crop)}</div>")
            cells.append(f"<figure>{image}<figcaption>y {yaw:+.0f}° p {pitch:+.0f}° r {roll:+.0f}°"
                         f"<br>q {quality:.2f}</figcaption></figure>")
        blocks.append(f"<div class='strip'><h3>{html.escape(ident)} <span class='tag'>{html.escape(split)}</span>"
                      f"</h3><div class='faces'>{''.join(cells)}</div></div>")
    return "\n".join(blocks), len(chosen), total
