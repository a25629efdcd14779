"""Were omniid-eval's identities seen in training? Held-out numbers apply only to identities the
checkpoint never trained on, so an evaluation on (part of) the training set must say so.

Each checkpoint's state.json records its training manifest (`manifest`: the resolved path of the
`--manifest` Parquet file, and `manifest_sha256`: that file's SHA-256; `omniid.command_facts`).
Where that file is still at its path, the evaluated identities are compared with its
`identity_id`s (a manifest that only shares some identities is caught too); where it is gone,
the evaluated manifest's SHA-256 is compared with the recorded one (the same file: every
identity seen). A file at the path whose SHA-256 is not the recorded one (`mfhq split` or
`cluster-sample` rewrote the folder since) is not the training manifest: its identities are not
compared (a re-split's train file is disjoint from its test file, so the row would read as held
out), and the row says it was not checked ("rewritten"). Nothing is refused (the demo evaluates
on its training manifest): the console, the table's header, report.html, a label column and
settings.json ("seen_in_training") say it.
A checkpoint saved before the record, or a --bench folder (entries, not manifest identities),
cannot be checked and is not labelled.

A run started `--init-from` another (flow or adapter from MTD) trained its encoder on that run's
manifest too: state.json's `init_from` names the step folder it started from, whose own state.json
records its manifest and its own `init_from`. The chain is followed to its start and every run's
manifest compared; a row is labelled with the runs that saw its identities (their stage and step
folder). Where the chain cannot be followed (a step folder deleted, a state.json unreadable or
older than the record) that is said ("unfollowed"), never read as held out.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from mfhq.manifest import read_manifest
from mfhq.manifest.io import sha256_of
from omniid.checkpoint import STATE_FILE

log = logging.getLogger(__name__)
COLUMN = "training"        # the table's label column (after `setting`): some row saw its identities or was not checked
HELD_OUT = "held out"


def _training_identities(recorded: str) -> set[str]:
    """The identity_ids of a recorded training manifest that is at its path, read through the
    contract's reader: a damaged, retyped or foreign file is a ManifestError naming it, never a set
    of wrong names (a binary column's bytes) or a silent fallback to the SHA-256."""
    return set(read_manifest(recorded, ["identity_id"], kind="manifest").column(0).to_pylist())


def _recorded_seen(state: dict, manifest: Path, identities: list[str]) -> tuple[list[str], str] | str | None:
    """(the evaluated identities one run's training manifest holds, how that was found); None for a
    state.json that records no manifest (saved before the record); a str (why) where the file at the
    recorded path is no longer the one it trained on (another SHA-256: `mfhq split` or
    `cluster-sample` rewrote it), whose identities say nothing about what the run saw (so it is not read)."""
    recorded, digest = state.get("manifest"), state.get("manifest_sha256")
    if not recorded and not digest:
        return None
    there = bool(recorded) and Path(recorded).is_file()  # not there: moved or deleted, the SHA-256 decides
    if there and digest and sha256_of(Path(recorded)) != digest:
        if sha256_of(Path(manifest)) == digest:
            return list(identities), "the evaluated manifest is its training manifest (same SHA-256)"
        return (f"its training manifest {recorded} was rewritten since it trained (another SHA-256, e.g. by mfhq "
                "split or cluster-sample), so the identities it trained on cannot be compared")
    if there:
        names = _training_identities(recorded)
        return [n for n in identities if n in names], "identity_id overlap with its training manifest"
    if digest and sha256_of(Path(manifest)) == digest:
        return list(identities), "the evaluated manifest is its training manifest (same SHA-256)"
    return [], "its training manifest is gone and is not the evaluated one (another SHA-256)"


def _lineage(state: dict) -> tuple[list[tuple[str | None, dict]], str | None]:
    """[(step folder, state)]: the checkpoint itself (None) then each recorded `init_from` in turn
    (the MTD run a flow run started from trained the same encoder); and why the chain stops before
    its start (None when every ancestor's state.json was read)."""
    links: list[tuple[str | None, dict]] = [(None, state)]
    while links[-1][1].get("init_from"):
        folder = Path(links[-1][1]["init_from"]).resolve()  # older runs recorded it as given
        looped = f"--init-from {folder} leads back to itself"
        if any(str(folder) == where for where, _ in links):
            return links, looped
        try:
            record = json.loads((folder / STATE_FILE).read_text())
            # the checkpoint's own folder is not known here (links[0] is None): a record already
            # read is that step again, whose chain from there was followed (the same init_from)
            if any(record == read for _, read in links):
                return links, looped
            links.append((str(folder), record))
        except FileNotFoundError:
            return links, (f"its --init-from {folder} is gone (no {STATE_FILE}), so the manifests of the runs it "
                           "started from cannot be compared")
        except (OSError, ValueError) as exc:
            return links, f"its --init-from {folder / STATE_FILE} cannot be read ({exc})"
    return links, None


def seen_in_training(trained: dict[str, dict], manifest: Path, identities: list[str]) -> dict[str, dict]:
    """{row label: {"seen", "of", "training_manifest", "how", "by"[, "unfollowed"]}} for the rows
    (label -> the state.json of their checkpoint) whose checkpoint, or a run it started from
    (`init_from`, followed to its start), trained on some of the evaluated `identities`, and for
    those whose chain could not be followed ("unfollowed": why). "by": one entry per run that saw
    some ("run": None for the checkpoint's own, else the --init-from step folder); "seen": how
    many identities any of them saw; "training_manifest" / "how": the first of them."""
    found = {}
    for label, state in trained.items():
        links, unfollowed = _lineage(state)
        by, seen, rewritten = [], set(), []
        for where, link in links:
            checked = _recorded_seen(link, manifest, identities)
            if isinstance(checked, str):
                rewritten.append(checked if where is None else f"its --init-from {where}: {checked}")
                continue
            if where is not None and checked is None and unfollowed is None:
                unfollowed = f"its --init-from {where} records no training manifest to compare"
            if checked and checked[0]:
                by.append({"run": where, "stage": link.get("stage"), "training_manifest": link.get("manifest"),
                           "seen": len(checked[0]), "how": checked[1]})
                seen.update(checked[0])
        if by or unfollowed or rewritten:
            first = by[0] if by else {}
            found[label] = {"seen": len(seen), "of": len(identities),
                            "training_manifest": first.get("training_manifest"), "how": first.get("how"), "by": by,
                            **({"unfollowed": unfollowed} if unfollowed else {}),
                            **({"rewritten": "; ".join(rewritten)} if rewritten else {})}
    return found


def _by_line(link: dict) -> str:
    who = "itself" if link["run"] is None else f"--init-from {link['run']} ({link['stage']} stage)"
    return f"{who}: {link['seen']} ({link['how']}, {link['training_manifest']})"


def seen_line(seen: dict[str, dict]) -> str | None:
    """The warning the console, table.md and report.html give, None when no row saw its identities,
    every row's chain of runs was followed and every training manifest was the file trained on."""
    saw = {label: s for label, s in seen.items() if s["seen"]}
    unfollowed = {label: s["unfollowed"] for label, s in seen.items() if s.get("unfollowed")}
    lines = []
    if saw:
        rows = "; ".join(f"{label}: {s['seen']} of {s['of']} (seen by {'; '.join(map(_by_line, s['by']))})"
                         for label, s in saw.items())
        lines.append(f"IDENTITIES SEEN IN TRAINING: held-out numbers do not apply to these rows. {rows}.")
    if unfollowed:
        rows = "; ".join(f"{label}: {why}" for label, why in unfollowed.items())
        lines.append(f"TRAINING DATA NOT FULLY CHECKED: these rows may have seen the identities in a run they "
                     f"started from. {rows}.")
    rewritten = {label: s["rewritten"] for label, s in seen.items() if s.get("rewritten")}
    if rewritten:
        rows = "; ".join(f"{label}: {why}" for label, why in rewritten.items())
        lines.append(f"TRAINING DATA NOT CHECKED: these rows may have seen the identities; held-out numbers may not "
                     f"apply. {rows}.")
    return " ".join(lines) or None


def seen_labels(seen: dict[str, dict], generated: list[str]) -> dict[str, dict[str, str]]:
    """The `training` label column of the generated rows ({} when none saw its identities and
    every chain was followed, so that a held-out evaluation's tables keep their columns)."""
    return {label: {COLUMN: _label(seen[label]) if label in seen else HELD_OUT} for label in generated} if seen else {}


def _label(seen: dict) -> str:
    """'saw 2/2 identities', '... (mtd)' when a run it started from saw them; '; its --init-from not
    checked' (or 'unknown: ...' when nothing was seen) where that chain could not be followed, and
    '; training manifest rewritten since' where a run's manifest is no longer the file it trained on."""
    why = [text for key, text in (("unfollowed", "its --init-from not checked"),
                                  ("rewritten", "training manifest rewritten since")) if seen.get(key)]
    if not seen["seen"]:
        return "unknown: " + "; ".join(why)
    text = f"saw {seen['seen']}/{seen['of']} identities"
    if any(link["run"] is not None for link in seen["by"]):
        text += f" ({', '.join(dict.fromkeys(str(link['stage']) for link in seen['by']))})"
    return "; ".join([text, *why])
