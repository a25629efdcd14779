"""Each bounded phase of a clip has its own clock: an opening and the decode after it are each
bounded by decode.timeout_s, so a slow probe followed by a slow first read, each within the
bound, is no timeout (the two together are past it)."""
from __future__ import annotations

import shutil

from conftest import SAMPLE_PRESET
from fault_readers import SLOW_OPEN_S
from mfhq.config import load_pipeline
from mfhq.sources import get_source
from mfhq.worker.watchdog import Watchdog
from presets import write_preset


def test_the_decode_after_a_slow_opening_starts_its_own_clock(sample_dir, tmp_path):
    # Read in line (no decode-ahead): the worker says "open", probes for SLOW_OPEN_S, says "decode"
    # and reads its one chunk (one frame a second: 4 frames) for SLOW_OPEN_S more. The bound is
    # half as long again as each, shorter than both together; the clip's own far above.
    preset = write_preset(tmp_path / "slow.yaml", {"decode.backend": "fault_readers:FaultyReader", "decode.fps": 1,
                                                   "decode.timeout_s": 1.5 * SLOW_OPEN_S, "run.clip_timeout_s": 600,
                                                   "run.workers": 1}, base=SAMPLE_PRESET)
    cfg = load_pipeline(preset).replace(run={"decode_ahead": "never"})
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", videos / "slowopen_slowread.mp4")
    clips = list(get_source("folder", videos).scan())
    (tmp_path / "run").mkdir()
    rows = []
    watchdog = Watchdog(cfg, str(tmp_path / "run"))
    try:
        watchdog.run(clips, lambda clip, faces, row: rows.append((row, len(faces))))
    finally:
        watchdog.close()
    assert [(row["status"], row["reason"]) for row, _ in rows] == [("ok", None)], rows
    assert rows[0][0]["n_frames_read"] == 4 and rows[0][1] > 0
    # opened once: no timeout killed the worker and ran it again
    assert (videos / ".slowopen_slowread.mp4.tries").read_text().splitlines() == ["try"]
