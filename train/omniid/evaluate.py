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
- Identities: those of the manifest (sorted by identity_id; `--identities N` takes the first N).
- Fixed ordering of an identity's faces: sorted by crop path (for mfhq manifests: source, clip,
  frame). The inputs for k are the first k faces; the ground-truth targets are the `targets`
  faces that follow the first max(k) — never used as inputs, and the same for every k.
- For each target t (index j) and sample s: seed = protocol.seed + 1000 * j + s, the same for
  every representation and every k, with the prompt "photo of a person." (the checkpoint's),
  fixed steps, and each checkpoint's own guidance (its run's flow.guidance) unless one is given.
  Inputs are the manifest's aligned crops, prepared as in training (omniid.face_inputs).
- Metrics (omniid.metrics): ID similarity to the target; Sim(Ref), the similarity to the nearest
  input; pose error; no-face rate. A generated image without a face scores 0 and counts as no face.
- A `copy-input` row (on by default) scores the first input image itself as the "generation":
  Sim(Ref) = 1 by construction, and its ID similarity is what copy-pasting an input would earn.
- The identity swap (`omniid.swap_eval`, on by default, needs 2 identities): each identity is
  generated again at the largest k from another identity's inputs (a seeded derangement), with the
  same seeds (and, for a ControlNet row, the same targets' landmarks), and scored against the same
  targets; the margin own - swapped per representation, with a seeded bootstrap interval over
  identities, says whether a representation steers identity.

Outputs: results.parquet (one row per identity, representation, k, target, sample), table.csv and
table.md (rows = representation, columns = metric per k, as the paper's Table 1), one contact
sheet per identity in sheets/, generated images in images/, settings.json (the protocol, the
models, the checkpoints, skipped identities, the swap's donors and margins), swap.parquet and
swap.csv, and timing.json (wall times; kept apart so that results are identical across runs).
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
from omniid.eval_setting import bind_targets, row_settings
from omniid.metrics import FaceMetrics, id_similarity, pose_error, ref_similarity
from omniid.report import sheet, write_tables
from omniid.swap_eval import donors, identity_swap_rows, summarise, swap_k, write_swap

log = logging.getLogger(__name__)
COPY_ROW = "copy-input"
ROW_SCHEMA = pa.schema([
    ("identity_id", pa.string()), ("representation", pa.string()), ("setting", pa.string()),
    ("checkpoint", pa.string()), ("k", pa.int32()), ("target", pa.int32()), ("sample", pa.int32()), ("seed", pa.int64()),
    ("target_path", pa.string()), ("input_paths", pa.list_(pa.string())), ("image_path", pa.string()),
    ("face", pa.bool_()), ("gt_face", pa.bool_()),
    ("id_similarity", pa.float64()), ("sim_ref", pa.float64()), ("pose_error", pa.float64()),
    ("yaw", pa.float64()), ("pitch", pa.float64()), ("roll", pa.float64()),
    ("gt_yaw", pa.float64()), ("gt_pitch", pa.float64()), ("gt_roll", pa.float64()),
])


@dataclass(frozen=True)
class Protocol:
    inputs: tuple[int, ...] = (1, 3, 5)
    targets: int = 4                  # ground-truth faces per identity
    samples: int = 1                  # generations per target
    seed: int = 0
    steps: int = 28
    guidance: float | None = None     # None: each checkpoint's own (its run's flow.guidance)
    scale: float | None = None        # adapter scale; None: the checkpoint's
    identities: int | None = None     # the first N identities only
    copy_row: bool = True
    swap: bool = True                 # the identity-swap check (omniid.swap_eval)
    swap_k: int | None = None         # its k; None: the largest
    bootstrap: int = 1000             # resamples of the swap margin's interval over identities
    level: float = 0.95               # that interval's coverage
    ordering: str = field(default="crop_path", init=False)

    def seed_for(self, target: int, sample: int) -> int:
        return self.seed + 1000 * target + sample


def plan(faces: list[Path], protocol: Protocol) -> tuple[list[Path], list[Path]] | None:
    """(inputs: the first max(k) faces, targets: the next `targets`), or None if too few faces."""
    ordered = sorted(faces, key=str)
    need = max(protocol.inputs) + 1
    if len(ordered) < need:
        return None
    first = max(protocol.inputs)
    return ordered[:first], ordered[first:first + protocol.targets]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def _pose(face) -> list[float]:
    return [float(v) for v in face.pose] if face is not None else [float("nan")] * 3


def _rows(identity, label, checkpoint, k, inputs, targets, truth, input_faces, generated, paths, protocol):
    """One row per (target, sample) of one representation at one k."""
    rows = []
    for n, (face, image_path) in enumerate(zip(generated, paths)):
        j, s = divmod(n, protocol.samples)
        gt = truth[j]
        rows.append({
            "identity_id": identity, "representation": label, "checkpoint": checkpoint, "k": k, "target": j,
            "sample": s, "seed": protocol.seed_for(j, s), "target_path": str(targets[j]),
            "input_paths": [str(p) for p in inputs[:k]], "image_path": image_path,
            "face": face is not None, "gt_face": gt is not None,
            "id_similarity": id_similarity(face, gt) if gt is not None else float("nan"),
            "sim_ref": ref_similarity(face, input_faces[:k]), "pose_error": pose_error(face, gt),
            **dict(zip(("yaw", "pitch", "roll"), _pose(face))),
            **dict(zip(("gt_yaw", "gt_pitch", "gt_roll"), _pose(gt))),
        })
    return rows


def _identity_rows(identity: str, inputs: list[Path], targets: list[Path], generators: dict, out: Path,
                   metrics: FaceMetrics, protocol: Protocol) -> tuple[list[dict], list]:
    """Every row of one identity, and the contact sheet's rows of generations."""
    analysed = metrics.analyse(inputs + targets)
    input_faces, truth = analysed[:len(inputs)], analysed[len(inputs):]
    for j, face in enumerate(truth):
        if face is None:
            log.warning("%s: no face found in the ground truth %s; its rows are not scored", identity, targets[j])
    rows, tiles = [], []
    n = len(targets) * protocol.samples
    seeds = [protocol.seed_for(j, s) for j in range(len(targets)) for s in range(protocol.samples)]
    for label, gen in generators.items():
        folder = Path("images") / safe_name(label) / safe_name(identity)
        (out / folder).mkdir(parents=True, exist_ok=True)
        for k in protocol.inputs:
            tokens = gen.tokens([inputs[:k]], aligned=True)  # a manifest's crops: aligned by extract
            images = gen.generate(tokens.expand(n, *tokens.shape[1:]), seeds, steps=protocol.steps,
                                  guidance=protocol.guidance, scale=protocol.scale)
            paths = [str(folder / f"k{k}_t{j}_s{s}.png") for j in range(len(targets)) for s in range(protocol.samples)]
            for image, path in zip(images, paths):
                image.save(out / path)
            rows += _rows(identity, label, str(gen.folder), k, inputs, targets, truth, input_faces,
                          metrics.analyse(images), paths, protocol)
            tiles.append((f"{label} k={k}", images[::protocol.samples]))
    if protocol.copy_row:  # the first input, scored as if it had been generated
        for k in protocol.inputs:
            rows += _rows(identity, COPY_ROW, "", k, inputs, targets, truth, input_faces, [input_faces[0]] * n,
                          [str(inputs[0])] * n, protocol)
    return rows, tiles


def _plans(identities: dict[str, list[Path]], names: list[str], protocol: Protocol) -> tuple[dict, dict]:
    """({identity: (inputs, targets)}, {identity: why it is skipped})."""
    plans, skipped = {}, {}
    for identity in names:
        chosen = plan(identities[identity], protocol)
        if chosen is None:
            skipped[identity] = f"{len(identities[identity])} faces; the protocol needs {max(protocol.inputs) + 1}"
            log.warning("skipping identity %s: %s", identity, skipped[identity])
        else:
            plans[identity] = chosen
    return plans, skipped


def _evaluate_identity(identity: str, plans: dict, pairs: dict, generators: dict, out: Path, metrics: FaceMetrics,
                       protocol: Protocol) -> tuple[list[dict], list[dict]]:
    """One identity's rows of results.parquet (and its contact sheet), and its swap rows."""
    inputs, targets = plans[identity]
    rows, tiles = _identity_rows(identity, inputs, targets, generators, out, metrics, protocol)
    sheet(out / "sheets" / f"{safe_name(identity)}.png", inputs, targets, tiles)
    if identity not in pairs:
        return rows, []
    donor = pairs[identity]
    folders = {label: Path("images") / safe_name(label) / safe_name(identity) for label in generators}
    return rows, identity_swap_rows(identity, donor, plans[donor][0], targets, rows, generators, folders, out, metrics,
                                    protocol, COPY_ROW)


def _swap_settings(pairs: dict, summary: list[dict], protocol: Protocol, evaluated: int) -> dict:
    if not protocol.swap:
        return {"skipped": "turned off (--no-swap)"}
    if not pairs:
        return {"skipped": f"{evaluated} identity evaluated; the swap needs 2 or more"}
    return {"k": swap_k(protocol), "donors": pairs, "derangement_seed": protocol.seed,
            "bootstrap": {"resamples": protocol.bootstrap, "seed": protocol.seed, "level": protocol.level},
            "margins": summary}


def evaluate(generators: dict, manifest: str | Path, out: str | Path, metrics: FaceMetrics,
             protocol: Protocol = Protocol()) -> dict:
    """generators: label -> OmniIDGenerator (or anything with tokens/generate/settings/folder).

    Returns the summary written to settings.json (plus wall times)."""
    from omniid.data import DataError, load_manifest

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = split_path(manifest, "test") if Path(manifest).is_dir() else Path(manifest)  # a folder: its test split
    identities = {name: [crop for crop, _ in faces] for name, faces in load_manifest(manifest).items()}
    names = sorted(identities)[: protocol.identities]
    plans, skipped = _plans(identities, names, protocol)
    swaps = donors(list(plans), protocol.seed) if protocol.swap else {}
    rows, swap_rows, timing = [], [], {}
    for identity in tqdm(list(plans), desc="omniid-eval", unit="identity", disable=None):
        started = time.perf_counter()
        bind_targets(generators, manifest, plans[identity][1])  # a ControlNet row draws its targets' landmarks
        identity_rows, identity_swaps = _evaluate_identity(identity, plans, swaps, generators, out, metrics, protocol)
        rows, swap_rows = rows + identity_rows, swap_rows + identity_swaps
        timing[identity] = round(time.perf_counter() - started, 3)
        log.info("%s: %d rows in %.1f s", identity, len(identity_rows), timing[identity])
    if not rows:
        raise DataError(f"{manifest}: no identity has the {max(protocol.inputs) + 1} faces the protocol needs "
                        f"(inputs {list(protocol.inputs)} + 1 target)")
    settings_of = row_settings(generators, COPY_ROW if protocol.copy_row else None)
    table = pa.Table.from_pylist([{**r, "setting": settings_of[r["representation"]]} for r in rows], schema=ROW_SCHEMA)
    pq.write_table(table, out / "results.parquet")
    order = list(generators) + ([COPY_ROW] if protocol.copy_row else [])
    write_tables(table, out, order, list(protocol.inputs), metrics.models, protocol)
    summary = summarise(swap_rows, order, protocol) if swaps else []
    if swaps:
        write_swap(out, swap_rows, summary, protocol)
    settings = {
        "protocol": asdict(protocol), "manifest": str(manifest), "metrics": metrics.models,
        "generators": {label: gen.settings for label, gen in generators.items()},
        "identities": list(plans), "skipped": skipped, "swap": _swap_settings(swaps, summary, protocol, len(plans)),
        "settings": settings_of,
        "note": "decoder-only rows: pose is not conditioned (the adapter has no pose input); Table 1-like rows: "
                "a ControlNet fed each target's landmark image; see omniid/evaluate.py",
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str))
    wall = {"per_identity_s": timing, "mean_s": round(float(np.mean(list(timing.values()))), 3) if timing else None}
    (out / "timing.json").write_text(json.dumps(wall, indent=2))
    return {**settings, "timing": wall}
