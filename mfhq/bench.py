"""`mfhq bench`: extract throughput beside decode-only throughput, same clips, one run.

Figures are ratios measured in one run on one machine, so they compare across machines better
than absolute numbers. Two ratios are reported:
  * stage time: decode-only seconds over the seconds the workers spent in stages (decode
    included) - the per-process cost, independent of start-up and of the worker count;
  * wall: extract clip-seconds/s with N workers over decode-only with N processes, start-up
    and model loading included (short benchmarks understate it).
Per stage, the seconds are also given per sampled frame and per detected face. Peak RSS per
worker is the largest resident set of extract's worker processes (read as extract ends; a
decode-only process holds far less, so the first pass cannot mask it).
Decode-only runs before and after extract; the ratios use the mean of the two. CPU seconds are
given beside them: with run.decode_ahead, a worker decodes on one core while its models run on
another, so the `decode` stage is the time the models waited for frames, not decoding's cost.
The run folder (and the profile's) is scratch: bench marks the folders it makes and replaces
only those (or a new or empty one), so a mistyped --out never deletes a finished run, and empties
them under their run lock, so never one another bench's extract is writing.
The videos are measured under the lock their writers hold on their folder (`videos_held`).
"""
from __future__ import annotations

import errno
import logging
import multiprocessing
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mfhq.config import PipelineConfig
from mfhq.decode import ClipDecoder, DecodeError, sample_indices
from mfhq.errors import MfhqError
from mfhq.extract import extract
from mfhq.manifest.lock import CLAIM, LOCK
from mfhq.manifest.views import connect
from mfhq.plan import RunLock
from mfhq.sources.folder import VIDEO_SUFFIXES
from mfhq.unfinished import VideosLock

log = logging.getLogger(__name__)
# The mark bench leaves at the root of a scratch folder it made. A dot name: extract's check of
# its run folder (mfhq.checks.check_run_folder) passes over such names, so it runs there.
BENCH_MARKER = ".mfhq-bench-scratch"


class BenchError(MfhqError, ValueError):
    """bench cannot run as asked: --out is not its own scratch folder, or --root holds no video."""


@contextmanager
def videos_held(root: Path, make_clips: bool) -> Iterator[None]:
    """The lock of the folder of videos bench measures (mfhq.unfinished.VideosLock: the one a
    render or a sample holds while it writes them), held from before --make-clips renders them
    until the last read: a folder being written is refused in one line naming its writer, and no
    render or sample starts rewriting the videos under the measurement. A folder this user may not
    write into is measured without it: no mfhq of this user can write there either."""
    from mfhq.benchclips import clips_lock

    lock = clips_lock(root) if make_clips else VideosLock(root, command="mfhq bench")
    try:
        lock.acquire()
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        log.debug("%s: measured without its lock (%s)", root, exc)
    try:
        yield
    finally:
        lock.release()


def _videos(root: Path) -> list[Path]:
    """The files extract makes clips of (the folder source's scan): decode-only must measure the
    same clips, or the ratio and the clip-seconds divide one set of clips by another's time."""
    from mfhq.records import Clip
    from mfhq.sources import get_source

    return [c.video_path for c in get_source("folder", Path(root)).scan() if isinstance(c, Clip)]


def check_scratch(out: Path, option: str = "--out") -> None:
    """Refuse a folder bench may not replace: one that holds files and was not made by bench."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"{option} {out}: is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / BENCH_MARKER).is_file():
        raise BenchError(f"{option} {out}: not a scratch folder made by `mfhq bench` (it holds other files), "
                           "and bench replaces its run folder; choose another --out, or remove this folder yourself")


def check_root_outside(root: Path | None, out: Path, option: str = "--out") -> None:
    """Refuse a --root that is, or lies inside, a folder bench empties: its videos would be
    deleted before extract reads them (and clips --make-clips renders there, right after)."""
    from mfhq.manifest.io import placed

    where = None if root is None else placed(root, out)
    if where:
        raise BenchError(f"--root {root} {where} {option} {out}, which bench empties before each run: its videos "
                         "would be deleted; give an --out apart from the videos")


def replace_scratch(out: Path, option: str = "--out") -> None:
    """Empty a scratch folder bench made (or make a new one) and mark it as bench's. Emptied under
    its run lock: a folder another bench's extract is writing (the default --out is every bench's)
    is refused in one line naming it, not emptied under it. The mark stays all along: a bench
    killed while it empties the folder (its lock left stale) leaves it bench's, to be replaced."""
    out = Path(out)
    check_scratch(out, option)
    if out.is_dir():
        with RunLock(out, "mfhq bench"):
            for entry in out.iterdir():  # the folder itself stays: it may be the working folder
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                elif entry.name not in (LOCK, BENCH_MARKER) and not entry.name.startswith((".tmp-lock-", CLAIM)):
                    entry.unlink()  # not the lock nor a try at it, nor the mark
    out.mkdir(parents=True, exist_ok=True)
    (out / BENCH_MARKER).write_text("A scratch run folder of `mfhq bench`: the next bench run replaces it.\n")


def profile_folder(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + "-profile")


def _decode_one(args) -> tuple[float, float, int, float, float]:
    """Decode one clip's sampled frames: (start, end on the system's monotonic clock, frames,
    clip seconds, CPU seconds of the process meanwhile)."""
    path, decode_cfg = args
    from mfhq.models.runtime import limit_threads

    limit_threads()
    started, cpu_started, frames, clip_seconds = time.monotonic(), time.process_time(), 0, 0.0
    decoder = ClipDecoder(decode_cfg)
    try:
        info = decoder.open(path)
        for chunk in decoder.chunks(path, sample_indices(info, decode_cfg, None, None)):
            frames += len(chunk.frames)
        clip_seconds = info.n_frames / info.fps
    except DecodeError:
        pass
    finally:
        decoder.close()
    return started, time.monotonic(), frames, clip_seconds, time.process_time() - cpu_started


def decode_only(videos: list[Path], cfg: PipelineConfig, workers: int = 1) -> dict:
    """Decode the sampled frames of every clip, in `workers` processes (1: this process).

    The processes are spawned, not forked (a fork of this process, whose libraries may hold
    locks in their own threads, can hang: it did after --make-clips), and the wall time runs
    from the first clip's start to the last clip's end on the system's monotonic clock, so the
    processes' start-up is not counted against decoding."""
    jobs = [(path, cfg.decode) for path in videos]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_decode_one, jobs))
    else:
        results = [_decode_one(job) for job in jobs]
    if not results:
        return {"wall_s": 0.0, "busy_s": 0.0, "cpu_s": 0.0, "frames": 0, "clip_seconds": 0.0}
    return {"wall_s": max(r[1] for r in results) - min(r[0] for r in results),
            "busy_s": sum(r[1] - r[0] for r in results), "cpu_s": sum(r[4] for r in results),
            "frames": sum(r[2] for r in results), "clip_seconds": sum(r[3] for r in results)}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_bench(root: Path, cfg: PipelineConfig, out: Path, workers: int = 1) -> dict:
    videos = _videos(root)
    if not videos:
        raise BenchError(f"--root {root}: no video files ({' '.join(sorted(VIDEO_SUFFIXES))}) to measure; "
                           "give a folder of videos, or --make-clips N to generate some")
    replace_scratch(out)
    run_cfg = cfg.replace(run={"workers": workers})
    # Decode-only runs before and after extract: a shared machine's load drifts (decode-only
    # moved by up to 40% between runs), so the ratio uses their mean and both are reported.
    dec_before = decode_only(videos, cfg, workers)
    rss_before, cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, _children_cpu_s()
    summary = extract("folder", root, out, run_cfg)
    worker_rss, extract_cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, _children_cpu_s() - cpu_before
    con = connect(out)
    frames_read, faces, kept = con.execute(
        "SELECT sum(n_frames_read), sum(n_faces_detected), sum(n_faces_kept) FROM clips").fetchall()[0]
    frames_read, faces, kept = frames_read or 0, faces or 0, kept or 0
    stage_rows = con.sql(
        "SELECT key, sum(value) FROM (SELECT unnest(map_keys(stage_seconds)) AS key, "
        "unnest(map_values(stage_seconds)) AS value FROM clips WHERE stage_seconds IS NOT NULL) GROUP BY key ORDER BY 2 DESC"
    ).fetchall()
    dec_after = decode_only(videos, cfg, workers)
    dec = {key: (dec_before[key] + dec_after[key]) / 2 for key in ("wall_s", "busy_s", "cpu_s")}
    dec.update(frames=dec_after["frames"], clip_seconds=dec_after["clip_seconds"])
    stage_s = sum(v for _, v in stage_rows)
    clip_seconds = dec["clip_seconds"]
    return {
        "workers": workers, "decode_ahead": run_cfg.run.decode_ahead, "reads_ahead": run_cfg.run.reads_ahead(),
        "clips": summary.clips, "video_seconds": round(clip_seconds, 2),
        "sampled_frames": int(frames_read), "faces_detected": int(faces), "faces_kept": int(kept),
        "status": summary.status_counts,
        "decode_only": {"clips": len(videos), "clip_s_per_s": clip_seconds / max(dec["wall_s"], 1e-9), "wall_s": dec["wall_s"],
                        "busy_s": dec["busy_s"], "cpu_s": dec["cpu_s"], "frames_per_s": dec["frames"] / max(dec["wall_s"], 1e-9),
                        "wall_s_before_and_after": [round(dec_before["wall_s"], 3), round(dec_after["wall_s"], 3)]},
        "extract": {"clip_s_per_s": clip_seconds / max(summary.seconds, 1e-9), "wall_s": summary.seconds,
                    "stage_s": stage_s, "frames_per_s": frames_read / max(summary.seconds, 1e-9),
                    # the workers' CPU time, model loading included; over wall: the cores kept busy
                    "cpu_s": extract_cpu, "cores_busy": extract_cpu / max(summary.seconds, 1e-9)},
        "ratio_stage_time": dec["busy_s"] / max(stage_s, 1e-9),
        "ratio_wall": dec["wall_s"] / max(summary.seconds, 1e-9),
        "stages": {k: {"seconds": round(v, 3), "ms_per_frame": 1000 * v / max(frames_read, 1),
                       "ms_per_face": 1000 * v / max(faces, 1) if faces else None} for k, v in stage_rows},
        # ru_maxrss of children is the largest of them; a leftover from an earlier run in this
        # process (tests) would show as the same figure, never a larger one.
        "peak_rss_worker_mib": round(worker_rss / 1024) if worker_rss > rss_before or rss_before == 0 else None,
        "peak_rss_parent_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def stage_label(stage: str, reads_ahead: bool) -> str:
    """A stage's name in the per-stage line. With decode-ahead the `decode` seconds are the time
    the models waited for frames (decoding ran on another core meanwhile), not decoding's cost:
    the name says so, or its ms/frame reads as the decoder's."""
    return "decode (waiting for frames, decoded ahead)" if stage == "decode" and reads_ahead else stage


def format_report(result: dict) -> list[str]:
    dec, ext = result["decode_only"], result["extract"]
    n = result["workers"]
    lines = [
        f"clips: {result['clips']}, video seconds: {result['video_seconds']:.1f}, sampled frames: "
        f"{result['sampled_frames']}, faces: {result['faces_detected']} detected, {result['faces_kept']} kept",
        f"decode-only ({n} process{'es' if n > 1 else ''}, mean of a run before and after extract): "
        f"{dec['clip_s_per_s']:.2f} clip-s/s ({dec['frames_per_s']:.1f} sampled frames/s; "
        f"{' and '.join(f'{w:.2f}' for w in dec['wall_s_before_and_after'])} s)",
        f"extract ({n} worker{'s' if n > 1 else ''}, wall incl. start-up and model load): {ext['clip_s_per_s']:.2f} clip-s/s",
        f"ratio extract/decode-only: {result['ratio_stage_time']:.3f} (stage time), {result['ratio_wall']:.3f} (wall)",
        f"CPU: decode-only {dec['cpu_s']:.1f} s, extract {ext['cpu_s']:.1f} s with model loading "
        f"({ext['cores_busy']:.2f} cores busy on average; decode-ahead {'on' if result['reads_ahead'] else 'off'}, "
        f"run.decode_ahead: {result['decode_ahead']})",
        "per stage: " + ", ".join(
            f"{stage_label(k, result['reads_ahead'])}={v['seconds']:.2f}s "
            f"({v['ms_per_frame']:.1f} ms/frame"
            + (f", {v['ms_per_face']:.1f} ms/face)" if v["ms_per_face"] is not None else ")")
            for k, v in result["stages"].items()),
        f"peak RSS: worker {result['peak_rss_worker_mib']} MiB, parent {result['peak_rss_parent_mib']} MiB",
    ]
    return lines


def profile_stages(root: Path, cfg: PipelineConfig, out: Path, top: int = 10) -> list[tuple[str, float]]:
    """Run the clips through the stages in this process under pyinstrument; the functions with
    the most own time (seconds), most first."""
    try:
        from pyinstrument import Profiler
    except ImportError as exc:  # a profiler is a tool of this command only, not of extract
        raise RuntimeError("mfhq bench --profile needs pyinstrument: pip install pyinstrument") from exc

    from mfhq.models.runtime import limit_threads
    from mfhq.sources import get_source
    from mfhq.worker.clip import ClipProcessor

    limit_threads()
    replace_scratch(out, "--out (its profile folder)")
    processor = ClipProcessor(cfg, out)
    processor.setup()
    profiler = Profiler(interval=0.002)
    profiler.start()
    for clip in get_source("folder", root).scan():
        if hasattr(clip, "video_path"):
            processor.process(clip)
    profiler.stop()
    own: dict[str, float] = {}
    stack = [profiler.last_session.root_frame()]
    while stack:
        frame = stack.pop()
        if frame is None:
            continue
        stack.extend(frame.children)
        if frame.is_synthetic:  # pyinstrument's [self] / [await] leaves: counted by their parent
            continue
        name = f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"
        own[name] = own.get(name, 0.0) + frame.total_self_time
    return sorted(own.items(), key=lambda kv: -kv[1])[:top]
