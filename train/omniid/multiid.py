"""MultiID-Bench interchange (WithAnyone's public benchmark): its folder layout, both ways.

The layout its scorer reads, one folder per generated image (as its repository documents):

    ROOT/<entry>/out.jpg       the generated image
    ROOT/<entry>/ori.jpg       the original photo (ground truth)
    ROOT/<entry>/ref_1.jpg ... the reference (input) photos, ref_1 to ref_N
    ROOT/<entry>/meta.json     {"prompt": ...}

`export_multiid(DIR, rows, ...)` writes every scored image of omniid-eval (each representation's
generations, and the `copy-input` and `real photos` rows) as DIR/<representation>/<entry>/, one
root per representation, since the benchmark's scorer scores one method per root. meta.json holds
the prompt and, beside it, our keys (identity_id, k, target, sample, seed, representation). A JPEG
source is copied byte for byte; anything else is written as JPEG (quality 95). The scorer reads
up to 4 references; an entry with k > 4 has them all, the scorer uses the first 4.

`read_bench(DIR)` reads a folder in that layout as an evaluation set: each entry is one
"identity" whose inputs are its references (k = their number) and whose target is the original;
an `out.*` beside them is scored as the row BENCH_ROW, with the same metrics as ours. A folder
without an `ori.*` or a `ref_1.*` is no entry: it is returned with the reason, and omniid-eval
names it in a warning, a note under the table and settings.json (`skipped`).
`bench_seeds(DIR, metas, required)` gives each entry's seed from its meta.json (our key `seed`):
generating from a --bench folder uses them, so an exported entry is generated again as it was;
an entry without one is refused when generating, naming its meta.json.
An export of ours says in its folder's omniid-export.json (EXPORT_MARKER, beside the roots) whether
it was completed: `read_bench` refuses a root of an export whose marker says "running" (the
evaluation stopped while writing it: entries missing or cut short), naming the marker. A marker
without a state (written before the state was recorded) and a folder of someone else's (no
marker) are read as they are.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from omniid.errors import DataError
from omniid.eval_plan import Plan

BENCH_ROW = "bench out"
EXPORT_MARKER = "omniid-export.json"
EXPORT_WRITTEN_BY = "omniid-eval --export-multiid (ours)"
RUNNING, COMPLETE = "running", "complete"
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
JPEG_QUALITY = 95


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def _write_jpeg(source: Path, dest: Path) -> None:
    from omniid.photos import as_stored, open_photo

    # a JPEG shown as stored is copied as it is; one with an EXIF orientation is written turned,
    # as viewers show it (a reader of the export that ignores EXIF would see it sideways)
    if source.suffix.lower() in (".jpg", ".jpeg") and as_stored(source):
        shutil.copyfile(source, dest)
        return
    open_photo(source)[0].save(dest, quality=JPEG_QUALITY)


def entry_root(row: dict) -> str:
    """The root (one per representation) a row's entry goes under."""
    return _safe(row["representation"])


def export_multiid(root: str | Path, rows: list[dict], out: Path, prompt: str) -> int:
    """One entry per row with an image; `out`: the eval folder image paths are relative to."""
    root = Path(root)
    written = 0
    for r in rows:
        if not r["image_path"]:
            continue
        entry = root / entry_root(r) / _safe(f"{r['identity_id']}_k{r['k']}_t{r['target']}_s{r['sample']}")
        entry.mkdir(parents=True, exist_ok=True)
        image = Path(r["image_path"])
        # a generation lies in the eval folder (its path relative to it); a reference row's image is a
        # photo, its path as the manifest gave it (relative to where the command runs, for a relative
        # --manifest), read as the report reads it (omniid.eval_html)
        _write_jpeg(out / image if not image.is_absolute() and (out / image).is_file() else image, entry / "out.jpg")
        _write_jpeg(Path(r["target_path"]), entry / "ori.jpg")
        for n, path in enumerate(r["input_paths"], 1):
            _write_jpeg(Path(path), entry / f"ref_{n}.jpg")
        meta = {"prompt": prompt, "identity_id": r["identity_id"], "representation": r["representation"],
                "k": r["k"], "target": r["target"], "sample": r["sample"], "seed": r["seed"],
                "written_by": EXPORT_WRITTEN_BY}
        (entry / "meta.json").write_text(json.dumps(meta, indent=2))
        written += 1
    return written


def _one(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{s}" for s in SUFFIXES if (folder / f"{stem}{s}").is_file()), None)


def _meta(path: Path, unreadable: list[str]) -> dict:
    """An entry's meta.json ({} without one); one that is not a JSON object is added to `unreadable`."""
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        meta = error
    if not isinstance(meta, dict):
        unreadable.append(f"{path}: {meta if isinstance(meta, Exception) else type(meta).__name__}")
        return {}
    return meta


def export_state(folder: Path) -> dict | None:
    """The omniid-export.json of an export folder, None where there is none or it is no JSON object."""
    try:
        marker = json.loads((folder / EXPORT_MARKER).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _check_completed(root: Path) -> None:
    """DataError where `root` is (a root of) an export of ours that never completed."""
    given, root = root, root.resolve()  # "multiid/omniid/." has its export folder above it too
    for folder in (root, root.parent):
        marker = export_state(folder)
        if marker is None or marker.get("written_by") != EXPORT_WRITTEN_BY:
            continue
        if folder != root and root.name not in marker.get("roots", []):
            continue
        if marker.get("state", COMPLETE) != COMPLETE:  # no state: written before it was recorded
            raise DataError(f"--bench {given}: an interrupted omniid-eval --export-multiid ({folder / EXPORT_MARKER} "
                            f"says {marker.get('state')!r}, never 'complete'): its entries may be missing or cut "
                            f"short; run that evaluation again with --force to finish the export")


def read_bench(root: str | Path) -> tuple[dict[str, Plan], dict[str, dict], dict[str, str]]:
    """({entry: Plan(inputs=refs, targets=[ori], ks=(len(refs),), outputs={k: [out]})}, {entry: meta},
    {folder: why it is not an entry}): a folder without an ori.* or a ref_1.* image cannot be
    scored; it is returned, never dropped silently (omniid.evaluate warns, notes and lists it)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--bench {root}: not a folder")
    _check_completed(root)
    plans, metas, unreadable, skipped = {}, {}, [], {}
    for entry in sorted(p for p in root.iterdir() if p.is_dir()):
        ori = _one(entry, "ori")
        refs = []
        while (ref := _one(entry, f"ref_{len(refs) + 1}")) is not None:
            refs.append(ref)
        if ori is None or not refs:
            lacking = [name for name, found in (("ori", ori), ("ref_1", refs)) if not found]
            skipped[entry.name] = f"no {' and no '.join(f'{name}.*' for name in lacking)} image ({'/'.join(SUFFIXES)})"
            continue
        out = _one(entry, "out")
        plans[entry.name] = Plan(refs, [ori], (len(refs),), {len(refs): [out]} if out else {})
        metas[entry.name] = _meta(entry / "meta.json", unreadable)
    if unreadable:
        raise DataError(f"--bench {root}: {len(unreadable)} meta.json not a JSON object:\n  " + "\n  ".join(unreadable))
    if not plans:
        raise DataError(f"--bench {root}: no entry folder with ori.jpg and ref_1.jpg (MultiID-Bench's layout: "
                        f"ROOT/<entry>/{{out,ori,ref_1,...}}.jpg + meta.json)")
    return plans, metas, skipped


def bench_seeds(root: str | Path, metas: dict[str, dict], required: bool) -> dict[str, int | None]:
    """{entry: its meta.json's integer `seed`, or None}; with `required` (the entries are generated
    again) the entries without one are one DataError naming each meta.json."""
    seeds, lacking = {}, []
    for entry, meta in metas.items():
        seed = meta.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int):
            where = Path(root) / entry / "meta.json"
            lacking.append(f"{where}: " + ("is missing" if not where.is_file()
                                            else f"has no integer \"seed\" (found {seed!r})"))
            seed = None
        seeds[entry] = seed
    if required and lacking:
        why = ("omniid-eval generates each entry with the seed its meta.json records (--export-multiid writes "
               "it). Add one, or score the given out.jpg alone (without --checkpoint)")
        if len(lacking) == 1:
            raise DataError(f"--bench {lacking[0]}; {why}")
        raise DataError(f"--bench {root}: {len(lacking)} entries have no seed; {why}:\n  " + "\n  ".join(lacking))
    return seeds
