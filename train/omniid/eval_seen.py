"""Were omniid-eval's identities seen in training? Held-out numbers apply only to identities the
checkpoint never trained on, so an evaluation on (part of) the training set must say so.

Each checkpoint's state.json records its training manifest (`manifest`: the resolved path of the
`--manifest` Parquet file, and `manifest_sha256`: that file's SHA-256; `omniid.command_facts`).
Where that file is still at its path, the evaluated identities are compared with its
`identity_id`s (a manifest that only shares some identities is caught too); where it is gone,
the evaluated manifest's SHA-256 is compared with the recorded one (the same file: every
identity seen). Nothing is refused (the demo evaluates on its training manifest): the console,
the table's header, report.html, a label column and settings.json ("seen_in_training") say it.
A checkpoint saved before the record, or a --bench folder (entries, not manifest identities),
cannot be checked and is not labelled.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq

from mfhq.manifest.io import sha256_of

log = logging.getLogger(__name__)
COLUMN = "training"        # the table's label column (after `setting`), only when some row saw its identities
HELD_OUT = "held out"


def _training_identities(recorded: str) -> set[str] | None:
    """The identity_ids of a recorded training manifest, None when it cannot be read any more."""
    try:
        return {str(name) for name in pq.read_table(recorded, columns=["identity_id"]).column(0).to_pylist()}
    except (OSError, ValueError, KeyError):  # moved, deleted, or not Parquet: fall back to the SHA-256
        return None


def seen_in_training(trained: dict[str, dict], manifest: Path, identities: list[str]) -> dict[str, dict]:
    """{row label: {"seen", "of", "training_manifest", "how"}} for the rows (label -> the state.json
    of their checkpoint) whose training manifest holds some of the evaluated `identities`."""
    found = {}
    for label, state in trained.items():
        recorded, digest = state.get("manifest"), state.get("manifest_sha256")
        names = _training_identities(recorded) if recorded else None
        if names is not None:
            seen, how = [n for n in identities if n in names], "identity_id overlap with its training manifest"
        elif digest and sha256_of(Path(manifest)) == digest:
            seen, how = list(identities), "the evaluated manifest is its training manifest (same SHA-256)"
        else:
            continue
        if seen:
            found[label] = {"seen": len(seen), "of": len(identities), "training_manifest": recorded, "how": how}
    return found


def seen_line(seen: dict[str, dict]) -> str | None:
    """The warning the console, table.md and report.html give, None when no row saw its identities."""
    if not seen:
        return None
    rows = "; ".join(f"{label}: {s['seen']} of {s['of']} ({s['how']}, {s['training_manifest']})"
                     for label, s in seen.items())
    return f"IDENTITIES SEEN IN TRAINING: held-out numbers do not apply to these rows. {rows}."


def seen_labels(seen: dict[str, dict], generated: list[str]) -> dict[str, dict[str, str]]:
    """The `training` label column of the generated rows ({} when none saw its identities, so
    that a held-out evaluation's tables keep their columns)."""
    if not seen:
        return {}
    return {label: {COLUMN: f"saw {seen[label]['seen']}/{seen[label]['of']} identities" if label in seen
                    else HELD_OUT} for label in generated}
