"""A process that takes a stale lock, round after round, held at its takeover by the test
(tests/mfhq/manifest/test_lock.py; spawned processes import it by name)."""
from __future__ import annotations

import logging

from mfhq.manifest.lock import FolderInUse, FolderLock

GUARD_S = 60  # a guard against a hang when a taker dies, not a timing


class HoldAtTakeover(logging.Handler):
    """At a round's first "taking over a stale lock" warning (logged after the taker judged the
    lock stale, before it acts): wait until every taker has judged it stale, then for this
    taker's turn when the round goes in turn."""

    def __init__(self, all_judged):
        super().__init__()
        self.all_judged, self.turn, self.held = all_judged, None, False

    def start_round(self, turn) -> None:
        self.turn, self.held = turn, False

    def handle(self, record: logging.LogRecord) -> bool:  # not emit(): that runs under the handler's lock
        if "taking over a stale lock" in record.getMessage() and not self.held:
            self.held = True
            self.all_judged.wait(GUARD_S)
            if self.turn is not None:
                self.turn.wait(GUARD_S)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        pass


def take_in_rounds(index, folders, in_turn, turns, all_judged, round_over, results) -> None:
    """Take each folder's stale lock in its round; say the outcome; hold it until the round is over."""
    hold = HoldAtTakeover(all_judged)
    logging.getLogger("mfhq.manifest.lock").addHandler(hold)
    kept = []
    for round_, folder in enumerate(folders):
        hold.start_round(turns[round_][index] if in_turn else None)
        lock, error = FolderLock(folder), None
        try:
            lock.acquire()
        except FolderInUse as exc:
            error = str(exc)
        finally:
            if index + 1 < len(turns[round_]):  # the next taker's turn
                turns[round_][index + 1].set()
        results.put((round_, index, lock.held, lock.token, error))
        kept.append(lock)  # alive and holding while the others try, as a run's process would be
        round_over.wait(GUARD_S)
    for lock in kept:
        lock.release()
