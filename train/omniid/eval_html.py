"""omniid-eval's report.html, beside table.md: the table, the two curves (omniid.curves' PNGs) and,
for a seeded sample of identities, a strip of inputs | target | each representation's output at
the largest k (first target, first sample) with that image's scores under it.

The page is self-contained in the eval folder: generated images are linked where they are, photos
from outside it (inputs, targets, the copy-input and real-photo rows) as thumbnails in report/.
"""
from __future__ import annotations

import hashlib
import random
from html import escape
from pathlib import Path

from omniid.eval_plan import Fitted
from omniid.eval_table import MARK, TableSpec, column_titles, fmt, fmt_cell, label_columns, label_values, marked

THUMB = 128
STYLE = ("body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:12px}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}"
         ".warn{color:#b00;font-weight:bold;border:2px solid #b00;padding:8px}.strip{display:flex;flex-wrap:wrap;"
         "gap:8px;margin-bottom:18px;align-items:flex-start}.tile{width:176px;font-size:10px}.tile img{width:128px;"
         "height:128px;display:block}.tile table{font-size:10px;margin-top:2px}.tile td{padding:1px 3px}"
         ".foot{font-size:12px;color:#444;max-width:1100px}")


def _src(path: str, out: Path) -> str:
    """A link relative to the report for an image in the eval folder, else a thumbnail copied in."""
    image = Path(path)
    inside = image if not image.is_absolute() else None
    if inside is None and out.resolve() in image.resolve().parents:
        inside = image.resolve().relative_to(out.resolve())
    if inside is not None and (out / inside).is_file():
        return inside.as_posix()
    from omniid.photos import open_photo

    name = Path("report") / f"{hashlib.sha1(str(image).encode()).hexdigest()[:16]}.png"
    (out / name).parent.mkdir(exist_ok=True)
    thumb = open_photo(image)[0]  # as viewers show it (EXIF orientation applied): a PNG keeps none
    thumb.thumbnail((THUMB, THUMB))
    thumb.save(out / name)
    return name.as_posix()


def _tile(src: str, title: str, scores: str = "") -> str:
    return (f'<div class="tile"><img src="{escape(src)}" alt="{escape(title)}"><b>{escape(title)}</b>'
            f"{scores}</div>")


def _scores(row: dict, spec: TableSpec) -> str:
    """A small table under an output: ID sim, Sim(Ref), copy-paste per recogniser, then the pose error."""
    head = "<tr><td></td><td>ID</td><td>Ref</td><td>CP</td></tr>"
    lines = "".join(f"<tr><td>{escape(r)}</td><td>{fmt(row[f'id_similarity:{r}'], 'id')}</td>"
                    f"<td>{fmt(row[f'sim_ref:{r}'], 'ref')}</td><td>{fmt(row[f'copy_paste:{r}'], 'copy_paste')}</td></tr>"
                    for r in spec.recognisers)
    pose = f"pose err {fmt(row['pose_error'], 'pose_error')}" + ("" if row["face"] else " (no face found)")
    return f"<table>{head}{lines}</table>{escape(pose)}"


def _strip(identity: str, fitted: Fitted, rows: list[dict], spec: TableSpec, out: Path) -> str:
    plan = fitted.plans[identity]
    k = max(plan.ks)
    tiles = [_tile(_src(str(p), out), f"input {i + 1}") for i, p in enumerate(plan.inputs[:k])]
    tiles.append(_tile(_src(str(plan.targets[0]), out), "target"))
    for rep in spec.representations:
        row = next((r for r in rows if (r["identity_id"], r["representation"], r["k"], r["target"], r["sample"])
                    == (identity, rep, k, 0, 0)), None)
        if row is not None:
            tiles.append(_tile(_src(row["image_path"], out), rep, _scores(row, spec)))
    return f"<h3>{escape(identity)} (k={k})</h3><div class='strip'>{''.join(tiles)}</div>"


def _table(cells: dict, spec: TableSpec) -> str:
    shown = column_titles(spec)
    titles = ["Representation", *label_columns(spec), "k", *(t for _, t in shown), "n"]  # the labels as table.md
    head = "".join(f"<th>{escape(t)}</th>" for t in titles)
    body = []
    for (rep, k), entry in cells.items():
        name = f"{rep} {MARK}" if rep in spec.conditioned else rep
        values = [fmt_cell(entry[key], key) + (f" {MARK}" if marked(rep, key, spec) else "") for key, _ in shown]
        cols = [name, *label_values(rep, spec), k, *values, entry["n"]]
        body.append("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in cols) + "</tr>")
    return f"<table class='results'><tr>{head}</tr>{''.join(body)}</table>"


def write_report(out: Path, rows: list[dict], cells: dict, spec: TableSpec, curves: dict[str, str], fitted: Fitted,
                 protocol, note: str | None) -> Path:
    names = sorted(fitted.plans)
    sample = sorted(random.Random(protocol.seed).sample(names, min(protocol.report_identities, len(names))))
    # the random-weights note, then the table's other warnings (identities seen in training)
    warnings = [note] if note else []
    warnings += [line.strip("*") for line in spec.header if line.strip() and line.strip("*") != note]
    warn = "".join(f"<p class='warn'>{escape(line)}</p>" for line in warnings)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>omniid-eval report</title>",
        f"<style>{STYLE}</style></head><body><h1>omniid-eval report</h1>{warn}",
        "<h2>Table</h2>", _table(cells, spec),
        "<div class='foot'>" + "".join(f"<p>{escape(line)}</p>" for line in spec.footer) + "</div>",
        "<h2>Curves</h2>",
        *(f"<p><img src='{escape(curves[c])}' alt='{escape(c)} curve'></p>" for c in ("inputs", "pose_gap")),
        f"<h2>Identities ({len(sample)} of {len(names)}, sampled with seed {protocol.seed})</h2>",
        *(_strip(identity, fitted, rows, spec, out) for identity in sample),
        "</body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
