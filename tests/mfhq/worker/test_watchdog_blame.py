"""Which clip the watchdog charges with a worker's death or a slow opening, when the worker reads
the next clip ahead (CPU, decode-ahead): never one that did not fail on its own."""
from __future__ import annotations

import shutil
from pathlib import Path


from conftest import SAMPLE_PRESET
from fault_readers import SLOW_OPEN_S
from mfhq.config import load_pipeline
from mfhq.sources import get_source
from mfhq.worker.watchdog import Watchdog
from presets import write_preset


def _config(tmp_path: Path, changes: dict):
    # One frame a second: each clip is one chunk of 4 frames, so the next clip is opened ahead while
    # this one's only chunk is in the models.
    preset = write_preset(tmp_path / "faulty.yaml", {"decode.backend": "fault_readers:FaultyReader", "decode.fps": 1,
                                                     "run.workers": 1, **changes}, base=SAMPLE_PRESET)
    return load_pipeline(preset).replace(run={"decode_ahead": "always"})


def _clips(sample_dir: Path, folder: Path, names: tuple[str, ...]) -> list:
    folder.mkdir()
    for name in names:
        shutil.copy(sample_dir / "videos" / "astronaut_motion.mp4", folder / f"{name}.mp4")
    clips = {clip.clip_id: clip for clip in get_source("folder", folder).scan()}
    return [clips[name] for name in names]


class LooksLate(Watchdog):
    """A watchdog that, once it has sent c_good and d_crash together, looks at its worker again
    only after the worker has died, as one that a loaded machine did not schedule in time: all the
    worker said before it died is then in the pipe, unread. (Waiting on the process is the only
    synchronisation.) The worker opens d_crash ahead, after c_good's reads, and dies of it."""

    held = False

    def _overdue(self):
        told = {*getattr(self, "reading", ()), *getattr(self, "opening", ()), *getattr(self, "ahead", ())}
        if not self.held and self.phase_key == "folder/c_good" and "folder/d_crash" not in told:
            self.held = True
            self.process.join()
        return super()._overdue()


def test_a_death_while_the_next_clip_is_read_ahead_is_never_pinned_on_the_clip_in_the_models(sample_dir, tmp_path):
    cfg = _config(tmp_path, {"decode.timeout_s": 60, "run.clip_timeout_s": 600})
    clips = _clips(sample_dir, tmp_path / "videos", ("c_good", "d_crash"))
    (tmp_path / "run").mkdir()
    rows: dict[str, list] = {}
    watchdog = LooksLate(cfg, str(tmp_path / "run"))
    try:
        watchdog.run(clips, lambda clip, faces, row: rows.setdefault(clip.clip_id, []).append((row["status"], row["reason"])))
    finally:
        watchdog.close()
    assert watchdog.held, "the worker had announced d_crash before the watchdog held: the test proved nothing"
    # c_good did not kill the worker: one row, its own. d_crash did: one row, from a death while it ran alone.
    assert [status for status, _ in rows["c_good"]] == ["ok"], rows
    assert [status for status, _ in rows["d_crash"]] == ["crashed"], rows
    assert "d_crash.mp4: the worker died (signal 11)" in rows["d_crash"][0][1]


def test_an_opening_past_the_decode_bound_is_its_own_clips_timeout(sample_dir, tmp_path):
    # The second clip's opening blocks SLOW_OPEN_S, twice the decode bound (a decord hang on some
    # files, or a disk slower than the bound allows), first ahead while the first clip is in the
    # models, then alone. The clip limit is far above: only the opening's own bound ends it.
    cfg = _config(tmp_path, {"decode.timeout_s": SLOW_OPEN_S / 2, "run.clip_timeout_s": 600})
    names = ("a_good", "b_slowopen")
    clips = _clips(sample_dir, tmp_path / "videos", names)
    (tmp_path / "run").mkdir()
    rows: dict[str, list] = {}
    watchdog = Watchdog(cfg, str(tmp_path / "run"))
    try:
        watchdog.run(clips, lambda clip, faces, row: rows.setdefault(clip.clip_id, []).append((row, len(faces))))
    finally:
        watchdog.close()
    # one row each: the clip in the models when the opening ahead ran long is read whole, ok
    assert {name: [row["status"] for row, _ in rows[name]] for name in names} == {
        "a_good": ["ok"], "b_slowopen": ["timeout"]}, rows
    assert rows["a_good"][0][1] > 0 and rows["a_good"][0][0]["n_frames_read"] == 4
    reason = rows["b_slowopen"][0][0]["reason"]
    assert reason.endswith(f"b_slowopen.mp4: opening the video ran past the {SLOW_OPEN_S / 2:g} s watchdog"), reason
