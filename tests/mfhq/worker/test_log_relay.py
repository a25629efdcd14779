"""Log records of worker processes reach the driver's log output once, whole, through its
handlers (which print above the progress bar), never written by the worker across the bar."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re

from conftest import REPO, SAMPLE_PRESET, run_cli
from fault_backends import WORKER_WARNING
from presets import write_preset

SUPPORT = REPO / "tests" / "support"  # fault_backends: the workers import it by name


class _Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_a_child_record_is_replayed_once_with_its_text_and_traceback():
    from mfhq.worker.log_relay import LOG, replay
    from relay_child import log_and_exit

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=log_and_exit, args=(child,))
    process.start()
    child.close()
    kept, root = _Kept(), logging.getLogger()
    root.addHandler(kept)
    try:
        while True:
            try:
                kind, record = parent.recv()
            except EOFError:
                break
            assert kind == LOG
            replay(record)
    finally:
        root.removeHandler(kept)
        process.join()
    ours = [r for r in kept.records if r.name == "relay_child"]
    assert len(ours) == 1 and ours[0].levelno == logging.ERROR
    text = ours[0].getMessage()
    assert text.startswith("failed on clip ✓\nTraceback") and text.endswith("ValueError: boom")
    warned = [r for r in kept.records if r.name == "py.warnings"]
    assert len(warned) == 1 and "UserWarning: a library's warning" in warned[0].getMessage()


def test_a_worker_warning_reaches_the_driver_log_once_and_whole(sample_dir, tmp_path):
    preset = write_preset(tmp_path / "warns.yaml", {"quality.backend": "fault_backends:WarningQuality",
                                                    "run.workers": 1, "run.shard_size": 2}, base=SAMPLE_PRESET)
    env = {**os.environ, "PYTHONPATH": f"{SUPPORT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(tmp_path / "run"),
                     "--pipeline", str(preset), env=env)
    message = WORKER_WARNING[0] % WORKER_WARNING[1:]
    lines = re.split(r"[\r\n]", result.stderr)
    # Printed by the driver's handler (its format), once for the run's one worker, on a line of its own.
    assert lines.count(f"WARNING fault_backends: {message}") == 1, result.stderr
    assert result.stderr.count(message) == 1
