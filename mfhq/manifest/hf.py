"""Crops and masks as `datasets.Image` columns (HF `datasets` is optional: imported here only)."""
from __future__ import annotations

from pathlib import Path

from mfhq.manifest.folder import ManifestFolder


def with_images(ds, folder: str | Path, roots: dict[str, Path] | None = None, masks: bool = True):
    """A `datasets.Dataset` / `DatasetDict` of manifest rows -> the same with `crop` (and `mask`)
    as `datasets.Image` columns, paths resolved through the folder's sidecar."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - the extra is in requirements.txt
        raise ImportError("with_images needs HF datasets: pip install datasets") from exc
    opened = ManifestFolder.open(Path(folder), roots)
    roots_now = {r["name"]: str(opened.run_root(r["name"])) for r in opened.sidecar.get("runs", [])}

    def paths(row: dict) -> dict:
        root = roots_now[row["run"]]
        out = {"crop": f"{root}/{row['crop_path']}"}
        if masks:
            out["mask"] = f"{root}/{row['mask_path']}" if row["mask_path"] else None
        return out

    ds = ds.map(paths)
    ds = ds.cast_column("crop", datasets.Image())
    return ds.cast_column("mask", datasets.Image()) if masks else ds
