"""A child process that logs through mfhq's log relay (tests/mfhq/worker/test_log_relay.py)."""
from __future__ import annotations

import logging
import warnings


def log_and_exit(conn) -> None:
    from mfhq.worker.log_relay import Sender, send_logs_to_parent

    send_logs_to_parent(Sender(conn), logging.WARNING)
    log = logging.getLogger("relay_child")
    log.info("below the level: never sent")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed on %s", "clip ✓")
    warnings.warn("a library's warning", UserWarning)
    conn.close()
