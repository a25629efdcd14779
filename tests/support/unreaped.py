"""A process that has exited and that nobody has reaped yet (a zombie), as a killed run's
process stays in a container whose first process never reaps."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def unreaped_pid() -> Iterator[int]:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{exited.pid}/stat")
    try:
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped: no wait() yet
            os.sched_yield()
        yield exited.pid
    finally:
        exited.wait()
