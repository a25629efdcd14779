"""Which clip the watchdog charges with a worker's death or a hung model call while several clips'
frames are in the models together (run.batch_frames, here on the CPU through run.batch_on_cpu):
never one that did not fail on its own."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from conftest import SAMPLE_PRESET
from mfhq.config import load_pipeline
from mfhq.sources import get_source
from mfhq.worker.watchdog import Watchdog
from presets import write_preset


def _config(tmp_path: Path, clip_timeout_s: float):
    # One frame a second: each clip is one chunk of 4 frames, so the three clips' chunks go through
    # each model stage as one batch of 12 (under batch_frames). Read in line (no decode-ahead), so no
    # read in flight beside the models could make the old watchdog run the clips alone by chance.
    preset = write_preset(tmp_path / "faulty.yaml", {
        "decode.backend": "fault_readers:FaultyReader", "detect.backend": "fault_backends:FaultyDetector",
        "decode.fps": 1, "decode.timeout_s": 60, "run.workers": 1, "run.clip_timeout_s": clip_timeout_s,
    }, base=SAMPLE_PRESET)
    return load_pipeline(preset).replace(run={"batch_on_cpu": True, "batch_frames": 64, "decode_ahead": "never"})


def _run(cfg, tmp_path: Path, sample_dir: Path, names: tuple[str, ...]) -> dict[str, list]:
    """Each clip's rows as the watchdog hands them over: [(status row, face rows)], one per call."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in names:
        shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", folder / f"{name}.mp4")
    clips = {clip.clip_id: clip for clip in get_source("folder", folder).scan()}
    (tmp_path / "run").mkdir()
    rows: dict[str, list] = {}
    watchdog = Watchdog(cfg, str(tmp_path / "run"))
    assert watchdog.group, "the clips are not sent together: the test would not batch them"
    try:
        watchdog.run([clips[name] for name in names],
                     lambda clip, faces, row: rows.setdefault(clip.clip_id, []).append((row, faces)))
    finally:
        watchdog.close()
    return rows


def _statuses(rows: dict[str, list]) -> dict[str, list[str]]:
    return {name: [row["status"] for row, _ in got] for name, got in rows.items()}


def _tries(tmp_path: Path, name: str) -> int:
    return len((tmp_path / "videos" / f".{name}.mp4.tries").read_text().splitlines())


# b's frames kill the worker (SIGSEGV) in the detector, or stall it (a native call that never
# returns, the GIL held), in one call with a's and c's frames; c announced its part in the models
# last, and a, the first clip taken, is the first past the clip bound.
FAULTS = {
    "modelsegv": (600, "crashed", "the worker died (signal 11) during process", "a worker died (signal 11)"),
    "modelstall": (20, "timeout", "the clip ran past the 20 s watchdog", "clip watchdog ran out"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_death_or_hang_in_a_batched_model_call_is_pinned_only_on_the_clip_that_fails_alone(sample_dir, tmp_path,
                                                                                             caplog, fault):
    clip_bound, status, reason_end, warning = FAULTS[fault]
    bad = f"b_{fault}"
    names = ("a_good", bad, "c_good")
    with caplog.at_level(logging.WARNING, logger="mfhq.worker.watchdog"):
        rows = _run(_config(tmp_path, clip_bound), tmp_path, sample_dir, names)
    assert _statuses(rows) == {"a_good": ["ok"], bad: [status], "c_good": ["ok"]}, rows
    reason = rows[bad][0][0]["reason"]
    assert reason.endswith(f"{bad}.mp4: {reason_end}"), reason
    # the good clips, run again alone, are whole: every frame read, their faces kept
    for name in ("a_good", "c_good"):
        row, faces = rows[name][0]
        assert row["n_frames_read"] == 4 and row["n_faces_detected"] == len(faces) > 0, row
    # b ran twice: in the batch, where the death or hang named all three, then alone, where it failed again
    assert _tries(tmp_path, bad) == 2
    warned = [r.getMessage() for r in caplog.records if "in the models together" in r.getMessage()]
    assert len(warned) == 1 and all(f"{n}.mp4" in warned[0] for n in names), warned
    assert warning in warned[0] and "running each alone" in warned[0], warned
