"""`mfhq bench`: extract throughput beside decode-only throughput, same clips, one run.

Figures are ratios measured in one process on one machine, so they compare across machines
better than absolute numbers: extract clip-seconds/s over decode-only clip-seconds/s.
"""
from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

from mfhq.config import PipelineConfig
from mfhq.decode import ClipDecoder, DecodeError, sample_indices
from mfhq.extract import extract
from mfhq.manifest.views import connect
from mfhq.sources import get_source


def decode_only(root: Path, cfg: PipelineConfig) -> tuple[float, int, float]:
    """Decode the sampled frames of every clip in this process: (seconds, frames, clip seconds)."""
    started, frames, clip_seconds = time.perf_counter(), 0, 0.0
    for clip in get_source("folder", root).scan():
        if not hasattr(clip, "video_path") or not Path(clip.video_path).stat().st_size:
            continue
        decoder = ClipDecoder(cfg.decode)
        try:
            info = decoder.open(Path(clip.video_path))
            indices = sample_indices(info, cfg.decode, clip.start_sec, clip.end_sec)
            for chunk in decoder.chunks(Path(clip.video_path), indices):
                frames += len(chunk.frames)
            clip_seconds += info.n_frames / info.fps
        except DecodeError:
            pass
        finally:
            decoder.close()
    return time.perf_counter() - started, frames, clip_seconds


def run_bench(root: Path, cfg: PipelineConfig, out: Path) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    one_worker = cfg.replace(run={"workers": 1})
    dec_s, dec_frames, clip_seconds = decode_only(root, one_worker)
    summary = extract("folder", root, out, one_worker)
    con = connect(out)
    frames_read = con.execute("SELECT sum(n_frames_read) FROM clips").fetchall()[0][0] or 0
    stage_rows = con.sql(
        "SELECT key, sum(value) FROM (SELECT unnest(map_keys(stage_seconds)) AS key, "
        "unnest(map_values(stage_seconds)) AS value FROM clips WHERE stage_seconds IS NOT NULL) GROUP BY key ORDER BY 2 DESC"
    ).fetchall()
    worker_s = sum(v for _, v in stage_rows)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        f"clips: {summary.clips}, video seconds: {clip_seconds:.1f}, sampled frames: {frames_read}",
        f"decode-only: {clip_seconds / dec_s:.1f} clip-s/s ({dec_frames / dec_s:.1f} sampled frames/s)",
        f"extract (1 worker, wall incl. model load): {clip_seconds / summary.seconds:.2f} clip-s/s ({frames_read / summary.seconds:.2f} frames/s)",
        f"extract (1 worker, time in stages): {clip_seconds / max(worker_s, 1e-9):.2f} clip-s/s",
        f"ratio extract/decode-only (stage time): {dec_s / max(worker_s, 1e-9):.3f}",
        "stage seconds: " + ", ".join(f"{k}={v:.2f}" for k, v in stage_rows),
        f"peak RSS: worker {peak_mib:.0f} MiB, parent {self_mib:.0f} MiB",
    ]
