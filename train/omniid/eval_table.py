"""omniid-eval's table: one row per (representation, k), one column group per recogniser, every
cell a mean over images with its 95% bootstrap interval over identities (omniid.intervals).

Cells, over the rows of results.parquet of that representation and k:
  id_similarity:R  mean cosine to the ground truth (rows whose ground truth has a face; a row
                   without a generated face scores 0)
  sim_ref:R        mean cosine to the nearest input (same rows, those with a generated face:
                   it is NaN without one, left out like copy-paste; no_face_rate says how many)
  copy_paste:R     mean copy-paste score over the rows where it is defined; `degenerate:R` counts
                   the rows left out because the ground truth was within a degree of the reference
  pose_error       mean over rows where both faces were found
  no_face_rate     share of all rows without a detected face
  n                rows (images)
table.csv holds every cell with `:low` and `:high`; table.md shows "mean [low, high]".
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from omniid.intervals import cluster_interval

PER_RECOGNISER = ("id_similarity", "sim_ref", "copy_paste")
TITLES = {"id_similarity": "ID sim", "sim_ref": "Sim(Ref)", "copy_paste": "Copy-paste", "pose_error": "Pose err",
          "no_face_rate": "No face"}
MARK = "‡"


@dataclass
class TableSpec:
    representations: list[str]
    ks: list[int]
    recognisers: list[str]
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    conditioned: dict[str, list[str]] = field(default_factory=dict)   # representation -> its recognisers
    labels: dict[str, dict[str, str]] = field(default_factory=dict)   # extra columns per representation
    header: list[str] = field(default_factory=list)                   # lines above the table (warnings)
    footer: list[str] = field(default_factory=list)                   # lines below it


def metric_names(recognisers: list[str]) -> list[str]:
    return [f"{m}:{r}" for r in recognisers for m in PER_RECOGNISER] + ["pose_error", "no_face_rate"]


def _values(rows: list[dict], metric: str) -> list[tuple[str, float]]:
    if metric == "no_face_rate":
        return [(r["identity_id"], 0.0 if r["face"] else 1.0) for r in rows]
    if metric == "pose_error":
        return [(r["identity_id"], r["pose_error"]) for r in rows if r["gt_face"] and r["face"]]
    return [(r["identity_id"], r[metric]) for r in rows if r["gt_face"]]


def cell(rows: list[dict], metric: str, spec: TableSpec) -> tuple[float, float, float]:
    groups: dict[str, list[float]] = {}
    for identity, value in _values(rows, metric):
        groups.setdefault(identity, []).append(value)
    return cluster_interval(groups, spec.resamples, spec.seed, spec.level)


def cells(rows: list[dict], spec: TableSpec) -> dict[tuple[str, int], dict]:
    """(representation, k) -> {metric: (mean, low, high), 'n': rows, 'degenerate:R': count}."""
    out = {}
    for rep in spec.representations:
        for k in spec.ks:
            chosen = [r for r in rows if r["representation"] == rep and r["k"] == k]
            if not chosen:
                continue
            entry = {m: cell(chosen, m, spec) for m in metric_names(spec.recognisers)}
            entry["n"] = len(chosen)
            entry.update({f"degenerate:{r}": sum(bool(row[f"degenerate:{r}"]) for row in chosen)
                          for r in spec.recognisers})
            out[rep, k] = entry
    return out


def fmt(value: float, metric: str) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.1f}" if metric == "pose_error" else f"{value:+.3f}" if metric.startswith("copy") else \
        f"{value:.3f}"


def fmt_cell(triple: tuple[float, float, float], metric: str) -> str:
    mean, low, high = triple
    return fmt(mean, metric) if math.isnan(low) else f"{fmt(mean, metric)} [{fmt(low, metric)}, {fmt(high, metric)}]"


def column_titles(spec: TableSpec) -> list[tuple[str, str]]:
    """(metric key, title) per shown column, recogniser groups first."""
    return [(f"{m}:{r}", f"{TITLES[m]} ({r})") for r in spec.recognisers for m in PER_RECOGNISER] + \
        [("pose_error", TITLES["pose_error"]), ("no_face_rate", TITLES["no_face_rate"])]


def marked(rep: str, key: str, spec: TableSpec) -> bool:
    return ":" in key and key.split(":", 1)[1] in spec.conditioned.get(rep, [])


def label_columns(spec: TableSpec) -> list[str]:
    """The label columns (`setting`...) every table of the rows shows after the representation."""
    return sorted({name for labels in spec.labels.values() for name in labels})


def label_values(rep: str, spec: TableSpec) -> list[str]:
    """A representation's values of `label_columns`, in that order ("" where it has none)."""
    return [spec.labels.get(rep, {}).get(name, "") for name in label_columns(spec)]


def write_table(rows: list[dict], out: Path, spec: TableSpec) -> dict:
    """table.csv and table.md; returns the cells."""
    table = cells(rows, spec)
    extra = label_columns(spec)
    keys = metric_names(spec.recognisers)
    with open(out / "table.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["representation", *extra, "k", *[f"{m}{s}" for m in keys for s in ("", ":low", ":high")],
                         *[f"degenerate:{r}" for r in spec.recognisers], "n", "conditioned_on"])
        for (rep, k), entry in table.items():
            writer.writerow([rep, *label_values(rep, spec), k,
                             *[repr(v) for m in keys for v in entry[m]],
                             *[entry[f"degenerate:{r}"] for r in spec.recognisers], entry["n"],
                             ",".join(spec.conditioned.get(rep, []))])
    shown = column_titles(spec)
    lines = list(spec.header) + ([""] if spec.header else [])
    lines += ["| Representation | " + "".join(f"{e} | " for e in extra) + "k | " +
              " | ".join(title for _, title in shown) + " | n |",
              "|---|" + "---|" * len(extra) + "---:|" + "---:|" * (len(shown) + 1)]
    for (rep, k), entry in table.items():
        name = f"{rep} {MARK}" if rep in spec.conditioned else rep
        values = [fmt_cell(entry[key], key) + (f" {MARK}" if marked(rep, key, spec) else "") for key, _ in shown]
        lines.append(f"| {name} | " + "".join(f"{value} | " for value in label_values(rep, spec)) +
                     f"{k} | " + " | ".join(values) + f" | {entry['n']} |")
    (out / "table.md").write_text("\n".join(lines + [""] + spec.footer) + "\n")
    return table
