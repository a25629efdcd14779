"""SIGTERM stops a long command the way Ctrl-C does (KeyboardInterrupt in the main thread), so
both end through the same clean path: finished work kept, one line, exit code 130."""
from __future__ import annotations

import signal
import threading


class sigterm_as_interrupt:
    """A context in which SIGTERM raises KeyboardInterrupt (main thread only; elsewhere a no-op)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
