"""omniid-eval: held-out identities generated and scored in the layout of the paper's Table 1,
fixed and recorded.

Each table row says which setting made it (`setting`, `omniid.eval_setting`):
- `Table 1-like, ControlNet` (`--controlnet RUN`): an adapter-stage run (`omniid-train --stage
  adapter`): the frozen representation, the adapter and a ControlNet fed each target's landmark
  image (`omniid.landmarks`), as the paper evaluates Table 1; pose error measures how well the
  representation lets the generation follow the target's pose. Ours: the landmark drawing, the
  ControlNet's size and its training length.
- `decoder-only` (`--checkpoint RUN`): the flow stage's decoder itself (FLUX + adapter). It has
  no pose input, so pose is not conditioned: pose error measures how far a generation lands from
  its target's pose. Not the paper's setting for Table 1.

Protocol, the same on every run (ours where the paper gives no detail):
- Identities: those of the manifest (sorted by identity_id; `--identities N` takes the first N),
  or the entries of a MultiID-Bench folder (`--bench`, omniid.multiid: references as inputs, the
  original as the target).
- Fixed ordering of an identity's faces: sorted by crop path (for mfhq manifests: source, clip,
  frame). The inputs for k are the first k faces; the ground-truth targets are the faces that
  follow the first max(k), never inputs and the same for every k, fitted to what the manifest has
  (omniid.eval_plan: a k no identity can serve is left out, --targets is cut to what remains,
  each said once and stated under the table).
- For each target t (index j) and sample s: seed = protocol.seed + 1000 * j + s, the same for
  every representation and every k, with the checkpoint's prompt, fixed steps, and each
  checkpoint's own guidance (its run's flow.guidance) unless one is given. A manifest's inputs
  are aligned crops, prepared as in training (omniid.face_inputs); a --bench folder's references
  are photos, detected and aligned first.
- Scores (omniid.scoring) with every recogniser of `metrics`: ID similarity to the target,
  Sim(Ref) to the nearest input, MultiID-Bench's copy-paste score; pose error and pose gap.
- Reference rows, scored like generations: `copy-input` (the first input itself: what
  copy-pasting earns) and `real photos` (another held-out photo of the identity as the
  "generation": the real-pair ceiling; needs 2 targets per identity).
- The identity swap (omniid.swap_eval, needs 2 identities; not with --bench).

Outputs: results.parquet (every image's scores), table.csv / table.md (omniid.eval_table: mean and
bootstrap interval over identities per cell), curves.csv + curve_*.png (omniid.curves),
report.html (omniid.eval_html), sheets/, images/, swap.*, settings.json, timing.json (wall times,
apart so that results are identical across runs), and with `export` a MultiID-Bench folder.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from mfhq.manifest import split_path
from omniid.cli_format import progress_enabled
from omniid.curves import curve_points, write_curves
from omniid.eval_html import write_report
from omniid.eval_notes import conditioned, random_weights
from omniid.eval_plan import Fitted, Plan, fit
from omniid.eval_setting import bind_targets, row_settings
from omniid.eval_table import MARK, TableSpec, write_table
from omniid.metrics import FaceMetrics
from omniid.multiid import BENCH_ROW, export_multiid, read_bench
from omniid.report import sheet
from omniid.scoring import row_schema, score
from omniid.swap_eval import donors, identity_swap_rows, summarise, swap_k, write_swap
from omniid.table_notes import footer_lines

log = logging.getLogger(__name__)
COPY_ROW = "copy-input"
REAL_ROW = "real photos"


@dataclass(frozen=True)
class Protocol:
    inputs: tuple[int, ...] = (1, 3, 5)
    targets: int | None = None        # ground-truth faces per identity; None: every face after the inputs
    samples: int = 1                  # generations per target
    seed: int = 0
    steps: int = 28
    guidance: float | None = None     # None: each checkpoint's own (its run's flow.guidance)
    scale: float | None = None        # adapter scale; None: the checkpoint's
    identities: int | None = None     # the first N identities only
    copy_row: bool = True
    real_row: bool = True             # the real-pair ceiling
    swap: bool = True                 # the identity-swap check (omniid.swap_eval)
    swap_k: int | None = None         # its k; None: the largest
    bootstrap: int = 1000             # resamples of every interval over identities
    level: float = 0.95               # their coverage
    report_identities: int = 4        # identities shown in report.html (a seeded sample)
    ordering: str = field(default="crop_path", init=False)

    def seed_for(self, target: int, sample: int) -> int:
        return self.seed + 1000 * target + sample


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def _rows(identity, label, checkpoint, k, plan: Plan, truth, input_faces, faces, paths, protocol, recognisers):
    """One row per (target, sample) of one representation at one k."""
    rows = []
    for n, (face, image_path) in enumerate(zip(faces, paths)):
        j, s = divmod(n, protocol.samples)
        rows.append({"identity_id": identity, "representation": label, "checkpoint": checkpoint, "k": k,
                     "target": j, "sample": s, "seed": protocol.seed_for(j, s), "target_path": str(plan.targets[j]),
                     "input_paths": [str(p) for p in plan.inputs[:k]], "image_path": image_path,
                     **score(face, truth[j], input_faces[:k], recognisers)})
    return rows


def _reference_rows(plan: Plan, input_faces, truth, metrics: FaceMetrics, protocol) -> list[tuple]:
    """(label, k, faces, paths) of the rows scored like generations: copy-input, real photos, --bench outputs."""
    n, per = len(plan.targets) * protocol.samples, protocol.samples
    out = []
    for k in plan.ks:
        if protocol.copy_row:
            out.append((COPY_ROW, k, [input_faces[0]] * n, [str(plan.inputs[0])] * n))
        if protocol.real_row and len(plan.targets) > 1:  # target j's "generation": the next held-out photo
            other = [(j + 1) % len(plan.targets) for j in range(len(plan.targets)) for _ in range(per)]
            out.append((REAL_ROW, k, [truth[o] for o in other], [str(plan.targets[o]) for o in other]))
        if k in plan.outputs:
            given = [plan.outputs[k][j] for j in range(len(plan.targets)) for _ in range(per)]
            out.append((BENCH_ROW, k, metrics.analyse(given), [str(p) for p in given]))
    return out


def _identity_rows(identity: str, plan: Plan, generators: dict, out: Path, metrics: FaceMetrics,
                   protocol: Protocol, aligned: bool) -> tuple[list[dict], list]:
    """Every row of one identity, and the contact sheet's rows of generations."""
    analysed = metrics.analyse(plan.inputs + plan.targets)
    input_faces, truth = analysed[:len(plan.inputs)], analysed[len(plan.inputs):]
    for j, face in enumerate(truth):
        if face is None:
            log.warning("%s: no face found in the ground truth %s; its rows are not scored", identity, plan.targets[j])
    recognisers, rows, tiles = metrics.recognisers, [], []
    n = len(plan.targets) * protocol.samples
    seeds = [protocol.seed_for(j, s) for j in range(len(plan.targets)) for s in range(protocol.samples)]
    for label, gen in generators.items():
        folder = Path("images") / safe_name(label) / safe_name(identity)
        (out / folder).mkdir(parents=True, exist_ok=True)
        for k in plan.ks:
            tokens = gen.tokens([plan.inputs[:k]], aligned=aligned or None)
            images = gen.generate(tokens.expand(n, *tokens.shape[1:]), seeds, steps=protocol.steps,
                                  guidance=protocol.guidance, scale=protocol.scale)
            paths = [str(folder / f"k{k}_t{j}_s{s}.png") for j in range(len(plan.targets)) for s in range(protocol.samples)]
            for image, path in zip(images, paths):
                image.save(out / path)
            rows += _rows(identity, label, str(gen.folder), k, plan, truth, input_faces, metrics.analyse(images),
                          paths, protocol, recognisers)
            tiles.append((f"{label} k={k}", images[::protocol.samples]))
    for label, k, faces, paths in _reference_rows(plan, input_faces, truth, metrics, protocol):
        rows += _rows(identity, label, "", k, plan, truth, input_faces, faces, paths, protocol, recognisers)
    return rows, tiles


def _evaluate_identity(identity: str, fitted: Fitted, pairs: dict, generators: dict, out: Path, metrics: FaceMetrics,
                       protocol: Protocol, note: str | None) -> tuple[list[dict], list[dict]]:
    """One identity's rows of results.parquet (and its contact sheet), and its swap rows."""
    plan = fitted.plans[identity]
    rows, tiles = _identity_rows(identity, plan, generators, out, metrics, protocol, aligned=fitted.manifest is not None)
    sheet(out / "sheets" / f"{safe_name(identity)}.png", plan.inputs, plan.targets, tiles, note)
    if identity not in pairs:
        return rows, []
    donor = pairs[identity]
    folders = {label: Path("images") / safe_name(label) / safe_name(identity) for label in generators}
    return rows, identity_swap_rows(identity, donor, fitted.plans[donor].inputs, plan.targets, rows, generators,
                                    folders, out, metrics, protocol, COPY_ROW)


def _swap_settings(pairs: dict, summary: list[dict], protocol: Protocol, evaluated: int, bench: bool) -> dict:
    if not protocol.swap:
        return {"skipped": "turned off (--no-swap)"}
    if bench:
        return {"skipped": "not run on a --bench folder (its entries are not identities with several photos)"}
    if not pairs:
        return {"skipped": f"{evaluated} identity evaluated; the swap needs 2 or more"}
    return {"k": swap_k(protocol), "donors": pairs, "derangement_seed": protocol.seed,
            "bootstrap": {"resamples": protocol.bootstrap, "seed": protocol.seed, "level": protocol.level},
            "margins": summary}


def _fitted(manifest, bench, protocol: Protocol) -> Fitted:
    if bench is not None:
        plans, _ = read_bench(bench)
        names = list(plans)[: protocol.identities]
        return Fitted(tuple(sorted({k for n in names for k in plans[n].ks})), {n: plans[n] for n in names}, {}, [])
    from omniid.data import load_manifest

    manifest = split_path(manifest, "test") if Path(manifest).is_dir() else Path(manifest)  # a folder: its test split
    identities = {name: [crop for crop, _ in faces] for name, faces in load_manifest(manifest).items()}
    names = sorted(identities)[: protocol.identities]
    fitted = fit(identities, names, protocol.inputs, protocol.targets, str(manifest))
    fitted.manifest = manifest
    return fitted


def evaluate(generators: dict, manifest: str | Path | None, out: str | Path, metrics: FaceMetrics,
             protocol: Protocol = Protocol(), bench: str | Path | None = None,
             export: str | Path | None = None) -> dict:
    """generators: label -> OmniIDGenerator (or anything with tokens/generate/settings/folder);
    manifest or bench: the evaluation set. Returns the summary written to settings.json (plus
    wall times and the table's text)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fitted = _fitted(manifest, bench, protocol)
    swaps = donors(list(fitted.plans), protocol.seed) if protocol.swap and bench is None else {}
    note = random_weights(generators)
    rows, swap_rows, timing = [], [], {}
    bar_off = None if progress_enabled() else True  # -q hides it; None: shown on a terminal only
    for identity in tqdm(list(fitted.plans), desc="omniid-eval", unit="identity", disable=bar_off):
        started = time.perf_counter()
        if fitted.manifest is not None:  # a ControlNet row draws its targets' landmarks from the manifest
            bind_targets(generators, fitted.manifest, fitted.plans[identity].targets)
        mine, swapped = _evaluate_identity(identity, fitted, swaps, generators, out, metrics, protocol, note)
        rows, swap_rows = rows + mine, swap_rows + swapped
        timing[identity] = round(time.perf_counter() - started, 3)
        log.info("%s: %d rows in %.1f s", identity, len(mine), timing[identity])
    settings_of = {**row_settings(generators, COPY_ROW), REAL_ROW: "real photo", BENCH_ROW: "given output"}
    rows = [{**r, "setting": settings_of[r["representation"]]} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows, schema=row_schema(metrics.recognisers)), out / "results.parquet")
    order = [label for label in [*generators, COPY_ROW, REAL_ROW, BENCH_ROW] if any(r["representation"] == label
                                                                                    for r in rows)]
    marks = conditioned(generators, metrics.recognisers)
    spec = TableSpec(order, list(fitted.ks), metrics.recognisers, protocol.bootstrap, protocol.seed, protocol.level,
                     conditioned=marks, labels={rep: {"setting": settings_of[rep]} for rep in order}, header=[f"**{note}**"] if note else [],
                     footer=footer_lines(fitted, rows, metrics, protocol, marks, MARK, bench))
    cells = write_table(rows, out, spec)
    curves = write_curves(curve_points(rows, spec), out, spec, note)
    summary = summarise(swap_rows, order, protocol) if swaps else []
    if swaps:
        write_swap(out, swap_rows, summary, protocol)
    exported = export_multiid(export, rows, out, next(iter(generators.values())).prompt if generators else "") \
        if export is not None else None
    settings = {
        "protocol": asdict(protocol), "manifest": str(fitted.manifest) if fitted.manifest else None,
        "bench": str(bench) if bench else None, "metrics": metrics.models, "recognisers": metrics.recognisers,
        "generators": {label: gen.settings for label, gen in generators.items()}, "random_weights": note,
        "conditioned_on_a_scoring_model": marks, "inputs_evaluated": list(fitted.ks), "notes": fitted.notes,
        "identities": list(fitted.plans), "skipped": fitted.skipped,
        "bootstrap": {"resamples": protocol.bootstrap, "seed": protocol.seed, "level": protocol.level,
                      "over": "identities"},
        "swap": _swap_settings(swaps, summary, protocol, len(fitted.plans), bench is not None),
        "multiid_export": {"folder": str(export), "entries": exported} if export is not None else None,
        "settings": {rep: settings_of[rep] for rep in order},
        "note": "decoder-only rows: pose is not conditioned (the adapter has no pose input); Table 1-like rows: "
                "a ControlNet fed each target's landmark image; see omniid/evaluate.py",
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    write_report(out, rows, cells, spec, curves, fitted, protocol, note)
    wall = {"per_identity_s": timing, "mean_s": round(float(np.mean(list(timing.values()))), 3) if timing else None}
    (out / "timing.json").write_text(json.dumps(wall, indent=2))
    return {**settings, "timing": wall, "table": (out / "table.md").read_text()}
