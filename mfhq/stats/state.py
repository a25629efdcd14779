"""The lines at the top of `mfhq stats` and its report: each run's state, and whether the
manifest was built from the runs as they are now.

A manifest records a snapshot of each run it was built from (mfhq.manifest.run_state). When a
run has changed since (grown, repaired with --retry), the run's totals and the manifest's
describe two different states: the report says so first and keeps the manifest's numbers in a
section of their own instead of mixing them into the run's totals. So does a manifest built from
other runs than the --run folders given (compared as resolved folders, a moved run found by name).
"""
from __future__ import annotations

from pathlib import Path

from mfhq.manifest.folder import ManifestFolder
from mfhq.manifest.run_state import changed_since, read_run_state
from mfhq.manifest.schema import SIDECAR, ManifestError
from mfhq.stats.views import given_runs

MANIFEST = "manifest"
STALE_MANIFEST = "manifest (built from an older state of the run)"
OTHER_RUNS_MANIFEST = "manifest (built from other runs than those given)"


def state_lines(run_dirs: list[Path], manifest: Path | None) -> tuple[list[str], str | None]:
    """(lines, section): every run's state, then what is known of the manifest's age and runs;
    section names the headline's manifest numbers (None without a manifest)."""
    lines = [read_run_state(r).headline() for r in run_dirs]
    if manifest is None:
        return lines, None
    folder = ManifestFolder.open(Path(manifest), given_runs(run_dirs))
    built = (folder.folder / SIDECAR).stat().st_mtime
    given = {Path(r).resolve() for r in run_dirs}
    section, own_runs = MANIFEST, []
    for entry in folder.sidecar.get("runs", []):
        try:
            run_dir = folder.run_root(entry.get("name")).resolve()
        except ManifestError:
            own_runs.append(Path(entry.get("run_dir") or str(entry.get("name"))))
            continue  # attaching the manifest names a run it cannot find
        own_runs.append(run_dir)
        change = changed_since(entry.get("snapshot"), run_dir, built) if run_dir in given else None
        if change:
            section = STALE_MANIFEST
            lines.append(f"WARNING: manifest {folder.folder} is older than its run: {change}. Its identities and "
                         "splits describe the older state and are shown apart from the run's totals; re-run "
                         "`mfhq cluster-sample` to bring them together")
    if set(own_runs) != given:
        # the runs' totals and the manifest's identities would describe different data
        section = OTHER_RUNS_MANIFEST
        lines.append(f"WARNING: manifest {folder.folder} was built from other runs than those given: it was built "
                     f"from {', '.join(map(str, own_runs)) or 'no run'}; given with --run: "
                     f"{', '.join(str(r) for r in sorted(given))}. Its identities and splits are shown apart from "
                     "the runs' totals; give its runs with --run to compare them")
    if folder.sidecar.get("allow_partial"):
        lines.append(f"note: manifest {folder.folder} was built with --allow-partial from a run that was not complete")
    return lines, section
