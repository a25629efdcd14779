"""Which faces of each identity omniid-eval uses, fitted to what the manifest has.

An identity's faces are sorted by crop path; for each k the inputs are the first k faces, and the
ground-truth targets are the faces after the first max(k), never inputs and the same for every k.
What the flags ask is fitted to the data, each change said once as a warning and kept in
settings.json (`notes`) and under the table:
- a k that no identity can serve (k + 1 faces or more needed) is left out;
- `targets` None takes every face after the inputs; a number larger than what remains is cut to
  what remains, per identity, and the real counts are stated;
- an identity with fewer than max(k) + 1 faces is skipped and listed.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from omniid.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Plan:
    inputs: list[Path]                     # the first max(k) faces
    targets: list[Path]                    # the ground truths
    ks: tuple[int, ...]                    # the input counts evaluated for this identity
    outputs: dict[int, list[Path]] = field(default_factory=dict)  # k -> given outputs per target (--bench)
    seeds: list[int] | None = None         # per target, sample 0's seed (--bench: meta.json's); None: the protocol's


@dataclass
class Fitted:
    ks: tuple[int, ...]
    plans: dict[str, Plan]
    skipped: dict[str, str]
    notes: list[str]
    manifest: Path | None = None           # the evaluated manifest file (None for --bench)


def _note(notes: list[str], text: str) -> None:
    log.warning("%s", text)
    notes.append(text)


def fit(identities: dict[str, list[Path]], names: list[str], inputs: tuple[int, ...],
        targets: int | None, source: str) -> Fitted:
    """identities: id -> faces; names: those to evaluate, in order; source: named in errors."""
    notes: list[str] = []
    most = max((len(identities[n]) for n in names), default=0)
    ks = tuple(k for k in inputs if k < most)
    if len(ks) < len(inputs):
        left = [k for k in inputs if k not in ks]
        if not ks:
            raise DataError(f"{source}: no identity has the {min(inputs) + 1} faces the protocol needs "
                            f"(inputs {list(inputs)} + 1 target); the identities have at most {most}")
        _note(notes, f"--inputs {','.join(map(str, left))} left out: k inputs need k + 1 faces and the identities "
                     f"have at most {most}")
    first = max(ks)
    plans, skipped = {}, {}
    for name in names:
        faces = sorted(identities[name], key=str)
        if len(faces) < first + 1:
            skipped[name] = f"{len(faces)} faces; the protocol needs {first + 1}"
            log.warning("skipping identity %s: %s", name, skipped[name])
            continue
        chosen = faces[first:] if targets is None else faces[first:first + targets]
        plans[name] = Plan(faces[:first], chosen, ks)
    if not plans:
        raise DataError(f"{source}: no identity has the {first + 1} faces the protocol needs "
                        f"(inputs {list(ks)} + 1 target)")
    counts = Counter(len(p.targets) for p in plans.values())
    if targets is not None and min(counts) < targets:
        short = sum(n for c, n in counts.items() if c < targets)
        _note(notes, f"--targets {targets}: after the first {first} inputs only {min(counts)} face(s) remain for "
                     f"{short} of {len(plans)} identities; they are evaluated with what remains")
    return Fitted(ks, plans, skipped, notes)


def target_counts(plans: dict[str, Plan]) -> str:
    """'3' or '2-4': the targets per identity actually evaluated."""
    counts = sorted({len(p.targets) for p in plans.values()})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
