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
- For each target t (index j) and sample s: seed = protocol.seed + 1000 * j + s (a --bench
  entry: its meta.json's seed + s), the same for every representation and every k, with the checkpoint's prompt, fixed steps, and each
  checkpoint's own guidance (its run's flow.guidance) unless one is given. A manifest's inputs
  are aligned crops, prepared as in training (omniid.face_inputs); a --bench folder's references
  are photos, detected and aligned first.
- Scores (omniid.scoring) with every recogniser of `metrics`: ID similarity to the target,
  Sim(Ref) to the nearest input, MultiID-Bench's copy-paste score; pose error and pose gap.
- Reference rows, scored like generations: `copy-input` (the first input itself: what
  copy-pasting earns) and `real photos` (another held-out photo of the identity as the
  "generation": the real-pair ceiling; needs 2 targets per identity).
- The identity swap (omniid.swap_eval, needs 2 identities; not with --bench).
- Rows are generated one FLUX base model at a time (omniid.eval_rows: rows of one base share one
  FLUX; omniid.eval_generate runs each group over every identity); the rows, sheets and swap rows
  are then put in the command line's order, so grouping changes no result.

Outputs: results.parquet (every image's scores), table.csv / table.md (omniid.eval_table: mean and
bootstrap interval over identities per cell), curves.csv + curve_*.png (omniid.curves),
report.html (omniid.eval_html), sheets/, images/, swap.*, settings.json, timing.json (wall times,
apart so that results are identical across runs), and with `export` a MultiID-Bench folder
(omniid.eval_export: checked before any model loads, replaced only when it is this eval's own).
`out` is new, empty, or (with `replace`, --force) this command's earlier output, deleted first;
omniid-eval.json says "complete" only once every file is written (omniid.eval_out).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace as replaced
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mfhq.manifest import split_path
from omniid.curves import curve_points, write_curves
from omniid.eval_export import write_export
from omniid.eval_generate import Scored, generate_all, safe_name, score_rows
from omniid.eval_html import write_report
from omniid.eval_out import EVAL, claim_out, complete_out, kept_export, write_json
from omniid.eval_notes import conditioned, random_weights
from omniid.eval_plan import Fitted, Plan, fit
from omniid.eval_seen import seen_in_training, seen_labels, seen_line
from omniid.eval_setting import row_settings
from omniid.eval_table import MARK, TableSpec, write_table
from omniid.metrics import FaceMetrics
from omniid.multiid import BENCH_ROW, bench_seeds, read_bench
from omniid.report import sheet
from omniid.scoring import row_schema
from omniid.swap_eval import donors, fitted_swap_k, identity_swap_rows, summarise, swap_k, write_swap
from omniid.table_notes import footer_lines, seeds_rule

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
    swap_k: int | None = None         # its k; None: the largest evaluated (evaluate resolves it)
    bootstrap: int = 1000             # resamples of every interval over identities
    level: float = 0.95               # their coverage
    report_identities: int = 4        # identities shown in report.html (a seeded sample)
    ordering: str = field(default="crop_path", init=False)

    def seed_for(self, target: int, sample: int) -> int:
        return self.seed + 1000 * target + sample


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


def _finish_identity(identity: str, fitted: Fitted, swaps: dict, mine: Scored, labels: list[str], out: Path,
                     metrics: FaceMetrics, protocol: Protocol, note: str | None) -> tuple[list[dict], list[dict]]:
    """One identity's rows of results.parquet in table order (generated, then reference rows), its
    contact sheet and its swap rows (the copy-input row's last)."""
    started, plan = time.perf_counter(), fitted.plans[identity]
    (input_faces, truth), rows = mine.faces, [r for label in labels for r in mine.rows.get(label, [])]
    for label, k, faces, paths in _reference_rows(plan, input_faces, truth, metrics, protocol):
        rows += score_rows(identity, label, "", k, plan, truth, input_faces, faces, paths, protocol, metrics.recognisers)
    sheet(out / "sheets" / f"{safe_name(identity)}.png", plan.inputs, plan.targets,
          [tile for label in labels for tile in mine.tiles.get(label, [])], note)
    swap_rows = [r for label in labels for r in mine.swap_rows.get(label, [])]
    if identity in swaps and protocol.copy_row:
        swap_rows += identity_swap_rows(identity, swaps[identity], fitted.plans[swaps[identity]].inputs, truth, rows,
                                        {}, [COPY_ROW], {}, out, metrics, protocol, copy_label=COPY_ROW)
    mine.seconds += time.perf_counter() - started
    log.info("%s: %d rows in %.1f s", identity, len(rows), mine.seconds)
    return rows, swap_rows


def _swap_settings(pairs: dict, summary: list[dict], protocol: Protocol, evaluated: int, bench: bool) -> dict:
    if not protocol.swap:
        return {"skipped": "turned off (--no-swap)"}
    if bench:
        return {"skipped": "not run on a --bench folder (its entries are not identities with several photos)"}
    if not pairs:  # said on the console too: the user asked for it, and gets no swap table
        skipped = f"{evaluated} identity evaluated; the swap needs 2 or more"
        log.warning("identity-swap check not run: %s (settings.json's swap.skipped)", skipped)
        return {"skipped": skipped}
    return {"k": swap_k(protocol), "donors": pairs, "derangement_seed": protocol.seed,
            "bootstrap": {"resamples": protocol.bootstrap, "seed": protocol.seed, "level": protocol.level},
            "margins": summary}


def _fitted(manifest, bench, protocol: Protocol, generating: bool) -> Fitted:
    if bench is not None:
        plans, metas, skipped = read_bench(bench)
        names = list(plans)[: protocol.identities]
        fitted = Fitted(tuple(sorted({k for n in names for k in plans[n].ks})), {n: plans[n] for n in names}, skipped,
                        [f"--bench {bench}: {len(skipped)} folder(s) without ori.* or ref_1.* skipped, not entries: "
                         f"{', '.join(skipped)}"] if skipped else [])
        if skipped:
            log.warning("%s", fitted.notes[0])
        seeds = bench_seeds(bench, {n: metas[n] for n in names}, required=generating)
        for name in names:
            plans[name].seeds = None if seeds[name] is None else [seeds[name]]
        if generating:
            log.info("--bench %s: each entry is generated with the seed its meta.json records (+ sample), not --seed",
                     bench)
        return fitted
    from omniid.data import load_faces

    manifest = split_path(manifest, "test") if Path(manifest).is_dir() else Path(manifest)  # a folder: its test split
    identities = {}
    for face in load_faces(manifest, crops_only=True):  # eval reads crops alone: masks are not required
        identities.setdefault(face.identity, []).append(face.crop)
    names = sorted(identities)[: protocol.identities]
    fitted = fit(identities, names, protocol.inputs, protocol.targets, str(manifest))
    fitted.manifest = manifest
    return fitted


def _seen(generators, fitted: Fitted) -> dict:
    """The rows whose checkpoint trained on evaluated identities (omniid.eval_seen), said at once on
    the console; {} for a --bench folder (its entries are not a manifest's identities)."""
    if fitted.manifest is None:
        return {}
    states = ({spec.label: spec.state for spec in generators.specs} if hasattr(generators, "specs")
              else {label: getattr(gen, "state", {}) for label, gen in generators.items()})
    seen = seen_in_training(states, fitted.manifest, list(fitted.plans))
    if seen:
        log.warning("%s", seen_line(seen))
    return seen


def _label_columns(order: list[str], generated: list[str], infos: dict, settings_of: dict,
                   seen: dict) -> dict[str, dict[str, str]]:
    """The table's label columns per row: its setting; a checkpoint row's step (every one, however
    its label reads); with identities seen in training, whether its checkpoint saw them."""
    training = seen_labels(seen, generated)
    return {rep: {"setting": settings_of[rep],
                  **({"step": str(infos[rep].settings.get("step"))} if rep in generated else {}),
                  **training.get(rep, {})} for rep in order}


def evaluate(generators, manifest: str | Path | None, out: str | Path, metrics: FaceMetrics,
             protocol: Protocol = Protocol(), bench: str | Path | None = None,
             export: str | Path | None = None, replace: bool = False) -> dict:
    """generators: an omniid.eval_rows.EvalRows (its groups built one FLUX at a time), or a dict
    label -> OmniIDGenerator (or anything with tokens/generate/settings/folder/prompt); manifest or
    bench: the evaluation set; replace: an earlier omniid-eval output in `out` is replaced
    (omniid.eval_out, `--force`), else refused. Returns the summary written to settings.json
    (plus wall times and the table's text)."""
    out = Path(out)
    generating = bool(generators.labels if hasattr(generators, "groups") else generators)
    fitted = _fitted(manifest, bench, protocol, generating)
    seen = _seen(generators, fitted)
    if protocol.swap and bench is None:  # the swap's k among those evaluated, not those asked
        protocol = replaced(protocol, swap_k=fitted_swap_k(protocol, fitted.ks))
    claim_out(out, EVAL, replace, kept_export(out, export))  # from here the folder is this run's, not complete
    swaps = donors(list(fitted.plans), protocol.seed) if protocol.swap and bench is None else {}
    labels, infos, scored = generate_all(generators, fitted, swaps, out, metrics, protocol)
    note = random_weights(infos)
    rows, swap_rows = [], []
    for identity in fitted.plans:
        mine, swapped = _finish_identity(identity, fitted, swaps, scored[identity], labels, out, metrics, protocol, note)
        rows, swap_rows = rows + mine, swap_rows + swapped
    timing = {identity: round(scored[identity].seconds, 3) for identity in fitted.plans}
    settings_of = {**row_settings(infos, COPY_ROW), REAL_ROW: "real photo", BENCH_ROW: "given output"}
    rows = [{**r, "setting": settings_of[r["representation"]]} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows, schema=row_schema(metrics.recognisers)), out / "results.parquet")
    order = [label for label in [*labels, COPY_ROW, REAL_ROW, BENCH_ROW] if any(r["representation"] == label
                                                                                for r in rows)]
    marks = conditioned({label: info.conditioning for label, info in infos.items()}, metrics.recognisers)
    spec = TableSpec(order, list(fitted.ks), metrics.recognisers, protocol.bootstrap, protocol.seed, protocol.level,
                     conditioned=marks, labels=_label_columns(order, labels, infos, settings_of, seen),
                     header=[f"**{line}**" for line in (note, seen_line(seen)) if line],
                     footer=footer_lines(fitted, rows, metrics, protocol, marks, MARK, bench))
    cells = write_table(rows, out, spec)
    curves = write_curves(curve_points(rows, spec), out, spec, note)
    summary = summarise(swap_rows, order, protocol, metrics.recognisers[0]) if swaps else []
    if swaps:
        write_swap(out, swap_rows, summary, protocol, marks)
    exported = write_export(export, rows, out, infos[labels[0]].prompt if labels else "") \
        if export is not None else None
    settings = _settings(protocol, fitted, metrics, infos, labels, note, marks, bench, export, exported,
                         settings_of, order, _swap_settings(swaps, summary, protocol, len(fitted.plans), bench is not None))
    settings["seen_in_training"] = seen
    write_json(out / "settings.json", settings)
    write_report(out, rows, cells, spec, curves, fitted, protocol, note)
    wall = {"per_identity_s": timing, "mean_s": round(float(np.mean(list(timing.values()))), 3) if timing else None}
    write_json(out / "timing.json", wall)
    complete_out(out, EVAL)  # last, after every file it vouches for
    return {**settings, "timing": wall, "table": (out / "table.md").read_text()}


def _settings(protocol, fitted: Fitted, metrics, infos, labels, note, marks, bench, export, exported, settings_of,
              order, swap: dict) -> dict:
    return {
        "protocol": asdict(protocol), "seeds": seeds_rule(fitted, protocol), "manifest": str(fitted.manifest) if fitted.manifest else None,
        "bench": str(bench) if bench else None, "metrics": metrics.models, "recognisers": metrics.recognisers,
        "generators": {label: infos[label].settings for label in labels}, "random_weights": note,
        "conditioned_on_a_scoring_model": marks, "inputs_evaluated": list(fitted.ks), "notes": fitted.notes,
        "identities": list(fitted.plans), "skipped": fitted.skipped,
        "bootstrap": {"resamples": protocol.bootstrap, "seed": protocol.seed, "level": protocol.level,
                      "over": "identities"},
        "swap": swap,
        "multiid_export": {"folder": str(export), "entries": exported} if export is not None else None,
        "settings": {rep: settings_of[rep] for rep in order},
        "note": "decoder-only rows: pose is not conditioned (the adapter has no pose input); Table 1-like rows: "
                "a ControlNet fed each target's landmark image; see omniid/evaluate.py",
    }
