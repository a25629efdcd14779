"""`mfhq stats`: the named views as terminal tables, CSV files, PNG plots and one HTML page.

Every number in the report is a row of a named view (tables/<view>.csv holds it verbatim), so
the report can be checked against direct queries and reproduced with `--sql`.
"""
from __future__ import annotations

import html
import logging
from pathlib import Path

import duckdb
import pandas as pd

from mfhq.stats.views import connect_stats

log = logging.getLogger(__name__)


def run_query(run_dirs: list[Path], manifest: Path | None, sql: str) -> str:
    con, _ = connect_stats(run_dirs, manifest)
    try:
        frame = con.sql(sql).df()
    except duckdb.Error as exc:
        from mfhq.stats.views import StatsError

        raise StatsError(f"query failed: {exc}") from exc
    return frame.to_string(index=False)


def _plots(frames: dict[str, pd.DataFrame], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made.append(name)

    hist = frames["pose_hist"]
    for axis in ("yaw", "pitch"):
        fig, ax = plt.subplots(figsize=(5, 3))
        for who, part in hist[hist["axis"] == axis].groupby("faces_of"):
            share = part["faces"] / part["faces"].sum()
            ax.bar(part["bin"] + (0 if who == "candidates" else 4), share, width=4, label=who, align="edge")
        ax.set(xlabel=f"{axis} (degrees, 10-degree bins)", ylabel="share of faces", title=f"{axis} coverage")
        ax.legend()
        save(fig, f"pose_{axis}.png")
    fig, ax = plt.subplots(figsize=(5, 3))
    for who, part in frames["quality_hist"].groupby("faces_of"):
        ax.bar(part["bin"] + (0 if who == "candidates" else 0.025), part["faces"] / part["faces"].sum(),
               width=0.025, label=who, align="edge")
    ax.set(xlabel="quality (higher is better)", ylabel="share of faces", title="quality")
    ax.legend()
    save(fig, "quality.png")
    spread = frames["pose_spread"].dropna(subset=["spread_before"])
    fig, ax = plt.subplots(figsize=(4, 4))
    if spread["spread_after"].notna().any():
        ax.scatter(spread["spread_before"], spread["spread_after"], s=8)
        top = float(max(spread["spread_before"].max(), spread["spread_after"].max(), 1))
        ax.plot([0, top], [0, top], lw=0.5, color="gray")
        ax.set(xlabel="spread of all faces (deg)", ylabel="spread of the sampled faces (deg)")
    else:
        ax.hist(spread["spread_before"], bins=30)
        ax.set(xlabel="pose spread per clip (deg)", ylabel="clips")
    ax.set_title("pose spread per identity")
    save(fig, "pose_spread.png")
    thr = frames["stage_throughput"]
    if len(thr):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.barh(thr["stage"], thr["seconds"])
        ax.set(xlabel="seconds in all clips", title="time per stage")
        save(fig, "throughput.png")
    return made


def write_report(run_dirs: list[Path], manifest: Path | None, out: Path) -> list[tuple[str, str]]:
    """Writes out/tables/*.csv, out/*.png, out/report.html; returns (view, table text) pairs."""
    con, names = connect_stats(run_dirs, manifest)
    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    frames = {name: con.sql(f"SELECT * FROM {name}").df() for name in names}
    texts = []
    for name, frame in frames.items():
        frame.to_csv(out / "tables" / f"{name}.csv", index=False)
        shown = frame if len(frame) <= 40 else frame.head(40)
        texts.append((name, shown.to_string(index=False) + ("" if len(frame) <= 40 else f"\n... {len(frame)} rows")))
    images = _plots(frames, out)
    parts = ["<!doctype html><meta charset='utf-8'><title>mfhq stats</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}</style>",
             "<h1>mfhq stats</h1><p>runs: " + html.escape(", ".join(str(r) for r in run_dirs)) +
             (f"<br>manifest: {html.escape(str(manifest))}" if manifest else "") + "</p>"]
    parts += [f"<img src='{name}' alt='{name}'>" for name in images]
    for name, frame in frames.items():
        parts.append(f"<h2>{name}</h2>" + frame.head(200).to_html(index=False, na_rep=""))
    (out / "report.html").write_text("\n".join(parts))
    log.info("report: %s (%d views, %d plots)", out / "report.html", len(frames), len(images))
    return texts
