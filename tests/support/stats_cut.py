"""`mfhq stats` killed in the middle of moving its report into --out: the real command, SIGKILLed
by itself at the third file of the earlier report it removes there, as a kill at that moment
leaves it (tests/mfhq/stats/test_report_moves.py runs it as a script: python stats_cut.py ARGS)."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from mfhq.stats import report

_CLEAR, _UNLINK, REMOVED = report.clear_previous, Path.unlink, []


def _unlink_then_killed(path: Path, missing_ok: bool = False) -> None:
    _UNLINK(path, missing_ok=missing_ok)
    REMOVED.append(path)
    if len(REMOVED) == 3:
        os.kill(os.getpid(), signal.SIGKILL)


def _clear_killed(out: Path) -> None:
    Path.unlink = _unlink_then_killed  # only while the earlier report's files are removed
    _CLEAR(out)


if __name__ == "__main__":
    report.clear_previous = _clear_killed  # write_report hands it to the move by this name
    from mfhq.cli import main

    sys.argv = ["mfhq", "stats", *sys.argv[1:]]
    main()
