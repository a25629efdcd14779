"""omniid-eval's curves: ID similarity and copy-paste against the number of inputs, and against the
pose gap between the target and its nearest input (ours; the paper tabulates ID similarity at a few
fixed k, Table 1).

- inputs: one point per evaluated k, per representation, over all its rows at that k;
- pose gap: rows at the largest k, binned by `pose_gap` (summed |Δyaw| + |Δpitch| + |Δroll| in
  degrees, see omniid.scoring) into POSE_BINS; rows without a ground-truth or input face are left out.
Every point is a mean over images with its bootstrap interval over identities (omniid.eval_table's
cells), for every recogniser in curves.csv; the plots show the first recogniser, intervals shaded.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from omniid.eval_table import TableSpec, cell

POSE_BINS = ((0.0, 15.0, "<15"), (15.0, 30.0, "15-30"), (30.0, 45.0, "30-45"), (45.0, math.inf, ">45"))
CURVE_METRICS = ("id_similarity", "copy_paste")
FIELDS = ("curve", "representation", "x", "metric", "recogniser", "mean", "low", "high", "n")


def _bin(gap: float) -> str | None:
    return next((label for lo, hi, label in POSE_BINS if lo <= gap < hi), None) if math.isfinite(gap) else None


def curve_points(rows: list[dict], spec: TableSpec) -> list[dict]:
    """One dict per (curve, representation, x, metric, recogniser)."""
    points = []
    top = max(spec.ks)
    for rep in spec.representations:
        mine = [r for r in rows if r["representation"] == rep]
        groups = [("inputs", str(k), [r for r in mine if r["k"] == k]) for k in spec.ks]
        at_top = [r for r in mine if r["k"] == top]
        groups += [("pose_gap", label, [r for r in at_top if _bin(r["pose_gap"]) == label]) for *_, label in POSE_BINS]
        for curve, x, chosen in groups:
            if curve == "inputs" and not chosen:
                continue
            for recogniser in spec.recognisers:
                for metric in CURVE_METRICS:
                    mean, low, high = cell(chosen, f"{metric}:{recogniser}", spec)
                    points.append({"curve": curve, "representation": rep, "x": x, "metric": metric,
                                   "recogniser": recogniser, "mean": mean, "low": low, "high": high,
                                   "n": len(chosen)})
    return points


def write_curves(points: list[dict], out: Path, spec: TableSpec, note: str | None = None) -> dict[str, str]:
    """curves.csv and one PNG per curve (first recogniser); returns {curve: file name}."""
    with open(out / "curves.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: (repr(v) if isinstance(v, float) else v) for k, v in p.items()} for p in points)
    files = {}
    for curve, xlabel in (("inputs", "number of input images k"), ("pose_gap", "pose gap to the nearest input (deg)")):
        files[curve] = f"curve_{curve}.png"
        _plot([p for p in points if p["curve"] == curve and p["recogniser"] == spec.recognisers[0]],
              out / files[curve], xlabel, spec, note)
    return files


def _plot(points: list[dict], path: Path, xlabel: str, spec: TableSpec, note: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(p["x"] for p in points))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for ax, metric in zip(axes, CURVE_METRICS):
        for rep in spec.representations:
            mine = {p["x"]: p for p in points if p["representation"] == rep and p["metric"] == metric}
            xs = [i for i, x in enumerate(labels) if x in mine]
            if not xs:
                continue
            get = [[mine[labels[i]][key] for i in xs] for key in ("mean", "low", "high")]
            line, = ax.plot(xs, get[0], marker="o", label=rep)
            ax.fill_between(xs, get[1], get[2], color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{'ID similarity' if metric == 'id_similarity' else 'copy-paste'} ({spec.recognisers[0]})")
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=max(1, len(names)), fontsize=8, frameon=False)
    title = f"mean over images, {100 * spec.level:g}% bootstrap interval over identities"
    if note:  # the first sentence of the warning: the figure is too narrow for all of it
        title = f"{note.split(';')[0]}\n{title}"
    fig.suptitle(title, fontsize=9, color="#b00000" if note else "black")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)
