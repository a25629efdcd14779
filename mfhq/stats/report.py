"""`mfhq stats`: the named views as terminal tables, CSV files, PNG plots and one HTML page.

Every number in the report is a row of a named view (tables/<view>.csv holds it verbatim), so
the report can be checked against direct queries and reproduced with `--sql`.
"""
from __future__ import annotations

import html
import logging
import shutil
from pathlib import Path

import duckdb
import pandas as pd

from mfhq.manifest.views import damaged_shard, naming_damaged_shards
from mfhq.stats.views import MANIFEST_VIEWS, RUN_VIEWS, connect_stats

log = logging.getLogger(__name__)
# Every plot the report may write: a plot not made this time (no stage times) must not survive
# from an earlier report into the folder.
PLOTS = ("pose_yaw.png", "pose_pitch.png", "quality.png", "pose_spread.png", "throughput.png")
TITLE = "<title>mfhq stats</title>"  # in the head of every report.html stats writes: how its own page is told


def check_report_apart(out: Path, run_dirs: list[Path], manifest: Path | None) -> None:
    """--out must not be a run folder or the manifest folder (nor lie inside that): the report's
    files would sit among their files as if they were the run's or the manifest's, and a manifest
    folder holding them is no longer one cluster-sample may rebuild. Nor a folder whose report.html
    another command wrote (omniid-eval's), which the report would replace."""
    from mfhq.manifest.io import OutputError, placed

    for run in run_dirs:
        if placed(out, run) == "is":  # a report folder inside a run stays allowed
            raise OutputError(f"--out {out}: is the run folder --run {run}; write the report to a folder of its own, "
                              "e.g. --out reports")
    # a manifest that is not there is named by its reader; only a folder it names counts here
    folder = None if manifest is None or not Path(manifest).exists() else \
        Path(manifest) if Path(manifest).is_dir() else Path(manifest).parent
    where = None if folder is None else placed(out, folder)
    if where:
        raise OutputError(f"--out {out}: {where} the manifest folder {folder}; write the report to a folder of its "
                          "own, e.g. --out reports")
    page = Path(out) / "report.html"
    if page.is_file() and not _our_page(page):
        raise OutputError(f"--out {out}: holds a report.html that mfhq stats did not write (another command's output, "
                          "an omniid-eval folder say, or yours), which the report would replace; write the report to a "
                          "folder of its own, e.g. --out reports")


def _our_page(page: Path) -> bool:
    with open(page, "rb") as handle:
        return TITLE.encode() in handle.read(4096)


def run_query(run_dirs: list[Path], manifest: Path | None, sql: str) -> str:
    from mfhq.stats.state import state_lines

    for line in state_lines(run_dirs, manifest)[0]:
        if not line.startswith("run "):  # a run not complete, a manifest older than its run, a partial one
            log.warning("%s", line)
    con, _ = connect_stats(run_dirs, manifest)
    try:
        frame = con.sql(sql).df()
    except duckdb.Error as exc:
        from mfhq.stats.views import StatsError

        # a query that read data and failed may have met a damaged page: named, with the way to redo
        # it (each shard is then read in full; not for a query that never ran: a typo, a wrong name)
        if not isinstance(exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)):
            damage = damaged_shard(run_dirs)
            if damage is not None:
                raise damage from exc
        raise StatsError(f"query failed: {exc}") from exc
    return frame.to_string(index=False)


def _plots(frames: dict[str, pd.DataFrame], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    made = []

    def legend(ax):
        # beside the axes, never over the bars
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=90, bbox_inches="tight")
        plt.close(fig)
        made.append(name)

    hist = frames["pose_hist"]
    for axis in ("yaw", "pitch"):
        fig, ax = plt.subplots(figsize=(6, 3))
        _binned(ax, hist[hist["axis"] == axis], 10.0)
        ax.set(xlabel=f"{axis} (degrees; each bar is one 10-degree bin)", ylabel="share of faces",
               title=f"{axis} coverage")
        legend(ax)
        save(fig, f"pose_{axis}.png")
    fig, ax = plt.subplots(figsize=(6, 3))
    _binned(ax, frames["quality_hist"], 0.05)
    ax.set(xlabel="quality (higher is better; each bar is one 0.05 bin)", ylabel="share of faces", title="quality")
    legend(ax)
    save(fig, "quality.png")
    spread = frames["pose_spread"].dropna(subset=["spread_before"])
    fig, ax = plt.subplots(figsize=(4.5, 3))
    if spread["spread_after"].notna().any():
        ax.scatter(spread["spread_before"], spread["spread_after"], s=8)
        top = float(max(spread["spread_before"].max(), spread["spread_after"].max(), 1))
        ax.plot([0, top], [0, top], lw=0.5, color="gray")
        ax.set(xlabel="spread of its kept faces (deg)", ylabel="spread of its sampled faces (deg)",
               title="pose spread per identity")
    else:  # no manifest: no identities yet, each clip is counted on its own
        ax.hist(spread["spread_before"], bins=30)
        ax.set(xlabel="pose spread of a clip's kept faces (deg)", ylabel="clips", title="pose spread per clip")
    save(fig, "pose_spread.png")
    thr = frames["stage_throughput"]
    if len(thr):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.barh(thr["stage"], thr["seconds"])
        ax.set(xlabel="seconds in all clips (decode: the wait for frames)", title="time per stage")
        save(fig, "throughput.png")
    return made


def _binned(ax, frame: pd.DataFrame, width: float) -> None:
    """Each bin's bar spans exactly its bin: kept faces filled, sampled faces outlined on top, so
    neither is shifted into a neighbouring bin."""
    for who, part in frame.groupby("faces_of"):
        share = part["faces"] / part["faces"].sum()
        if who == "kept":
            ax.bar(part["bin"], share, width=width, align="edge", label=who, color="#9ab", edgecolor="white")
        else:
            ax.bar(part["bin"], share, width=width, align="edge", label=who, fill=False, edgecolor="#c33", lw=1.5)
    if len(frame):
        low, high = float(min(frame["bin"])), float(max(frame["bin"])) + width
        ax.set_xticks([round(low + k * width, 6) for k in range(int(round((high - low) / width)) + 1)])
        ax.tick_params(axis="x", labelsize=7)


# The report's headings; the view's own name stays beside each (for --sql and tables/<view>.csv).
TITLES = {
    "clip_status": "Clips by status", "clip_reasons": "Why clips failed", "face_outcomes": "Faces kept and dropped, by stage",
    "clips_per_source": "Clips per source", "pose_hist": "Pose histogram (10-degree bins)",
    "quality_hist": "Quality histogram (0.05 bins)",
    # with run.decode_ahead a worker decodes on another core while its models run: its `decode`
    # seconds are their wait for frames, and frames_per_s there is no decoder's rate
    "stage_throughput": "Time per stage, summed over clips (decode: the time the other stages waited for frames, "
                        "which is decoding's own time only where the run did not decode ahead, run.decode_ahead)",
    # an identity whose clips span two sources (or a dedup identity's two decisions) counts in each
    # row it appears in: each row is true, the rows do not add up to the headline's total
    "pose_spread": "Pose spread",
    "identities_per_source": "Identities per source and split (one spanning two sources counts in both)",
    "identity_status": "Clips by identity decision (an identity counts under each decision its clips have)",
}

_STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1200px}
h1{margin-bottom:.2em} .meta{color:#555;font-size:.9em;word-break:break-all}
#headline{display:flex;flex-wrap:wrap;gap:1.5em;margin:1em 0}
.label{color:#555;font-size:.8em;text-transform:uppercase;letter-spacing:.05em;margin-bottom:.3em}
.cards{display:flex;flex-wrap:wrap;gap:.6em}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:7em;background:#fafafa}
.card b{display:block;font-size:1.6em} .card span{color:#555;font-size:.85em}
.plots img{margin:.3em;border:1px solid #eee}
.strip h3{font-size:.95em;margin:.8em 0 .3em} .tag{font-weight:normal;color:#fff;background:#678;
border-radius:3px;padding:0 .4em;font-size:.85em}
.faces{display:flex;flex-wrap:wrap;gap:8px} figure{margin:0;width:124px;text-align:center}
figure img{display:block;margin:0 auto;border-radius:3px}
figcaption{font-size:10.5px;color:#333;line-height:1.3;white-space:nowrap}
.missing{width:112px;height:112px;background:#fee;font-size:10px;overflow:hidden}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ccc;padding:2px 6px}
.state{padding:.5em .9em;border-radius:6px;margin:.4em 0;background:#eef6ee;border:1px solid #9c9}
.state.warn{background:#fff3e0;border-color:#e90;font-weight:600} h2 code{font-size:.6em;color:#777;font-weight:normal}
</style>"""


def _headline_html(frame: pd.DataFrame) -> str:
    groups = []
    for section in dict.fromkeys(frame["section"]):  # in the view's order
        part = frame[frame["section"] == section]
        cards = "".join(f"<div class='card'><b>{int(v):,}</b><span>{html.escape(str(m))}</span></div>"
                        for m, v in zip(part["metric"], part["value"]))
        groups.append(f"<div class='group'><div class='label'>{html.escape(section)}</div>"
                      f"<div class='cards'>{cards}</div></div>")
    return f"<div id='headline'>{''.join(groups)}</div>"


def clear_previous(out: Path) -> None:
    """Remove what an earlier report wrote in `out` (its page, tables, plots and strips) and
    nothing else: views or strips it had and this one has not would read as this report's.
    Called as the new report is moved in, never before it is whole."""
    from mfhq.stats.strips import STRIP_GLOB

    old = [out / "report.html", *(out / p for p in PLOTS),
           *(out / "tables" / f"{name}.csv" for name in {**RUN_VIEWS, **MANIFEST_VIEWS})]
    old += list((out / "strips").glob(STRIP_GLOB))
    for path in old:
        if path.is_file():
            path.unlink()


def write_report(run_dirs: list[Path], manifest: Path | None, out: Path, strip_identities: int = 12) -> list[tuple[str, str]]:
    """Writes out/tables/*.csv, out/*.png, out/strips/*.jpg, out/report.html, all of them first
    into a folder of their own in `out` and moved in when whole (mfhq.stats.staging), where they
    replace an earlier report's files; returns (view, table text) pairs."""
    from mfhq.stats.staging import ReportLock, move_in, staging_folder
    from mfhq.stats.state import MANIFEST, state_lines

    # the runs and manifest checked before --out is touched: a refused command makes no folder
    notices, section = state_lines(run_dirs, manifest)
    con, names = connect_stats(run_dirs, manifest, section or MANIFEST)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with ReportLock(out):  # one stats at a time: two moves at once would put one's page beside the other's tables
        work = staging_folder(out)
        try:
            with naming_damaged_shards(run_dirs):  # a damaged data page: the shard named, how to redo it
                texts, n_views, n_plots = _write_into(work, con, names, notices, run_dirs, manifest, strip_identities)
            move_in(work, out, clear_previous)
        finally:  # stopped by an error: the earlier report stays as it was, and nothing of this one
            shutil.rmtree(work, ignore_errors=True)
    log.info("report: %s (%d views, %d plots)", out / "report.html", n_views, n_plots)
    return texts


def _write_into(out: Path, con: duckdb.DuckDBPyConnection, names: list[str], notices: list[str],
                run_dirs: list[Path], manifest: Path | None, strip_identities: int
                ) -> tuple[list[tuple[str, str]], int, int]:
    """The whole report in the empty folder `out`: (view, table text) pairs, views, plots."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    frames = {name: con.sql(f"SELECT * FROM {name}").df() for name in names}
    texts = [("state", "\n".join(notices))]
    for name, frame in frames.items():
        frame.to_csv(out / "tables" / f"{name}.csv", index=False)
        shown = frame if len(frame) <= 40 else frame.head(40)
        texts.append((name, shown.to_string(index=False) + ("" if len(frame) <= 40 else f"\n... {len(frame)} rows")))
    images = _plots(frames, out)
    parts = ["<!doctype html>", f"<html lang='en'><head><meta charset='utf-8'>{TITLE}", _STYLE,
             "</head><body>", "<h1>mfhq stats</h1><p class='meta'>runs: " + html.escape(", ".join(str(r) for r in run_dirs)) +
             (f"<br>manifest: {html.escape(str(manifest))}" if manifest else "") + "</p>",
             *(f"<p class='state{' warn' if line.startswith('WARNING') else ''}'>{html.escape(line)}</p>"
               for line in notices),
             _headline_html(frames["headline"])]
    parts.append("<h2>Plots</h2><div class='plots'>" + "".join(f"<img src='{n}' alt='{n}'>" for n in images) + "</div>")
    if manifest is not None:
        from mfhq.stats.strips import strips_html

        strips, shown, total = strips_html(con, out, strip_identities)
        parts.append(f"<h2>Sampled faces</h2><p class='meta'>{shown} of {total} identities"
                     f"{'' if shown == total else ' (evenly spaced in identity order)'}: their faces in sample order, "
                     "yaw / pitch / roll in degrees and quality under each.</p>" + strips)
    for name, frame in frames.items():
        if name != "headline":
            parts.append(f"<h2>{html.escape(TITLES.get(name, name))} <code>{name}</code></h2>"
                         + frame.head(200).to_html(index=False, na_rep="", border=0))
    parts.append("</body></html>")
    (out / "report.html").write_text("\n".join(parts), encoding="utf-8")  # in the staging folder: moved in last
    return texts, len(frames), len(images)
