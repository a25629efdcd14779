"""Log records of child processes, sent up to the process that started them (ours).

A worker process (and a local runner process) that printed its own log lines to stderr would
write them across the driver's progress bar. Instead such a process sends each record over the
pipe it already has to its parent, as a ("log", record) message, and the parent hands the record
to its own logging (`replay`): a worker's warning climbs worker -> runner -> driver and is printed
once, by the driver's handlers, which print above the bar. Python warnings (`warnings.warn`) go
the same way. A record is made portable first: its message formatted, with any traceback, as
text (arguments and tracebacks may not pickle).
"""
from __future__ import annotations

import copy
import logging
import threading

LOG = "log"  # the message kind


class Sender:
    """conn.send behind a lock: a process's threads (and its log handler) share one pipe."""

    def __init__(self, conn):
        self.conn = conn
        self._lock = threading.RLock()  # re-entrant: a record logged while sending must not deadlock

    def __call__(self, message: tuple) -> None:
        with self._lock:
            self.conn.send(message)


class ParentHandler(logging.Handler):
    """Sends each record to the parent process through `send` (a Sender)."""

    def __init__(self, send, level: int = logging.NOTSET):
        super().__init__(level)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send((LOG, self.portable(record)))
        except Exception:  # the parent is gone or the record cannot travel: nothing to report to
            pass

    def portable(self, record: logging.LogRecord) -> logging.LogRecord:
        text = self.format(record)  # the message, then the traceback if any (the default format)
        record = copy.copy(record)
        record.msg, record.message, record.args = text, text, None
        record.exc_info = record.exc_text = record.stack_info = None
        return record


def send_logs_to_parent(send, level: int) -> None:
    """This process's records (at `level` and above) and Python warnings go to the parent only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(ParentHandler(send))
    root.setLevel(level)
    logging.captureWarnings(True)


def replay(record: logging.LogRecord) -> None:
    """A child's record, handled here as if logged here (this process's levels decide)."""
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
