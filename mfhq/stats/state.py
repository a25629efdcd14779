"""The lines at the top of `mfhq stats` and its report: each run's state, and whether the
manifest was built from the runs as they are now.

A manifest records a snapshot of each run it was built from (mfhq.manifest.run_state). When a
run has changed since (grown, repaired with --retry), the run's totals and the manifest's
describe two different states: the report says so first and keeps the manifest's numbers in a
section of their own instead of mixing them into the run's totals.
"""
from __future__ import annotations

from pathlib import Path

from mfhq.manifest.folder import ManifestFolder
from mfhq.manifest.run_state import changed_since, read_run_state
from mfhq.manifest.schema import SIDECAR, ManifestError
from mfhq.stats.views import given_runs

MANIFEST = "manifest"
STALE_MANIFEST = "manifest (built from an older state of the run)"


def state_lines(run_dirs: list[Path], manifest: Path | None) -> tuple[list[str], bool]:
    """(lines, stale): every run's state, then what is known of the manifest's age."""
    lines = [read_run_state(r).headline() for r in run_dirs]
    if manifest is None:
        return lines, False
    folder = ManifestFolder.open(Path(manifest), given_runs(run_dirs))
    built = (folder.folder / SIDECAR).stat().st_mtime
    given = {Path(r).resolve() for r in run_dirs}
    stale = False
    for entry in folder.sidecar.get("runs", []):
        try:
            run_dir = folder.run_root(entry.get("name")).resolve()
        except ManifestError:
            continue  # attaching the manifest names a run it cannot find
        change = changed_since(entry.get("snapshot"), run_dir, built) if run_dir in given else None
        if change:
            stale = True
            lines.append(f"WARNING: manifest {folder.folder} is older than its run: {change}. Its identities and "
                         "splits describe the older state and are shown apart from the run's totals; re-run "
                         "`mfhq cluster-sample` to bring them together")
    if folder.sidecar.get("allow_partial"):
        lines.append(f"note: manifest {folder.folder} was built with --allow-partial from a run that was not complete")
    return lines, stale
