"""omniid-eval's identity-swap check: does a representation steer identity at all?

For each representation, each identity is generated a second time at k = `swap_k` (default: the
largest evaluated k, `fitted_swap_k`) from another identity's inputs (its donor: a seeded
derangement of the evaluated identities, `omniid.swap.derangement`), with the same seeds, and
scored against the same ground truth as its own generations. A pair (own, swapped) is measured
when both generations have a face: ID sim scores a faceless generation 0 (the main table's
penalty), so two failures would read as a margin of 0, "the representation does not steer",
when nothing was measured. Pairs with a failure are left out of the margin (NaN in
swap.parquet) and counted in the row's no-face rate (its own and swapped generations without a
face). Per identity, the margin is the mean over its measured pairs of ID sim(own) - ID
sim(swapped): own should win. Over identities: the mean margin (and the mean own and swapped ID
sim, averaged the same way, so margin = own - swapped) and a percentile bootstrap
interval (identities resampled with replacement, seeded); a row without a measured pair reads
"n/a", not a number. The `copy-input` row does the same with the first input photo itself (own
vs donor's): the margin real photos of two people earn under this metric.

ID sim is the first recogniser's (`id_similarity` of results.parquet): the table names it, swap.csv
has it in `recogniser`, and a representation conditioned on that same model (the `arcface`
baselines on the paper preset) is marked ‡ as in the main table (omniid.eval_notes.conditioned):
there own beats swapped partly because the scorer is the model the representation copies.

Outputs: swap.parquet (one row per identity, representation, target, sample), swap.csv (one row
per representation, with `recogniser` and `conditioned_on`), a section of table.md, and
settings.json's "swap" (k, donors, bootstrap, margins).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from omniid.errors import FlagError
from omniid.eval_notes import conditioned_line
from omniid.eval_table import MARK
from omniid.metrics import id_similarity
from omniid.swap import bootstrap_interval, derangement

SWAP_SCHEMA = pa.schema([
    ("identity_id", pa.string()), ("representation", pa.string()), ("k", pa.int32()), ("target", pa.int32()),
    ("sample", pa.int32()), ("seed", pa.int64()), ("donor_id", pa.string()), ("image_path", pa.string()),
    ("face", pa.bool_()), ("own_face", pa.bool_()), ("gt_face", pa.bool_()), ("id_similarity_own", pa.float64()),
    ("id_similarity_swapped", pa.float64()), ("margin", pa.float64()),
])
SUMMARY_FIELDS = ("representation", "recogniser", "k", "own", "swapped", "margin", "low", "high", "identities",
                  "pairs", "no_face_rate")
NOT_MEASURED = "n/a"


def donors(identities: list[str], seed: int) -> dict[str, str]:
    """identity -> the identity whose inputs make its swapped generations ({} under two)."""
    if len(identities) < 2:
        return {}
    order = derangement(len(identities), seed)
    return {name: identities[order[i]] for i, name in enumerate(identities)}


def fitted_swap_k(protocol, ks: tuple[int, ...]) -> int:
    """The swap's k among the evaluated `ks` (those the data could serve, omniid.eval_plan):
    `protocol.swap_k`, or the largest. A --swap-k that fitting left out is refused: no own
    generation exists at it to compare with, and no donor has that many inputs."""
    if protocol.swap_k is None:
        return max(ks)
    if protocol.swap_k not in ks:
        raise FlagError(f"--swap-k {protocol.swap_k}: k = {protocol.swap_k} is not evaluated (the data serves "
                        f"--inputs {','.join(map(str, ks))}: k inputs need k + 1 faces); give one of those, or leave "
                        f"--swap-k out for the largest ({max(ks)})")
    return protocol.swap_k


def swap_k(protocol) -> int:
    """The swap's k of a protocol whose `swap_k` evaluate resolved (fitted_swap_k); unresolved, the
    largest --inputs, right only when the data serves every one."""
    return protocol.swap_k if protocol.swap_k is not None else max(protocol.inputs)


def identity_swap_rows(identity: str, donor: str, donor_inputs: list[Path], truth: list, own_rows: list[dict],
                       generators: dict, labels: list[str], folders: dict[str, Path], out: Path, metrics, protocol,
                       copy_label: str | None = None) -> list[dict]:
    """The swapped generations of one identity for `labels` (generators' labels, or `copy_label`),
    each beside its own generation's ID similarity (`own_rows`: the identity's rows of
    results.parquet); truth: its ground truths' analysed faces; images go to out / folders[label]."""
    k, samples = swap_k(protocol), protocol.samples
    seeds = [protocol.seed_for(j, s) for j in range(len(truth)) for s in range(samples)]
    own = {(r["representation"], r["target"], r["sample"]): (r["id_similarity"], r["face"])
           for r in own_rows if r["k"] == k}
    rows = []
    for label in labels:
        if label == copy_label:  # the donor's first input photo, as the copy row scores the own one
            paths = [str(donor_inputs[0])] * len(seeds)
            faces = metrics.analyse(paths[:1]) * len(seeds)
        else:
            paths, faces = _generate(generators[label], folders[label], donor_inputs[:k], seeds, out, metrics,
                                     protocol)
        for n, (face, path) in enumerate(zip(faces, paths)):
            j, s = divmod(n, samples)
            scored = truth[j] is not None
            own_sim, own_face = own.get((label, j, s), (float("nan"), False))
            swapped = id_similarity(face, truth[j]) if scored else float("nan")
            measured = scored and own_face and face is not None  # a failure on either side: no margin
            rows.append({"identity_id": identity, "representation": label, "k": k, "target": j, "sample": s,
                         "seed": seeds[n], "donor_id": donor, "image_path": path, "face": face is not None,
                         "own_face": own_face, "gt_face": scored, "id_similarity_own": own_sim,
                         "id_similarity_swapped": swapped, "margin": own_sim - swapped if measured else float("nan")})
    return rows


def _generate(gen, folder: Path, inputs, seeds, out, metrics, protocol):
    (out / folder).mkdir(parents=True, exist_ok=True)
    tokens = gen.tokens([inputs], aligned=True)  # a manifest's crops: aligned by extract
    images = gen.generate(tokens.expand(len(seeds), *tokens.shape[1:]), seeds, steps=protocol.steps,
                          guidance=protocol.guidance, scale=protocol.scale)
    paths = [str(folder / f"swap_k{len(inputs)}_t{j}_s{s}.png") for j in range(len(seeds) // protocol.samples)
             for s in range(protocol.samples)]
    for image, path in zip(images, paths):
        image.save(out / path)
    return paths, metrics.analyse(images)


def summarise(rows: list[dict], labels: list[str], protocol, recogniser: str) -> list[dict]:
    """Per representation: own and swapped ID sim (with `recogniser`, the first one: the rows'
    `id_similarity`) and their margin, each the mean over identities of the identity's mean over
    its measured pairs (both generations with a face), so margin = own - swapped as the table
    says, whatever the pairs per identity; the margin's bootstrap interval (`protocol.bootstrap` resamples, seed
    `protocol.seed`, `protocol.level`): NaN without a measured pair; `pairs`, and
    `no_face_rate`: the share of its own and swapped generations without a face.
    A label without swap rows (`real photos`, `bench out`: nothing to swap) has no line."""
    summary = []
    for label in (label for label in labels if any(r["representation"] == label for r in rows)):
        mine = [r for r in rows if r["representation"] == label]
        scored = [r for r in mine if r["gt_face"] and math.isfinite(r["margin"])]
        per_identity: dict[str, list[dict]] = {}
        for r in scored:
            per_identity.setdefault(r["identity_id"], []).append(r)
        margins = [float(np.mean([r["margin"] for r in v])) for v in per_identity.values()]
        margin, low, high = bootstrap_interval(margins, protocol.bootstrap, protocol.seed, protocol.level)
        # own and swapped averaged as the margin is (per identity, then over identities): an
        # identity with more measured pairs must not weigh more in them than in the margin
        own, swapped = (float(np.mean([np.mean([r[key] for r in v]) for v in per_identity.values()]))
                        if per_identity else float("nan") for key in ("id_similarity_own", "id_similarity_swapped"))
        summary.append({"representation": label, "recogniser": recogniser, "k": swap_k(protocol), "own": own,
                        "swapped": swapped, "margin": margin, "low": low, "high": high,
                        "identities": len(per_identity), "pairs": len(scored),
                        "no_face_rate": sum((not r["face"]) + (not r["own_face"]) for r in mine) / (2 * len(mine))})
    return summary


def write_swap(out: Path, rows: list[dict], summary: list[dict], protocol, marks: dict[str, list[str]]) -> None:
    """swap.parquet, swap.csv and the identity-swap section of table.md (written after it); marks:
    the main table's representation -> its scoring recognisers it is conditioned on."""
    recogniser = summary[0]["recogniser"] if summary else ""
    same = {s["representation"]: [recogniser] for s in summary if recogniser in marks.get(s["representation"], [])}
    pq.write_table(pa.Table.from_pylist(rows, schema=SWAP_SCHEMA), out / "swap.parquet")
    with open(out / "swap.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=(*SUMMARY_FIELDS, "conditioned_on"))
        writer.writeheader()
        writer.writerows({**{k: (repr(v) if isinstance(v, float) else v) for k, v in s.items()},
                          "conditioned_on": ",".join(same.get(s["representation"], []))} for s in summary)

    def fmt(value: float, mark: bool = False) -> str:
        return (NOT_MEASURED if math.isnan(value) else f"{value:+.3f}") + (f" {MARK}" if mark else "")

    pct, sim = f"{100 * protocol.level:g}%", f"ID sim ({recogniser})"
    lines = ["", f"Identity swap (k={swap_k(protocol)}), {sim}: to the same ground truth, of images generated from "
             f"the identity's own inputs and from another identity's (a seeded derangement); own, swapped and margin = "
             f"own - swapped: per identity over the pairs where both generations have a face, then averaged over "
             f"identities; {pct} bootstrap "
             f"interval over identities ({protocol.bootstrap} resamples, seed {protocol.seed}). No face: the share "
             f"of the row's own and swapped generations without a face (failed generations, left out of the margin).",
             "", f"| Representation | Own {sim} | Swapped {sim} | Margin | {pct} interval | Identities | No face |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for s in summary:
        m = s["representation"] in same
        name = f"{s['representation']} {MARK}" if m else s["representation"]
        interval = NOT_MEASURED if math.isnan(s["low"]) else f"[{fmt(s['low'])}, {fmt(s['high'])}]"
        lines.append(f"| {name} | {fmt(s['own'], m)} | {fmt(s['swapped'], m)} | {fmt(s['margin'], m)} | "
                     f"{interval} | {s['identities']} | {s['no_face_rate']:.3f} |")
    unmeasured = [s["representation"] for s in summary if math.isnan(s["margin"])]
    if unmeasured:
        lines += ["", f"{NOT_MEASURED}: not measured: no pair of own and swapped generations with a face "
                      f"({', '.join(unmeasured)}); a failed generation is no evidence that the representation "
                      f"does or does not steer identity."]
    advice = "the main table's other recognisers' columns measure it independently"
    lines += ([""] + conditioned_line(same, MARK, advice)) if same else []
    with open(out / "table.md", "a") as handle:
        handle.write("\n".join(lines) + "\n")
